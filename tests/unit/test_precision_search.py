"""Precision search pieces that need no framework: the recipe TOML and the CLI's usage errors (issue 13)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# --- the search's decisions without a converter (issue 13: ranking, ladder, stop reasons) ---------------------

def _candidate(base: str, layers: tuple[str, ...], metric: float, limit: float = 1.0, p50: float = 1.0) -> Any:
    from edgeexport.search.report import Candidate

    return Candidate(base, layers, "fp32", metric, metric <= limit, p50, 1000, 0.0)


class _Layer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.weights = [0]


class _Model:
    def __init__(self, names: list[str]) -> None:
        self.model = type("Keras", (), {"layers": [_Layer(n) for n in names]})()


def test_the_ranking_combines_float_alone_quantized_alone_and_layer_sqnr() -> None:
    from edgeexport.search.sensitivity import rank_layers

    layers = ["conv1", "conv2", "probs"]
    # As on the outlier model: keeping conv1 alone in float recovers nothing (like probs), but quantizing it alone
    # hurts most and its per-layer SQNR is worst; conv2 recovers most alone.
    singles = {"conv1": _candidate("int8", ("conv1",), 48.0), "conv2": _candidate("int8", ("conv2",), 35.0),
               "probs": _candidate("int8", ("probs",), 48.0)}
    alone = {"conv1": _candidate("int8", ("conv2", "probs"), 40.0), "conv2": _candidate("int8", ("conv1", "probs"), 30.0),
             "probs": _candidate("int8", ("conv1", "conv2"), 0.0)}
    ranked = rank_layers(layers, singles, alone, {"conv1": 0.5, "conv2": 2.0, "probs": 9.0}, "accuracy_drop")
    assert [r.layer for r in ranked] == ["conv1", "conv2", "probs"]
    assert ranked[0].float_metric == 48.0 and ranked[0].alone_metric == 40.0 and ranked[0].sqnr_db == 0.5
    # SQNR budgets rank the other way round (higher is better), and a layer never measured ranks last.
    sqnr = rank_layers(layers, {"conv1": _candidate("int8", ("conv1",), 10.0), "conv2": _candidate("int8", ("conv2",), 25.0)},
                       {}, {}, "sqnr_db")
    assert [r.layer for r in sqnr] == ["conv2", "conv1", "probs"] and sqnr[-1].float_metric is None


def test_auto_falls_back_along_the_ladder_only_as_far_as_the_budget_needs() -> None:
    from edgeexport.catalog import load_preset
    from edgeexport.pipeline import PlanItem
    from edgeexport.search.precision import _search, _State

    drops = {("int8", ()): 40.0, ("int16x8", ()): 0.5, ("fp16", ()): 0.0, ("fp32", ()): 0.0}
    asked: list[tuple[str, tuple[str, ...]]] = []

    def evaluate(phase: str, change: str, base: str, layers: tuple[str, ...]) -> Any:
        asked.append((base, layers))
        # a layer in float helps only when conv1 is among them; int16x8 is the fastest passing candidate
        metric = drops.get((base, layers), 0.2 if "conv1" in layers else 40.0)
        # int16x8 fastest; then two float layers (fastest of the layer candidates: a quantize-one measurement on a
        # three-layer model), then fewer float layers; whole-model fp16/fp32 slowest
        p50 = {"int16x8": 0.5, "fp16": 9.0, "fp32": 9.0}.get(base, 0.1 if len(layers) == 2 else 1.0 + len(layers))
        return _candidate(base, layers, metric, p50=p50)

    item = PlanItem("tflite", load_preset("int8"), reason="auto: int8 on the NPU")
    first = evaluate("base", "int8 as planned", "int8", ())
    state = _State(0.0, 1e12, [])
    ranking: list[Any] = []
    best, stop = _search(item, _Model(["conv1", "conv2"]), evaluate, state, first, {}, "accuracy_drop", ranking)
    assert ("int16x8", ()) in asked and ("fp16", ()) not in asked and ("fp32", ()) not in asked
    assert best.base == "int16x8" and "budget met" in stop and ranking[0].layer == "conv1"
    # A layer quantized alone (every other layer in float) passes here but is a measurement, never the recipe.
    drops[("int16x8", ())] = 5.0
    asked.clear()
    best, stop = _search(item, _Model(["conv1", "conv2", "conv3"]), evaluate, _State(0.0, 1e12, []), first, {},
                         "accuracy_drop", ranking)
    assert ("int8", ("conv1", "conv3")) in asked  # conv2 quantized alone: passes (conv1 in float)
    assert best.layers == ("conv1",) and "budget met" in stop
    # An explicit int8 never goes to fp16 either, and a time limit already spent stops before any layer.
    asked.clear()
    state = _State(0.0, 0.0, [])
    state.started = -1e9
    best, stop = _search(PlanItem("tflite", load_preset("int8")), _Model(["conv1"]), evaluate, state, first, {},
                         "accuracy_drop", [])
    assert asked == [] and stop == "time limit reached: budget missed" and best is first
