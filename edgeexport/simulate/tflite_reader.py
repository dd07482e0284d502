"""Read a ``.tflite`` flatbuffer into an ``OpGraph`` with the LiteRT schema (flatbuffers only, no TensorFlow)."""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from edgeexport.errors import ModelFormatError
from edgeexport.simulate.graph import DTYPE_BYTES, Op, OpGraph, Tensor
from edgeexport.simulate.ops import tflite_family, work_of
from edgeexport.targets.base import TFLITE, target_info

_TENSOR_TYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool", 7: "int16",
    8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64", 13: "resource", 14: "variant",
    15: "uint32", 16: "uint16", 17: "int4", 18: "bfloat16", 19: "int2", 20: "uint4",
}
_ACTIVATIONS = {0: None, 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT", 6: "SIGMOID"}
_OPTION_KEYS = ("strideH", "strideW", "filterHeight", "filterWidth", "depthMultiplier", "adjX", "adjY", "padding")


def _builtin_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def compute_dtype(activation_dtypes: list[str], weight_dtypes: list[str]) -> str:
    """The precision class an op computes in: integer activations decide; float activations with int8
    weights are dynamic-range quantized (int8 arithmetic after on-the-fly activation quantization)."""
    for dt in activation_dtypes:
        if dt in ("int8", "uint8"):
            return "int8"
        if dt == "int16":
            return "int16"
    if any(dt in ("int8", "uint8", "int4") for dt in weight_dtypes) and any(
        dt == "float32" for dt in activation_dtypes
    ):
        return "int8"
    if activation_dtypes and all(dt == "float16" for dt in activation_dtypes):
        return "fp16"
    return "fp32"


_GraphReader = TypeVar("_GraphReader", bound=Callable[..., OpGraph])
# What the generated flatbuffer accessors raise on an offset, length or enum that points outside the buffer.
_MALFORMED = (IndexError, KeyError, ValueError, TypeError, AttributeError, OverflowError, struct.error,
              UnicodeDecodeError, MemoryError)


def _malformed_is_format_error(reader: _GraphReader) -> _GraphReader:
    """A corrupt flatbuffer is bad input (exit 3), never a traceback: any lookup past the end of a table or
    buffer while walking the graph becomes a ModelFormatError naming what failed (issue 17)."""
    @functools.wraps(reader)
    def checked(path: Path | bytes) -> OpGraph:
        try:
            graph = reader(path)
            count = len(graph.tensors)
            # A mutated index that the flatbuffer accessors accepted would fail later, in the cost model.
            if any(not 0 <= t < count for op in graph.ops for t in (*op.inputs, *op.outputs)) or \
                    any(not 0 <= t < count for t in (*graph.inputs, *graph.outputs)):
                raise IndexError(f"a tensor index outside the subgraph's {count} tensors")
            return graph
        except _MALFORMED as err:
            where = "data" if isinstance(path, bytes) else Path(path).name
            raise ModelFormatError(f"corrupt .tflite {where}: the flatbuffer is malformed "
                                   f"({type(err).__name__}: {str(err)[:200]})") from err
    return cast(_GraphReader, checked)


@_malformed_is_format_error
def read_tflite(path: Path | bytes) -> OpGraph:
    """Parse a ``.tflite`` file (or its bytes) into a costed ``OpGraph`` of its main subgraph.

    Constant ``DEQUANTIZE`` ops (fp16 weights) are folded into constants, as LiteRT/XNNPACK do at load time.
    Raises ModelFormatError for a file that is not a valid LiteRT flatbuffer.
    """
    from ai_edge_litert import schema_py_generated as schema

    data = path if isinstance(path, bytes) else Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFormatError(f"{path if not isinstance(path, bytes) else 'data'} is not a LiteRT flatbuffer (no TFL3 identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as err:
        raise ModelFormatError(f"corrupt .tflite ({type(err).__name__}: {err})") from err
    if not model.subgraphs:
        raise ModelFormatError("the .tflite has no subgraph")
    names = _builtin_names()
    sg = model.subgraphs[0]
    warnings: list[str] = []
    if len(model.subgraphs) > 1:
        warnings.append(f"{len(model.subgraphs) - 1} extra subgraph(s) (control flow bodies) are not costed")

    tensors: list[Tensor] = []
    weight_values = 0
    weight_zeros = 0
    for i, t in enumerate(sg.tensors or []):
        dtype = _TENSOR_TYPES.get(int(t.type), "float32")
        shape = tuple(max(int(d), 1) for d in (t.shape if t.shape is not None else ()))
        raw = _buffer_bytes(model, data, int(t.buffer))
        constant = raw is not None and len(raw) > 0
        quantized = bool(t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale) > 0)
        sparsity = 0.0
        elements = int(np.prod(shape)) if shape else 1
        nbytes = len(raw) if constant and raw is not None else int(np.ceil(elements * DTYPE_BYTES.get(dtype, 4)))
        if constant and raw is not None and dtype in ("float32", "float16", "int8", "uint8", "int16", "int32"):
            values = np.frombuffer(raw, dtype=np.dtype(dtype))
            zero = 0
            if dtype == "uint8" and quantized and t.quantization.zeroPoint is not None and len(t.quantization.zeroPoint):
                zero = int(t.quantization.zeroPoint[0])
            zeros = int(np.count_nonzero(values == zero))
            sparsity = zeros / values.size if values.size else 0.0
            if len(shape) >= 2 and dtype != "int32":
                weight_values += values.size
                weight_zeros += zeros
        name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name or i)
        tensors.append(Tensor(i, name, shape, dtype, constant, nbytes, quantized, sparsity))

    ops: list[Op] = []
    for _k, op in enumerate(sg.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        op_type = names.get(max(int(code.builtinCode), int(code.deprecatedBuiltinCode)), "CUSTOM")
        if op_type == "CUSTOM" and code.customCode:
            op_type = f"CUSTOM:{code.customCode.decode('utf-8', 'replace')}"
        ins = tuple(int(x) for x in (op.inputs if op.inputs is not None else ()) if int(x) >= 0)
        outs = tuple(int(x) for x in (op.outputs if op.outputs is not None else ()) if int(x) >= 0)
        if op_type == "DEQUANTIZE" and ins and tensors[ins[0]].constant:
            for o in outs:
                tensors[o] = _as_constant(tensors[o], tensors[ins[0]].sparsity)
            continue
        ops.append(_make_op(len(ops), op_type, ins, outs, tensors, op.builtinOptions))

    weight_bytes = sum(t.nbytes for t in tensors if t.constant)
    return OpGraph(
        format=target_info(TFLITE).graph_format,
        path=None if isinstance(path, bytes) else Path(path),
        tensors=tuple(tensors),
        ops=tuple(ops),
        inputs=tuple(int(x) for x in (sg.inputs if sg.inputs is not None else ())),
        outputs=tuple(int(x) for x in (sg.outputs if sg.outputs is not None else ())),
        size_bytes=len(data),
        weight_bytes=weight_bytes,
        sparsity=weight_zeros / weight_values if weight_values else 0.0,
        warnings=tuple(warnings),
    )


def _as_constant(t: Tensor, sparsity: float) -> Tensor:
    return Tensor(t.index, t.name, t.shape, t.dtype, True, t.nbytes, False, sparsity)


def _buffer_bytes(model: Any, data: bytes, index: int) -> bytes | None:
    if index <= 0 or index >= len(model.buffers or []):
        return None
    buf = model.buffers[index]
    if buf.data is not None and len(buf.data) > 0:
        return bytes(np.asarray(buf.data, dtype=np.uint8))
    # models over 2 GB keep buffers after the flatbuffer, addressed by offset/size
    if int(getattr(buf, "offset", 0) or 0) > 1 and int(getattr(buf, "size", 0) or 0) > 0:
        return data[int(buf.offset) : int(buf.offset) + int(buf.size)]
    return None


# Ops the XNNPACK delegate does not take in this precision run on LiteRT's reference kernels: more work per
# element. M (LiteRT 2.1.2, 1 thread, 24x24x96 int8, lowest p50 of 3 blocks): LOGISTIC 0.0062 ms (8 ops/element
# in our count), HARD_SWISH 0.198 ms and a standalone RELU6 0.174 ms, i.e. 32x and 28x the per-element cost of
# LOGISTIC; the factors scale our 4 and 1 ops/element to match.
REFERENCE_KERNEL_FACTOR: dict[tuple[str, str], int] = {("HARD_SWISH", "int8"): 64, ("RELU6", "int8"): 224}

# A fully connected op with at least this many output rows runs as a matrix-matrix product.
GEMM_ROWS = 8


def outputs_rows(ins: tuple[int, ...], outs: tuple[int, ...], tensors: list[Tensor]) -> int:
    """Rows of a fully connected op's output (elements / output features)."""
    if not outs or len(ins) < 2:
        return 1
    out, weight = tensors[outs[0]], tensors[ins[1]]
    features = weight.shape[0] if weight.shape else 1
    return out.elements // max(features, 1)


def _make_op(index: int, op_type: str, ins: tuple[int, ...], outs: tuple[int, ...], tensors: list[Tensor], options: Any) -> Op:
    family = tflite_family(op_type)
    if family == "fc" and outputs_rows(ins, outs, tensors) >= GEMM_ROWS:
        family = "matmul"  # many rows: a GEMM like a 1x1 conv, not the weight-bound GEMV of batch-1 dense
    act_in = [tensors[i] for i in ins if not tensors[i].constant]
    consts = [tensors[i] for i in ins if tensors[i].constant]
    outputs = [tensors[o] for o in outs]
    attrs: dict[str, Any] = {}
    fused = None
    if options is not None:
        fused = _ACTIVATIONS.get(int(getattr(options, "fusedActivationFunction", 0) or 0))
        for key in _OPTION_KEYS:
            if hasattr(options, key):
                attrs[key] = int(getattr(options, key))
    if family == "pool":
        attrs["window"] = attrs.get("filterHeight", 1) * attrs.get("filterWidth", 1)
    if "adjX" in attrs:
        attrs["adj_x"] = attrs["adjX"]
    weights = consts
    if family == "fc" and not consts and len(act_in) >= 2:
        weights = [act_in[1]]  # weights fed as an activation (rare)
    macs, n_ops = work_of(family, op_type, act_in, weights, outputs, layout=TFLITE, attrs=attrs)
    if fused:
        n_ops += sum(t.elements for t in outputs)
    dtype = compute_dtype([t.dtype for t in act_in], [t.dtype for t in consts])
    n_ops *= REFERENCE_KERNEL_FACTOR.get((op_type, dtype), 1)
    filt = consts[0] if consts else None
    return Op(
        index=index,
        name=outputs[0].name if outputs else f"{op_type}_{index}",
        op_type=op_type,
        family=family,
        inputs=ins,
        outputs=outs,
        dtype=dtype,
        macs=int(macs),
        ops=int(n_ops),
        weight_bytes=sum(t.nbytes for t in consts),
        read_bytes=sum(t.nbytes for t in act_in),
        write_bytes=sum(t.nbytes for t in outputs),
        sparsity=filt.sparsity if filt is not None and len(filt.shape) >= 2 else 0.0,
        fused_activation=fused,
        attrs=tuple(sorted(attrs.items())),
    )
