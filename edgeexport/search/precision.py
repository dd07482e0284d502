"""The precision search for one planned artifact: keep the fewest, cheapest layers in float that meet the budget.

Steps (each candidate is converted with the real converter, verified against the reference and simulated on the
device; see ``SearchReport`` for what is recorded):

1. the preset as planned; if it meets the budget the search ends there;
2. whole-model alternatives: for ``--preset auto`` the precisions below the planned one on the target's ladder
   (TFLite int8 -> int16x8 -> fp16 -> fp32, Core ML w8a8 -> w8 -> fp16 -> fp32), down to the first that meets the
   budget; for an explicit TFLite int8, int16 activations (int16x8: TFLite's int16x8 quantizer keeps no layer in
   float, so 16-bit activations are a whole-model candidate, tried before any layer is kept in float);
3. sensitivity (``search.sensitivity``), layers with the worst per-layer SQNR of the base artifact first: each
   weighted layer kept in float alone, and each layer quantized alone (every other one in float), as NNCF's and
   Polygraphy's precision debugging do; the sensitivity phase stops at ``SENSITIVITY_SHARE`` of the time limit so
   the greedy phase keeps time; the three measures rank the layers;
4. greedily along that ranking: add one more layer at a time, trying the ``GREEDY_WIDTH`` best-ranked remaining
   layers and keeping the one that meets the budget fastest, or else the one that helps most, until the budget is
   met, no layer is left, or the time limit (checked between candidates) is reached.

TFLite int8 candidates that differ only in their float layers are quantized from one calibration
(``targets.tflite_selective``), a second each instead of a conversion; other candidates are converted in full.

Of every candidate that met the budget (the planned preset, whole-model alternatives, layers kept in float; not the
quantize-one measurements, which keep all other layers in float), the one with the lowest simulated latency wins (a float
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
from edgeexport.search.latency import Deployment, deployment, place_candidate
from edgeexport.search.recipe import Recipe, load_recipe, recipe_name
from edgeexport.search.report import Candidate, SearchReport, SearchStep
from edgeexport.search.sensitivity import LayerSensitivity, rank_layers
from edgeexport.targets.base import target_info, target_names
from edgeexport.types import Artifact

if TYPE_CHECKING:
    from edgeexport.pipeline import Plan, PlanItem
    from edgeexport.sources.base import LoadedModel

Build = Callable[[Preset, Path], Artifact]
# (preset, output file, the planned artifact to copy specs from) -> the candidate, or None: convert it in full.
QuickBuild = Callable[[Preset, Path, Artifact], "Artifact | None"]
GREEDY_WIDTH = 3
# The share of --search-timeout the sensitivity phase may use before the greedy phase starts.
SENSITIVITY_SHARE = 0.6
# Precision ladders from fastest to most exact; --preset auto falls back along them only as far as needed.
LADDERS = {name: target_info(name).precision_ladder for name in target_names()}
# Keras layers that convert into the neighbouring op (BatchNorm folds into the conv) or hold no weights to quantize.
_NOT_SEARCHED = {"BatchNormalization", "LayerNormalization", "InputLayer"}


@dataclass
class _State:
    """Mutable bookkeeping of one search run (steps so far and the time limit)."""

    started: float
    timeout_s: float
    steps: list[SearchStep]
    timed_out: bool = False

    def out_of_time(self, share: float = 1.0) -> bool:
        """Whether ``share`` of the time limit has passed (the whole limit sets ``timed_out``)."""
        elapsed = time.perf_counter() - self.started
        if share < 1.0:
            return elapsed > share * self.timeout_s
        self.timed_out = self.timed_out or elapsed > self.timeout_s
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
    if target_info(item.target).has_delegates or quantization.coreml_precision != "fp16" or quantization.coreml_weights is None:
        return "fp32"  # an fp16 program without compression gains only from fp32 layers
    if plan.device is None:
        return "fp16"
    from edgeexport.catalog.policy import usable_units

    return "fp16" if any("fp16" in u.dtypes for u in usable_units(plan.device, item.target)) else "fp32"


def search_item(plan: Plan, item: PlanItem, model: LoadedModel, build: Build, workdir: Path,
                say: Callable[[str], None], quick: QuickBuild | None = None) -> tuple[PlanItem, SearchReport, Recipe]:
    """Search a recipe for ``item`` that meets ``plan.options.precision_search``; return the item to build (its preset
    carries the budget as tolerance), the search report and the recipe to save. ``build(preset, directory)``
    converts and smoke-runs one candidate into ``directory``; ``quick`` (optional) builds candidates that differ
    from the planned artifact only in float layers without a full conversion."""
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
    where = deployment(plan.device, item.target, base, auto=bool(item.reason))
    limits = {k: v for k, v in (("accuracy_drop_max", options.max_accuracy_drop),
                                ("sqnr_db_min", options.min_sqnr_db)) if v is not None}
    state = _State(time.perf_counter(), options.timeout_s, [])
    built: dict[tuple[str, tuple[str, ...]], Candidate] = {}
    counter = [0]
    planned: list[Artifact] = []

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
            fast = quick if quick is not None and planned and layers and base_name == base.name else None
            candidate = _evaluate(plan, model, build, preset, directory, base_name, layers, keep, metric, fast,
                                  planned, where)
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
    per_layer, per_layer_note = _per_layer_error(plan, model, planned[0] if planned else None)
    best = first
    ranking: list[LayerSensitivity] = []
    stop = "the preset meets the budget as planned"
    if first.metric is None and not first.passed:
        stop = f"the budget metric cannot be measured on this artifact: {first.failure or 'no comparable output'}"
    elif not first.passed:
        best, stop = _search(item, model, evaluate, state, first, dict(per_layer), metric, ranking)
    chosen_recipe = recipe_for(best.base, best.layers)
    steps = tuple(replace(s, chosen=s.candidate is best) for s in state.steps)
    report = SearchReport(item.target, plan.device.name if plan.device else None, options.describe(), metric,
                          base.name, steps, best, best.passed, stop, chosen_recipe.name,
                          str(options.save_preset) if options.save_preset else None,
                          time.perf_counter() - state.started, tuple(per_layer), per_layer_note, tuple(ranking),
                          where.why)
    final_dir = workdir / f"search-{item.target}-final"
    final_dir.mkdir()
    preset = load_recipe(chosen_recipe, final_dir, plan.options.preset_files)
    if not best.layers and best.base == base.name:
        # Nothing to keep in float: build the planned preset itself, judged against the budget.
        preset = replace(base, tolerance=preset.tolerance)
    return replace(item, preset=preset), report, chosen_recipe


def _search(item: PlanItem, model: LoadedModel, evaluate: Callable[..., Candidate], state: _State,
            first: Candidate, per_layer: dict[str, float], metric: str,
            ranking: list[LayerSensitivity]) -> tuple[Candidate, str]:
    """Whole-model alternatives, sensitivity and the greedy phase; ``ranking`` receives the layer ranking."""
    base = item.preset.name
    ladder = LADDERS.get(item.target, ())
    below = list(ladder[ladder.index(base) + 1:]) if base in ladder else []
    # --preset auto may move along the whole ladder; an explicit TFLite int8 may widen activations to int16.
    rungs = below if item.reason else below[:1] if base == target_info(item.target).widens else []
    tried = [first]
    for rung in rungs:
        if state.out_of_time():
            break
        tried.append(evaluate("sensitivity", f"whole model {rung}", rung, ()))
        if tried[-1].passed:
            break  # towards float only as far as the budget needs: the rungs below are more exact, not needed
    if not _overrides_apply(item.target, item.preset):
        return _verdict(tried, state, metric, f"{base} takes no per-layer overrides")
    # Worst per-layer SQNR first, so a time limit cuts the layers least likely to matter (model order otherwise).
    layers = search_layers(model)
    measured = sorted(layers, key=lambda n: per_layer.get(n, float("inf")))
    singles: dict[str, Candidate] = {}
    alone: dict[str, Candidate] = {}
    for layer in measured:
        if state.out_of_time(SENSITIVITY_SHARE):
            break
        singles[layer] = evaluate("sensitivity", f"+{layer} in float", base, (layer,))
        if len(layers) > 1 and not state.out_of_time(SENSITIVITY_SHARE):
            others = tuple(n for n in layers if n != layer)
            alone[layer] = evaluate("quantize-one", f"only {layer} quantized", base, others)
    # A layer quantized alone measures sensitivity; it is not a recipe (it keeps every other layer in float).
    tried += singles.values()
    ranking[:] = rank_layers(layers, singles, alone, per_layer, metric)
    order = [r.layer for r in ranking if r.layer in singles] + [r.layer for r in ranking if r.layer not in singles]
    current = singles[order[0]] if order and order[0] in singles else first
    while order and not current.passed:
        remaining = [n for n in order if n not in current.layers]
        if not remaining:
            break
        tries = []
        for layer in remaining[:GREEDY_WIDTH]:
            if state.out_of_time():
                break
            change = f"+{layer} (with {', '.join(current.layers)})" if current.layers else f"+{layer} in float"
            tries.append(evaluate("greedy", change, base, (*current.layers, layer)))
        if not tries:
            break
        tried += tries
        met = [c for c in tries if c.passed]
        current = _fastest(met) if met else max(tries, key=lambda c: (_score(c, metric), -(c.p50_ms or 0.0)))
    exhausted = "every layer was tried in float" if order else "no layer could be tried"
    return _verdict(tried, state, metric, exhausted, _ceiling(alone, metric))


def _ceiling(alone: dict[str, Candidate], metric: str) -> str:
    """When every layer-quantized-alone candidate (all other weighted layers in float) misses the budget, say so:
    keeping layers in float does not meet it (what stays quantized in every candidate: the model input's
    quantization, the weightless ops, any weights no override reached); empty otherwise."""
    if not alone or any(c.passed for c in alone.values()):
        return ""
    layer, best = max(alone.items(), key=lambda kv: _score(kv[1], metric))
    unit = " pts drop" if metric == "accuracy_drop" else " dB"
    value = "n/a" if best.metric is None else f"{best.metric:.2f}{unit}"
    return (f"even with every weighted layer but one in float the budget is missed (all {len(alone)} such "
            f"candidates; best: only {layer} quantized, {value}), so per-layer float overrides do not "
            "reach it on this model (quantized in every candidate: the model input, the weightless ops, and any "
            "weights no override reached)")


def _verdict(tried: list[Candidate], state: _State, metric: str, exhausted: str,
             ceiling: str = "") -> tuple[Candidate, str]:
    """The fastest candidate that meets the budget (simulated latency, then fewer float layers), else the best;
    ``ceiling`` (``_ceiling``) is added to the reason when the budget is missed."""
    passing = [c for c in tried if c.passed]
    if passing:
        chosen = _fastest(passing)
        return chosen, (f"budget met; {len(passing)} candidate(s) met it and the fastest on the device was kept "
                        f"({chosen.base}, {len(chosen.layers)} layer(s) in float)")
    return _best(tried, metric), (("time limit reached" if state.timed_out else exhausted) + ": budget missed"
                                  + (f"; {ceiling}" if ceiling else ""))


def _overrides_apply(target: str, preset: Preset) -> bool:
    """Whether per-layer overrides change this preset's artifact (TFLite: calibrated modes only)."""
    modes = target_info(target).calibrated_modes
    if modes:  # int16x8 goes through TFLite's older quantizer, which keeps no layer in float
        return (preset.quantization.tflite_mode or "") in modes
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
              layers: tuple[str, ...], keep: str, metric: str, quick: QuickBuild | None,
              planned: list[Artifact], where: Deployment) -> Candidate:
    """Build (quickly when ``quick`` can), verify and simulate one candidate; the first artifact built without
    float layers is appended to ``planned`` (the planned preset's artifact)."""
    from edgeexport.verify.stage import verify_artifact

    started = time.perf_counter()
    artifact = None
    if quick is not None and planned:
        suffix = planned[0].path.suffix
        artifact = quick(preset, directory / f"{preset.name.replace(':', '-')}{suffix}", planned[0])
    if artifact is None:
        artifact = build(preset, directory)
    if not planned and not layers:
        planned.append(artifact)
    tolerance = preset.tolerance.tightened_by(plan.options.verify.tighten)
    verification = verify_artifact(artifact, model, data=plan.options.verify.data, samples=plan.options.verify.samples,
                                   tolerance=tolerance, tolerance_source=f"preset {preset.name}",
                                   precision=plan.options.verify.coreml_precision)
    candidate = Candidate(base, layers, keep, _metric(verification, metric), verification.passed, None,
                          artifact.size_bytes, time.perf_counter() - started, verification.failure_line(),
                          artifact.sha256)
    if plan.device is None:
        return candidate
    placed = place_candidate(artifact.path, plan.device, where)
    return replace(candidate, p50_ms=placed.p50_ms, path=placed.path,
                   accelerator_partitions=placed.accelerator_partitions, float_on=placed.float_on,
                   fastest_ms=placed.fastest_ms, seconds=time.perf_counter() - started)


def _metric(verification: Any, metric: str) -> float | None:
    """The worst output's accuracy drop (points) or SQNR (dB); None when no output has it."""
    values = [c.metrics.value(metric) for c in verification.outputs if c.metrics is not None]
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    return max(present) if metric == "accuracy_drop" else min(present)


def _per_layer_error(plan: Plan, model: LoadedModel, artifact: Artifact | None) -> tuple[list[tuple[str, float]], str]:
    """The planned artifact's per-layer error against the float model (layer, the worse of tensor and median channel
    SQNR in dB; a layer folded into another's tensor, a conv before its BatchNorm, gets that tensor's), or why not."""
    if artifact is None:
        return [], "the planned artifact was not built"
    from edgeexport.verify.localize import localize

    try:
        found = localize(artifact.path, model, data=plan.options.verify.data,
                         samples=min(plan.options.verify.samples, 64), preset=artifact.preset,
                         permutations=artifact.permutations, precision=plan.options.verify.coreml_precision)
    except EdgeExportError as err:
        return [], f"per-layer error not measured: {err.one_line()}"
    pairs = []
    for e in found.layers:
        pairs += [(name, float(e.score_db)) for name in (e.layer, *e.fused)]
    return pairs, ""
