"""Loading a Core ML ML Program into an executable plan, and running it op by op with numpy.

Loading uses coremltools' own reader (``MLModel(skip_model_load=True)`` then the milproto loader), which
works on Linux and gives const ops as numpy arrays; nothing here parses protobuf by hand. Execution walks the
main function's ops in their (topological) order and calls one kernel per op from the registry.

Precision: the program's declared types decide. Each kernel computes in fp32 (fp16 tensors are widened when
read) and an output declared fp16 is rounded to fp16 before the next op reads it, which mirrors Core ML's GPU and
Neural Engine (wider accumulation inside an op, fp16 storage between ops). ``precision="fp32"`` skips the
rounding, so an fp16 program is run entirely in fp32.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import (
    DataError,
    ModelFormatError,
    UnsupportedError,
    UnsupportedOpError,
)
from edgeexport.runtimes.mil.precision import round_to_fp16
from edgeexport.runtimes.mil.registry import kernels
from edgeexport.types import TensorSpec

PRECISIONS = ("auto", "fp32")
# Ops the executor handles itself rather than through a kernel.
_BUILTIN_OPS = frozenset({"const"})


@dataclass(frozen=True)
class _Step:
    """One op of the plan: its kernel inputs by parameter name (var names) and its outputs (name, dtype)."""

    op_type: str
    name: str
    inputs: tuple[tuple[str, str | tuple[str, ...]], ...]
    outputs: tuple[tuple[str, np.dtype[Any] | None, tuple[int | None, ...] | None], ...]
    constexpr: bool


def _np_dtype(mil_type: Any) -> np.dtype[Any] | None:
    """The numpy dtype of a MIL var type (tensor or scalar); ``None`` for strings, lists and other non-tensors."""
    from coremltools.converters.mil.mil import types

    elem = mil_type.get_primitive() if types.is_tensor(mil_type) else mil_type
    if elem is types.str:
        return None
    try:
        return np.dtype(types.nptype_from_builtin(elem))
    except Exception:  # list/dict/state types have no numpy dtype
        return None


def _static_shape(var: Any) -> tuple[int | None, ...] | None:
    """A var's shape with symbolic dims as ``None``; ``None`` when the rank itself is unknown."""
    from coremltools.converters.mil.mil.types.symbolic import is_symbolic

    shape = getattr(var, "shape", None)
    if shape is None:
        return None
    return tuple(None if is_symbolic(d) else int(d) for d in shape)


def _const_value(var: Any, dtype: np.dtype[Any] | None) -> Any:
    val = var.val
    if dtype is None or isinstance(val, str):
        return val
    return np.asarray(val, dtype=dtype)


