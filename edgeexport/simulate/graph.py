"""The costed op graph the simulator works on, independent of the artifact format.

Readers (``tflite_reader``, ``coreml_reader``) turn an artifact into an ``OpGraph``; ``ops.cost_of`` fills in
each op's work. Units: bytes, multiply-accumulates (MACs), operations (one MAC counts as 2 ops, like the
device profiles' GOP/s figures).
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeexport.errors import ModelFormatError
from edgeexport.targets.base import COREML, TFLITE, target_info, target_of_graph_format

# numpy dtype name -> bytes per element; 4-bit types round up to 1 byte (LiteRT stores int4 packed, rare here)
DTYPE_BYTES: dict[str, float] = {
    "float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2,
    "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "bool": 1, "int4": 0.5, "uint4": 0.5, "int2": 0.25,
    "string": 1, "complex64": 8, "complex128": 16, "resource": 0, "variant": 0,
}

# The compute precision classes the device profiles know (keys of ComputeUnit.peak_gops).
COMPUTE_DTYPES = ("fp32", "fp16", "int8", "int16")


@dataclass(frozen=True)
class Tensor:
    """One tensor of the graph. ``shape`` has dynamic dims replaced by 1 (batch) so that costs are per inference.

    ``constant`` is True for weights/biases stored in the artifact; ``sparsity`` is the fraction of zeros in a
    constant's values (0.0 for activations). ``nbytes`` is the stored size in bytes.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    constant: bool
    nbytes: int
    quantized: bool = False
    sparsity: float = 0.0

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= max(int(d), 1)
        return n


@dataclass(frozen=True)
class Op:
    """One op in execution order with its cost.

    ``op_type`` is the builtin name of the format (``CONV_2D`` for LiteRT, ``conv`` for MIL); ``family`` one of
    ``ops.FAMILIES``. ``macs`` multiply-accumulates, ``ops`` arithmetic operations (2 per MAC plus the
    element-wise work); ``weight_bytes`` bytes of constant inputs; ``read_bytes``/``write_bytes`` activation
    bytes read and written. ``dtype`` is the compute precision class (``fp32``, ``fp16``, ``int8``, ``int16``).
    """

    index: int
    name: str
    op_type: str
    family: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    dtype: str
    macs: int = 0
    ops: int = 0
    weight_bytes: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    sparsity: float = 0.0
    fused_activation: str | None = None
    attrs: tuple[tuple[str, Any], ...] = ()

    @property
    def bytes_moved(self) -> int:
        return self.weight_bytes + self.read_bytes + self.write_bytes

    def attr(self, key: str, default: Any = None) -> Any:
        return dict(self.attrs).get(key, default)


@dataclass(frozen=True)
class OpGraph:
    """An artifact as a list of costed ops over tensors, in execution order.

    ``format`` is ``tflite`` or ``mlpackage`` (``target`` names the target that writes it); ``size_bytes`` the artifact's size on disk;
    ``weight_bytes`` the sum of constant tensors; ``sparsity`` the fraction of zeros over all constant values
    of the weight tensors (conv/fc/matmul weights).
    """

    format: str
    path: Path | None
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    size_bytes: int
    weight_bytes: int
    sparsity: float
    warnings: tuple[str, ...] = field(default=())

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def target(self) -> str:
        """The name of the target whose artifact this graph was read from (the registry's, by ``format``)."""
        return target_of_graph_format(self.format)

    def op_histogram(self) -> dict[str, int]:
        return dict(sorted(Counter(op.op_type for op in self.ops).items()))

    def main_dtype(self) -> str:
        """The compute dtype carrying most MACs (``fp32`` for an empty graph)."""
        work: Counter[str] = Counter()
        for op in self.ops:
            work[op.dtype] += max(op.macs, 1)
        return work.most_common(1)[0][0] if work else "fp32"


def read_graph(path: Path) -> OpGraph:
    """Read a ``.tflite`` file or an ``.mlpackage`` directory into a costed ``OpGraph``.

    Raises ModelFormatError for anything else or for a corrupt file. A ``.tflite`` read imports only the
    flatbuffers schema (no TensorFlow); an ``.mlpackage`` read imports coremltools.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFormatError(f"artifact not found: {path}", hint="expected a .tflite file or an .mlpackage directory")
    if (path.is_dir() and path.suffix.lower() in (".mlpackage", ".mlmodel")) or path.suffix.lower() == ".mlmodel":
        return _reader(COREML)(path)
    if (path.is_file() and path.suffix.lower() in (".tflite", ".lite", ".litertlm")) or _has_tflite_magic(path):
        return _reader(TFLITE)(path)
    raise ModelFormatError(
        f"{path} is not a simulatable artifact", hint="expected a .tflite file or an .mlpackage directory"
    )


def _reader(target: str) -> Callable[[Path], OpGraph]:
    """The registry's graph reader for ``target``, imported by name (the readers import this module)."""
    module, _, function = target_info(target).graph_reader.partition(":")
    reader: Callable[[Path], OpGraph] = getattr(importlib.import_module(module), function)
    return reader


def _has_tflite_magic(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        head = handle.read(8)
    return head[4:8] == b"TFL3"
