"""The verification stage: run an artifact and its reference on the same inputs and judge the difference.

``verify_artifact`` is what the pipeline calls after conversion; ``verify_golden`` checks an artifact against
a golden file without loading the reference framework. Both return a ``Verification`` (a result, never an
exception, for a numerical failure) whose ``status`` is a ``types.Status``:

* ``Status.OK``: every check passed (exit 0).
* ``Status.VERIFICATION_FAILED``: some check failed (exit 5).
* ``Status.NOT_VERIFIABLE``: the artifact cannot be executed here (e.g. the MIL executor has no kernel for an
  op). It is not a pass: ``passed`` is False, and every command exits 4 for it (this platform cannot run it,
  which is different from "ran and was wrong"). ``--warn-only`` turns both into 0.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.catalog.model import Tolerance
from edgeexport.errors import UnsupportedOpError
from edgeexport.files import sha256_of, size_of
from edgeexport.runs import count_samples, head_rows, is_fixed, join_runs, split_runs
from edgeexport.runtimes.base import Runner
from edgeexport.sources.base import LoadedModel
from edgeexport.types import Artifact, Status
from edgeexport.verify.compare import (
    OutputComparison,
    artifact_feeds,
    compare_outputs,
    worst_failure,
)
from edgeexport.verify.golden import Golden, load_golden, save_golden
from edgeexport.verify.inputs import Dataset, load_npz, seeded_inputs
from edgeexport.verify.localize import Localization

DEFAULT_PRESET = "fp32"
# Reference models run in chunks of this many samples: bounds memory for image models at 256+ samples.
REFERENCE_CHUNK = 64
# ...and of as many samples as fit this many bytes of input plus the reference's layer outputs (at least one).
# Measured (issue 17): an eager Keras ResNet152V2 call at 299x299 leaves the process ~530 MiB larger per sample in
# the batch (the allocator keeps it), which is the sum of its layer outputs (``LoadedModel.activation_bytes``), so
# it runs one sample per call; MobileNetV2 at 224x224 (83 MiB per sample) runs 3.
REFERENCE_CHUNK_BYTES = 256 * 2**20
# Layer-output bytes per input byte assumed when the source cannot say: a call then takes 1 MiB of input,
# the rule before the estimate (one sample per call at 224x224 and above).
UNKNOWN_ACTIVATION_RATIO = 255
REFERENCE_CHUNK_INPUT_BYTES = REFERENCE_CHUNK_BYTES // (1 + UNKNOWN_ACTIVATION_RATIO)


@dataclass(frozen=True)
class Verification:
    """The outcome of verifying one artifact: ``status`` is ``Status.OK``, ``VERIFICATION_FAILED`` or ``NOT_VERIFIABLE``.

    ``tolerance_source`` says where the limits came from (``"preset int8"``, ``"command line"``, ...);
    ``data_origin`` where the inputs came from; ``guesses`` every name/shape match that was not exact;
    ``runtime`` the engine that ran the artifact (a ``runtimes.names.Engine``); ``seconds`` wall time.
    """

    status: Status
    artifact: str
    reference: str
    outputs: tuple[OutputComparison, ...]
    tolerance: Tolerance
    tolerance_source: str
    data_origin: str
    samples: int
    runtime: str
    guesses: tuple[str, ...] = ()
    reason: str = ""
    seconds: float = 0.0
    runner_warnings: tuple[str, ...] = ()
    localization: Localization | None = None  # the per-layer error, when it was computed

    @property
    def passed(self) -> bool:
        return self.status.passed

    @property
    def warnings(self) -> tuple[str, ...]:
        """What weakens this verification: the engine it ran on when not the one asked for, a reference that ignores
        its input, tied samples left out."""
        return self.runner_warnings + tuple(w for c in self.outputs for w in c.warnings)

    @property
    def exit_code(self) -> int:
        """0 pass, 5 fail, 4 not verifiable on this platform (see the module docstring)."""
        return self.status.exit_code

    def failure_line(self) -> str:
        """One line naming the worst failing metric and its output (``"probs: cosine 0.9812 < 0.999"``);
        the reason when not verifiable; empty when it passed."""
        if self.status is Status.NOT_VERIFIABLE:
            return self.reason
        return worst_failure(self.outputs) or ""

    def headline(self) -> str:
        """Short, for a table cell: ``"pass cos 1.0000"``, ``"FAIL top1 0.91"``, ``"not verifiable"``."""
        if self.status is Status.NOT_VERIFIABLE:
            return "not verifiable"
        if self.status is Status.OK:
            cosines = [c.metrics.cosine for c in self.outputs if c.metrics is not None]
            return f"pass cos {min(cosines):.4f}" if cosines else "pass"
        failing = [check for c in self.outputs for check in c.checks if check.passed is False]
        if not failing:
            return "FAIL " + (next((c.error for c in self.outputs if c.error), "") or "")[:40]
        worst = max(failing, key=lambda check: check.severity)
        value = worst.value if worst.value is not None else float("nan")
        shown = f"{value:.1f}" if worst.metric in ("sqnr_db", "accuracy_drop") else f"{value:.4g}"
        return f"FAIL {worst.label} {shown}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (report.json ``verification``, ``edgeexport verify --json``)."""
        return {
            "status": self.status.value,
            "passed": self.passed,
            "artifact": self.artifact,
            "reference": self.reference,
            "failure": self.failure_line() or None,
            "reason": self.reason,
            "runtime": self.runtime,
            "samples": self.samples,
            "data_origin": self.data_origin,
            "tolerance": dataclasses.asdict(self.tolerance),
            "tolerance_source": self.tolerance_source,
            "guesses": list(self.guesses),
            "seconds": self.seconds,
            "outputs": [c.to_dict() for c in self.outputs],
            "warnings": list(self.warnings),
            **({"localization": self.localization.to_dict()} if self.localization is not None else {}),
        }