class MilProgram:
    """An executable Core ML ML Program (its ``main`` function).

    ``inputs``/``outputs`` describe the function's I/O (numpy dtype names; ``None`` for flexible dims).
    ``intermediates`` holds every op output of the last ``run(keep_intermediates=True)``, by var name, in the
    dtype the program declares (fp16 where it is fp16, unless the run used ``precision="fp32"``).
    """

    def __init__(self, mil_program: Any, *, source: str = "<in-memory program>") -> None:
        """Build the plan from a ``coremltools.converters.mil.Program`` (e.g. one made with ``@mb.program``)."""
        if "main" not in mil_program.functions:
            raise ModelFormatError(f"Core ML program {source} has no 'main' function")
        func = mil_program.functions["main"]
        self.source = source
        self.inputs: tuple[TensorSpec, ...] = tuple(
            TensorSpec(name, _static_shape(var) or (), str(_np_dtype(var.sym_type) or "object"))
            for name, var in func.inputs.items()
        )
        self.outputs: tuple[TensorSpec, ...] = tuple(
            TensorSpec(var.name, _static_shape(var) or (), str(_np_dtype(var.sym_type) or "object"))
            for var in func.outputs
        )
        self._input_dtypes = {name: _np_dtype(var.sym_type) for name, var in func.inputs.items()}
        self._output_dtypes = {var.name: _np_dtype(var.sym_type) for var in func.outputs}
        self._consts: dict[str, Any] = {}
        self._steps: list[_Step] = []
        self._histogram: Counter[str] = Counter()
        for op in func.operations:
            self._add_op(op)
        self._last_use = self._compute_last_use()
        self._var_dtypes = {name: dtype for step in self._steps for name, dtype, _ in step.outputs}
        self._const_cache: dict[str, dict[str, Any]] = {}
        self.intermediates: dict[str, NDArray[Any]] = {}

    # --- building ------------------------------------------------------------------------------------------

    def _add_op(self, op: Any) -> None:
        self._histogram[op.op_type] += 1
        if op.blocks:
            # Control flow (cond, while_loop) carries nested blocks; the executor runs straight-line programs,
            # so those ops have no kernel and are reported as unsupported, with the ops inside them counted.
            for block in op.blocks:
                for inner in block.operations:
                    self._histogram[inner.op_type] += 1
        if op.op_type == "const":
            out = op.outputs[0]
            self._consts[out.name] = _const_value(out, _np_dtype(out.sym_type))
            return
        inputs: list[tuple[str, str | tuple[str, ...]]] = []
        for param, value in op.inputs.items():
            if isinstance(value, (list, tuple)):
                inputs.append((param, tuple(v.name for v in value)))
            else:
                inputs.append((param, value.name))
        outputs = tuple((o.name, _np_dtype(o.sym_type), _static_shape(o)) for o in op.outputs)
        self._steps.append(_Step(op.op_type, op.name, tuple(inputs), outputs, op.op_type.startswith("constexpr_")))

    def _compute_last_use(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for index, step in enumerate(self._steps):
            for _, ref in step.inputs:
                for name in (ref,) if isinstance(ref, str) else ref:
                    last[name] = index
        return last

    # --- introspection -------------------------------------------------------------------------------------

    def op_histogram(self) -> dict[str, int]:
        """Op type -> count over the whole program (const ops and ops inside control-flow blocks included)."""
        return dict(sorted(self._histogram.items()))

    def unsupported_ops(self) -> dict[str, int]:
        """Op types the executor cannot run, with their counts; empty when every op has a kernel."""
        registry = kernels()
        missing = Counter(
            {t: n for t, n in self._histogram.items() if t not in registry and t not in _BUILTIN_OPS}
        )
        return dict(sorted(missing.items()))

    # --- running -------------------------------------------------------------------------------------------

    def _store(self, value: Any, dtype: np.dtype[Any] | None, precision: str) -> Any:
        """An op output as it is kept for the next ops: declared dtype, fp16 kept as fp16-rounded fp32."""
        if dtype is None or isinstance(value, str):
            return value
        arr = np.asarray(value)
        if dtype == np.float16:
            if precision == "fp32":
                return arr.astype(np.float32, copy=False)
            return round_to_fp16(arr)
        return arr.astype(dtype, copy=False)

    def _constants(self, precision: str) -> dict[str, Any]:
        """Const values plus every constexpr op evaluated once (they depend on nothing but consts)."""
        cached = self._const_cache.get(precision)
        if cached is not None:
            return cached
        env: dict[str, Any] = {}
        for name, value in self._consts.items():
            is_half = isinstance(value, np.ndarray) and value.dtype == np.float16
            env[name] = value.astype(np.float32) if is_half else value
        registry = kernels()
        for step in self._steps:
            if step.constexpr:
                self._execute(step, registry[step.op_type], env, precision)
        self._const_cache[precision] = env
        return env

    def _execute(self, step: _Step, fn: Any, env: dict[str, Any], precision: str) -> None:
        args: dict[str, Any] = {}
        for param, ref in step.inputs:
            args[param] = env[ref] if isinstance(ref, str) else [env[r] for r in ref]
        try:
            result = fn(args)
        except NotImplementedError as exc:
            # A kernel that exists but not for this parameter variant (e.g. a fractional upsample factor).
            raise UnsupportedError(f"Core ML program {self.source}: op {step.name!r} ({step.op_type}): {exc}") from exc
        except Exception as exc:
            raise RuntimeError(f"MIL kernel {step.op_type!r} failed on op {step.name!r}: {exc}") from exc
        results = result if isinstance(result, tuple) else (result,)
        if len(results) != len(step.outputs):
            raise RuntimeError(
                f"MIL kernel {step.op_type!r} returned {len(results)} outputs for op {step.name!r},"
                f" the program declares {len(step.outputs)}"
            )
        for value, (name, dtype, shape) in zip(results, step.outputs):
            stored = self._store(value, dtype, precision)
            if shape is not None and isinstance(stored, np.ndarray) and not _shape_matches(stored.shape, shape):
                raise RuntimeError(
                    f"MIL kernel {step.op_type!r} gave shape {stored.shape} for {name!r}, the program declares"
                    f" {shape}"
                )
            env[name] = stored

    def _feed(self, feeds: Mapping[str, NDArray[Any]], precision: str) -> dict[str, Any]:
        names = {spec.name for spec in self.inputs}
        unknown = sorted(set(feeds) - names)
        if unknown:
            raise DataError(f"unknown input(s) {', '.join(unknown)} for {self.source}; inputs are {sorted(names)}")
        env: dict[str, Any] = {}
        for spec in self.inputs:
            if spec.name not in feeds:
                raise DataError(f"missing input {spec.name!r} for {self.source} (expects {spec.describe()})")
            arr = np.asarray(feeds[spec.name])
            if not _shape_matches(arr.shape, spec.shape):
                raise DataError(f"input {spec.name!r} has shape {arr.shape}, {self.source} expects {spec.describe()}")
            dtype = self._input_dtypes[spec.name]
            if dtype is not None:
                try:
                    arr = arr.astype(dtype, casting="same_kind")
                except TypeError as exc:
                    raise DataError(f"input {spec.name!r} is {arr.dtype}, {self.source} expects {dtype}") from exc
            env[spec.name] = self._store(arr, dtype, precision)
        return env

    def run(
        self,
        feeds: Mapping[str, NDArray[Any]],
        *,
        precision: str = "auto",
        keep_intermediates: bool = False,
    ) -> dict[str, NDArray[Any]]:
        """Execute the program on ``feeds`` (input name -> array) and return its outputs by name.

        ``precision`` is ``"auto"`` (the program's declared types; fp16 outputs rounded to fp16 after every op)
        or ``"fp32"`` (no fp16 rounding anywhere). Outputs come back in their declared dtype (fp16 outputs as
        float32 under ``"fp32"``). Raises ``UnsupportedOpError`` (before running anything) when an op has no
        kernel, and ``DataError`` for missing, unknown or mis-shaped inputs.
        """
        if precision not in PRECISIONS:
            raise DataError(f"unknown MIL precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        missing = self.unsupported_ops()
        if missing:
            raise UnsupportedOpError(missing, where=f"Core ML program {self.source}")
        with _single_threaded_blas():
            return self._run(feeds, precision, keep_intermediates)

    def _run(self, feeds: Mapping[str, NDArray[Any]], precision: str, keep_intermediates: bool) -> dict[str, NDArray[Any]]:
        env = dict(self._constants(precision))
        env.update(self._feed(feeds, precision))
        registry = kernels()
        keep = {spec.name for spec in self.outputs}
        for index, step in enumerate(self._steps):
            if step.constexpr:
                continue
            self._execute(step, registry[step.op_type], env, precision)
            if not keep_intermediates:
                for _, ref in step.inputs:
                    for name in (ref,) if isinstance(ref, str) else ref:
                        if self._last_use.get(name) == index and name not in keep and name not in self._consts:
                            env.pop(name, None)
        if keep_intermediates:
            self.intermediates = {
                name: self._declared(name, value, precision)
                for step in self._steps
                for name, *_ in step.outputs
                if (value := env.get(name)) is not None and isinstance(value, np.ndarray)
            }
        return {spec.name: self._declared(spec.name, env[spec.name], precision) for spec in self.outputs}

    def _declared(self, name: str, value: NDArray[Any], precision: str) -> NDArray[Any]:
        dtype = self._output_dtypes.get(name) or self._var_dtypes.get(name)
        if dtype == np.float16 and precision == "auto":
            return value.astype(np.float16)
        return value


_blas_controller: Any = None


def _single_threaded_blas() -> Any:
    """A context that runs BLAS (numpy's OpenBLAS) on one thread while the program executes.

    The executor issues hundreds of small matmuls, one per op. OpenBLAS' worker threads go idle between them
    and must be woken for each: on the shared 2-core machine an fp32 MobileNetV2-224 took 720 ms with
    OpenBLAS' default two threads and 84 ms with one (OPENBLAS_NUM_THREADS=1, same script, minutes apart). threadpoolctl (a
    dependency of scikit-learn) changes the thread count at run time; without it the run goes on unchanged.
    """
    global _blas_controller
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn, which the project pins
        return contextlib.nullcontext()
    if _blas_controller is None:
        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


def _shape_matches(actual: tuple[int, ...], declared: tuple[int | None, ...]) -> bool:
    return len(actual) == len(declared) and all(d is None or d == a for a, d in zip(actual, declared))


def load_program(path: Path) -> MilProgram:
    """Read a ``.mlpackage`` (or ML Program ``.mlmodel``) with its weights into an executable ``MilProgram``.

    Raises ``ModelFormatError`` (exit 3) when the path is missing, unreadable, or not an ML Program (the older
    neural-network format has no MIL program to execute).
    """
    path = Path(path)
    if not path.exists():
        raise ModelFormatError(f"Core ML model not found: {path}")
    try:
        from edgeexport.quiet import import_coremltools

        import_coremltools()
        import coremltools as ct
        from coremltools.converters.mil.frontend.milproto.load import (
            load as load_milproto,
        )
    except ImportError as exc:  # pragma: no cover - coremltools is a pinned dependency
        raise UnsupportedError("coremltools is not installed; it is needed to read Core ML models") from exc
    try:
        model = ct.models.MLModel(str(path), skip_model_load=True)
        spec = model.get_spec()
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ModelFormatError(f"cannot read Core ML model {path}: {reason}") from exc
    if spec.WhichOneof("Type") != "mlProgram":
        raise ModelFormatError(
            f"{path} is a Core ML {spec.WhichOneof('Type')} model, not an ML Program",
            hint="convert with convert_to='mlprogram'",
        )
    try:
        program = load_milproto(spec, specification_version=spec.specificationVersion,
                                file_weights_dir=model.weights_dir)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ModelFormatError(f"cannot load the ML Program of {path}: {reason}") from exc
    return MilProgram(program, source=path.name)


def supported_ops() -> list[str]:
    """Every MIL op type the executor can run (``const`` included), sorted."""
    return sorted(set(kernels()) | _BUILTIN_OPS)
