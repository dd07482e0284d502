"""The precision search for one planned artifact: keep the fewest, cheapest layers in float that meet the budget.

Steps (each candidate is converted with the real converter, verified against the reference and simulated on the
device; see ``SearchReport`` for what is recorded):

1. the preset as planned; if it meets the budget the search ends there;
2. whole-model alternatives: for ``--preset auto`` every precision below the planned one on the target's ladder
   (TFLite int8 -> int16x8 -> fp16 -> fp32, Core ML w8a8 -> w8 -> fp16 -> fp32); for an explicit TFLite int8,
   int16 activations (int16x8);
3. sensitivity: each weighted layer left in float alone (as NNCF's and Polygraphy's precision debugging do), the
   layers with the worst per-layer SQNR of the base artifact first (TFLite; model order for Core ML);
4. greedily from the most helpful layer: add one more layer at a time, trying the ``GREEDY_WIDTH`` most helpful
   remaining layers and keeping the one that meets the budget fastest, or else the one that helps most, until
   the budget is met, no layer is left, or the time limit (checked between candidates) is reached.

Of every candidate that met the budget, the one with the lowest simulated latency on the device wins (a float
layer on an NPU phone splits the graph and costs copies, which the simulator charges), then the one with fewer
float layers. When none met it, the best one (metric first) is kept and verification fails (exit 5).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeexport.catalog import load_preset
from edgeexport.catalog.model import Preset
from edgeexport.errors import DataError, EdgeExportError, UnsupportedError
from edgeexport.search import PrecisionSearch
from edgeexport.search.recipe import Recipe, load_recipe, recipe_name
from edgeexport.search.report import Candidate, SearchReport, SearchStep
from edgeexport.targets.base import COREML, TFLITE
from edgeexport.types import Artifact

if TYPE_CHECKING:
    from edgeexport.pipeline import Plan, PlanItem
    from edgeexport.sources.base import LoadedModel

Build = Callable[[Preset, Path], Artifact]
GREEDY_WIDTH = 3
# Precision ladders from fastest to most exact; --preset auto falls back along them only as far as needed.
LADDERS = {TFLITE: ("int8", "int16x8", "fp16", "fp32"), COREML: ("w8a8", "w8", "fp16", "fp32")}
# Keras layers that convert into the neighbouring op (BatchNorm folds into the conv) or hold no weights to quantize.
_NOT_SEARCHED = {"BatchNormalization", "LayerNormalization", "InputLayer"}


@dataclass
class _State:
    """Mutable bookkeeping of one search run (steps so far and the time limit)."""

    started: float
    timeout_s: float
    steps: list[SearchStep]
    timed_out: bool = False

    def out_of_time(self) -> bool:
        self.timed_out = self.timed_out or time.perf_counter() - self.started > self.timeout_s
        return self.timed_out


def search_layers(model: LoadedModel) -> list[str]:
    """Names of the model's layers that carry weights, in model order (the layers an override can keep in float).

    Raises UnsupportedError (exit 4) for sources without layer names (only Keras sources have them for now)."""
    keras_model = getattr(model, "model", None)
    if keras_model is None or not hasattr(keras_model, "layers"):
        raise UnsupportedError(f"the precision search needs a Keras source (layer names), not {model.source.format}",
                               hint="convert the Keras model, or write the overrides by hand")
    return [layer.name for layer in keras_model.layers
            if type(layer).__name__ not in _NOT_SEARCHED and getattr(layer, "weights", None)]


def check_budget_data(options: PrecisionSearch, model: LoadedModel, data: Path | None) -> None:
    """An accuracy budget needs labelled verification data: DataError (exit 3) otherwise."""
    if options.max_accuracy_drop is None:
        return
    if data is None:
        raise DataError("--max-accuracy-drop needs labelled verification data",
                        hint="pass --data DATA.npz with test__labels, or use --min-sqnr DB (no labels needed)")
    from edgeexport.verify.inputs import load_npz

    if load_npz(data, model.summary.inputs, split="test", what="verification data").labels is None:
        raise DataError(f"--max-accuracy-drop needs labels, and {data.name} has none",
                        hint="add test__labels to the .npz, or use --min-sqnr DB (no labels needed)")


def keep_precision(plan: Plan, item: PlanItem) -> str:
    """fp16 for compressed Core ML fp16 programs (w8a8, w8, palettize-N) on a device whose Core ML units run fp16
    (the layer then keeps float weights and activations); fp32 otherwise (TFLite's selective quantization leaves
    float32 ops)."""
    quantization = item.preset.quantization
    if item.target != COREML or quantization.coreml_precision != "fp16" or quantization.coreml_weights is None:
        return "fp32"  # an fp16 program without compression gains only from fp32 layers
    if plan.device is None:
        return "fp16"
    from edgeexport.catalog.policy import usable_units

    return "fp16" if any("fp16" in u.dtypes for u in usable_units(plan.device, COREML)) else "fp32"


def search_item(plan: Plan, item: PlanItem, model: LoadedModel, build: Build, workdir: Path,
                say: Callable[[str], None]) -> tuple[PlanItem, SearchReport, Recipe]:
    """Search a recipe for ``item`` that meets ``plan.options.precision_search``; return the item to build (its preset
    carries the budget as tolerance), the search report and the recipe to save. ``build(preset, directory)``
    converts and smoke-runs one candidate into ``directory``."""
    options = plan.options.precision_search
    if options is None:
        raise ValueError("search_item needs a plan with a precision_search budget")
    check_budget_data(options, model, plan.options.verify.data)
    base = item.preset
    if base.pruning is not None or len(base.parts) > 1:
        raise UnsupportedError(f"the precision search starts from one quantization preset, not {base.name}",
                               hint="search int8 / w8a8 alone, then prune separately")
    metric = "accuracy_drop" if options.max_accuracy_drop is not None else "sqnr_db"
    keep = keep_precision(plan, item)
    limits = {k: v for k, v in (("accuracy_drop_max", options.max_accuracy_drop),
                                ("sqnr_db_min", options.min_sqnr_db)) if v is not None}
    state = _State(time.perf_counter(), options.timeout_s, [])
    built: dict[tuple[str, tuple[str, ...]], Candidate] = {}
    counter = [0]

    def recipe_for(base_name: str, layers: tuple[str, ...]) -> Recipe:
        kept = f"{', '.join(layers)} kept in {keep}" if layers else "no layer kept in float"
        shared = len(load_preset(base_name, extra_files=plan.options.preset_files).targets) > 1
        name = recipe_name(base_name, plan.device.name if plan.device else None, item.target if shared else None)
        return Recipe(name, base_name, layers, keep, f"{base_name} with {kept}: searched for {options.describe()}"
                      + (f" on {plan.device.name}" if plan.device else ""), **limits)

    def evaluate(phase: str, change: str, base_name: str, layers: tuple[str, ...]) -> Candidate:
        key = (base_name, tuple(sorted(layers)))
        if key in built:
            return built[key]
        counter[0] += 1
        say(f"precision search ({item.target}): candidate {counter[0]}: {change}")
        directory = workdir / f"search-{item.target}-{counter[0]}"
        directory.mkdir()
        preset = load_recipe(recipe_for(base_name, layers), directory, plan.options.preset_files)
        started = time.perf_counter()
        try:
            candidate = _evaluate(plan, model, build, preset, directory, base_name, layers, keep, metric)
        except EdgeExportError as err:
            if phase == "base":
                raise  # the planned preset itself does not convert: that is convert's own error (exit 4)
            # e.g. int16x8 kernels that LiteRT refuses for this model: a candidate that lost, not a crash
            candidate = Candidate(base_name, layers, keep, None, False, None, 0, time.perf_counter() - started,
                                  f"does not build: {err.one_line()}")
        built[key] = candidate
        state.steps.append(SearchStep(phase, change, candidate))
        return candidate

    first = evaluate("base", f"{base.name} as planned", base.name, ())
    per_layer, per_layer_note = _per_layer_error(plan, item, model, workdir)
    best = first
    stop = "the preset meets the budget as planned"
    if first.metric is None and not first.passed:
        stop = f"the budget metric cannot be measured on this artifact: {first.failure or 'no comparable output'}"
    elif not first.passed:
        best, stop = _search(plan, item, model, evaluate, state, first, dict(per_layer), metric)
    chosen_recipe = recipe_for(best.base, best.layers)
    steps = tuple(replace(s, chosen=s.candidate is best) for s in state.steps)
    report = SearchReport(item.target, plan.device.name if plan.device else None, options.describe(), metric,
                          base.name, steps, best, best.passed, stop, chosen_recipe.name,
                          str(options.save_preset) if options.save_preset else None,
                          time.perf_counter() - state.started, tuple(per_layer), per_layer_note)
    final_dir = workdir / f"search-{item.target}-final"
    final_dir.mkdir()
    preset = load_recipe(chosen_recipe, final_dir, plan.options.preset_files)
    if not best.layers and best.base == base.name:
        # Nothing to keep in float: build the planned preset itself, judged against the budget.
        preset = replace(base, tolerance=preset.tolerance)
    return replace(item, preset=preset), report, chosen_recipe


def _search(plan: Plan, item: PlanItem, model: LoadedModel, evaluate: Callable[..., Candidate], state: _State,
            first: Candidate, per_layer: dict[str, float], metric: str) -> tuple[Candidate, str]:
    base = item.preset.name
    ladder = LADDERS.get(item.target, ())
    below = list(ladder[ladder.index(base) + 1:]) if base in ladder else []
    # --preset auto may move along the whole ladder; an explicit TFLite int8 may widen activations to int16.
    rungs = below if item.reason else below[:1] if item.target == TFLITE and base == "int8" else []
    tried = [first]
    for rung in rungs:
        if state.out_of_time():
            break
        tried.append(evaluate("sensitivity", f"whole model {rung}", rung, ()))
    if not _overrides_apply(item.target, item.preset):
        return _verdict(tried, state, metric, f"{base} takes no per-layer overrides")
    # Worst per-layer SQNR first, so a time limit cuts the layers least likely to matter (model order otherwise).
    layers = sorted(search_layers(model), key=lambda n: per_layer.get(n, float("inf")))
    singles: dict[str, Candidate] = {}
    for layer in layers:
        if state.out_of_time():
            break
        singles[layer] = evaluate("sensitivity", f"+{layer} in float", base, (layer,))
    tried += singles.values()
    order = sorted(singles, key=lambda n: (-_score(singles[n], metric), per_layer.get(n, 0.0)))
    current = singles[order[0]] if order else first
    while order and not current.passed:
        remaining = [n for n in order if n not in current.layers]
        if not remaining:
            break
        tries = []
        for layer in remaining[:GREEDY_WIDTH]:
            if state.out_of_time():
                break
            tries.append(evaluate("greedy", f"+{layer} (with {', '.join(current.layers)})", base,
                                  (*current.layers, layer)))
        if not tries:
            break
        tried += tries
        met = [c for c in tries if c.passed]
        current = _fastest(met) if met else max(tries, key=lambda c: (_score(c, metric), -(c.p50_ms or 0.0)))
    exhausted = "every layer was tried in float" if order else "no layer could be tried"
    return _verdict(tried, state, metric, exhausted)


def _verdict(tried: list[Candidate], state: _State, metric: str, exhausted: str) -> tuple[Candidate, str]:
    """The fastest candidate that meets the budget (simulated latency, then fewer float layers), else the best."""
    passing = [c for c in tried if c.passed]
    if passing:
        chosen = _fastest(passing)
        return chosen, (f"budget met; {len(passing)} candidate(s) met it and the fastest on the device was kept "
                        f"({chosen.base}, {len(chosen.layers)} layer(s) in float)")
    return _best(tried, metric), ("time limit reached" if state.timed_out else exhausted) + ": budget missed"


def _overrides_apply(target: str, preset: Preset) -> bool:
    """Whether per-layer overrides change this preset's artifact (TFLite: calibrated modes only)."""
    if target == TFLITE:
        return (preset.quantization.tflite_mode or "") in ("int8", "int8-io", "int16x8")
    return preset.quantization.coreml_weights is not None or preset.quantization.coreml_precision == "fp16"


