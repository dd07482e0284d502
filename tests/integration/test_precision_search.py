"""The accuracy-budgeted precision search (issue 13) on the digits CNN with one outlier conv1 channel.

Plain int8 / w8a8 lose tens of accuracy points on that model (a per-tensor activation scale sized for the outlier
channel); the search must find a recipe with at most 3 layers in float that loses at most 1 point, save it as a
preset that rebuilds the same bytes, and end in exit 5 with the best candidate kept when the budget cannot be met.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _package_sha(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def _search_report(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    report = json.loads((out / "report.json").read_text())
    (artifact,) = report["artifacts"]
    return report, artifact


def _accuracy_drop(artifact: dict[str, Any]) -> float:
    (output,) = artifact["verification"]["outputs"]
    return float(output["metrics"]["classifier"]["accuracy_drop_points"])


def _common(outlier: Path, out: Path) -> list[str | Path]:
    return ["convert", outlier, "--calibration", DATA, "--data", DATA, "--samples", "360", "--out", out]


def test_tflite_search_meets_one_point_on_pixel_8_and_the_recipe_rebuilds_the_same_bytes(
        run_cli: Callable[..., CliResult], outlier: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    out = tmp_path / "search"
    result = run_cli(*_common(outlier, out), "--target", "tflite", "--preset", "int8", "--device", "pixel-8",
                     "--max-accuracy-drop", "1", "--save-preset", recipe)
    assert result.code == 0, result.out + result.err
    _, artifact = _search_report(out)
    search = artifact["search"]
    base = search["steps"][0]
    assert base["phase"] == "base" and base["layers_in_float"] == [] and not base["passed"]
    assert base["metric"] > 20, "plain int8 must lose tens of points on the outlier model"
    assert search["met"] and search["chosen"]["passed"]
    assert 1 <= len(search["chosen"]["layers_in_float"]) <= 3
    assert "conv1" in search["chosen"]["layers_in_float"] or "conv2" in search["chosen"]["layers_in_float"]
    assert all(step["p50_ms"] is not None for step in search["steps"])  # every candidate simulated on pixel-8
    assert _accuracy_drop(artifact) <= 1.0 and artifact["verification"]["passed"]
    assert search["stop_reason"] and "precision search from int8" in result.out
    assert search["per_layer_sqnr_db"], "the base artifact's per-layer error is reported"
    # Sensitivity both ways: each layer quantized alone too, and the ranking that orders the greedy phase.
    assert any(step["phase"] == "quantize-one" for step in search["steps"])
    assert search["sensitivity"][0]["layer"] in ("conv1", "conv2") and search["sensitivity"][0]["rank"] == 1
    assert all(step["p50_ms"] is not None for step in search["steps"])
    # Candidates quantized from one calibration have the bytes the full conversion of the recipe writes.
    assert artifact["sha256"] == search["chosen"]["sha256"]
    assert "sensitivity ranking" in result.out

    name = search["recipe"]
    assert f'[presets."{name}"]' in recipe.read_text()
    again = tmp_path / "rebuild"
    rebuilt = run_cli(*_common(outlier, again), "--target", "tflite", "--preset", name, "--preset-file", recipe,
                      "--device", "pixel-8")
    assert rebuilt.code == 0, rebuilt.out + rebuilt.err
    first, second = Path(out / artifact["path"]), again / Path(artifact["path"]).name
    assert _sha(first) == _sha(second)


@pytest.mark.slow
def test_coreml_w8a8_search_meets_one_point_and_rebuilds_identically(
        run_cli: Callable[..., CliResult], outlier: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    out = tmp_path / "search"
    result = run_cli(*_common(outlier, out), "--target", "coreml", "--preset", "w8a8", "--device", "iphone-15-pro",
                     "--max-accuracy-drop", "1", "--save-preset", recipe)
    assert result.code == 0, result.out + result.err
    _, artifact = _search_report(out)
    search = artifact["search"]
    assert search["steps"][0]["metric"] > 20, "plain w8a8 must lose tens of points on the outlier model"
    assert search["met"] and 1 <= len(search["chosen"]["layers_in_float"]) <= 3
    assert search["chosen"]["keep"] == "fp16"  # the iPhone 15 Pro's Neural Engine runs fp16
    assert _accuracy_drop(artifact) <= 1.0
    again = tmp_path / "rebuild"
    rebuilt = run_cli(*_common(outlier, again), "--target", "coreml", "--preset", search["recipe"],
                      "--preset-file", recipe, "--device", "iphone-15-pro")
    assert rebuilt.code == 0, rebuilt.out + rebuilt.err
    name = Path(artifact["path"]).name
    assert _package_sha(out / name) == _package_sha(again / name)


@pytest.mark.slow
def test_check_accepts_a_saved_recipe(run_cli: Callable[..., CliResult], outlier: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[presets."int8-outlier"]\nbase = "int8"\ndescription = "conv1 and conv2 in float"\n'
                      '[presets."int8-outlier".tolerance]\naccuracy_drop_max = 1.0\n'
                      '[[presets."int8-outlier".overrides]]\nname = "conv1"\nkeep = "fp32"\n'
                      '[[presets."int8-outlier".overrides]]\nname = "conv2"\nkeep = "fp32"\n')
    config = tmp_path / "edgeexport.toml"
    config.write_text(f'[check]\nout = "{tmp_path / "check"}"\nsamples = 360\npreset_files = ["recipe.toml"]\n'
                      f'[[check.models]]\npath = "{outlier}"\ndevices = ["pixel-8"]\npresets = ["int8-outlier"]\n'
                      f'targets = ["tflite"]\ncalibration = "{DATA}"\ndata = "{DATA}"\n')
    result = run_cli("check", "--config", config)
    assert result.code == 0, result.out + result.err


@pytest.mark.slow
def test_an_unreachable_budget_exits_5_keeps_the_best_candidate_and_reports_the_path(
        run_cli: Callable[..., CliResult], outlier: Path, tmp_path: Path) -> None:
    out = tmp_path / "search"
    # 300 dB is beyond float32 itself, so no candidate can pass; the time limit keeps the test short.
    result = run_cli(*_common(outlier, out), "--target", "tflite", "--preset", "int8", "--device", "pixel-8",
                     "--min-sqnr", "300", "--search-timeout", "20")
    assert result.code == 5, result.out + result.err
    report, artifact = _search_report(out)
    search = artifact["search"]
    assert report["status"] == "verification_failed" and not search["met"]
    assert len(search["steps"]) >= 2 and search["stop_reason"]
    best = max(step["metric"] for step in search["steps"])
    assert search["chosen"]["metric"] == best  # the best SQNR found is the artifact kept
    assert (out / artifact["path"]).is_file()
    assert "budget NOT met" in result.out


def test_an_accuracy_budget_needs_labels(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    import numpy as np

    with np.load(DATA) as archive:
        unlabelled = tmp_path / "unlabelled.npz"
        np.savez(unlabelled, calibration__image=archive["calibration__image"], test__image=archive["test__image"])
    result = run_cli("convert", SAMPLES / "digits_cnn.keras", "--target", "tflite", "--preset", "int8",
                     "--calibration", unlabelled, "--data", unlabelled, "--max-accuracy-drop", "1",
                     "--out", tmp_path / "out")
    assert result.code == 3, result.out + result.err
    assert "needs labels" in result.out + result.err
