"""What an ONNX graph is: I/O specs, parameters and multiply-accumulates, from the graph and ONNX shape inference.

MACs are counted for Conv, ConvTranspose, Gemm and MatMul (the ops that dominate CNNs, MLPs and transformers), at
batch 1, from the shapes ``onnx.shape_inference`` gives for the shape-fixed model. A node whose shapes cannot be
inferred contributes 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeexport.sources.onnx_checks import declared_shape, iter_graphs


def np_dtype(elem_type: int) -> str:
    """numpy dtype name of an ONNX TensorProto element type (``"float32"``, ``"int64"``, ...)."""
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name


def layout(rank: int) -> str | None:
    """ONNX is channels-first: 4-D tensors are NCHW images, 3-D ones NCW sequences (what onnx2tf transposes)."""
    return {4: "NCHW", 3: "NCW"}.get(rank)


def params(model: Any) -> int:
    """Elements of floating-point initializers (weights and biases, not shape constants), subgraphs included."""
    from onnx import TensorProto

    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    return sum(
        int(np.prod(init.dims, dtype=np.int64))
        for graph in iter_graphs(model.graph)
        for init in graph.initializer
        if init.data_type in floats
    )


def inferred_shapes(model: Any) -> dict[str, tuple[int | None, ...]]:
    """Tensor name -> shape for every tensor shape inference can type (inputs, initializers, intermediates)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:
        inferred = model
    graph = inferred.graph
    shapes = {value.name: declared_shape(value) for value in (*graph.input, *graph.value_info, *graph.output)}
    for init in graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    return shapes


def count_macs(model: Any) -> int:
    """Multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul nodes for one inference (batch 1)."""
    shapes = inferred_shapes(model)
    total = 0
    for node in model.graph.node:
        total += _node_macs(node, shapes)
    return total


def _known(shape: tuple[int | None, ...] | None) -> bool:
    return shape is not None and len(shape) > 0 and all(d is not None for d in shape)


def _node_macs(node: Any, shapes: dict[str, tuple[int | None, ...]]) -> int:
    def shape(index: int, outputs: bool = False) -> tuple[int, ...] | None:
        names = node.output if outputs else node.input
        found = shapes.get(names[index]) if index < len(names) and names[index] else None
        return tuple(int(d) for d in found) if found is not None and _known(found) else None  # type: ignore[arg-type]

    op = node.op_type
    weight, out = shape(1), shape(0, outputs=True)
    if op == "Conv" and weight is not None and out is not None:
        # each output element: Cin/groups x kernel window multiply-adds; weight is (Cout, Cin/groups, k...)
        return int(np.prod(out, dtype=np.int64)) * int(np.prod(weight[1:], dtype=np.int64))
    if op == "ConvTranspose" and weight is not None:
        source = shape(0)
        # weight is (Cin, Cout/groups, k...): every input element is scattered over Cout/groups x kernel outputs
        return int(np.prod(source, dtype=np.int64)) * int(np.prod(weight[1:], dtype=np.int64)) if source else 0
    if op in ("Gemm", "MatMul") and out is not None:
        left = shape(0)
        if left is None:
            return 0
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0) if op == "Gemm" else 0
        inner = left[0] if trans_a and len(left) == 2 else left[-1]
        return int(np.prod(out, dtype=np.int64)) * int(inner)
    return 0
