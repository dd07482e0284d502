"""Make docs/report.png: convert the digits sample, write report.html, screenshot it with headless Chromium.

    python docs/make_screenshot.py [--out build/report-screenshot] [--png docs/report.png]

The report gets simulated latencies for a few extra devices (real ``edgeexport.simulate`` estimates, one per
device) so the page shows its per-device columns and charts. Needs Chromium (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXTRA_DEVICES = {"tflite": ("pixel-8", "galaxy-s24", "raspberry-pi-5"), "coreml": ("iphone-15-pro", "iphone-12")}


def add_estimates(report: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Append a simulated estimate per extra device to each artifact that has none for that device."""
    from edgeexport.catalog import load_device
    from edgeexport.simulate import simulate

    for artifact in report["artifacts"]:
        have = {e.get("device") for e in artifact.get("estimates") or []}
        for device in EXTRA_DEVICES.get(artifact["target"], ()):
            if device not in have:
                estimate = simulate(out_dir / artifact["path"], load_device(device))
                artifact.setdefault("estimates", []).append(estimate.to_dict())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "report-screenshot")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "report.png")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import edgeexport
    from edgeexport.report.html import write_html
    from edgeexport.report.jsonfile import write_json
    from edgeexport.report.screenshot import png_stats, screenshot

    samples = ROOT / "sample_models"
    report = edgeexport.convert(samples / "digits_cnn.keras", args.out, targets=("tflite", "coreml"), preset="fp16",
                                device="iphone-15-pro", verify_data=samples / "digits.npz").to_dict()
    report = add_estimates(report, args.out)
    write_json(args.out / "report.json", report)
    html = write_html(args.out / "report.html", report)
    screenshot(html, args.png)
    stats = png_stats(args.png)
    print(f"{args.png}: {stats.width}x{stats.height}, {args.png.stat().st_size:,} bytes, {stats.colors} colours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
