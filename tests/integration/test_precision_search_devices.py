"""Issue 13 leftovers on real conversions: the per-layer error of passing artifacts, int16x8 and overrides, and
Core ML searches from w8 and palettize presets on the outlier CNN."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLES, CliResult

DATA = SAMPLES / "digits.npz"


@pytest.fixture(scope="module")
def outlier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location("outlier_cnn", SAMPLES / "outlier_cnn.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path, _ = module.make_outlier_model(tmp_path_factory.mktemp("outlier") / "outlier.keras")
    return Path(path)


def test_a_passing_cheap_artifact_carries_its_per_layer_error(run_cli: Callable[..., CliResult],
                                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("convert", SAMPLES / "digits_cnn.keras", "--target", "tflite", "--preset", "fp16",
                     "--data", DATA, "--samples", "16", "--out", out)
    assert result.code == 0, result.out + result.err
    (artifact,) = json.loads((out / "report.json").read_text())["artifacts"]
    found = artifact["verification"]["localization"]
    assert artifact["verification"]["passed"] and found["samples"] == 16
    assert len(found["layers"]) >= 4 and not any(layer["over"] for layer in found["layers"])
    assert found["first_over"] is None and "conv1" in [layer["layer"] for layer in found["layers"]]
    assert "per-layer error (" in result.out and "first layer over tolerance: none" in result.out
    assert "Per-layer error (SQNR dB" in (out / "report.html").read_text()


def test_int16x8_overrides_are_refused_with_a_warning(run_cli: Callable[..., CliResult], outlier: Path,
                                                      tmp_path: Path) -> None:
    from edgeexport.runtimes.tflite import TfliteRunner

    recipe = tmp_path / "p.toml"
    recipe.write_text('[presets."i16-conv2"]\nbase = "int16x8"\ndescription = "x"\n'
                      '[[presets."i16-conv2".overrides]]\nname = "conv2"\nkeep = "fp32"\n')
    out = tmp_path / "out"
    result = run_cli("convert", outlier, "--target", "tflite", "--preset", "i16-conv2", "--preset-file", recipe,
                     "--calibration", DATA, "--no-verify", "--out", out)
    assert result.code == 0, result.out + result.err
    (artifact,) = json.loads((out / "report.json").read_text())["artifacts"]
    assert any("ignored for int16x8" in w for w in artifact["warnings"])
    dtypes = {np.dtype(d["dtype"]).name for d in TfliteRunner(out / artifact["path"])._interp.get_tensor_details()}
    assert "int16" in dtypes  # 16-bit activations throughout (the old path silently built int8)


@pytest.mark.slow  # two Core ML searches with calibrated candidates: a few minutes
@pytest.mark.parametrize("preset", ["w8", "palettize-4"])
def test_coreml_searches_start_from_weight_compression_presets(run_cli: Callable[..., CliResult], outlier: Path,
                                                               tmp_path: Path, preset: str) -> None:
    out = tmp_path / "out"
    result = run_cli("convert", outlier, "--target", "coreml", "--preset", preset, "--device", "iphone-15-pro",
                     "--calibration", DATA, "--data", DATA, "--samples", "360", "--min-sqnr", "30",
                     "--search-timeout", "240", "--out", out)
    assert result.code in (0, 5), result.out + result.err
    (artifact,) = json.loads((out / "report.json").read_text())["artifacts"]
    search = artifact["search"]
    assert search["base"] == preset and search["steps"][0]["layers_in_float"] == []
    assert all(step["p50_ms"] is not None for step in search["steps"])
    if not search["steps"][0]["passed"]:
        assert len(search["steps"]) > 1 and search["sensitivity"]
    assert search["met"] == (result.code == 0)
