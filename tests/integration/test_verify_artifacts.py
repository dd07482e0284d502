"""``edgeexport verify`` on real artifacts: the digits CNN converted for real, a wrong artifact (same shapes,
shuffled weights), golden round trips, JUnit output, bad data, and localization of a planted
quantization-hostile layer. Artifacts are converted once per module."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_models"
DIGITS = SAMPLES / "digits_cnn.keras"
DATA = SAMPLES / "digits.npz"


def _convert(model: Path, out: Path, target: str, preset: str, data: Path = DATA) -> Any:
    from tests import support

    calibration = data if preset in ("int8", "int8-io", "int16x8") else None
    return support.convert(model, out, targets=(target,), preset=preset, calibration=calibration,
                              verify_data=data, verify_samples=64, write_report=False)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """fp32 and int8 TFLite artifacts of the digits CNN, with the reports of the convert that made them."""
    out = tmp_path_factory.mktemp("digits")
    reports = {preset: _convert(DIGITS, out, "tflite", preset) for preset in ("fp32", "int8")}
    return {"out": out, "reports": reports, "fp32": out / "digits_cnn.fp32.tflite", "int8": out / "digits_cnn.int8.tflite"}


@pytest.fixture(scope="module")
def wrong(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits CNN with every weight tensor shuffled (same inputs/outputs), converted to fp32 TFLite."""
    import keras

    out = tmp_path_factory.mktemp("wrong")
    model = keras.models.load_model(DIGITS)
    rng = np.random.default_rng(7)
    model.set_weights([rng.permutation(w.ravel()).reshape(w.shape) for w in model.get_weights()])
    model.save(out / "digits_cnn.keras")
    _convert(out / "digits_cnn.keras", out / "artifacts", "tflite", "fp32")
    return out / "artifacts" / "digits_cnn.fp32.tflite"


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 4-Dense model whose layer ``hostile`` is ruined by int8: its weight row for an always-zero input (a
    dead ReLU unit of fc2) is 500, so the float model ignores it while per-tensor and per-channel int8 scales
    both grow so large that every other weight of ``hostile`` rounds to zero."""
    import keras

    out = tmp_path_factory.mktemp("planted")
    keras.utils.set_random_seed(3)
    x = keras.Input((16,), name="x")
    h = keras.layers.Dense(16, activation="relu", name="fc1")(x)
    h = keras.layers.Dense(16, activation="relu", name="fc2")(h)
    h = keras.layers.Dense(24, name="hostile")(h)
    y = keras.layers.Dense(6, activation="softmax", name="head")(h)
    model = keras.Model(x, y)
    w, b = model.get_layer("fc2").get_weights()
    w[:, 0], b[0] = 0.0, -1.0
    model.get_layer("fc2").set_weights([w, b])
    w, b = model.get_layer("hostile").get_weights()
    w[0, :] = 500.0
    model.get_layer("hostile").set_weights([w, b])
    model.save(out / "planted.keras")
    data = np.random.default_rng(0).uniform(0, 1, (200, 16)).astype("float32")
    np.savez(out / "planted.npz", calibration__x=data[:100], test__x=data[100:])
    _convert(out / "planted.keras", out, "tflite", "int8", data=out / "planted.npz")
    return {"model": out / "planted.keras", "data": out / "planted.npz", "int8": out / "planted.int8.tflite"}


def _junit(path: Path) -> tuple[int, int, int, list[str]]:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    names = [case.get("name", "") for case in suite.iter("testcase")]
    return int(suite.get("tests", -1)), int(suite.get("failures", -1)), int(suite.get("errors", -1)), names


def test_convert_pipeline_attaches_a_verification(digits: dict[str, Any]) -> None:
    for preset in ("fp32", "int8"):
        entry = digits["reports"][preset].artifacts[0]
        result = entry.verification
        assert result is not None and result.passed and entry.status == "ok"
        data = result.to_dict()
        assert data["samples"] == 64 and data["tolerance_source"] == f"preset {preset}"
        assert data["outputs"][0]["name"] == "probs" and data["runtime"] == "litert"
    fp32 = digits["reports"]["fp32"].artifacts[0].verification
    assert fp32.outputs[0].metrics.max_abs < 1e-4 and fp32.headline().startswith("pass cos 1.0000")


def test_verify_fp32_passes_and_writes_junit_and_json(digits: dict[str, Any], run_cli: Any, tmp_path: Path) -> None:
    import json

    result = run_cli("verify", digits["fp32"], "--reference", DIGITS, "--data", DATA,
                     "--junit", tmp_path / "v.xml", "--json", tmp_path / "v.json")
    assert result.code == 0, result.out + result.err
    assert "PASS digits_cnn.fp32.tflite" in result.out and "256 samples" in result.out
    tests, failures, errors, names = _junit(tmp_path / "v.xml")
    assert (tests, failures, errors) == (3, 0, 0)  # fp32 sets max_abs, mean_abs and cosine
    assert names == ["probs.max_abs", "probs.mean_abs", "probs.cosine"]
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["status"] == "ok" and data["passed"] is True and data["tolerance"]["cosine_min"] == 0.9999
    assert data["outputs"][0]["metrics"]["classifier"]["top1_agreement"] == 1.0


def test_wrong_artifact_fails_with_exit_5_naming_the_output(wrong: Path, run_cli: Any, tmp_path: Path) -> None:
    result = run_cli("verify", wrong, "--reference", DIGITS, "--data", DATA, "--junit", tmp_path / "v.xml")
    assert result.code == 5, result.out + result.err
    fail_line = next(line for line in result.out.splitlines() if line.startswith("FAIL"))
    assert "probs: " in fail_line
    # Auto-localization on failure: a float artifact that differs is a wrong model, not a precision loss.
    assert "first layer over tolerance: conv1" in result.out and "not a precision loss" in result.out
    tests, failures, _, _ = _junit(tmp_path / "v.xml")
    assert tests == 3 and failures >= 2
    assert run_cli("verify", wrong, "--reference", DIGITS, "--data", DATA, "--warn-only").code == 0


def test_explicit_limits_and_tolerance_preset(digits: dict[str, Any], run_cli: Any) -> None:
    # int8 passes its own tolerance, not fp32's nor an explicit cosine of 0.99999.
    assert run_cli("verify", digits["int8"], "--reference", DIGITS, "--data", DATA).code == 0
    strict = run_cli("verify", digits["int8"], "--reference", DIGITS, "--data", DATA, "--tolerance", "fp32")
    assert strict.code == 5 and "tolerance preset fp32" in strict.out
    explicit = run_cli("verify", digits["int8"], "--reference", DIGITS, "--data", DATA, "--cosine", "0.99999")
    assert explicit.code == 5 and "probs: cosine 0.99" in explicit.out
    assert run_cli("verify", digits["int8"], "--reference", DIGITS, "--tolerance", "int8", "--top1", "1").code == 2


def test_golden_round_trip(digits: dict[str, Any], wrong: Path, run_cli: Any, tmp_path: Path) -> None:
    golden = tmp_path / "golden.npz"
    saved = run_cli("verify", digits["int8"], "--reference", DIGITS, "--data", DATA, "--samples", "100",
                    "--save-golden", golden)
    assert saved.code == 0 and golden.is_file()
    again = run_cli("verify", digits["int8"], "--golden", golden, "--junit", tmp_path / "g.xml")
    assert again.code == 0 and "100 samples from golden golden.npz" in again.out
    assert _junit(tmp_path / "g.xml")[:2] == (4, 0)
    bad = run_cli("verify", wrong, "--golden", golden)
    assert bad.code == 5 and "probs: " in bad.out
    # Checking against a golden file must not need TensorFlow at all.
    code = ("import sys; from pathlib import Path; from edgeexport.verify.stage import artifact_from_path, verify_golden;"
            f"v = verify_golden(artifact_from_path(Path({str(digits['fp32'])!r})), Path({str(golden)!r}));"
            "assert v.passed, v.failure_line(); assert 'tensorflow' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_bad_data_exits_3(digits: dict[str, Any], planted: dict[str, Path], run_cli: Any, tmp_path: Path) -> None:
    wrong_shape = run_cli("verify", digits["fp32"], "--reference", DIGITS, "--data", planted["data"])
    assert wrong_shape.code == 3 and "input 'image'" in wrong_shape.err
    assert run_cli("verify", digits["fp32"], "--reference", DIGITS, "--data", tmp_path / "none.npz").code == 3
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert run_cli("verify", digits["fp32"], "--golden", tmp_path / "junk.npz").code == 3


def test_localization_names_the_planted_layer(planted: dict[str, Path], run_cli: Any, tmp_path: Path) -> None:
    from edgeexport.sources import load, open_source
    from edgeexport.verify.localize import localize_tflite
    from edgeexport.verify.stage import preset_tolerance

    found = localize_tflite(planted["int8"], load(open_source(planted["model"])), data=planted["data"],
                            tolerance=preset_tolerance("int8")[0])
    assert [e.layer for e in found.layers] == ["fc1", "fc2", "hostile", "head"]
    assert found.first_over == "hostile" and found.largest_drop == "hostile"
    by_name = {e.layer: e for e in found.layers}
    assert by_name["fc2"].sqnr_db > 25 and by_name["hostile"].cosine < 0.5
    assert 'name = "hostile" keep = "fp32"' in found.suggestion
    # The CLI localizes on failure by itself.
    result = run_cli("verify", planted["int8"], "--reference", planted["model"], "--data", planted["data"],
                     "--json", tmp_path / "v.json")
    assert result.code == 5 and "first layer over tolerance: hostile" in result.out
    assert '"first_over": "hostile"' in (tmp_path / "v.json").read_text()


def test_not_verifiable_is_not_a_pass(tmp_path: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeexport.runtimes.mil import registry

    _convert(DIGITS, tmp_path, "coreml", "fp32")
    # A real package and the real executor, with its softmax kernel withdrawn: what an unknown op looks like.
    registry.kernels()
    monkeypatch.delitem(registry._KERNELS, "softmax")
    result = run_cli("verify", tmp_path / "digits_cnn.fp32.mlpackage", "--reference", DIGITS, "--data", DATA,
                     "--junit", tmp_path / "v.xml")
    assert result.code == 4 and "not verifiable on this platform: op softmax" in result.out
    assert _junit(tmp_path / "v.xml")[:3] == (1, 0, 1)
    assert run_cli("verify", tmp_path / "digits_cnn.fp32.mlpackage", "--reference", DIGITS, "--warn-only").code == 0
    monkeypatch.undo()
    if sys.platform != "darwin":  # Core ML itself only runs on macOS: asking for it elsewhere is exit 4
        only = run_cli("verify", tmp_path / "digits_cnn.fp32.mlpackage", "--reference", DIGITS, "--coreml-runtime", "coreml")
        assert only.code == 4 and "needs macOS" in only.err


# TFLite conversions of the digits CNN take about 1.5 s each here; Core ML ones 5-7 s (slow, but fp16).
@pytest.mark.parametrize(
    ("target", "preset"),
    [("tflite", p) for p in ("fp32", "fp16", "dynamic-int8", "int8", "int8-io", "int16x8")]
    + [("coreml", "fp16")]
    + [pytest.param("coreml", p, marks=pytest.mark.slow) for p in ("fp32", "w8", "palettize-6", "palettize-4")],
)
def test_every_preset_passes_its_tolerance(target: str, preset: str, tmp_path: Path) -> None:
    from edgeexport.sources import load, open_source
    from edgeexport.verify.stage import artifact_from_path, preset_tolerance, verify_artifact

    _convert(DIGITS, tmp_path, target, preset)
    suffix = ".tflite" if target == "tflite" else ".mlpackage"
    artifact = artifact_from_path(tmp_path / f"digits_cnn.{preset}{suffix}")
    tolerance, source = preset_tolerance(artifact.preset)
    result = verify_artifact(artifact, load(open_source(DIGITS)), data=DATA, samples=256, tolerance=tolerance,
                             tolerance_source=source)
    assert result.passed, result.failure_line()
    assert result.samples == 256 and result.tolerance_source == f"preset {preset}"
    classifier = result.outputs[0].metrics.classifier
    if (target, preset) == ("coreml", "fp16"):
        # --coreml-precision fp32 reaches the MIL executor: without per-op fp16 rounding the error shrinks.
        exact = verify_artifact(artifact, load(open_source(DIGITS)), data=DATA, samples=256, tolerance=tolerance,
                                tolerance_source=source,
                                precision="fp32")
        assert exact.runtime == "mil" and exact.outputs[0].metrics.sqnr_db > result.outputs[0].metrics.sqnr_db + 2
    assert classifier is not None and classifier.accuracy_drop_points is not None and classifier.accuracy_drop_points < 2.0
