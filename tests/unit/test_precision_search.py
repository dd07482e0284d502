"""Precision search pieces that need no framework: the recipe TOML and the CLI's usage errors (issue 13)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgeexport.catalog import load_preset
from edgeexport.search.recipe import Recipe, recipe_name, recipe_toml, write_recipes
from tests.conftest import SAMPLES, CliResult


def test_a_recipe_reads_back_as_its_base_preset_with_overrides(tmp_path: Path) -> None:
    recipe = Recipe(recipe_name("int8", "pixel-8"), "int8", ("conv2", "conv1"), "fp32", "searched", 1.0)
    other = Recipe(recipe_name("w8a8", "iPhone 15"), "w8a8", ("conv1",), "fp16", "searched", None, 20.0)
    path = tmp_path / "recipe.toml"
    write_recipes(path, [recipe, other], header="two targets\nsecond line")
    preset = load_preset("int8-pixel-8-mixed", extra_files=(path,))
    assert preset.quantization == load_preset("int8").quantization
    assert [(o.name, o.keep) for o in preset.overrides] == [("conv2", "fp32"), ("conv1", "fp32")]
    assert preset.tolerance.accuracy_drop_max == 1.0
    assert preset.tolerance.cosine_min == load_preset("int8").tolerance.cosine_min
    coreml = load_preset("w8a8-iphone-15-mixed", extra_files=(path,))
    assert coreml.tolerance.sqnr_db_min == 20.0 and coreml.overrides[0].keep == "fp16"
    assert recipe_toml(recipe) in path.read_text()


def test_budget_flags_without_what_they_need_are_usage_errors(run_cli: Callable[..., CliResult],
                                                                tmp_path: Path) -> None:
    model = SAMPLES / "digits_cnn.keras"
    no_data = run_cli("convert", model, "--preset", "int8", "--calibration", SAMPLES / "digits.npz",
                      "--max-accuracy-drop", "1", "--out", tmp_path)
    assert no_data.code == 2 and "--data" in no_data.err
    no_budget = run_cli("convert", model, "--save-preset", tmp_path / "r.toml", "--out", tmp_path)
    assert no_budget.code == 2 and "needs a budget" in no_budget.err
    no_verify = run_cli("convert", model, "--min-sqnr", "20", "--no-verify", "--out", tmp_path)
    assert no_verify.code == 2 and "--no-verify" in no_verify.err
