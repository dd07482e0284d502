"""Magnitude pruning of an ONNX model's weights: Conv, ConvTranspose, Gemm and MatMul initializers.

The masks come from ``edgeexport.compress.pruning`` (framework-neutral); this module only finds the weight
initializers and writes the pruned arrays back into a copy of the graph. Biases are kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeexport.errors import UnsupportedError
from edgeexport.sources.onnx_summary import params
from edgeexport.types import PruneReport

_WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}
# A weight this small (a 1x1 projection of a few channels) saves nothing and costs accuracy.
MIN_WEIGHTS = 16


def prune_onnx(model: Any, pruning: Any) -> tuple[Any, PruneReport]:
    """A pruned copy of ``model`` and what was done. Only ``pruning.method == "magnitude"`` is supported
    (UnsupportedError, exit 4, otherwise); each weight tensor gets ``pruning.sparsity`` (0..1) zeros."""
    import onnx
    from onnx import numpy_helper

    from edgeexport.compress.pruning import prune_by_magnitude

    if pruning.method != "magnitude":
        raise UnsupportedError(f"{pruning.method} pruning is not supported for ONNX sources",
                               hint="use a magnitude prune-* preset, or prune in the training framework")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    inits = {init.name: init for init in copy.graph.initializer}
    chosen: dict[str, str] = {}
    skipped: list[str] = []
    for node in copy.graph.node:
        index = _WEIGHT_INPUT.get(node.op_type)
        if index is None or len(node.input) <= index or node.input[index] not in inits:
            continue
        name = node.input[index]
        init = inits[name]
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < MIN_WEIGHTS:
            skipped.append(name)
            continue
        chosen[name] = node.op_type
    arrays = [numpy_helper.to_array(inits[name]) for name in chosen]
    pruned, achieved = prune_by_magnitude(arrays, pruning.sparsity)
    for name, array in zip(chosen, pruned):
        inits[name].CopyFrom(numpy_helper.from_array(array, name))
    before = params(model)
    report = PruneReport(
        method=pruning.method,
        target_sparsity=pruning.sparsity,
        achieved_sparsity=achieved,
        params_before=before,
        params_after=before,
        layers_pruned=len(chosen),
        layers_skipped=tuple(sorted(set(skipped))),
    )
    return copy, report
