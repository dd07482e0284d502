"""The verification stage: run an artifact and its reference on the same inputs and judge the difference.

``verify_artifact`` is what the pipeline calls after conversion; ``verify_golden`` checks an artifact against
a golden file without loading the reference framework. Both return a ``Verification`` (a result, never an
exception, for a numerical failure). Status and exit code:

* ``"pass"``: every check passed (exit 0).
* ``"fail"``: some check failed (exit 5, ``EXIT_VERIFICATION_FAILED``).
* ``"not_verifiable"``: the artifact cannot be executed here (e.g. the MIL executor has no kernel for an
  op). It is not a pass: ``passed`` is False, and ``edgeexport verify`` exits 4 (``EXIT_UNSUPPORTED``: this
  platform cannot run it, which is different from "ran and was wrong"). ``--warn-only`` turns both into 0.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeexport.catalog.model import Tolerance
from edgeexport.errors import (
    EXIT_OK,
    EXIT_UNSUPPORTED,
    EXIT_VERIFICATION_FAILED,
    ProfileError,
    UnsupportedOpError,
)
from edgeexport.runs import count_samples, head_rows, is_fixed, join_runs, split_runs
from edgeexport.sources.base import LoadedModel
from edgeexport.types import Artifact, Permutation
from edgeexport.verify.compare import (
    OutputComparison,
    artifact_feeds,
    compare_outputs,
    worst_failure,
)
from edgeexport.verify.golden import Golden, load_golden, save_golden
from edgeexport.verify.inputs import Dataset, load_npz, seeded_inputs

DEFAULT_PRESET = "fp32"
# Reference models run in chunks of this many samples: bounds memory for image models at 256+ samples.
REFERENCE_CHUNK = 64
SUFFIX_TARGET = {".tflite": "tflite", ".mlpackage": "coreml", ".mlmodel": "coreml"}


@dataclass(frozen=True)
class Verification:
    """The outcome of verifying one artifact. ``status`` is ``"pass"``, ``"fail"`` or ``"not_verifiable"``.

    ``tolerance_source`` says where the limits came from (``"preset int8"``, ``"command line"``, ...);
    ``data_origin`` where the inputs came from; ``guesses`` every name/shape match that was not exact;
    ``runtime`` the engine that ran the artifact (``"litert"``, ``"mil"``, ``"coreml"``); ``seconds`` wall time.
    """

    status: str
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

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def exit_code(self) -> int:
        """0 pass, 5 fail, 4 not verifiable on this platform (see the module docstring)."""
        return {"pass": EXIT_OK, "fail": EXIT_VERIFICATION_FAILED}.get(self.status, EXIT_UNSUPPORTED)

    def failure_line(self) -> str:
        """One line naming the worst failing metric and its output (``"probs: cosine 0.9812 < 0.999"``);
        the reason when not verifiable; empty when it passed."""
        if self.status == "not_verifiable":
            return self.reason
        return worst_failure(self.outputs) or ""

    def headline(self) -> str:
        """Short, for a table cell: ``"pass cos 1.0000"``, ``"FAIL top1 0.91"``, ``"not verifiable"``."""
        if self.status == "not_verifiable":
            return "not verifiable"
        if self.status == "pass":
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
            "status": self.status,
            "passed": self.passed,
            "artifact": self.artifact,
            "reference": self.reference,
            "failure": self.failure_line() or None,
            "reason": self.reason or None,
            "runtime": self.runtime,
            "samples": self.samples,
            "data_origin": self.data_origin,
            "tolerance": dataclasses.asdict(self.tolerance),
            "tolerance_source": self.tolerance_source,
            "guesses": list(self.guesses),
            "seconds": round(self.seconds, 3),
            "outputs": [c.to_dict() for c in self.outputs],
        }


def tolerance_for(preset: str | None) -> tuple[Tolerance, str]:
    """The tolerance of ``preset`` (fp32's when it is None or unknown) and a note saying which was used."""
    from edgeexport.catalog import load_preset

    if preset:
        for name in (preset, re.sub(r"(\d+)-(\d+)", r"\1:\2", preset)):
            try:
                return load_preset(name).tolerance, f"preset {name}"
            except ProfileError:
                continue
    return load_preset(DEFAULT_PRESET).tolerance, f"preset {DEFAULT_PRESET} (default)"


def preset_from_name(path: Path) -> str | None:
    """``digits_cnn.int8.tflite`` -> ``"int8"`` (the ``<model>.<preset><suffix>`` naming of convert)."""
    parts = path.name.split(".")
    return parts[1] if len(parts) >= 3 else None


def artifact_from_path(path: Path) -> Artifact:
    """An ``Artifact`` for a file on disk. Preset and axis permutations come from the ``report.json`` that
    ``convert`` wrote next to it when there is one (permutations are never guessed), else from the name."""
    from edgeexport.errors import ModelFormatError
    from edgeexport.sources import hash_path

    if not path.exists():
        raise ModelFormatError(f"artifact not found: {path}")
    target = SUFFIX_TARGET.get(path.suffix.lower())
    if target is None:
        raise ModelFormatError(f"{path.name} is not an artifact edgeexport can run", hint="expected .tflite or .mlpackage")
    preset = preset_from_name(path) or DEFAULT_PRESET
    permutations: tuple[Permutation, ...] = ()
    report = path.parent / "report.json"
    if report.is_file():
        try:
            entries = json.loads(report.read_text()).get("artifacts", [])
        except (OSError, ValueError, AttributeError):
            entries = []
        for entry in entries:
            if isinstance(entry, dict) and Path(str(entry.get("path", ""))).name == path.name:
                preset = str(entry.get("preset") or preset)
                permutations = tuple(
                    Permutation(str(p["kind"]), str(p["tensor"]), tuple(int(a) for a in p["axes"]))
                    for p in entry.get("permutations") or ()
                )
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return Artifact(path=path, target=target, preset=preset, device=None, sha256=hash_path(path), size_bytes=size,
                    gzip_bytes=0, source_sha256="", conversion_seconds=0.0, inputs=(), outputs=(),
                    permutations=permutations)


def open_artifact(path: Path, target: str, *, precision: str = "auto", runtime: str = "auto") -> Any:
    """LiteRT for .tflite; Core ML (or the MIL executor, ``runtime``/``precision`` passed through) otherwise."""
    if target == "tflite":
        from edgeexport.runtimes.tflite import TfliteRunner

        return TfliteRunner(path)
    from edgeexport.runtimes.coreml import CoremlRunner

    return CoremlRunner(path, runtime=runtime, precision=precision)


def run_artifact(runner: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run all samples: at once when the artifact takes the batch, else one run of its fixed input shapes at a
    time (``edgeexport.runs``; the LiteRT runner splits by itself, other runners are split here)."""
    shapes = [tuple(spec.shape) for spec in runner.inputs]
    names = [spec.name for spec in runner.inputs]
    if hasattr(runner, "run_raw") or not is_fixed(shapes) or set(names) != set(feeds):
        return {k: np.atleast_1d(np.asarray(v)) for k, v in runner.run(feeds).items()}
    runs = split_runs(shapes, [np.asarray(feeds[n]) for n in names])
    return join_runs([runner.run(dict(zip(names, run, strict=True))) for run in runs])


def run_reference(model: LoadedModel, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference model's outputs, computed in chunks of ``REFERENCE_CHUNK`` samples (runs of its fixed
    input shapes where it has them)."""
    shapes = {spec.name: spec.shape for spec in model.summary.inputs}
    count = count_samples([shapes.get(k, (None,)) for k in feeds], list(feeds.values()))
    parts = []
    for start in range(0, max(count, 1), REFERENCE_CHUNK):
        stop = min(start + REFERENCE_CHUNK, count)
        chunk = {k: v[head_rows(shapes.get(k, (None,)), start):head_rows(shapes.get(k, (None,)), stop)] if v.ndim else v
                 for k, v in feeds.items()}
        parts.append(model.run(chunk))
    return {k: np.concatenate([np.atleast_1d(np.asarray(p[k])) for p in parts], axis=0) for k in parts[0]}


def _dataset(model: LoadedModel, data: Path | None, samples: int) -> Dataset:
    if data is not None:
        return load_npz(Path(data), model.summary.inputs, split="test", what="verification data").head(samples)
    return seeded_inputs(model.summary.inputs, samples)


def _runtime_name(runner: Any, target: str) -> str:
    return "litert" if target == "tflite" else str(getattr(runner, "runtime_used", target))


def _not_verifiable(artifact: Path, reference: str, err: UnsupportedOpError, tolerance: Tolerance, source: str,
                    origin: str, samples: int, runtime: str, started: float) -> Verification:
    ops = ", ".join(sorted(err.ops))
    return Verification("not_verifiable", artifact.name, reference, (), tolerance, source, origin, samples, runtime,
                        reason=f"not verifiable on this platform: op {ops}", seconds=time.perf_counter() - started)


def verify_artifact(
    artifact: Artifact,
    model: LoadedModel,
    *,
    data: Path | None,
    samples: int,
    preset: str,
    precision: str = "auto",
    tolerance: Tolerance | None = None,
    runtime: str = "auto",
    golden: Path | None = None,
) -> Verification:
    """Run ``artifact`` and ``model`` on the first ``samples`` test samples of ``data`` (split ``test`` of
    the ``.npz``; seeded random inputs when None) and judge the outputs against ``tolerance`` (default: the
    preset's). ``precision``/``runtime`` go to the Core ML runner. With ``golden``, also writes a golden file
    of these inputs and the reference outputs. Raises DataError (exit 3) for data that does not fit the model.
    """
    started = time.perf_counter()
    preset_tolerance, preset_source = tolerance_for(preset)
    source = preset_source if tolerance is None or tolerance == preset_tolerance else "given"
    tolerance = tolerance or preset_tolerance
    dataset = _dataset(model, data, samples)
    reference_name = model.source.path.name
    try:
        runner = open_artifact(artifact.path, artifact.target, precision=precision, runtime=runtime)
    except UnsupportedOpError as err:
        return _not_verifiable(artifact.path, reference_name, err, tolerance, source, dataset.origin, dataset.count,
                               runtime, started)
    feeds, input_guesses = artifact_feeds(dataset.arrays, runner.inputs, artifact.permutations)
    try:
        actual = run_artifact(runner, feeds)
    except UnsupportedOpError as err:
        return _not_verifiable(artifact.path, reference_name, err, tolerance, source, dataset.origin, dataset.count,
                               _runtime_name(runner, artifact.target), started)
    expected = run_reference(model, dataset.arrays)
    comparisons, output_guesses = compare_outputs(expected, actual, tolerance, permutations=artifact.permutations,
                                                  labels=dataset.labels)
    if golden is not None:
        _write_golden(golden, feeds, expected, comparisons, dataset, tolerance, preset, reference_name, artifact)
    status = "pass" if all(c.passed for c in comparisons) else "fail"
    return Verification(status, artifact.path.name, reference_name, comparisons, tolerance, source, dataset.origin,
                        dataset.count, _runtime_name(runner, artifact.target), input_guesses + output_guesses,
                        seconds=time.perf_counter() - started)


def _write_golden(path: Path, feeds: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                  comparisons: tuple[OutputComparison, ...], dataset: Dataset, tolerance: Tolerance, preset: str,
                  reference: str, artifact: Artifact) -> None:
    from edgeexport.verify.compare import apply_permutation

    outputs: dict[str, np.ndarray] = {}
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
        tolerance, source = tolerance_for(artifact.preset or named)
    else:
        tolerance, source = golden.tolerance, f"golden file ({golden.preset or 'custom'})"
    count = golden.samples if samples is None else min(samples, golden.samples)
    inputs = {k: v[:count] for k, v in golden.inputs.items()}
    labels = None if golden.labels is None else golden.labels[:count]
    origin = f"golden {golden_path.name} ({golden.origin})"
    reference = f"golden {golden_path.name}"
    try:
        runner = open_artifact(artifact.path, artifact.target, precision=precision, runtime=runtime)
    except UnsupportedOpError as err:
        return _not_verifiable(artifact.path, reference, err, tolerance, source, origin, count, runtime, started)
    feeds, input_guesses = artifact_feeds(inputs, runner.inputs)
    try:
        actual = run_artifact(runner, feeds)
    except UnsupportedOpError as err:
        return _not_verifiable(artifact.path, reference, err, tolerance, source, origin, count,
                               _runtime_name(runner, artifact.target), started)
    expected = {k: v[:count] for k, v in golden.outputs.items()}
    comparisons, output_guesses = compare_outputs(expected, actual, tolerance, labels=labels)
    status = "pass" if all(c.passed for c in comparisons) else "fail"
    return Verification(status, artifact.path.name, reference, comparisons, tolerance, source, origin, count,
                        _runtime_name(runner, artifact.target), input_guesses + output_guesses,
                        seconds=time.perf_counter() - started)
