"""Read an ``.mlpackage`` (ML Program) into an ``OpGraph`` by loading its MIL program with coremltools.

Runs on Linux: the model is opened with ``skip_model_load=True`` and the MIL program rebuilt from the spec
and the weights file; nothing is compiled or executed. ``const`` and ``constexpr_*`` ops (compressed weights
that Core ML expands at load time) become constant tensors, not ops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeexport.errors import ModelFormatError
from edgeexport.files import size_of
from edgeexport.simulate.graph import DTYPE_BYTES, Op, OpGraph, Tensor
from edgeexport.simulate.ops import mil_family, work_of

_MIL_DTYPES = {"fp16": "float16", "fp32": "float32", "fp64": "float64", "int8": "int8", "uint8": "uint8",
               "int16": "int16", "uint16": "uint16", "int32": "int32", "int64": "int64", "bool": "bool",
               "int4": "int4", "uint4": "uint4", "str": "string"}
_ACTIVATION_DTYPE = {"float16": "fp16", "float32": "fp32", "int8": "int8", "uint8": "int8", "int16": "int16"}


def load_program(path: Path) -> Any:
    """The MIL program of an ML Program package (ModelFormatError for a neural-network or corrupt model)."""
    from edgeexport.quiet import import_coremltools

    import_coremltools()
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    try:
        model = ct.models.MLModel(str(path), skip_model_load=True)
        spec = model.get_spec()
    except Exception as err:
        raise ModelFormatError(f"cannot open {path} with coremltools: {' '.join(str(err).split())[:200]}") from err
    if spec.WhichOneof("Type") != "mlProgram":
        raise ModelFormatError(f"{path} is a Core ML {spec.WhichOneof('Type')} model; simulate reads ML Programs only")
    try:
        return load(spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir)
    except Exception as err:
        raise ModelFormatError(f"cannot read the MIL program of {path}: {' '.join(str(err).split())[:200]}") from err


def _dtype(var: Any) -> str:
    from coremltools.converters.mil.mil import types

    try:
        dtype = var.dtype
        if types.is_tensor(var.sym_type):
            dtype = var.sym_type.get_primitive()
        return _MIL_DTYPES.get(types.builtin_to_string(dtype), "float32")
    except Exception:
        return "float32"


def _shape(var: Any) -> tuple[int, ...]:
    shape = getattr(var, "shape", ()) or ()
    return tuple(int(d) if isinstance(d, int | np.integer) and int(d) > 0 else 1 for d in shape)


def read_mlpackage(path: Path) -> OpGraph:
    """Parse ``path`` into a costed ``OpGraph`` of its ``main`` function."""
    program = load_program(path)
    func = program.functions.get("main") or next(iter(program.functions.values()))
    tensors: list[Tensor] = []
    index: dict[int, int] = {}
    warnings: list[str] = []
    weight_values = weight_zeros = 0

    def tensor_of(var: Any, constant: bool = False, nbytes: int | None = None, sparsity: float = 0.0) -> int:
        key = id(var)
        if key not in index:
            shape = _shape(var)
            dtype = _dtype(var)
            size = nbytes if nbytes is not None else int(np.ceil(int(np.prod(shape) if shape else 1) * DTYPE_BYTES.get(dtype, 4)))
            index[key] = len(tensors)
            tensors.append(Tensor(len(tensors), str(var.name), shape, dtype, constant, size, dtype in ("int8", "uint8"), sparsity))
        return index[key]

    for var in func.inputs.values():
        tensor_of(var)
    ops: list[Op] = []
    for mil_op in func.operations:
        op_type = str(mil_op.op_type)
        if op_type == "const" or op_type.startswith("constexpr_"):
            stored = 0
            zeros = values = 0
            for inp in ([mil_op.outputs[0]] if op_type == "const" else list(mil_op.inputs.values())):
                val = getattr(inp, "val", None)
                if isinstance(val, np.ndarray):
                    stored += int(val.nbytes)
                    if val.ndim >= 2:
                        values += val.size
                        zeros += int(np.count_nonzero(val == 0))
            out = mil_op.outputs[0]
            if values:
                weight_values += values
                weight_zeros += zeros
            tensor_of(out, constant=True, nbytes=stored, sparsity=zeros / values if values else 0.0)
            continue
        if getattr(mil_op, "blocks", None):
            warnings.append(f"{op_type} {mil_op.name}: nested blocks are not costed")
        ins = tuple(tensor_of(v) for v in mil_op.inputs.values() if hasattr(v, "name") and not isinstance(v, list | tuple))
        outs = tuple(tensor_of(v) for v in mil_op.outputs)
        ops.append(_make_op(len(ops), mil_op, op_type, ins, outs, tensors))
    outputs = tuple(index[id(v)] for v in func.outputs if id(v) in index)
    weight_bytes = sum(t.nbytes for t in tensors if t.constant)
    return OpGraph(
        format="mlpackage", path=Path(path), tensors=tuple(tensors), ops=tuple(ops),
        inputs=tuple(index[id(v)] for v in func.inputs.values()), outputs=outputs, size_bytes=size_of(Path(path)),
        weight_bytes=weight_bytes, sparsity=weight_zeros / weight_values if weight_values else 0.0,
        warnings=tuple(warnings),
    )


def _make_op(i: int, mil_op: Any, op_type: str, ins: tuple[int, ...], outs: tuple[int, ...], tensors: list[Tensor]) -> Op:
    # scalar/tiny constants (strides, pads, axes) are attributes, not weights
    consts = [tensors[k] for k in ins if tensors[k].constant and len(tensors[k].shape) >= 1 and tensors[k].elements > 8]
    weights = [t for t in consts if t.name == getattr(mil_op.inputs.get("weight") or mil_op.inputs.get("y"), "name", None)]
    weights = weights or consts
    act_in = [tensors[k] for k in ins if not tensors[k].constant]
    outputs = [tensors[k] for k in outs]
    attrs: dict[str, Any] = {}
    groups = 1
    if "groups" in mil_op.inputs and mil_op.inputs["groups"].val is not None:
        groups = int(mil_op.inputs["groups"].val)
    in_channels = act_in[0].shape[1] if act_in and len(act_in[0].shape) >= 2 else 0
    family = mil_family(op_type, groups, in_channels)
    if family == "pool" and "kernel_sizes" in mil_op.inputs and mil_op.inputs["kernel_sizes"].val is not None:
        attrs["window"] = int(np.prod(mil_op.inputs["kernel_sizes"].val))
    for key in ("transpose_x",):
        if key in mil_op.inputs and mil_op.inputs[key].val is not None:
            attrs[key] = bool(mil_op.inputs[key].val)
    macs, n_ops = work_of(family, op_type, act_in, weights, outputs, layout="mil", attrs=attrs)
    act_dtypes = [_ACTIVATION_DTYPE.get(t.dtype, "fp32") for t in act_in if t.dtype in _ACTIVATION_DTYPE]
    dtype = "int8" if "int8" in act_dtypes else ("fp16" if "fp16" in act_dtypes else "fp32")
    filt = weights[0] if weights else None
    return Op(
        index=i, name=str(mil_op.name), op_type=op_type, family=family, inputs=ins, outputs=outs, dtype=dtype,
        macs=int(macs), ops=int(n_ops), weight_bytes=sum(t.nbytes for t in consts),
        read_bytes=sum(t.nbytes for t in act_in), write_bytes=sum(t.nbytes for t in outputs),
        sparsity=filt.sparsity if filt is not None else 0.0, attrs=tuple(sorted(attrs.items())),
    )
