"""PyTorch ExportedProgram (.pt2) in: the trained digits sample and a MobileNetV2 built in code, to both targets,
verified against PyTorch itself (int8 included), byte-identical on a rerun; without torch, exit 3 naming the extra."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLES, CliResult

torch = pytest.importorskip("torch")
sys.path.insert(0, str(SAMPLES))
Cli = Callable[..., CliResult]


def _report(out: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((out / "report.json").read_text())
    return data


def _statuses(report: dict[str, object]) -> dict[str, str]:
    return {Path(a["path"]).name: a["verification"]["status"] for a in report["artifacts"]}  # type: ignore[index, union-attr]


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".mlpackage" in str(p) or p.suffix == ".tflite"}


def test_digits_pt2_to_both_targets_verifies_against_pytorch(run_cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "fp32"
    result = run_cli("convert", SAMPLES / "digits_cnn.pt2", "--data", SAMPLES / "digits_nchw.npz", "--out", out)
    assert result.code == 0, result.err + result.out
    report = _report(out)
    assert _statuses(report) == {"digits_cnn.fp32.tflite": "ok", "digits_cnn.fp32.mlpackage": "ok"}
    assert report["artifacts"][0]["verification"]["reference"] == "digits_cnn.pt2"  # type: ignore[index]
    notes = " ".join(report["notes"])  # type: ignore[arg-type]
    assert "tflite route: torch.onnx.export" in notes and "coreml route: coremltools' ExportedProgram" in notes
    again = tmp_path / "again"
    assert run_cli("convert", SAMPLES / "digits_cnn.pt2", "--data", SAMPLES / "digits_nchw.npz", "--out", again).code == 0
    first, second = _files(out), _files(again)
    assert first and first == second


@pytest.mark.parametrize(("target", "preset"), [("tflite", "int8"),
                                                pytest.param("coreml", "w8a8", marks=pytest.mark.slow)])
def test_digits_pt2_int8_keeps_accuracy(run_cli: Cli, tmp_path: Path, target: str, preset: str) -> None:
    out = tmp_path / "int8"
    result = run_cli("convert", SAMPLES / "digits_cnn.pt2", "--target", target, "--preset", preset,
                     "--calibration", SAMPLES / "digits_nchw.npz", "--data", SAMPLES / "digits_nchw.npz", "--out", out)
    assert result.code == 0, result.err + result.out
    verification = _report(out)["artifacts"][0]["verification"]  # type: ignore[index]
    assert verification["status"] == "ok", verification
    assert verification["samples"] == 64
    drop = verification["outputs"][0]["metrics"]["classifier"]["accuracy_drop_points"]
    assert drop is not None and drop < 2.0, verification


def test_pt2_without_torch_names_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgeexport.cli.main import main\n"
            f"main(['inspect', {str(SAMPLES / 'digits_cnn.pt2')!r}])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          check=False)
    assert done.returncode == 3, done.stderr
    assert "edgeexport[torch]" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("target", "preset"), [
    ("tflite", "fp32"),
    ("coreml", "fp32"),
    # Random weights on noise images (measured 2026-12-03): TFLite int8 logits reach cosine 0.88 / SQNR 6.7 dB
    # against PyTorch (gate 15 dB), Core ML fp16 29.9 dB (gate 30), w8a8 also fails; the Keras MobileNetV2 with
    # random weights is at int8 cosine 0.977 (benchmarks/RESULTS.md). Strict xfail: a pass will show.
    pytest.param("tflite", "int8", marks=pytest.mark.xfail(strict=True, reason="random-weight int8 below the gate")),
    pytest.param("coreml", "w8a8", marks=pytest.mark.xfail(strict=True, reason="random-weight w8a8 below the gate")),
])
def test_mobilenet_v2_pt2(run_cli: Cli, tmp_path: Path, target: str, preset: str) -> None:
    import numpy as np
    from make_torch_samples import build_mobilenet_v2, save_program, settle_batchnorm

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (40, 3, 64, 64)).astype(np.float32)
    model = settle_batchnorm(build_mobilenet_v2(), torch.from_numpy(images[:16]))
    model_path = save_program(model, torch.zeros(1, 3, 64, 64), tmp_path / "mobilenet_v2.pt2")
    with torch.no_grad():
        logits = model(torch.from_numpy(images[16:24])).numpy()
    assert logits.std() > 0.05 and len(set(logits.argmax(-1))) > 1  # outputs that vary: the comparison can fail
    data = tmp_path / "data.npz"
    np.savez(data, calibration__x=images[:32], test__x=images[32:])
    args = ["convert", model_path, "--target", target, "--preset", preset, "--data", data, "--out", tmp_path / "o"]
    if preset in ("int8", "w8a8"):
        args += ["--calibration", data]
    result = run_cli(*args)
    assert result.code == 0, result.err + result.out
    verification = _report(tmp_path / "o")["artifacts"][0]["verification"]  # type: ignore[index]
    assert verification["status"] == "ok", verification
