"""Low-rank factorization of an ONNX model's Gemm, MatMul and Conv weight initializers, in the graph.

Rank choice and factors come from ``edgeexport.compress.lowrank`` (the same code as for Keras). Rewrites:

* ``MatMul(X, W)`` -> ``MatMul(MatMul(X, A), B)``; ``Gemm(X, W, C)`` -> ``Gemm(MatMul(X, A), B, C)`` with the
  original ``alpha``/``beta`` (``transB`` is folded into the factors; ``transA = 1`` is skipped).
* ``Conv(X, W, b)`` with ``group = 1``: the factor holding the k x k window keeps every attribute of the original
  node (strides, pads, dilations, auto_pad); 1x1 factors run with defaults, and the last one takes the bias.

Skipped and reported: weights that are not float32 initializers, that feed more than one node, with fewer than
``MIN_WEIGHTS`` elements, or where no rank reduces the parameters. There is no ONNX training loop, so the
factorized graph is not distilled. Per-layer MACs are not known here (shape inference runs on the whole model), so
``LayerRank`` MACs are 0 and the report carries the whole-model count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.compress.lowrank import Factors, plan_kernel
from edgeexport.errors import UnsupportedError
from edgeexport.sources.onnx_summary import count_macs, params
from edgeexport.types import LayerRank, PruneReport

MIN_WEIGHTS = 512


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _keras_kernel(node: Any, weight: NDArray[Any]) -> NDArray[Any] | None:
    """The weight in Keras layout (``(in, out)`` or ``(kh, kw, cin, cout)``), or None when the node is not
    factorizable as is."""
    if node.op_type == "MatMul":
        return weight if weight.ndim == 2 else None
    if node.op_type == "Gemm":
        if _attr(node, "transA", 0) or weight.ndim != 2:
            return None
        return weight.T if _attr(node, "transB", 0) else weight
    if node.op_type == "Conv" and weight.ndim == 4 and _attr(node, "group", 1) == 1:
        return np.transpose(weight, (2, 3, 1, 0))
    return None


def _rewrite(node: Any, factors: Factors, graph: Any, counter: int) -> list[Any]:
    """Nodes (and new initializers added to ``graph``) computing ``node`` through ``factors``."""
    from onnx import helper, numpy_helper

    base = f"{node.name or node.op_type}_lowrank{counter}"
    weights = factors.weights
    nodes = []
    current = node.input[0]
    for i, factor in enumerate(weights):
        last = i == len(weights) - 1
        out = node.output[0] if last else f"{base}_t{i}"
        w_name = f"{base}_w{i}"
        if node.op_type == "Conv":
            array = np.transpose(factor, (3, 2, 0, 1))
            spatial = factor.shape[0] * factor.shape[1] > 1
            inputs = [current, w_name] + ([node.input[2]] if last and len(node.input) > 2 and node.input[2] else [])
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute} if spatial else {}
            attrs["kernel_shape"] = list(array.shape[2:])
            new = helper.make_node("Conv", inputs, [out], name=f"{base}_{i}", **attrs)
        elif last and node.op_type == "Gemm":
            array = factor
            inputs = [current, w_name] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
            new = helper.make_node("Gemm", inputs, [out], name=f"{base}_{i}", alpha=float(_attr(node, "alpha", 1.0)),
                                   beta=float(_attr(node, "beta", 1.0)))
        else:
            array = factor
            new = helper.make_node("MatMul", [current, w_name], [out], name=f"{base}_{i}")
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), w_name))
        nodes.append(new)
        current = out
    return nodes


def factorize_onnx(model: Any, pruning: Any) -> tuple[Any, PruneReport]:
    """A factorized copy of ``model`` and what was done (``pruning.method == "lowrank"``; keep ``1 - sparsity`` of
    each factorized weight's parameters, or ``pruning.energy`` of its squared singular values). UnsupportedError
    (exit 4) naming why when no weight can be factorized."""
    import onnx
    from onnx import numpy_helper

    keep = None if pruning.energy is not None else 1.0 - float(pruning.sparsity)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    inits = {init.name: init for init in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    ranks: list[LayerRank] = []
    new_nodes: list[Any] = []
    replaced: set[str] = set()
    for node in graph.node:
        weight_name = node.input[1] if node.op_type in ("MatMul", "Gemm", "Conv") and len(node.input) > 1 else ""
        init = inits.get(weight_name)
        if init is None:
            new_nodes.append(node)
            continue
        label = node.name or weight_name
        weight = numpy_helper.to_array(init)
        kernel = _keras_kernel(node, weight) if init.data_type == onnx.TensorProto.FLOAT else None
        bias = int(np.prod(inits[node.input[2]].dims)) if len(node.input) > 2 and node.input[2] in inits else 0
        if kernel is None or uses.get(weight_name, 0) > 1 or weight.size < MIN_WEIGHTS:
            why = ("shared by several nodes" if kernel is not None and uses.get(weight_name, 0) > 1
                   else f"{weight.size} weights (< {MIN_WEIGHTS})" if kernel is not None
                   else f"{node.op_type} weight of this form (dtype, rank, transA or group) is not factorized")
            ranks.append(LayerRank(label, "svd", 0, 0, weight.size + bias, weight.size + bias, 0, 0, why))
            new_nodes.append(node)
            continue
        rank, factors = plan_kernel(label, kernel, bias, keep=keep, energy=pruning.energy, form=pruning.form or "svd")
        # MACs per layer are unknown without per-node shapes: keep the parameter counts only.
        ranks.append(LayerRank(rank.name, rank.form, rank.rank, rank.full_rank, rank.params_before,
                               rank.params_after, 0, 0, rank.reason))
        if factors is None:
            new_nodes.append(node)
            continue
        new_nodes.extend(_rewrite(node, factors, graph, len(replaced)))
        replaced.add(weight_name)
    if not replaced:
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in ranks) or "no Gemm/MatMul/Conv weight initializers"
        raise UnsupportedError(f"no weight of {model.graph.name or 'the ONNX graph'} can be factorized ({reasons})",
                               hint="low-rank presets need Gemm/MatMul/Conv nodes with float32 initializer weights")
    del graph.node[:]
    graph.node.extend(new_nodes)
    kept = [init for init in graph.initializer if init.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    factorized = [r for r in ranks if r.rank > 0]
    before = sum(r.params_before for r in factorized)
    after = sum(r.params_after for r in factorized)
    macs_before, macs_after = count_macs(model), count_macs(copy)
    return copy, PruneReport(
        method="lowrank", target_sparsity=float(pruning.sparsity),
        achieved_sparsity=1.0 - after / before if before else 0.0,
        params_before=params(model), params_after=params(copy), layers_pruned=len(factorized),
        layers_skipped=tuple(f"{r.name}: {r.reason}" for r in ranks if r.rank == 0),
        macs_before=macs_before or None, macs_after=macs_after or None, ranks=tuple(ranks),
    )