def _score(candidate: Candidate, metric: str) -> float:
    """Higher is better: minus the accuracy drop, or the SQNR (an unmeasured metric ranks last)."""
    if candidate.metric is None:
        return float("-inf")
    return -candidate.metric if metric == "accuracy_drop" else candidate.metric


def _fastest(candidates: list[Candidate]) -> Candidate:
    return min(candidates, key=lambda c: (c.p50_ms if c.p50_ms is not None else 0.0, len(c.layers), c.size_bytes))


def _best(candidates: list[Candidate], metric: str) -> Candidate:
    return max(candidates, key=lambda c: (c.passed, _score(c, metric), -(c.p50_ms or 0.0)))


def _evaluate(plan: Plan, model: LoadedModel, build: Build, preset: Preset, directory: Path, base: str,
              layers: tuple[str, ...], keep: str, metric: str) -> Candidate:
    from edgeexport.verify.stage import verify_artifact

    started = time.perf_counter()
    artifact = build(preset, directory)
    tolerance = preset.tolerance.tightened_by(plan.options.verify.tighten)
    verification = verify_artifact(artifact, model, data=plan.options.verify.data, samples=plan.options.verify.samples,
                                   tolerance=tolerance, tolerance_source=f"preset {preset.name}",
                                   precision=plan.options.verify.coreml_precision)
    p50 = None
    if plan.device is not None:
        from edgeexport.simulate import simulate

        p50 = float(simulate(artifact.path, plan.device).p50_ms)
    return Candidate(base, layers, keep, _metric(verification, metric), verification.passed, p50,
                     artifact.size_bytes, time.perf_counter() - started, verification.failure_line())


def _metric(verification: Any, metric: str) -> float | None:
    """The worst output's accuracy drop (points) or SQNR (dB); None when no output has it."""
    values = [c.metrics.value(metric) for c in verification.outputs if c.metrics is not None]
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    return max(present) if metric == "accuracy_drop" else min(present)


def _per_layer_error(plan: Plan, item: PlanItem, model: LoadedModel, workdir: Path) -> tuple[list[tuple[str, float]], str]:
    """The base artifact's per-layer SQNR against the float model (TFLite artifacts of Keras models), or why not."""
    if item.target != TFLITE:
        return [], "per-layer error is measured for TFLite artifacts only"
    paths = sorted(workdir.glob(f"search-{item.target}-1/*.tflite"))
    if not paths:
        return [], "the base artifact is missing"
    from edgeexport.verify.localize import localize_tflite

    try:
        found = localize_tflite(paths[0], model, data=plan.options.verify.data, samples=min(plan.options.verify.samples, 64))
    except EdgeExportError as err:
        return [], f"per-layer error not measured: {err.one_line()}"
    return [(e.layer, float(e.sqnr_db)) for e in found.layers], ""
