"""Rewrites of an ONNX graph before onnx2tf, for forms it converts wrongly; each one keeps the graph's meaning.

* ``explicit_same_padding``: ``auto_pad`` SAME_UPPER / SAME_LOWER on Conv, MaxPool, AveragePool and LpPool
  becomes explicit ``pads``. onnx2tf maps both to TensorFlow's SAME, which pads like SAME_UPPER, so SAME_LOWER
  came back one row and column off ((1, 33, 31, 3) for a (1, 3, 32, 32) AveragePool in the onnx node tests).

* ``spatial_mean_as_global_pool``: ReduceMean over axes (2, 3) of a 4-D tensor (what ``x.mean(dim=(2, 3))``
  exports as in torch's dynamo exporter, axes given as an input since opset 18) becomes GlobalAveragePool, then
  Flatten when keepdims is 0. onnx2tf 2.6.9 reduced the wrong axes of the channels-last tensor there
  ([1, 4] instead of [1, 32] for the digits CNN).

``onnx`` is imported inside functions only.
"""

from __future__ import annotations

import math
from typing import Any

_SAME_PADDED = frozenset({"Conv", "MaxPool", "AveragePool", "LpPool"})


def explicit_same_padding(model: Any) -> tuple[Any, tuple[str, ...]]:
    """``model`` (fixed input shapes) with SAME auto_pad turned into explicit pads, and a note per rewritten op
    type; the model itself when nothing needed rewriting. Nodes whose input shape is unknown stay as they are."""
    import onnx

    from edgeexport.sources.onnx_summary import inferred_shapes

    targets = [n for n in model.graph.node if n.op_type in _SAME_PADDED and _auto_pad(n) in ("SAME_UPPER", "SAME_LOWER")]
    if not targets:
        return model, ()
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    shapes = inferred_shapes(copy)
    rewritten: set[str] = set()
    for node in copy.graph.node:
        mode = _auto_pad(node)
        if node.op_type not in _SAME_PADDED or mode not in ("SAME_UPPER", "SAME_LOWER"):
            continue
        shape = shapes.get(node.input[0])
        kernel = _ints(node, "kernel_shape")
        if not kernel and node.op_type == "Conv" and len(node.input) > 1:
            weight = shapes.get(node.input[1])
            kernel = [int(d) for d in weight[2:] if d is not None] if weight and None not in weight[2:] else []
        if not shape or any(d is None for d in shape[2:]) or not kernel:
            continue
        spatial = [int(d) for d in shape[2:]]  # type: ignore[arg-type]
        strides = _ints(node, "strides") or [1] * len(spatial)
        dilations = _ints(node, "dilations") or [1] * len(spatial)
        begins, ends = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            begins.append(small if mode == "SAME_UPPER" else large)
            ends.append(large if mode == "SAME_UPPER" else small)
        kept = [a for a in node.attribute if a.name not in ("auto_pad", "pads")]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.append(onnx.helper.make_attribute("pads", begins + ends))
        rewritten.add(node.op_type)
    if not rewritten:
        return model, ()
    note = f"auto_pad SAME on {', '.join(sorted(rewritten))} rewritten as explicit pads before onnx2tf"
    return copy, (note,)


def _auto_pad(node: Any) -> str:
    for attr in node.attribute:
        if attr.name == "auto_pad":
            return attr.s.decode() if isinstance(attr.s, bytes) else str(attr.s)
    return "NOTSET"


def _ints(node: Any, name: str) -> list[int]:
    for attr in node.attribute:
        if attr.name == name:
            return [int(v) for v in attr.ints]
    return []


def spatial_mean_as_global_pool(model: Any) -> tuple[Any, tuple[str, ...]]:
    """``model`` with every ReduceMean over axes {2, 3} of a 4-D tensor rewritten as GlobalAveragePool (+ Flatten
    for keepdims=0), and a note; the model itself when there is none. Axes may be an attribute or a constant."""
    import onnx
    from onnx import numpy_helper

    from edgeexport.sources.onnx_summary import inferred_shapes

    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    shapes: dict[str, Any] | None = None
    changed = 0
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes = []
    for node in copy.graph.node:
        if node.op_type != "ReduceMean":
            nodes.append(node)
            continue
        axes = _ints(node, "axes") or (
            [int(a) for a in constants[node.input[1]].reshape(-1)] if len(node.input) > 1 and node.input[1] in constants
            else [])
        if shapes is None:
            shapes = inferred_shapes(copy)
        shape = shapes.get(node.input[0])
        if not shape or len(shape) != 4 or sorted(a % 4 for a in axes) != [2, 3]:
            nodes.append(node)
            continue
        keepdims = next((int(a.i) for a in node.attribute if a.name == "keepdims"), 1)
        pooled = f"{node.output[0]}__gap" if not keepdims else node.output[0]
        nodes.append(onnx.helper.make_node("GlobalAveragePool", [node.input[0]], [pooled], name=f"{node.name}_gap"))
        if not keepdims:
            nodes.append(onnx.helper.make_node("Flatten", [pooled], [node.output[0]], name=f"{node.name}_flatten",
                                               axis=1))
        changed += 1
    if not changed:
        return model, ()
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy, (f"ReduceMean over the spatial axes rewritten as GlobalAveragePool before onnx2tf ({changed}x)",)
