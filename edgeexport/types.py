"""Frozen dataclasses that flow between the stages. No framework imports here: this module must stay light.

Shapes use ``None`` for a dynamic dimension; dtypes are numpy dtype names (``"float32"``, ``"int8"``, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from edgeexport.errors import (
    EXIT_BUDGET_EXCEEDED,
    EXIT_OK,
    EXIT_REGRESSED,
    EXIT_UNSUPPORTED,
    EXIT_VERIFICATION_FAILED,
)


class Status(StrEnum):
    """The outcome of a stage for one artifact, and of a report: the worst of its artifacts.

    Every consumer derives from it: ``exit_code`` is what ``convert``, ``verify`` and ``check`` exit with,
    ``junit_kind`` how JUnit records it (``None``: a pass). When several statuses meet (a report's artifacts, a
    check's matrix), the one with the highest exit code decides.
    """

    OK = "ok"
    VERIFICATION_FAILED = "verification_failed"
    BUDGET_EXCEEDED = "budget_exceeded"
    REGRESSED = "regressed"
    NOT_VERIFIABLE = "not_verifiable"
    CONVERSION_FAILED = "conversion_failed"

    @property
    def exit_code(self) -> int:
        return _STATUS_EXIT[self]

    @property
    def junit_kind(self) -> str | None:
        """``None`` (passed), ``"failure"`` (ran and was wrong) or ``"error"`` (could not be checked here)."""
        if self is Status.OK:
            return None
        return "error" if self in (Status.NOT_VERIFIABLE, Status.CONVERSION_FAILED) else "failure"

    @property
    def passed(self) -> bool:
        return self is Status.OK

    @staticmethod
    def worst(statuses: Iterable[Status]) -> Status:
        """The one of ``statuses`` with the highest exit code (``OK`` for none)."""
        return max(statuses, key=lambda status: status.exit_code, default=Status.OK)


_STATUS_EXIT = {
    Status.OK: EXIT_OK,
    Status.VERIFICATION_FAILED: EXIT_VERIFICATION_FAILED,
    Status.BUDGET_EXCEEDED: EXIT_BUDGET_EXCEEDED,
    Status.REGRESSED: EXIT_REGRESSED,
    Status.NOT_VERIFIABLE: EXIT_UNSUPPORTED,
    Status.CONVERSION_FAILED: EXIT_UNSUPPORTED,
}


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization of a tensor at a model boundary: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model or artifact.

    ``layout`` is ``"NHWC"``, ``"NCHW"``, ``"NWC"``, ``"NCW"`` or ``None`` when the tensor is not spatial.
    ``value_range`` is the range real inputs are drawn from (e.g. ``(0.0, 1.0)`` for scaled images, or
    ``(0, vocab_size - 1)`` for token ids); ``None`` when unknown.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    layout: str | None = None
    quantization: QuantParams | None = None
    value_range: tuple[float, float] | None = None

    @property
    def is_dynamic(self) -> bool:
        return any(d is None for d in self.shape)

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.dtype}[{dims}]"


@dataclass(frozen=True)
class ModelSummary:
    """What a model is, independent of framework: I/O, op histogram, parameter count and MACs.

    ``ops`` is a sorted tuple of ``(op type, count)`` pairs. ``macs`` counts multiply-accumulates for one
    inference at batch 1 (FLOPs are about 2 x MACs); 0 when it could not be counted.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    ops: tuple[tuple[str, int], ...]
    params: int
    macs: int

    @property
    def op_count(self) -> int:
        return sum(n for _, n in self.ops)


@dataclass(frozen=True)
class LoadOptions:
    """How to open a source model.

    ``unsafe_deserialization`` turns Keras safe mode off (default False: Lambda layers are refused).
    ``input_shapes`` fixes input shapes by input name (dynamic dims otherwise become 1 for the batch).
    ``keep_layout`` keeps an ONNX model's NCHW layout at the artifact boundary (default False).
    ``imports`` names modules to import first, e.g. the one registering custom Keras layers (default none).
    """

    unsafe_deserialization: bool = False
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    keep_layout: bool = False
    imports: tuple[str, ...] = ()  # modules imported before loading (custom Keras layers), as --import names them

    def shape_for(self, name: str) -> tuple[int, ...] | None:
        for key, shape in self.input_shapes:
            if key == name:
                return shape
        return None


@dataclass(frozen=True)
class SourceModel:
    """A model file found on disk, before any framework is imported.

    ``format`` is one of ``"keras"``, ``"h5"``, ``"savedmodel"``, ``"onnx"``. ``sha256`` hashes the file, or
    for a directory every file in it in sorted order. Loading (which imports the framework) is done by
    ``edgeexport.sources.load``.
    """

    path: Path
    format: str
    sha256: str
    options: LoadOptions = field(default_factory=LoadOptions)

    @property
    def name(self) -> str:
        """The model's name for artifact file names: the file or directory name without its suffix."""
        return self.path.name.split(".")[0] if not self.path.is_dir() else self.path.name


@dataclass(frozen=True)
class Permutation:
    """How a tensor's axes differ between the source model and the artifact: ``artifact = reference.transpose(axes)``.

    ``kind`` is ``"input"`` or ``"output"``; ``tensor`` is the source model's tensor name. Example: an ONNX
    NCHW image input fed to an NHWC TFLite artifact has ``axes=(0, 2, 3, 1)``.
    """

    kind: str
    tensor: str
    axes: tuple[int, ...]


@dataclass(frozen=True)
class Artifact:
    """One converted model file (or ``.mlpackage`` directory) in the output directory.

    ``size_bytes`` is the size on disk (all files for a package); ``gzip_bytes`` is the gzip -9 size of the
    same bytes, which is what an app download costs. ``conversion_seconds`` is wall time.
    """

    path: Path
    target: str
    preset: str
    device: str | None
    sha256: str
    size_bytes: int
    gzip_bytes: int
    source_sha256: str
    conversion_seconds: float
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    warnings: tuple[str, ...] = ()
    sparsity: float | None = None
    smoke_check: str = ""
    permutations: tuple[Permutation, ...] = ()


@dataclass(frozen=True)
class ExportedGraph:
    """A SavedModel directory with one ``serve`` endpoint whose inputs have fully fixed shapes.

    ``input_names``/``output_names`` are the names the endpoint uses, in the model's order; ``notes`` says
    what had to change to export (e.g. RNNs unrolled for a fixed batch of 1); ``permutations`` records every
    axis permutation between the source model's tensors and the endpoint's (ONNX NCHW -> NHWC); ``program``,
    when set, is what the Core ML target converts instead of the SavedModel (sources/pytorch.py).
    """

    directory: Path
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    notes: tuple[str, ...] = ()
    permutations: tuple[Permutation, ...] = ()
    # the source's own program file for a target that converts it directly (a torch.export .pt2: Core ML)
    program: Path | None = None


@dataclass(frozen=True)
class LayerRank:
    """One factorized (or skipped) layer: the form used, the rank kept and the full rank (``rank`` 0 and a
    ``reason`` when skipped), parameters (bias included) and multiply-accumulates per sample before and after."""

    name: str
    form: str
    rank: int
    full_rank: int
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    reason: str = ""


@dataclass(frozen=True)
class PruneReport:
    """What pruning did: achieved sparsity of the pruned tensors (0..1), parameters before and after, and the
    distillation fine-tune that followed (epochs 0 when there was none; output MSE against the original model on
    the calibration samples before and after it)."""

    method: str
    target_sparsity: float
    achieved_sparsity: float
    params_before: int
    params_after: int
    layers_pruned: int
    layers_skipped: tuple[str, ...] = ()
    macs_before: int | None = None
    macs_after: int | None = None
    finetune_epochs: int = 0
    finetune_samples: int = 0
    finetune_mse_before: float | None = None
    finetune_mse_after: float | None = None
    # Low-rank factorization (method "lowrank"): every candidate layer with its rank, or why it was kept.
    ranks: tuple[LayerRank, ...] = ()
