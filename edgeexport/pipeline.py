"""The only module that knows the order of the stages: open -> plan -> load -> (prune) -> export -> convert
-> smoke run -> verify -> simulate -> report.

Stages never print; ``progress`` callbacks let the CLI show what is happening. Artifacts are written under a
temporary directory inside the output directory and renamed into place only after they ran, so a failure
leaves nothing half-written.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeexport import isolate
from edgeexport.catalog.model import DeviceProfile, Preset, Tolerance
from edgeexport.errors import (
    ConversionError,
    DataError,
    EdgeExportError,
    OutputPathError,
    UnsupportedError,
    UnsupportedOpError,
)
from edgeexport.report.model import ArtifactReport, Report
from edgeexport.sources import load as load_source
from edgeexport.sources.base import LoadedModel, PruneReport, endpoint_arrays
from edgeexport.targets import SUFFIX, TARGETS
from edgeexport.testhooks import hook
from edgeexport.types import Artifact, SourceModel, TensorSpec
from edgeexport.verify.inputs import Dataset, load_npz, seeded_inputs

Progress = Callable[[str], None]
SYNTHETIC = "synthetic"
SYNTHETIC_SAMPLES = 64


@dataclass(frozen=True)
class Budgets:
    """Limits an artifact must meet on the device: p50 latency in ms, size and peak memory in bytes (None: unchecked).
    The device profile's RAM and flash are always budgets too."""

    max_latency_ms: float | None = None
    max_size_bytes: int | None = None
    max_memory_bytes: int | None = None


@dataclass(frozen=True)
class PlanItem:
    """One artifact to produce: a target with its resolved preset and, for ``--preset auto``, why."""

    target: str
    preset: Preset
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    """What ``convert`` will do, checked for compatibility before anything heavy is imported.

    ``calibration`` is a path to an ``.npz``, ``"synthetic"`` (explicitly asked for) or None.
    """

    source: SourceModel
    out_dir: Path
    items: tuple[PlanItem, ...]
    device: DeviceProfile | None = None
    calibration: Path | str | None = None
    verify: bool = True
    verify_data: Path | None = None
    verify_samples: int = 64
    coreml_precision: str = "auto"
    warn_only: bool = False
    check_budgets: bool = False
    budgets: Budgets = Budgets()
    tolerance_overrides: tuple[tuple[str, float], ...] = ()
    finetune_epochs: int = 30


def make_plan(
    source: SourceModel,
    out_dir: Path,
    *,
    targets: tuple[str, ...] | None,
    preset: str,
    device: DeviceProfile | None = None,
    calibration: Path | str | None = None,
    preset_files: tuple[Path, ...] = (),
    **options: Any,
) -> Plan:
    """Resolve presets per target (``auto`` asks the device profile) and refuse what cannot work (exit 3/4).

    ``targets=None`` means every target that the device runs and the preset has a recipe for; targets named
    explicitly must all work.
    """
    from edgeexport.catalog import check_compatible, choose_preset, load_preset

    for target in targets or ():
        if target not in TARGETS:
            raise UnsupportedError(f"unknown target {target}", hint=f"targets: {', '.join(TARGETS)}")
    explicit = targets is not None
    wanted = tuple(targets) if targets is not None else tuple(TARGETS)
    if device is not None:
        runnable = tuple(t for t in wanted if t in device.targets)
        if not runnable or (explicit and len(runnable) < len(wanted)):
            unknown = [t for t in wanted if t not in device.targets]
            raise UnsupportedError(
                f"device {device.name} runs {', '.join(sorted(device.targets))}, not {', '.join(unknown)}",
                hint=f"use --target {' or --target '.join(sorted(device.targets))}",
            )
        wanted = runnable
    named = None if preset == "auto" else load_preset(preset, extra_files=preset_files)
    if named is not None and not explicit:
        wanted = tuple(t for t in wanted if t in named.targets) or wanted
    items = []
    for target in wanted:
        if named is None:
            if device is None:
                raise UnsupportedError("--preset auto needs --device to choose for", hint="add --device NAME or name a preset")
            chosen, reason = choose_preset(device, target, calibration=calibration is not None)
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
    return Plan(source, out_dir, tuple(items), device, calibration, **options)


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
    return f"{source.name}.{preset.name.replace(':', '-')}{SUFFIX[target]}"


