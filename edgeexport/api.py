"""The public Python API. Every CLI command is a thin skin over these functions.

    >>> import edgeexport
    >>> from edgeexport.api import ConvertOptions
    >>> report = edgeexport.convert("sample_models/digits_cnn.keras", "build/digits", ConvertOptions(preset="fp16"))
    >>> report.status
    <Status.OK: 'ok'>

Options are typed, frozen objects (``ConvertOptions``, ``VerifyOptions``, ``SimulateOptions``, ``Budgets``,
``Tolerance``); presets travel as ``Preset`` objects once resolved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeexport.catalog.model import DeviceProfile, Preset, Tolerance
from edgeexport.options import (
    SYNTHETIC,
    Budgets,
    BundleOptions,
    ConvertOptions,
    SimulateOptions,
    VerifyOptions,
)
from edgeexport.report.model import Report, load_report
from edgeexport.sources import open_source
from edgeexport.types import LoadOptions, ModelSummary, SourceModel

if TYPE_CHECKING:
    from edgeexport.bundle.manifest import ModelInfo
    from edgeexport.bundle.preprocess import PreprocessSpecs
    from edgeexport.pipeline import Progress
    from edgeexport.simulate.bench import BenchResult
    from edgeexport.simulate.estimate import LatencyEstimate
    from edgeexport.verify.stage import Verification

__all__ = [
    "SYNTHETIC", "Budgets", "BundleOptions", "ConvertOptions", "DeviceProfile", "Inspection", "Preset", "Report", "SimulateOptions",
    "Tolerance", "VerifyOptions", "add_estimates", "bench", "convert", "inspect", "load_device", "load_preset",
    "load_report", "simulate", "verify",
]


def load_device(name_or_path: str) -> DeviceProfile:
    """A shipped device profile by name (``"pixel-8"``) or a profile TOML by path."""
    from edgeexport.catalog import load_device as _load_device

    return _load_device(name_or_path)


def load_preset(spec: str, *, extra_files: Sequence[Path] = ()) -> Preset:
    """A preset by name, or a composition such as ``"prune-50+int8"``."""
    from edgeexport.catalog import load_preset as _load_preset

    return _load_preset(spec, extra_files=tuple(extra_files))


@dataclass(frozen=True)
class Inspection:
    """What ``inspect`` found: the model file (format, sha256), its summary (inputs/outputs, op histogram,
    parameters, MACs) and notes on what the summary could not count."""

    source: SourceModel
    summary: ModelSummary
    notes: tuple[str, ...] = ()


def inspect(model: str | Path, *, options: LoadOptions | None = None) -> Inspection:
    """Open ``model`` with its framework and describe it (see ``Inspection``)."""
    from edgeexport.sources import load

    source = open_source(model, options)
    loaded = load(source)
    return Inspection(source, loaded.summary, tuple(getattr(loaded, "notes", ())))


def convert(model: str | Path, out_dir: str | Path, options: ConvertOptions | None = None, *,
            progress: Progress | None = None) -> Report:
    """Convert ``model`` into ``out_dir`` for each target, run, verify and (with a device) simulate each artifact.

    See ``ConvertOptions`` for what can be asked (default: fp32 for every target). Writes ``out_dir/report.json``
    and ``report.html`` unless ``options.write_report`` is False, and app bundles with ``options.bundle``.
    Raises an ``EdgeExportError`` when it cannot convert; a conversion whose checks fail returns a Report whose
    ``status``/``exit_code`` say so.
    """
    import dataclasses
    import time

    from edgeexport.datachecks import input_order_notes
    from edgeexport.errors import ConversionError
    from edgeexport.pipeline import make_plan, run_plan
    from edgeexport.report.html import write_html
    from edgeexport.report.jsonfile import write_json
    from edgeexport.txn import OutputTransaction, relocated

    opts = options or ConvertOptions()
    bundle_inputs = _bundle_inputs(opts.bundle) if opts.bundle is not None else None
    source = open_source(model, opts.load)
    profile = load_device(opts.device) if opts.device is not None else None
    plan = make_plan(source, Path(out_dir), opts, profile)
    stages: list[str] = ["start"]

    def track(message: str) -> None:
        stages.append(message)
        if progress is not None:
            progress(message)

    started = time.perf_counter()
    # Everything is written into a staging folder inside out_dir and committed together (see edgeexport.txn).
    with OutputTransaction(Path(out_dir)) as txn:
        try:
            report = run_plan(dataclasses.replace(plan, out_dir=txn.stage), track)
            if report.summary is not None:
                order = input_order_notes([spec.name for spec in report.summary.inputs],
                                          [(a.artifact.path.name, [spec.name for spec in a.artifact.inputs])
                                           for a in report.artifacts])
                report = dataclasses.replace(report, notes=(*report.notes, *order))
        except ConversionError as err:
            if opts.write_report:
                from edgeexport.report.failure import failure_report

                failed = failure_report(source, err, stage=stages[-1], device=profile.name if profile else None,
                                        seconds=time.perf_counter() - started)
                write_json(txn.stage / "report.json", failed.to_dict())
                write_html(txn.stage / "report.html", failed)
                txn.commit()
            raise
        if opts.write_report:
            write_json(txn.stage / "report.json", report.to_dict())
            write_html(txn.stage / "report.html", report)
        if bundle_inputs is not None:
            from edgeexport.bundle import write_bundles

            write_bundles(txn.stage, report, preprocessing=bundle_inputs[0], info=bundle_inputs[1])
        txn.commit()
    return relocated(report, txn.stage, Path(out_dir))


def _bundle_inputs(bundle: BundleOptions) -> tuple[PreprocessSpecs, ModelInfo]:
    """Preprocessing specs and labels, read before converting so a bad file fails fast (exit 3); the specs'
    input names are checked against the artifact's inputs when the bundle is written (exit 2)."""
    from edgeexport.bundle import ModelInfo, parse_preprocess_specs, read_labels

    labels = read_labels(bundle.labels) if bundle.labels else None
    return parse_preprocess_specs(bundle.preprocess), ModelInfo(labels=labels)


