"""``inspect`` on an artifact (.tflite, .mlpackage): the same summary a source model gets, read from the file.

The op graph comes from the simulator's readers (``simulate.graph.read_graph``: the TFLite flatbuffer, or the
Core ML package's MIL program), so nothing runs and no framework converts anything. ``params`` counts the
elements of constant tensors; ``macs`` is the simulator's count for one inference.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from edgeexport.errors import EdgeExportError, ModelFormatError
from edgeexport.targets.base import suffix_of, target_names
from edgeexport.types import ModelSummary, TensorSpec


def is_artifact(path: Path) -> bool:
    """Whether ``path`` names an artifact edgeexport writes (by suffix)."""
    return path.suffix.lower() in {suffix_of(name) for name in target_names()}


def artifact_summary(path: Path) -> tuple[str, ModelSummary, int]:
    """(target, summary, size in bytes) of the artifact at ``path``; ModelFormatError if it cannot be read."""
    from edgeexport.quiet import captured_output
    from edgeexport.simulate.graph import read_graph

    if not path.exists():
        raise ModelFormatError(f"artifact not found: {path}")
    try:
        with captured_output(replay=False):  # coremltools announces version mismatches on import
            graph = read_graph(path)
    except EdgeExportError:
        raise
    except Exception as err:  # a corrupt file fails deep in the readers (an index out of range, say): bad input
        raise ModelFormatError(f"{path.name} is corrupt or truncated: {type(err).__name__}: {err}"[:300]) from err
    by_index = {tensor.index: tensor for tensor in graph.tensors}

    def spec(index: int) -> TensorSpec:
        tensor = by_index[index]
        return TensorSpec(name=tensor.name, shape=tuple(tensor.shape), dtype=tensor.dtype)

    params = 0
    for tensor in graph.tensors:
        if tensor.constant:
            count = 1
            for dim in tensor.shape:
                count *= int(dim)
            params += count
    ops = tuple(sorted(Counter(op.op_type for op in graph.ops).items()))
    summary = ModelSummary(inputs=tuple(spec(i) for i in graph.inputs), outputs=tuple(spec(i) for i in graph.outputs),
                           ops=ops, params=params, macs=sum(op.macs for op in graph.ops))
    return graph.target, summary, graph.size_bytes