def run_plan(plan: Plan, progress: Progress | None = None) -> Report:
    """Execute ``plan``: every artifact is converted, run once, verified and simulated, then reported."""
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    # the converter process imports TensorFlow (and coremltools if needed) while this one loads the model
    isolate.warm_up(isolate.preload_for(item.target for item in plan.items))
    say(f"loading {plan.source.path.name}")
    model = load_source(plan.source)
    summary = model.summary
    warnings: list[str] = []
    calibration = _calibration(plan, summary.inputs, warnings)
    workdir = Path(tempfile.mkdtemp(prefix=".edgeexport-", dir=plan.out_dir))
    entries: list[ArtifactReport] = []
    tolerances: dict[Path, Tolerance] = {}
    try:
        exports: dict[str, tuple[Any, PruneReport | None, LoadedModel]] = {}
        for item in plan.items:
            pruning = item.preset.pruning
            key = repr(pruning)
            if key not in exports:
                variant, prune_report = model, None
                if pruning is not None:
                    say(f"pruning ({pruning.method}, {pruning.sparsity:.0%})"
                        + (f", then distilling for {plan.finetune_epochs} epochs" if calibration else ""))
                    variant, prune_report = model.pruned(
                        pruning, finetune_data=calibration.arrays if calibration else None,
                        finetune_epochs=plan.finetune_epochs,
                    )
                    if prune_report.finetune_epochs == 0:
                        distillable = plan.source.format in ("keras", "h5") and calibration is None
                        warnings.append("pruned without fine-tuning: accuracy may drop"
                                        + ("; pass --calibration DATA.npz to distill the pruned model"
                                           if distillable else ""))
                say("exporting a fixed-shape TensorFlow graph")
                exported = variant.export_saved_model(workdir / f"savedmodel-{len(exports)}")
                exports[key] = (exported, prune_report, variant)
            exported, prune_report, variant = exports[key]
            say(f"converting to {item.target} ({item.preset.name})")
            artifact = _convert_one(plan, item, exported, calibration, workdir, prune_report, say)
            entries.append(ArtifactReport(artifact, item.reason, prune_report))
            tolerances[artifact.path] = replace(item.preset.tolerance, **dict(plan.tolerance_overrides))
        notes = tuple(sorted({note for exported, _, _ in exports.values() for note in exported.notes}))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    entries = [_later_stages(plan, entry, model, tolerances[entry.artifact.path], say) for entry in entries]
    return Report(
        source=plan.source,
        summary=summary,
        artifacts=tuple(entries),
        device=plan.device.name if plan.device else None,
        warnings=tuple(warnings),
        notes=notes,
        out_dir=plan.out_dir,
        warn_only=plan.warn_only,
        total_seconds=time.perf_counter() - started,
    )


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
    exported: Any,
    calibration: Dataset | None,
    workdir: Path,
    prune_report: PruneReport | None,
    say: Progress,
) -> Artifact:
    target_module = importlib.import_module(f"edgeexport.targets.{TARGETS[item.target]}")
    name = artifact_name(plan.source, item.preset, item.target)
    staged = workdir / name
    kwargs: dict[str, Any] = {
        "calibration": endpoint_arrays(calibration.arrays, exported) if calibration else None,
        "sparse": prune_report is not None and item.preset.pruning is not None and item.preset.pruning.method != "channels",
    }
    if item.target == "coreml":
        kwargs["deployment_target"] = _deployment_target(plan.device, item.preset)
    # In a child process: a converter that segfaults or is killed for memory becomes a ConversionError (exit 4).
    warnings, seconds = isolate.call_timed(f"convert {item.target} ({item.preset.name})",
                                           f"{target_module.__name__}:convert", exported, item.preset, staged, **kwargs)
    say(f"running the {item.target} artifact once")
    inputs, outputs, smoke = _smoke_run(staged, item.target, plan)
    final = plan.out_dir / name
    _replace(staged, final)
    hook("artifact")
    return Artifact(
        path=final,
        target=item.target,
        preset=item.preset.name,
        device=plan.device.name if plan.device else None,
        sha256=_hash(final),
        size_bytes=_size(final),
        gzip_bytes=_gzip_size(final),
        source_sha256=plan.source.sha256,
        conversion_seconds=round(seconds, 3),
        inputs=inputs,
        outputs=outputs,
        warnings=tuple(warnings),
        sparsity=prune_report.achieved_sparsity if prune_report else None,
        smoke_check=smoke,
        permutations=exported.permutations,
    )


