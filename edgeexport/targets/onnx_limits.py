"""What our routes from an ONNX graph cannot run on each target, checked before any converter runs (exit 4).

ONNX graphs (and a ``.pt2``'s TFLite route, which goes through ``torch.onnx.export``) reach a target through
onnx2tf and the target's converter. A few op / dtype / form combinations always fail there; finding them in the
graph first gives the user the op and the reason at plan time instead of a converter's trace. The table is kept
small and true: every entry cites the onnx node test (benchmarks/onnx_conformance.py) that reproduced the failure
with onnx 1.20.1, onnx2tf 2.6.9, TF 2.21 and coremltools 9.0. An op missing here still fails at conversion with
exit 4 (the converter's message): the table only moves known failures earlier.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from edgeexport.errors import UnsupportedOpError
from edgeexport.sources.base import LoadedModel
from edgeexport.sources.onnx_checks import graph_inputs
from edgeexport.types import ExportedGraph

IO = "<graph input/output>"  # a limit on the graph's own inputs and outputs, not on a node
_INTS_TFLITE_LACKS = frozenset({"int8", "int16", "uint8", "uint16", "uint32", "uint64"})


@dataclass(frozen=True)
class Limit:
    """``op`` (an ONNX op type, or ``IO``) cannot be converted when its first input's element type is one of
    ``dtypes`` (numpy names; empty: any type) and ``when`` (a test on the node, e.g. an attribute) holds."""

    op: str
    reason: str
    dtypes: frozenset[str] = frozenset()
    when: Callable[[Any], bool] | None = field(default=None, compare=False)


def _attr_ints(node: Any, name: str) -> list[int]:
    return [int(v) for a in node.attribute if a.name == name for v in a.ints]


def _dilated(node: Any) -> bool:
    return any(d != 1 for d in _attr_ints(node, "dilations"))


def _with_indices(node: Any) -> bool:
    return len(node.output) > 1 and bool(node.output[1])


def _pool_3d(node: Any) -> bool:
    return len(_attr_ints(node, "kernel_shape")) == 3


LIMITS: dict[str, tuple[Limit, ...]] = {
    "tflite": (
        # test_add_uint8, test_sub_int16, test_mul_uint16, test_div_uint32 (int8/int16/uint* variants of each):
        # the TFLite converter refuses these as Flex (select TF) ops.
        *(Limit(op, f"TFLite has no builtin {op} for this integer type (it would need the Flex delegate)",
                _INTS_TFLITE_LACKS) for op in ("Add", "Sub", "Mul", "Div")),
        # test_max_uint64, test_min_int16 (and the int8/uint8/uint16/uint32 variants)
        *(Limit(op, f"TFLite has no builtin {'MAXIMUM' if op == 'Max' else 'MINIMUM'} for this integer type",
                _INTS_TFLITE_LACKS) for op in ("Max", "Min")),
        # test_cumsum_1d, test_cumsum_2d_axis_0 (the 7 float64 CumSum tests; the int32 ones pass): TF Cumsum on
        # float64 is not lowered to the builtin CUMSUM
        Limit("CumSum", "TFLite's CUMSUM has no float64 kernel (TF Cumsum would need the Flex delegate)",
              frozenset({"float64"})),
        # test_einsum_batch_matmul, test_einsum_transpose (all 6 Einsum tests are float64): onnx2tf lowers Einsum
        # to BatchMatMulV2 / Transpose, which have no float64 builtin
        Limit("Einsum", "Einsum becomes BatchMatMul/Transpose, which TFLite has no float64 builtin for "
                        "(they would need the Flex delegate)", frozenset({"float64"})),
        # test_maxpool_3d_default, test_averagepool_3d_default
        Limit("MaxPool", "TFLite has no 3-D pooling builtin (MaxPool3D would need the Flex delegate)", when=_pool_3d),
        Limit("AveragePool", "TFLite has no 3-D pooling builtin (AvgPool3D would need the Flex delegate)",
              when=_pool_3d),
    ),
    "coreml": (
        # test_add_uint8, test_add_int16, test_mul_uint64, test_max_uint32, test_maxpool_2d_uint8 (35 tests):
        # ct.TensorType raises "dtype=<class 'numpy.uint8'> is unsupported for inputs/outputs of the model".
        Limit(IO, "Core ML model inputs and outputs are float16/32/64, int8, int32, int64 or bool",
              frozenset({"int16", "uint8", "uint16", "uint32", "uint64"})),
        # test_maxpool_2d_dilations: onnx2tf builds Dilation2D, which the Core ML TensorFlow frontend lacks
        Limit("MaxPool", "a dilated MaxPool becomes TF Dilation2D, which the Core ML converter has no op for",
              when=_dilated),
        # test_maxpool_with_argmax_2d_precomputed_pads: MaxPool with its Indices output -> MaxPoolWithArgmax
        Limit("MaxPool", "MaxPool's indices output becomes TF MaxPoolWithArgmax, which the Core ML converter lacks",
              when=_with_indices),
    ),
}


def element_types(model: Any) -> dict[str, str]:
    """Tensor name -> numpy dtype name for graph inputs, outputs, initializers and inferred intermediates."""
    import onnx
    from onnx import helper

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    found: dict[str, str] = {}
    graph = inferred.graph
    for value in (*graph.input, *graph.output, *graph.value_info):
        elem = value.type.tensor_type.elem_type
        if elem:
            found[value.name] = str(helper.tensor_dtype_to_np_dtype(elem))
    for init in graph.initializer:
        found[init.name] = str(helper.tensor_dtype_to_np_dtype(init.data_type))
    return found


def limits_hit(model: Any, target: str) -> dict[str, tuple[int, str]]:
    """``"Op (dtype)"`` -> (count, reason) for every node (and graph endpoint) of ``model`` that ``target``'s
    route cannot convert (``LIMITS``); empty when nothing in the table applies."""
    table = LIMITS.get(target, ())
    if not table:
        return {}
    types = element_types(model)
    hits: Counter[str] = Counter()
    reasons: dict[str, str] = {}
    for limit in (lim for lim in table if lim.op == IO):
        endpoints = [("input", v.name) for v in graph_inputs(model)] + [("output", v.name) for v in model.graph.output]
        for kind, tensor in endpoints:
            dtype = types.get(tensor, "")
            if dtype in limit.dtypes:
                key = f"{kind} {tensor} ({dtype})"
                hits[key] += 1
                reasons[key] = limit.reason
    for node in model.graph.node:
        dtype = types.get(node.input[0], "") if node.input else ""
        for limit in table:
            if limit.op != node.op_type or (limit.dtypes and dtype not in limit.dtypes):
                continue
            if limit.when is not None and not limit.when(node):
                continue
            key = f"{node.op_type} ({dtype})" if limit.dtypes else node.op_type
            hits[key] += 1
            reasons[key] = limit.reason
            break
    return {key: (count, reasons[key]) for key, count in hits.items()}


def check_onnx_graph(model: Any, targets: Iterable[str], name: str) -> None:
    """UnsupportedOpError (exit 4) naming every op of ``model`` (an ONNX ModelProto) in ``LIMITS`` for one of
    ``targets``, with the reason, before any converter runs."""
    for target in targets:
        hits = limits_hit(model, target)
        if hits:
            reasons = "; ".join(dict.fromkeys(reason for _, reason in hits.values()))
            raise UnsupportedOpError({key: count for key, (count, _) in hits.items()},
                                     where=f"{name} for {target} ({reasons})",
                                     hint="convert to another target, or re-export the model without these ops")


def check_source(model: LoadedModel, targets: Iterable[str], exported: ExportedGraph | None = None) -> None:
    """``check_onnx_graph`` on the ONNX graph behind ``model``, if there is one yet: an ONNX source's own graph
    (right after loading), a ``.pt2``'s ``torch.onnx.export`` graph (after export, before any target converter;
    only for the targets that convert from it: Core ML takes the ExportedProgram itself)."""
    graph = model.onnx_graph()
    if graph is None:
        return
    if exported is not None and exported.program is not None:
        targets = [t for t in targets if t != "coreml"]
    check_onnx_graph(graph, targets, model.source.path.name)