def preset_tolerance(preset: str | None, preset_files: tuple[Path, ...] = ()) -> tuple[Tolerance, str]:
    """The tolerance of the preset named ``preset`` (also its file-name form, ``prune-2-4`` for ``prune-2:4``) and
    where it came from. An unknown name falls back to fp32's, and the source says so in words."""
    from edgeexport.catalog import load_preset
    from edgeexport.catalog.presets import preset_by_file_name

    if preset:
        found = preset_by_file_name(preset, extra_files=preset_files)
        if found is not None:
            return found.tolerance, f"preset {found.name}"
        default = load_preset(DEFAULT_PRESET).tolerance
        return default, (f"preset {DEFAULT_PRESET} (default: preset {preset!r} is unknown here; "
                         "pass --tolerance PRESET or --preset-file)")
    return load_preset(DEFAULT_PRESET).tolerance, f"preset {DEFAULT_PRESET} (default)"


def preset_from_name(path: Path) -> str | None:
    """``digits_cnn.int8.tflite`` -> ``"int8"`` (the ``<model>.<preset><suffix>`` naming of convert)."""
    parts = path.name.split(".")
    return parts[1] if len(parts) >= 3 else None


def artifact_from_path(path: Path) -> Artifact:
    """An ``Artifact`` for a file on disk. When the ``report.json`` that ``convert`` wrote next to it lists it with
    the same sha256, that entry is the artifact (preset, tensors, axis permutations: never guessed); otherwise
    only what the file itself says (its preset from the name, no permutations)."""
    from edgeexport.errors import BadInputError, ModelFormatError
    from edgeexport.report.model import load_report
    from edgeexport.targets.base import target_name_for

    if not path.exists():
        raise ModelFormatError(f"artifact not found: {path}")
    target = target_name_for(path)
    sha256 = sha256_of(path)
    report_path = path.parent / "report.json"
    if report_path.is_file():
        try:
            report = load_report(report_path)
        except BadInputError:
            report = None
        for entry in report.artifacts if report is not None else ():
            if entry.artifact.path.name == path.name and entry.artifact.sha256 == sha256:
                return dataclasses.replace(entry.artifact, path=path)
    return Artifact(path=path, target=target, preset=preset_from_name(path) or DEFAULT_PRESET, device=None,
                    sha256=sha256, size_bytes=size_of(path), gzip_bytes=0, source_sha256="", conversion_seconds=0.0,
                    inputs=(), outputs=())


def open_artifact(path: Path, *, precision: str = "auto", runtime: str = "auto") -> Runner:
    """The runner of the artifact's target (LiteRT, Core ML or the MIL executor)."""
    from edgeexport.targets.base import target_for

    return target_for(path).open_runner(path, precision=precision, runtime=runtime)