def _deployment_target(device: DeviceProfile | None, preset: Preset) -> str | None:
    """The newer of the device's Core ML deployment target and the preset's minimum (e.g. iOS16 to palettize)."""
    wanted = [t for t in (device.coreml_deployment_target if device else None, preset.min_coreml_deployment_target) if t]
    return max(wanted, key=lambda name: int(name.removeprefix("iOS"))) if wanted else None


def _smoke_run(path: Path, target: str, plan: Plan) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...], str]:
    """Load the artifact with its runtime and run one seeded input; an artifact that does not run is exit 4."""
    import numpy as np

    runner = open_runner(path, target, precision=plan.coreml_precision)
    feeds = seeded_inputs(runner.inputs, 1).arrays
    try:
        outputs = runner.run(feeds)
    except UnsupportedOpError as err:
        if target != "coreml":
            raise
        # A valid package whose ops our Linux executor lacks: keep it; verification reports it as not verifiable.
        return runner.inputs, runner.outputs, f"not run on this platform: {err.one_line()}"
    except EdgeExportError:
        raise
    except Exception as err:  # noqa: BLE001 - any runtime failure means the artifact is broken
        raise ConversionError(f"{path.name} was produced but does not run: {err}") from err
    bad = [name for name, value in outputs.items() if not np.all(np.isfinite(value))]
    if bad:
        raise ConversionError(f"{path.name} runs but produces NaN or inf in output(s) {', '.join(bad)}")
    how = getattr(runner, "runtime_used", target)
    return runner.inputs, runner.outputs, f"ran one seeded input with {how}"


def open_runner(path: Path, target: str, *, precision: str = "auto") -> Any:
    """The runtime for an artifact: LiteRT for .tflite, Core ML or the MIL executor for .mlpackage."""
    if target == "tflite":
        from edgeexport.runtimes.tflite import TfliteRunner

        return TfliteRunner(path)
    from edgeexport.runtimes.coreml import CoremlRunner

    return CoremlRunner(path, precision=precision)


def _later_stages(
    plan: Plan, entry: ArtifactReport, model: LoadedModel, tolerance: Tolerance, say: Progress
) -> ArtifactReport:
    """Verification against the reference and the latency estimate for the device, when those stages exist."""
    verification = None
    if plan.verify:
        say(f"verifying {entry.artifact.path.name}")
        from edgeexport.verify.stage import verify_artifact

        verification = verify_artifact(entry.artifact, model, data=plan.verify_data, samples=plan.verify_samples,
                                       preset=entry.artifact.preset, precision=plan.coreml_precision,
                                       tolerance=tolerance)
    estimates: tuple[Any, ...] = ()
    over: tuple[str, ...] = ()
    if plan.device is not None:
        say(f"simulating {entry.artifact.path.name} on {plan.device.name}")
        from edgeexport.simulate import simulate

        estimate = simulate(entry.artifact.path, plan.device)
        estimates = (estimate,)
        over = budget_failures(estimate, plan.budgets)
    if not plan.check_budgets:
        over = ()
    return replace(entry, verification=verification, estimates=estimates, budget_failures=over)


def budget_failures(estimate: Any, budgets: Budgets) -> tuple[str, ...]:
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


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    for file in _files(path):
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in _files(path))


def _gzip_size(path: Path) -> int:
    """gzip -9 size of the artifact's bytes (all files of a package, concatenated): what a download costs."""
    return sum(len(gzip.compress(f.read_bytes(), compresslevel=9, mtime=0)) for f in _files(path))