def verify(artifact: str | Path, *, reference: str | Path | None = None, golden: str | Path | None = None,
           options: VerifyOptions | None = None, tolerance: Tolerance | None = None,
           tolerance_source: str | None = None, preset_files: Sequence[Path] = (),
           save_golden: str | Path | None = None, load: LoadOptions | None = None) -> Verification:
    """Verify ``artifact`` against ``reference`` (a model file, run by its own framework) or a ``golden`` file.

    The tolerance is ``tolerance`` when given (``tolerance_source`` names it), else the preset's the artifact was
    converted with (from its report.json, else its file name; ``preset_files`` resolve your own presets).
    ``options``: data, samples and the Core ML engine. Returns a ``Verification`` (``.passed``, ``.status``).
    """
    from edgeexport.verify.stage import (
        artifact_from_path,
        preset_tolerance,
        verify_artifact,
        verify_golden,
    )

    if (reference is None) == (golden is None):
        raise ValueError("give exactly one of reference or golden")
    opts = options or VerifyOptions()
    built = artifact_from_path(Path(artifact))
    if golden is not None:
        return verify_golden(built, Path(golden), samples=opts.samples, tolerance=tolerance,
                             precision=opts.coreml_precision, runtime=opts.coreml_runtime)
    from edgeexport.sources import load as load_model

    assert reference is not None
    if tolerance is None:
        tolerance, source = preset_tolerance(built.preset, tuple(preset_files))
    else:
        source = tolerance_source or "given"
    model = load_model(open_source(reference, load))
    return verify_artifact(built, model, data=opts.data, samples=opts.samples, tolerance=tolerance,
                           tolerance_source=source, precision=opts.coreml_precision, runtime=opts.coreml_runtime,
                           golden=Path(save_golden) if save_golden else None)


def simulate(artifact: str | Path, device: str | DeviceProfile = "host",
             options: SimulateOptions | None = None) -> LatencyEstimate:
    """Estimated latency, memory and energy of ``artifact`` on ``device`` (a ``LatencyEstimate``)."""
    from edgeexport.simulate import simulate as _simulate

    opts = options or SimulateOptions()
    profile = load_device(device) if isinstance(device, str) else device
    return _simulate(Path(artifact), profile, threads=opts.threads, compute_units=opts.compute_units,
                     delegate=opts.delegate)


def bench(artifact: str | Path, *, threads: int | None = None, runs: int = 50) -> BenchResult:
    """Measured latency of a ``.tflite`` on this machine (a ``BenchResult``: p50/p90/min in ms, peak memory)."""
    from edgeexport.simulate.bench import bench as _bench

    return _bench(Path(artifact), threads=threads, runs=runs)


def add_estimates(report: Report, devices: Sequence[str]) -> Report:
    """``report`` with a simulated estimate on each of ``devices`` for every artifact that has none for it."""
    from dataclasses import replace

    entries = []
    for entry in report.artifacts:
        have = {estimate.device for estimate in entry.estimates}
        extra = tuple(simulate(entry.artifact.path, device) for device in devices if device not in have)
        entries.append(replace(entry, estimates=entry.estimates + extra))
    return replace(report, artifacts=tuple(entries))
