"""The public Python API. The CLI is a thin skin over these functions.

    >>> import edgeexport
    >>> report = edgeexport.convert("sample_models/digits_cnn.keras", "build/digits", targets=("tflite",))
    >>> report.status
    'ok'
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeexport.catalog.model import DeviceProfile, Preset
from edgeexport.datachecks import input_order_notes
from edgeexport.errors import ConversionError
from edgeexport.pipeline import Progress, make_plan, run_plan
from edgeexport.report.jsonfile import write_json
from edgeexport.report.model import Report
from edgeexport.sources import open_source
from edgeexport.types import LoadOptions, ModelSummary

DEFAULT_TARGETS = ("tflite", "coreml")
DEFAULT_PRESET = "fp32"


def load_device(name_or_path: str) -> DeviceProfile:
    """A shipped device profile by name (``"pixel-8"``) or a profile TOML by path."""
    from edgeexport.catalog import load_device as _load_device

    return _load_device(name_or_path)


def load_preset(spec: str, *, extra_files: Sequence[Path] = ()) -> Preset:
    """A preset by name, or a composition such as ``"prune-50+int8"``."""
    from edgeexport.catalog import load_preset as _load_preset

    return _load_preset(spec, extra_files=tuple(extra_files))


def inspect(model: str | Path, *, options: LoadOptions | None = None) -> ModelSummary:
    """Inputs/outputs, op histogram, parameters and MACs of a model file (loads its framework)."""
    from edgeexport.sources import load

    return load(open_source(model, options)).summary


def convert(
    model: str | Path,
    out_dir: str | Path,
    *,
    targets: Sequence[str] | None = None,
    preset: str = DEFAULT_PRESET,
    device: str | DeviceProfile | None = None,
    calibration: str | Path | None = None,
    options: LoadOptions | None = None,
    preset_files: Sequence[Path] = (),
    progress: Progress | None = None,
    write_report: bool = True,
    bundle: bool = False,
    labels: str | Path | None = None,
    preprocess: str | Path | None = None,
    **plan_options: Any,
) -> Report:
    """Convert ``model`` into ``out_dir`` for each target, run, verify and (with a device) simulate each artifact.

    ``targets`` defaults to every target the device runs and the preset has a recipe for (both when neither
    limits them). ``preset`` is a preset name, a composition (``"prune-50+int8"``) or ``"auto"`` (needs ``device``).
    ``calibration`` is an ``.npz`` path or ``"synthetic"``. Writes ``out_dir/report.json`` unless
    ``write_report`` is False. Raises an ``EdgeExportError`` when it cannot convert; a conversion whose
    checks fail returns a Report whose ``status``/``exit_code`` say so.
    """
    bundle_inputs = _bundle_inputs(labels, preprocess) if bundle else None
    source = open_source(model, options)
    profile = load_device(device) if isinstance(device, str) else device
    calibration_value: Path | str | None
    if calibration is None or str(calibration) == "synthetic":
        calibration_value = None if calibration is None else "synthetic"
    else:
        calibration_value = Path(calibration)
    plan = make_plan(
        source,
        Path(out_dir),
        targets=tuple(targets) if targets is not None else None,
        preset=preset,
        device=profile,
        calibration=calibration_value,
        preset_files=tuple(preset_files),
        **plan_options,
    )
    from edgeexport.report.html import write_html
    from edgeexport.txn import OutputTransaction, relocated

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
            order = input_order_notes([spec.name for spec in report.summary.inputs],
                                      [(a.artifact.path.name, [spec.name for spec in a.artifact.inputs])
                                       for a in report.artifacts])
            report = dataclasses.replace(report, notes=(*report.notes, *order))
        except ConversionError as err:
            if write_report:
                from edgeexport.report.failure import failure_report

                failed = failure_report(source, err, stage=stages[-1], device=profile.name if profile else None,
                                        seconds=time.perf_counter() - started)
                write_json(txn.stage / "report.json", failed)
                write_html(txn.stage / "report.html", failed)
                txn.commit()
            raise
        if write_report:
            write_json(txn.stage / "report.json", report.to_dict())
            write_html(txn.stage / "report.html", report.to_dict())
        if bundle_inputs is not None:
            from edgeexport.bundle import write_bundles

            write_bundles(txn.stage, report.to_dict(), preprocessing=bundle_inputs[0], info=bundle_inputs[1])
        txn.commit()
    return relocated(report, txn.stage, Path(out_dir))


def _bundle_inputs(labels: str | Path | None, preprocess: str | Path | None) -> tuple[Any, Any]:
    """Preprocessing and labels, read before converting so a bad file fails fast (exit 3)."""
    from edgeexport.bundle import ModelInfo, parse_preprocessing, read_labels

    return parse_preprocessing(preprocess), ModelInfo(labels=read_labels(Path(labels)) if labels else None)


def verify(artifact: str | Path, reference: str | Path, *, data: str | Path | None = None, samples: int = 256,
           options: LoadOptions | None = None) -> Any:
    """Verify ``artifact`` against the ``reference`` model on ``data`` (an .npz; default seeded inputs).

    Returns a ``Verification`` (``.passed``, ``.failure_line()``, ``.to_dict()``); the tolerance is the one of
    the preset named in the artifact's file name (fp32's when there is none).
    """
    from edgeexport.sources import load
    from edgeexport.verify.stage import artifact_from_path, verify_artifact

    built = artifact_from_path(Path(artifact))
    model = load(open_source(reference, options))
    return verify_artifact(built, model, data=Path(data) if data else None, samples=samples, preset=built.preset)


def simulate(artifact: str | Path, device: str | DeviceProfile = "host", **options: Any) -> Any:
    """Estimated latency, memory and energy of ``artifact`` on ``device`` (a ``LatencyEstimate``)."""
    from edgeexport.simulate import simulate as _simulate

    profile = load_device(device) if isinstance(device, str) else device
    return _simulate(Path(artifact), profile, **options)


def bench(artifact: str | Path, *, threads: int | None = None, runs: int = 50) -> Any:
    """Measured latency of a ``.tflite`` on this machine (a ``BenchResult``: p50/p90/min in ms, peak memory)."""
    from edgeexport.simulate.bench import bench as _bench

    return _bench(Path(artifact), threads=threads, runs=runs)
