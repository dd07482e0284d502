"""The only module that knows the order of the stages: open -> plan -> load -> (prune) -> export -> convert
-> smoke run -> verify -> simulate -> report.

Stages never print; ``progress`` callbacks let the CLI show what is happening. Artifacts are written under a
temporary directory inside the output directory and renamed into place only after they ran, so a failure
leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from edgeexport import isolate
from edgeexport.catalog.model import DeviceProfile, Preset, Pruning, Tolerance
from edgeexport.errors import (
    ConversionError,
    DataError,
    EdgeExportError,
    OutputPathError,
    UnsupportedError,
    UnsupportedOpError,
)
from edgeexport.files import gzip_size, sha256_of, size_of
from edgeexport.options import SYNTHETIC, Budgets, ConvertOptions
from edgeexport.report.model import ArtifactReport, Report
from edgeexport.search.recipe import Recipe
from edgeexport.search.report import SearchReport
from edgeexport.simulate.estimate import LatencyEstimate
from edgeexport.sources import load as load_source
from edgeexport.sources.base import LoadedModel, endpoint_arrays
from edgeexport.targets.base import ConvertContext, Target, suffix_of, target_named, target_names
from edgeexport.testhooks import hook
from edgeexport.types import Artifact, ExportedGraph, PruneReport, SourceModel, Status, TensorSpec
from edgeexport.verify.inputs import Dataset, load_npz, seeded_inputs
from edgeexport.verify.stage import Verification

Progress = Callable[[str], None]
SYNTHETIC_SAMPLES = 64


@dataclass(frozen=True)
class PlanItem:
    """One artifact to produce: a target with its resolved preset and, for ``--preset auto``, why."""

    target: str
    preset: Preset
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    """What ``convert`` will do, checked for compatibility before anything heavy is imported.

    ``calibration`` is a path to an ``.npz``, ``"synthetic"`` (explicitly asked for) or None; ``options`` the
    rest of what the caller asked (verification, budgets, fine-tuning).
    """

    source: SourceModel
    out_dir: Path
    items: tuple[PlanItem, ...]
    device: DeviceProfile | None
    calibration: Path | str | None
    options: ConvertOptions


def make_plan(source: SourceModel, out_dir: Path, options: ConvertOptions, device: DeviceProfile | None) -> Plan:
    """Resolve presets per target (``auto`` asks the device profile) and refuse what cannot work (exit 3/4).

    ``options.targets=None`` means every target that the device runs and the preset has a recipe for; targets
    named explicitly must all work.
    """
    from edgeexport.catalog import check_compatible, choose_preset, load_preset

    known = target_names()
    for target in options.targets or ():
        if target not in known:
            raise UnsupportedError(f"unknown target {target}", hint=f"targets: {', '.join(known)}")
    explicit = options.targets is not None
    wanted = tuple(options.targets) if options.targets is not None else known
    if device is not None:
        runnable = tuple(t for t in wanted if t in device.targets)
        if not runnable or (explicit and len(runnable) < len(wanted)):
            unknown = [t for t in wanted if t not in device.targets]
            raise UnsupportedError(
                f"device {device.name} runs {', '.join(sorted(device.targets))}, not {', '.join(unknown)}",
                hint=f"use --target {' or --target '.join(sorted(device.targets))}",
            )
        wanted = runnable
    preset = options.preset
    calibration = options.calibration
    named = None if preset == "auto" else load_preset(preset, extra_files=options.preset_files)
    if named is not None and not explicit:
        wanted = tuple(t for t in wanted if target_named(t).accepts(named)) or wanted
    items = []
    for target in wanted:
        if named is None:
            if device is None:
                raise UnsupportedError("--preset auto needs --device to choose for", hint="add --device NAME or name a preset")
            chosen, reason = choose_preset(device, target, calibration=calibration is not None,
                                           model_bytes=size_of(source.path))
        else:
            chosen, reason = named, ""
        check_compatible(chosen, target, device)
        items.append(PlanItem(target, chosen, reason))
    if any(item.preset.quantization.requires_calibration for item in items) and calibration is None:
        names = ", ".join(sorted({i.preset.name for i in items if i.preset.quantization.requires_calibration}))
        raise DataError(
            f"preset {names} needs calibration data and none was given",
            hint="pass --calibration data.npz (real samples), or --calibration synthetic to accept random data knowingly",
        )
    if isinstance(calibration, Path) and not calibration.is_file():
        raise DataError(f"calibration file not found: {calibration}")
    _check_out_dir(out_dir)
    return Plan(source, out_dir, tuple(items), device, calibration, options)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"output path {out_dir} exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(f"cannot create output directory {out_dir}: {err.strerror or err}") from err
    # os.access says yes to root even where the kernel refuses a write, so try one for real.
    try:
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as err:
        raise OutputPathError(f"output directory {out_dir} is not writable: {err.strerror}") from err


def artifact_name(source: SourceModel, preset: Preset, target: str) -> str:
    """``<model>.<preset><suffix>``; ':' (as in prune-2:4) becomes '-' so the name is valid on every OS."""
    from edgeexport.catalog.presets import file_safe_name

    return f"{source.name}.{file_safe_name(preset.name)}{suffix_of(target)}"


def run_plan(plan: Plan, progress: Progress | None = None) -> Report:
    """Execute ``plan``: every artifact is converted, run once, verified and simulated, then reported."""
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    # the converter process imports TensorFlow (and coremltools if needed) while this one loads the model
    isolate.warm_up(isolate.preload_for(item.target for item in plan.items))
    say(f"loading {plan.source.path.name}")
    model = load_source(plan.source)
    summary = model.summary
    from edgeexport.targets.onnx_limits import check_source

    targets = [item.target for item in plan.items]
    check_source(model, targets)  # an ONNX graph's ops no route of these targets converts: exit 4, named
    if plan.options.bundle is not None:  # --preprocess names fit the inputs? (exit 2) before minutes of converting
        from edgeexport.bundle.preprocess import parse_preprocess_specs

        parse_preprocess_specs(plan.options.bundle.preprocess).check_names([spec.name for spec in summary.inputs])
    warnings: list[str] = []
    calibration = _calibration(plan, summary.inputs, warnings)
    workdir = Path(tempfile.mkdtemp(prefix=".edgeexport-", dir=plan.out_dir))
    entries: list[ArtifactReport] = []
    tolerances: dict[Path, Tolerance] = {}
    searches: dict[Path, SearchReport] = {}
    recipes: list[Recipe] = []
    from edgeexport.release import release_memory, should_release

    # A large model leaves the parent while the converter child runs (issue 17: the tree's peak memory); not
    # during a precision search, which runs its reference between conversions.
    releasing = plan.options.precision_search is None and should_release(size_of(plan.source.path),
                                                                          isolate.enabled())
    try:
        exports: dict[str, tuple[ExportedGraph, PruneReport | None, LoadedModel]] = {}
        for item in plan.items:
            pruning = item.preset.pruning
            key = repr(pruning)
            if key not in exports:
                variant, prune_report = model, None
                if pruning is not None:
                    epochs = plan.options.finetune_epochs
                    say((f"factorizing (low-rank, {_lowrank_label(pruning)})" if pruning.method == "lowrank"
                         else f"pruning ({pruning.method}, {pruning.sparsity:.0%})")
                        + (f", then distilling for {epochs} epochs" if calibration else ""))
                    variant, prune_report = model.pruned(
                        pruning, finetune_data=calibration.arrays if calibration else None, finetune_epochs=epochs,
                    )
                    if prune_report.finetune_epochs == 0:
                        distillable = plan.source.format in ("keras", "h5") and calibration is None
                        warnings.append("pruned without fine-tuning: accuracy may drop"
                                        + ("; pass --calibration DATA.npz to distill the pruned model"
                                           if distillable else ""))
                say("exporting a fixed-shape TensorFlow graph")
                exported = variant.export_saved_model(workdir / f"savedmodel-{len(exports)}")
                check_source(variant, targets, exported)  # a .pt2's ONNX graph exists only now
                exports[key] = (exported, prune_report, variant)
            exported, prune_report, variant = exports[key]
            search = None
            if plan.options.precision_search is not None:
                from edgeexport.search.precision import search_item

                def build(preset: Preset, where: Path, item: PlanItem = item, exported: ExportedGraph = exported,
                          prune_report: PruneReport | None = prune_report) -> Artifact:
                    return _convert_one(replace(plan, out_dir=where), replace(item, preset=preset), exported,
                                        calibration, workdir, prune_report, lambda _message: None)

                from edgeexport.targets.tflite_selective import quick_builder

                arrays = endpoint_arrays(calibration.arrays, exported) if calibration else None
                quick = quick_builder(item.target, exported, arrays, workdir) if prune_report is None else None
                item, search, recipe = search_item(plan, item, variant, build, workdir, say,
                                                   quick.build if quick is not None else None)
                recipes.append(recipe)
            say(f"converting to {item.target} ({item.preset.name})")
            if releasing and model.release():
                release_memory()
            artifact = _convert_one(plan, item, exported, calibration, workdir, prune_report, say)
            entries.append(ArtifactReport(artifact, item.reason, prune_report))
            if search is not None:
                searches[artifact.path] = search
            tolerances[artifact.path] = item.preset.tolerance.tightened_by(plan.options.verify.tighten)
        notes = tuple(sorted({note for exported, _, _ in exports.values() for note in exported.notes}))
        if plan.options.precision_search is not None and plan.options.precision_search.save_preset is not None:
            from edgeexport.search.recipe import write_recipes

            write_recipes(plan.options.precision_search.save_preset, recipes,
                          header=f"edgeexport precision search for {plan.source.path.name}; rebuild with "
                                 "--preset NAME --preset-file THIS_FILE")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if releasing:
        isolate.shutdown()  # the forkserver's TensorFlow is not needed while verifying (a later run starts one)
    entries = [_later_stages(plan, entry, model, tolerances[entry.artifact.path], say) for entry in entries]
    entries = [replace(e, search=searches[e.artifact.path]) if e.artifact.path in searches else e for e in entries]
    return Report(
        source=plan.source,
        summary=summary,
        artifacts=tuple(entries),
        device=plan.device.name if plan.device else None,
        warnings=tuple(warnings),
        notes=notes,
        out_dir=plan.out_dir,
        warn_only=plan.options.warn_only,
        total_seconds=time.perf_counter() - started,
    )


def _lowrank_label(pruning: Pruning) -> str:
    return f"{pruning.energy:.0%} energy" if pruning.energy is not None else f"keep {1 - pruning.sparsity:.0%}"


def _calibration(plan: Plan, inputs: tuple[TensorSpec, ...], warnings: list[str]) -> Dataset | None:
    if plan.calibration is None:
        return None
    if plan.calibration == SYNTHETIC:
        warnings.append(
            f"int8 calibration used {SYNTHETIC_SAMPLES} synthetic random samples, not real data: accuracy may suffer"
        )
        return seeded_inputs(inputs, SYNTHETIC_SAMPLES)
    return load_npz(Path(plan.calibration), inputs, split="calibration", what="calibration data")


def _convert_one(
    plan: Plan,
    item: PlanItem,
    exported: ExportedGraph,
    calibration: Dataset | None,
    workdir: Path,
    prune_report: PruneReport | None,
    say: Progress,
) -> Artifact:
    target = target_named(item.target)
    name = artifact_name(plan.source, item.preset, item.target)
    staged = workdir / name
    pruning = item.preset.pruning
    ctx = ConvertContext(
        calibration=endpoint_arrays(calibration.arrays, exported) if calibration else None,
        sparse=prune_report is not None and pruning is not None and pruning.method not in ("channels", "lowrank"),
        device=plan.device,
    )
    # In a child process: a converter that segfaults or is killed for memory becomes a ConversionError (exit 4).
    warnings, seconds = isolate.call_timed(f"convert {item.target} ({item.preset.name})",
                                           "edgeexport.targets.base:convert_with", item.target, exported, item.preset,
                                           staged, ctx)
    say(f"running the {item.target} artifact once")
    inputs, outputs, smoke = _smoke_run(staged, target, plan)
    final = plan.out_dir / name
    _replace(staged, final)
    hook("artifact")
    return Artifact(
        path=final,
        target=item.target,
        preset=item.preset.name,
        device=plan.device.name if plan.device else None,
        sha256=sha256_of(final),
        size_bytes=size_of(final),
        gzip_bytes=gzip_size(final),
        source_sha256=plan.source.sha256,
        conversion_seconds=round(seconds, 3),
        inputs=inputs,
        outputs=outputs,
        warnings=tuple(warnings),
        # A factorized model has no zero weights: its share of removed parameters is not a sparsity.
        sparsity=prune_report.achieved_sparsity if prune_report and prune_report.method != "lowrank" else None,
        smoke_check=smoke,
        permutations=exported.permutations,
    )


def _smoke_run(path: Path, target: Target, plan: Plan) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...], str]:
    """Load the artifact with its runtime and run one seeded input; an artifact that does not run is exit 4."""
    import numpy as np

    runner = target.open_runner(path, precision=plan.options.verify.coreml_precision)
    feeds = seeded_inputs(runner.inputs, 1).arrays
    try:
        outputs = runner.run(feeds)
    except UnsupportedOpError as err:
        if target.executes_here:
            raise
        # A valid package whose ops this platform cannot run: keep it; verification reports it as not verifiable.
        return runner.inputs, runner.outputs, f"not run on this platform: {err.one_line()}"
    except EdgeExportError:
        raise
    except Exception as err:
        raise ConversionError(f"{path.name} was produced but does not run: {err}") from err
    bad = [name for name, value in outputs.items() if not np.all(np.isfinite(value))]
    if bad:
        raise ConversionError(f"{path.name} runs but produces NaN or inf in output(s) {', '.join(bad)}")
    return runner.inputs, runner.outputs, f"ran one seeded input with {runner.runtime_name}"


def _later_stages(
    plan: Plan, entry: ArtifactReport, model: LoadedModel, tolerance: Tolerance, say: Progress
) -> ArtifactReport:
    """Verification against the reference and the latency estimate for the device, when those stages exist."""
    verification = None
    checks = plan.options.verify
    if checks.enabled:
        say(f"verifying {entry.artifact.path.name}")
        from edgeexport.verify.stage import verify_artifact

        verification = verify_artifact(entry.artifact, model, data=checks.data, samples=checks.samples,
                                       tolerance=tolerance, tolerance_source=f"preset {entry.artifact.preset}",
                                       precision=checks.coreml_precision, runtime=checks.coreml_runtime)
        if verification.status is Status.VERIFICATION_FAILED or _localize_passing(plan, model, verification):
            verification = _with_localization(verification, entry.artifact, model, plan)
    estimates: tuple[LatencyEstimate, ...] = ()
    over: tuple[str, ...] = ()
    if plan.device is not None:
        say(f"simulating {entry.artifact.path.name} on {plan.device.name}")
        from edgeexport.simulate import simulate

        estimate = simulate(entry.artifact.path, plan.device)
        estimates = (estimate,)
        over = budget_failures(estimate, plan.options.budgets)
    if not plan.options.check_budgets:
        over = ()
    return replace(entry, verification=verification, estimates=estimates, budget_failures=over)


def _localize_passing(plan: Plan, model: LoadedModel, verification: Verification) -> bool:
    """Whether a verified artifact gets its per-layer error too: ``--localize``, or when it is cheap."""
    from edgeexport.verify.localize import DEFAULT_SAMPLES, cheap

    if verification.status is not Status.OK:
        return False
    checks = plan.options.verify
    return checks.localize == "always" or cheap(model.summary.macs, min(checks.samples, DEFAULT_SAMPLES))


def _with_localization(verification: Verification, artifact: Artifact, model: LoadedModel, plan: Plan) -> Verification:
    """A verification with its per-layer error attached (report.json/html), when the reference has layers."""
    from edgeexport.errors import UnsupportedError
    from edgeexport.verify.localize import DEFAULT_SAMPLES, localize

    checks = plan.options.verify
    try:
        found = localize(artifact.path, model, data=checks.data, tolerance=verification.tolerance,
                         samples=min(checks.samples, DEFAULT_SAMPLES), preset=artifact.preset,
                         permutations=artifact.permutations, precision=checks.coreml_precision)
    except UnsupportedError:
        return verification
    return replace(verification, localization=found)


def budget_failures(estimate: LatencyEstimate, budgets: Budgets) -> tuple[str, ...]:
    """Sentences for every budget ``estimate`` breaks: the device's RAM/flash, and the user's latency/size/memory."""
    failures = list(estimate.budget.messages) if not estimate.budget.ok else []
    if budgets.max_latency_ms is not None and estimate.p50_ms > budgets.max_latency_ms:
        failures.append(f"latency {estimate.p50_ms:.2f} ms on {estimate.device} > budget {budgets.max_latency_ms:g} ms")
    if budgets.max_size_bytes is not None and estimate.size_bytes > budgets.max_size_bytes:
        failures.append(f"size {estimate.size_bytes:,} B > budget {budgets.max_size_bytes:,} B")
    if budgets.max_memory_bytes is not None and estimate.peak_memory_bytes > budgets.max_memory_bytes:
        failures.append(f"peak memory {estimate.peak_memory_bytes:,} B > budget {budgets.max_memory_bytes:,} B")
    return tuple(failures)


def _replace(staged: Path, final: Path) -> None:
    """Move ``staged`` to ``final`` atomically (same file system), replacing an older artifact."""
    if final.is_dir():
        shutil.rmtree(final)
    elif final.exists():
        final.unlink()
    os.replace(staged, final)
