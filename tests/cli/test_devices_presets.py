"""`edgeexport devices` / `devices show` / `presets`: output, exit codes, and no framework imports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeexport.catalog.devices import DEVICE_DIR

PROBE = """
import sys
from edgeexport.cli.main import main
try:
    main({args!r})
except SystemExit as exit_:
    code = exit_.code
heavy = sorted(m for m in ("tensorflow", "keras", "coremltools", "onnx", "onnx2tf", "ai_edge_litert")
               if m in sys.modules)
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE.format(args=list(args))], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


@pytest.mark.parametrize("args", [["devices"], ["devices", "show", "pixel-8"], ["presets"],
                                  ["presets", "prune-50+int8"], ["devices", "--json"]])
def test_catalog_commands_are_light_and_fast(args: list[str]) -> None:
    start = time.perf_counter()
    result = _run(*args)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert result.stderr.rstrip().endswith("HEAVY:"), result.stderr
    assert elapsed < 5.0          # includes interpreter start-up; TensorFlow alone takes longer than this


def test_devices_table_lists_every_profile_with_auto_presets() -> None:
    out = _run("devices").stdout
    for name in ("pixel-8", "galaxy-s24", "iphone-15-pro", "raspberry-pi-5", "coral-dev-board", "stm32f746", "host*"):
        assert name in out
    line = next(row for row in out.splitlines() if row.startswith("iphone-15-pro"))
    assert "coreml: fp16" in line and "35,000" in line
    mcu = next(row for row in out.splitlines() if row.startswith("stm32f746"))
    assert "320 KiB" in mcu and "int8-io" in mcu


def test_devices_json_is_machine_readable() -> None:
    data = json.loads(_run("devices", "--json").stdout)
    s24 = next(d for d in data if d["name"] == "galaxy-s24")
    assert s24["default_presets"] == {"tflite": "int8"}
    assert s24["sources"]["units.npu.peak_gops.int8"].startswith("F:")  # raised by the fit (issue 12)
    assert s24["validation"]["npu"]["rows"] >= 8


def test_show_prints_every_number_with_its_source() -> None:
    out = _run("devices", "show", "pixel-8").stdout
    peak = next(line for line in out.splitlines() if line.startswith("units.cpu.peak_gops.fp32"))
    assert "206.9" in peak and "D: 2.91 GHz x 32" in peak
    assert "android_api" in out and "units.tpu.efficiency.conv" in out


def test_show_unknown_device_is_exit_3_with_suggestion() -> None:
    result = _run("devices", "show", "pixel-88")
    assert result.returncode == 3
    assert "unknown device 'pixel-88'" in result.stderr and "pixel-8" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("cores = 4\n", "", "units.cpu.cores"),
        ('kind = "cpu"', 'kind = "quantum"', "units.cpu.kind"),
        ('clock_ghz = "Q: same"', 'clock_ghz = ""', "units.cpu.clock_ghz"),
        ("memory_bandwidth_gbps = 17.1", "memory_bandwidth_gbps = -17.1", "units.cpu.memory_bandwidth_gbps"),
    ],
)
def test_bad_profile_file_is_exit_3_naming_the_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    text = (DEVICE_DIR / "raspberry-pi-5.toml").read_text()
    assert old in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(old, new, 1))
    result = _run("devices", "show", "--device", str(bad))
    assert result.returncode == 3, result.stderr
    assert f"field '{field}'" in result.stderr and str(bad) in result.stderr
    assert "Traceback" not in result.stderr


def test_show_needs_exactly_one_of_name_and_path() -> None:
    assert _run("devices", "show").returncode == 2


def test_presets_table_and_user_presets_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.edgeexport.presets.int8-app]\nbase = "int8"\ndescription = "our int8"\n'
        '[[tool.edgeexport.presets.int8-app.overrides]]\nop_type = "Softmax"\nkeep = "fp32"\n'
    )
    out = _run("presets", cwd=tmp_path).stdout
    names = [line.split()[0] for line in out.splitlines()[1:] if line.strip() and not line.startswith("Combine")]
    assert {"fp32", "fp16", "int8", "int8-io", "w8a8", "palettize-4", "prune-2:4", "int8-app"} <= set(names)
    int8 = next(line for line in out.splitlines() if line.startswith("int8 "))
    assert "cos>=0.98" in int8 and "sqnr>=15dB" in int8
    detail = _run("presets", "int8-app", cwd=tmp_path).stdout
    assert "keep fp32" in detail and "op_type=Softmax" in detail and "calibration  required" in detail


@pytest.mark.parametrize(("spec", "message"), [("int9", "unknown preset 'int9'"), ("int8+fp16", "quantizes twice")])
def test_bad_preset_spec_is_exit_3(spec: str, message: str) -> None:
    result = _run("presets", spec)
    assert result.returncode == 3 and message in result.stderr