def run_artifact(runner: Runner, feeds: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """Run all samples: at once when the artifact takes the batch, else one run of its fixed input shapes at a
    time (``edgeexport.runs``; a runner that loops by itself splits them itself, others are split here)."""
    shapes = [tuple(spec.shape) for spec in runner.inputs]
    names = [spec.name for spec in runner.inputs]
    if runner.loops_batch or not is_fixed(shapes) or set(names) != set(feeds):
        return {k: np.atleast_1d(np.asarray(v)) for k, v in runner.run(feeds).items()}
    runs = split_runs(shapes, [np.asarray(feeds[n]) for n in names])
    return join_runs([runner.run(dict(zip(names, run, strict=True))) for run in runs])


def run_reference(model: LoadedModel, feeds: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """The reference model's outputs, computed in chunks of at most ``REFERENCE_CHUNK`` samples whose input and
    layer outputs fit ``REFERENCE_CHUNK_BYTES`` (runs of its fixed input shapes where it has them)."""
    shapes = {spec.name: spec.shape for spec in model.summary.inputs}
    count = count_samples([shapes.get(k, (None,)) for k in feeds], list(feeds.values()))
    per_sample = sum(np.asarray(v).nbytes for v in feeds.values()) // max(count, 1)
    step = reference_chunk(per_sample, model.activation_bytes())
    parts = []
    for start in range(0, max(count, 1), step):
        stop = min(start + step, count)
        chunk = {k: v[head_rows(shapes.get(k, (None,)), start):head_rows(shapes.get(k, (None,)), stop)] if v.ndim else v
                 for k, v in feeds.items()}
        parts.append(model.run(chunk))
    return {k: np.concatenate([np.atleast_1d(np.asarray(p[k])) for p in parts], axis=0) for k in parts[0]}


def reference_chunk(input_bytes: int, activation_bytes: int | None) -> int:
    """Samples per reference call: ``input_bytes`` and ``activation_bytes`` are one sample's (None: unknown, then
    ``UNKNOWN_ACTIVATION_RATIO`` times the input); never below 1 nor above ``REFERENCE_CHUNK``."""
    activations = activation_bytes if activation_bytes is not None else UNKNOWN_ACTIVATION_RATIO * input_bytes
    return max(1, min(REFERENCE_CHUNK, REFERENCE_CHUNK_BYTES // max(input_bytes + activations, 1)))


def _dataset(model: LoadedModel, data: Path | None, samples: int) -> Dataset:
    if data is not None:
        return load_npz(Path(data), model.summary.inputs, split="test", what="verification data").head(samples)
    return seeded_inputs(model.summary.inputs, samples)


def _runner_warnings(runner: Runner) -> tuple[str, ...]:
    return (runner.fallback,) if runner.fallback else ()


def _not_verifiable(artifact: Path, reference: str, err: UnsupportedOpError, tolerance: Tolerance, source: str,
                    origin: str, samples: int, runtime: str, started: float) -> Verification:
    ops = ", ".join(sorted(err.ops))
    return Verification(Status.NOT_VERIFIABLE, artifact.name, reference, (), tolerance, source, origin, samples, runtime,
                        reason=f"not verifiable on this platform: op {ops}", seconds=time.perf_counter() - started)


def verify_artifact(
    artifact: Artifact,
    model: LoadedModel,
    *,
    data: Path | None,
    samples: int,
    tolerance: Tolerance,
    tolerance_source: str,
    precision: str = "auto",
    runtime: str = "auto",
    golden: Path | None = None,
) -> Verification:
    """Run ``artifact`` and ``model`` on the first ``samples`` test samples of ``data`` (split ``test`` of
    the ``.npz``; seeded random inputs when None) and judge the outputs against ``tolerance``, whose origin
    ``tolerance_source`` names (``"preset int8"``). ``precision``/``runtime`` go to the Core ML runner. With
    ``golden``, also writes a golden file of these inputs and the reference outputs. Raises DataError (exit 3)
    for data that does not fit the model.
    """
    started = time.perf_counter()
    source = tolerance_source
    dataset = _dataset(model, data, samples)
    reference_name = model.source.path.name
    try:
        runner = open_artifact(artifact.path, precision=precision, runtime=runtime)
    except UnsupportedOpError as err:
        return _not_verifiable(artifact.path, reference_name, err, tolerance, source, dataset.origin, dataset.count,
                               runtime, started)
    feeds, input_guesses = artifact_feeds(dataset.arrays, runner.inputs, artifact.permutations)
    try:
        actual = run_artifact(runner, feeds)
    except UnsupportedOpError as err:
        return _not_verifiable(artifact.path, reference_name, err, tolerance, source, dataset.origin, dataset.count,
                               runner.runtime_name, started)
    expected = run_reference(model, dataset.arrays)
    comparisons, output_guesses = compare_outputs(expected, actual, tolerance, permutations=artifact.permutations,
                                                  labels=dataset.labels)
    if golden is not None:
        _write_golden(golden, feeds, expected, comparisons, dataset, tolerance, artifact.preset, reference_name, artifact)
    status = Status.OK if all(c.passed for c in comparisons) else Status.VERIFICATION_FAILED
    return Verification(status, artifact.path.name, reference_name, comparisons, tolerance, source, dataset.origin,
                        dataset.count, runner.runtime_name, input_guesses + output_guesses,
                        seconds=time.perf_counter() - started, runner_warnings=_runner_warnings(runner))


def _write_golden(path: Path, feeds: dict[str, NDArray[Any]], expected: dict[str, NDArray[Any]],
                  comparisons: tuple[OutputComparison, ...], dataset: Dataset, tolerance: Tolerance, preset: str,
                  reference: str, artifact: Artifact) -> None:
    from edgeexport.verify.compare import apply_permutation

    outputs: dict[str, NDArray[Any]] = {}
    names: dict[str, str] = {}
    for comp in comparisons:
        if not comp.artifact_name:
            continue
        value = expected[comp.name]
        axes = next((p.axes for p in artifact.permutations if p.kind == "output" and p.tensor == comp.name), None)
        outputs[comp.artifact_name] = apply_permutation(value, axes) if axes else value
        names[comp.artifact_name] = comp.name
    save_golden(path, Golden(feeds, outputs, dataset.labels, tolerance, preset, dataset.origin, reference, names))


def verify_golden(
    artifact: Artifact,
    golden_path: Path,
    *,
    samples: int | None = None,
    tolerance: Tolerance | None = None,
    precision: str = "auto",
    runtime: str = "auto",
) -> Verification:
    """Check ``artifact`` against a golden file (no reference framework is loaded).

    Tolerance: ``tolerance`` if given, else the preset named by the artifact's file name, else the one
    stored in the golden file.
    """
    started = time.perf_counter()
    golden = load_golden(golden_path)
    named = preset_from_name(artifact.path)
    if tolerance is not None:
        source = "given"
    elif named is not None:
        tolerance, source = preset_tolerance(artifact.preset or named)
    else:
        tolerance, source = golden.tolerance, f"golden file ({golden.preset or 'custom'})"
    count = golden.samples if samples is None else min(samples, golden.samples)
    inputs = {k: v[:count] for k, v in golden.inputs.items()}
    labels = None if golden.labels is None else golden.labels[:count]
    origin = f"golden {golden_path.name} ({golden.origin})"
    reference = f"golden {golden_path.name}"
    try:
        runner = open_artifact(artifact.path, precision=precision, runtime=runtime)
    except UnsupportedOpError as err:
        return _not_verifiable(artifact.path, reference, err, tolerance, source, origin, count, runtime, started)
    feeds, input_guesses = artifact_feeds(inputs, runner.inputs)
    try:
        actual = run_artifact(runner, feeds)
    except UnsupportedOpError as err:
        return _not_verifiable(artifact.path, reference, err, tolerance, source, origin, count,
                               runner.runtime_name, started)
    expected = {k: v[:count] for k, v in golden.outputs.items()}
    comparisons, output_guesses = compare_outputs(expected, actual, tolerance, labels=labels)
    status = Status.OK if all(c.passed for c in comparisons) else Status.VERIFICATION_FAILED
    return Verification(status, artifact.path.name, reference, comparisons, tolerance, source, origin, count,
                        runner.runtime_name, input_guesses + output_guesses,
                        seconds=time.perf_counter() - started, runner_warnings=_runner_warnings(runner))
