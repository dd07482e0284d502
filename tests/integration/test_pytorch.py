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
            if p.is_file() and (".mlpackage" in str(p) or p.suffix == ".tflite")}


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


@pytest.mark.parametrize("command", ["inspect", "convert"])
def test_pt2_without_torch_names_the_extra(tmp_path: Path, command: str) -> None:
    extra = [] if command == "inspect" else ["--out", str(tmp_path / "out")]
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgeexport.cli.main import main\n"
            f"main([{command!r}, {str(SAMPLES / 'digits_cnn.pt2')!r}, *{extra!r}])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          check=False)
    assert done.returncode == 3, done.stderr
    assert "edgeexport[torch]" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.fixture(scope="module")
def random_mobilenet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """MobileNetV2 with random weights (BatchNorm statistics from the data) and seeded noise images."""
    import numpy as np
    from make_torch_samples import build_mobilenet_v2, save_program, settle_batchnorm

    where = tmp_path_factory.mktemp("random_mobilenet")
    torch.manual_seed(0)
    images = np.random.default_rng(0).uniform(0, 1, (40, 3, 64, 64)).astype(np.float32)
    model = settle_batchnorm(build_mobilenet_v2(), torch.from_numpy(images[:16]))
    with torch.no_grad():
        logits = model(torch.from_numpy(images[16:24])).numpy()
    assert logits.std() > 0.05 and len(set(logits.argmax(-1))) > 1  # outputs that vary: the comparison can fail
    np.savez(where / "data.npz", calibration__x=images[:32], test__x=images[32:])
    return save_program(model, torch.zeros(1, 3, 64, 64), where / "mobilenet_v2.pt2"), where / "data.npz"


@pytest.fixture(scope="module")
def trained_mobilenet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """MobileNetV2 after 300 training steps on the upsampled digits (95.8 % test accuracy), with digit images as
    calibration (64 train images) and test data (32 test images). Why trained: see ``train_briefly``."""
    import numpy as np
    from make_torch_samples import build_mobilenet_v2, digits_images, save_program, train_briefly

    where = tmp_path_factory.mktemp("trained_mobilenet")
    torch.manual_seed(0)
    torch.set_num_threads(2)
    x_train, y_train, x_test, y_test = digits_images(64)
    model = train_briefly(build_mobilenet_v2(), x_train, y_train, steps=300)  # ~5 min on 2 cores
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(-1) == y_test).float().mean())
    assert accuracy > 0.9, accuracy  # it learned: its outputs are a classifier's, not noise
    np.savez(where / "data.npz", calibration__x=x_train[:64].numpy(), test__x=x_test[:32].numpy())
    return save_program(model, torch.zeros(1, 3, 64, 64), where / "mobilenet_v2.pt2"), where / "data.npz"


def _convert_mobilenet(run_cli: Cli, model: Path, data: Path, out: Path, target: str, preset: str) -> None:
    args = ["convert", model, "--target", target, "--preset", preset, "--data", data, "--out", out]
    if preset in ("int8", "w8a8"):
        args += ["--calibration", data]
    result = run_cli(*args)
    assert result.code == 0, result.err + result.out
    verification = _report(out)["artifacts"][0]["verification"]  # type: ignore[index]
    assert verification["status"] == "ok", verification
    assert verification["reference"] == "mobilenet_v2.pt2"


@pytest.mark.slow
@pytest.mark.parametrize(("target", "preset"), [("tflite", "fp32"), ("coreml", "fp32")])
def test_random_mobilenet_v2_pt2(run_cli: Cli, tmp_path: Path, random_mobilenet: tuple[Path, Path], target: str,
                                 preset: str) -> None:
    _convert_mobilenet(run_cli, *random_mobilenet, tmp_path / "o", target, preset)


# int8 on the random-weight network cannot pass: it amplifies a perturbation about 30 dB from its first layer to
# its logits in PyTorch alone (measured 2026-12-03, benchmarks/RESULTS.md issue 14), so int8 rounding ends at
# 6.7 dB SQNR whatever the converter does. The trained network is what a user converts; the preset's own
# tolerance applies, unchanged.
@pytest.mark.slow
@pytest.mark.parametrize(("target", "preset"), [
    ("tflite", "int8"),  # measured 2026-12-03 at 80 steps: cosine 0.9979, SQNR 23.5 dB, top-1 32/32
    # At 80 steps (65.6 % test accuracy) Core ML w8a8 lost top-1 on 3 of 32 samples that were not near-ties, with
    # correct (de)quantize kernels (p14, 2026-12-04); at 300 steps (95.8 %) it gives cosine 0.995, SQNR 23.8 dB,
    # top-1 32/32 (lead, 2026-12-04, with the calibration-range fix): what was left failing was the network.
    ("coreml", "w8a8"),
])
def test_trained_mobilenet_v2_pt2_int8(run_cli: Cli, tmp_path: Path, trained_mobilenet: tuple[Path, Path],
                                      target: str, preset: str) -> None:
    _convert_mobilenet(run_cli, *trained_mobilenet, tmp_path / "o", target, preset)


@pytest.mark.slow  # 72 s measured on the shared machine: two conversions before the stop
def test_sigint_during_a_pt2_convert_gives_130_and_leaves_nothing(tmp_path: Path) -> None:
    """Stopped with both artifacts of a .pt2 complete in the stage (the torch.onnx.export graph beside them):
    exit 130, no traceback, nothing left in the output directory."""
    import os
    import signal

    out = tmp_path / "X"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEEXPORT_TEST_HOOK": "pause:artifact", "EDGEEXPORT_TEST_PAUSE": "120"}
    process = subprocess.Popen([sys.executable, "-m", "edgeexport", "convert", str(SAMPLES / "digits_cnn.pt2"),
                                "--data", str(SAMPLES / "digits_nchw.npz"), "--out", str(out)],
                               env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("edgeexport-test-hook: paused at"):
            break
    else:
        raise AssertionError(f"ended (code {process.wait()}) before its hook: {''.join(seen)[-2000:]}")
    staged = list(out.glob(".edgeexport-*/**/*.tflite")) + list(out.glob(".edgeexport-*/**/*.mlpackage"))
    assert staged, sorted(str(p) for p in out.rglob("*"))  # the stop comes with an artifact written
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert not list(out.rglob("*")), sorted(str(p) for p in out.rglob("*"))


def test_pt2_with_an_op_tflite_cannot_run_is_refused_naming_it(run_cli: Cli, tmp_path: Path) -> None:
    """A float64 cumulative sum: its torch.onnx.export graph holds CumSum on float64, which the TFLite route
    cannot convert (targets/onnx_limits.py): exit 4 naming the op and the reason, before the TFLite converter."""
    from make_torch_samples import save_program

    class RunningTotal(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cumsum(x, dim=1)

    model = save_program(RunningTotal(), torch.zeros(1, 8, dtype=torch.float64), tmp_path / "total.pt2")
    result = run_cli("convert", model, "--target", "tflite", "--out", tmp_path / "o")
    assert result.code == 4, result.err + result.out
    assert "CumSum (float64)" in result.err and "float64 kernel" in result.err and "Traceback" not in result.err
