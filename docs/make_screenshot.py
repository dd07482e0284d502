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

ROOT = Path(__file__).resolve().parent.parent
EXTRA_DEVICES = {"tflite": ("pixel-8", "galaxy-s24", "raspberry-pi-5"), "coreml": ("iphone-15-pro", "iphone-12")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "report-screenshot")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "report.png")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from dataclasses import replace

    from edgeexport.api import ConvertOptions, VerifyOptions, add_estimates, convert
    from edgeexport.report.html import write_html
    from edgeexport.report.jsonfile import write_json
    from edgeexport.report.screenshot import png_stats, screenshot

    samples = ROOT / "sample_models"
    options = ConvertOptions(targets=("tflite", "coreml"), preset="fp16", device="iphone-15-pro",
                             verify=VerifyOptions(data=samples / "digits.npz"))
    report = convert(samples / "digits_cnn.keras", args.out, options)
    entries = []
    for entry in report.artifacts:  # each artifact also on the other devices of its platform
        more = add_estimates(replace(report, artifacts=(entry,)), EXTRA_DEVICES[entry.artifact.target])
        entries.extend(more.artifacts)
    report = replace(report, artifacts=tuple(entries))
    write_json(args.out / "report.json", report.to_dict())
    html = write_html(args.out / "report.html", report)
    screenshot(html, args.png)
    stats = png_stats(args.png)
    print(f"{args.png}: {stats.width}x{stats.height}, {args.png.stat().st_size:,} bytes, {stats.colors} colours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
