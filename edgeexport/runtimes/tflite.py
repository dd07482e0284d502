"""LiteRT runner: one ``.tflite`` artifact, real-valued feeds in, real-valued outputs out.

The interpreter (``ai_edge_litert.interpreter``) is imported only when a runner is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import ConversionError, DataError, ModelFormatError
from edgeexport.quiet import captured_output
from edgeexport.runs import join_runs, run_count, split_runs
from edgeexport.runtimes.base import BaseRunner
from edgeexport.runtimes.names import Engine
from edgeexport.types import QuantParams, TensorSpec

_QUANTIZED = ("int8", "uint8", "int16")


def _spec(detail: Mapping[str, Any], name: str) -> TensorSpec:
    dtype = np.dtype(detail["dtype"]).name
    signature = detail.get("shape_signature")
    dims = signature if signature is not None and len(signature) else detail["shape"]
    shape = tuple(None if int(d) < 0 else int(d) for d in dims)
    quant = None
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype in _QUANTIZED and scale:
        quant = QuantParams(float(scale), int(zero))
    layout = "NHWC" if len(shape) == 4 else ("NWC" if len(shape) == 3 else None)
    return TensorSpec(name=name, shape=shape, dtype=dtype, layout=layout, quantization=quant)


class TfliteRunner(BaseRunner):
    """Run a ``.tflite`` with the LiteRT interpreter.

    ``threads``: interpreter threads (default: LiteRT's default). ``preserve_all_tensors`` keeps intermediate
    tensors readable for localisation (slower; disables buffer reuse). Inputs and outputs are named by their
    signature-def names when the model has one signature, else by tensor names; feeds may use either.
    ``run`` takes N samples for a batch-1 artifact and loops (``loops_batch``). Raises ModelFormatError for a
    corrupt file and ConversionError when it cannot allocate.
    """

    loops_batch = True

    def __init__(self, path_or_bytes: Path | bytes, *, threads: int | None = None,
                 preserve_all_tensors: bool = False) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if isinstance(path_or_bytes, bytes):
            content = path_or_bytes
            where = "in-memory model"
        else:
            where = str(path_or_bytes)
            try:
                content = Path(path_or_bytes).read_bytes()
            except OSError as err:
                raise ModelFormatError(f"cannot read {where}: {err.strerror or err}") from err
        if len(content) < 8 or content[4:8] != b"TFL3":
            raise ModelFormatError(f"{where} is not a LiteRT model (no TFL3 identifier; corrupt or truncated?)")
        # LiteRT announces its XNNPACK delegate and reports load errors on stderr from C++; our message says it.
        try:
            with captured_output(replay=False):
                self._interp = Interpreter(model_content=content, num_threads=threads,
                                           experimental_preserve_all_tensors=preserve_all_tensors)
        except (ValueError, RuntimeError) as err:
            raise ModelFormatError(f"{where} cannot be loaded by LiteRT: {' '.join(str(err).split())[:300]}") from err
        try:
            with captured_output(replay=False):
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise ConversionError(f"{where} fails to allocate in LiteRT: {' '.join(str(err).split())[:300]}") from err
        self.path = None if isinstance(path_or_bytes, bytes) else Path(path_or_bytes)
        self.threads = threads
        in_details = self._interp.get_input_details()
        out_details = self._interp.get_output_details()
        in_names, out_names = self._signature_names(in_details, out_details)
        self._in = list(zip(in_names, in_details, strict=True))
        self._out = list(zip(out_names, out_details, strict=True))
        self.inputs: tuple[TensorSpec, ...] = tuple(_spec(d, n) for n, d in self._in)
        self.outputs: tuple[TensorSpec, ...] = tuple(_spec(d, n) for n, d in self._out)
        self._aliases = {d["name"]: n for n, d in self._in}

    def _signature_names(self, ins: list[dict[str, Any]], outs: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """Signature-def names in the order of the interpreter's inputs/outputs (tensor names otherwise)."""
        in_names = [d["name"] for d in ins]
        out_names = [d["name"] for d in outs]
        signatures = self._interp._get_full_signature_list() if hasattr(self._interp, "_get_full_signature_list") else {}
        if len(signatures) == 1:
            sig = next(iter(signatures.values()))
            by_index_in = {idx: name for name, idx in sig.get("inputs", {}).items()}
            by_index_out = {idx: name for name, idx in sig.get("outputs", {}).items()}
            in_names = [by_index_in.get(d["index"], d["name"]) for d in ins]
            out_names = [by_index_out.get(d["index"], d["name"]) for d in outs]
        return in_names, out_names

    @property
    def runtime_name(self) -> str:
        return Engine.LITERT

    def aliases(self) -> Mapping[str, str]:
        return self._aliases

    def _run(self, feeds: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """Real-valued feeds in (quantized here for integer inputs), float32 outputs out (dequantized).

        When the artifact has batch 1 and the feeds have N > 1 rows, runs N times and stacks the results."""
        arrays = [feeds[name] for name, _ in self._in]
        quantized = []
        for (_name, detail), array in zip(self._in, arrays, strict=True):
            quantized.append(self._quantize(detail, array))
        raw = self._run_batched(quantized)
        result: dict[str, NDArray[Any]] = {}
        for name, detail in self._out:
            value = raw[name]
            scale, zero = detail.get("quantization", (0.0, 0))
            if np.dtype(detail["dtype"]).name in _QUANTIZED and scale:
                value = (value.astype(np.float32) - np.float32(zero)) * np.float32(scale)
            result[name] = value
        return result

    def run_raw(self, feeds: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """Feeds in the model's own dtypes (no quantization); outputs as stored."""
        checked = self.checked_feeds(feeds)
        arrays = [checked[name].astype(np.dtype(d["dtype"]), copy=False) for name, d in self._in]
        return self._run_batched(arrays)

    @staticmethod
    def _quantize(detail: Mapping[str, Any], array: NDArray[Any]) -> NDArray[Any]:
        dtype = np.dtype(detail["dtype"])
        scale, zero = detail.get("quantization", (0.0, 0))
        if dtype.name in _QUANTIZED and scale and np.issubdtype(array.dtype, np.floating):
            info = np.iinfo(dtype)
            q = np.round(array.astype(np.float64) / scale + zero)
            clipped: NDArray[Any] = np.clip(q, info.min, info.max).astype(dtype)
            return clipped
        same: NDArray[Any] = array.astype(dtype, copy=False)
        return same

    def _run_batched(self, arrays: list[NDArray[Any]]) -> dict[str, NDArray[Any]]:
        # the interpreter's shapes are all fixed: feeds holding several runs of them are split (edgeexport.runs)
        shapes: list[tuple[int | None, ...]] = [tuple(int(x) for x in d["shape"]) for _, d in self._in]
        fits = all(a.shape == s for a, s in zip(arrays, shapes, strict=True))
        rows = [len(a) if a.ndim else 1 for a in arrays]
        if fits or not arrays or (run_count(shapes, rows) in (None, 1) and not any(not s for s in shapes)):
            return self._invoke(arrays)
        return join_runs([self._invoke(run) for run in split_runs(shapes, arrays)])

    def _invoke(self, arrays: list[NDArray[Any]]) -> dict[str, NDArray[Any]]:
        for (name, detail), array in zip(self._in, arrays, strict=True):
            if tuple(array.shape) != tuple(int(x) for x in detail["shape"]):
                try:
                    self._interp.resize_tensor_input(detail["index"], list(array.shape))
                    self._interp.allocate_tensors()
                except (ValueError, RuntimeError) as err:
                    raise DataError(f"input {name!r} has shape {tuple(array.shape)}; the model takes "
                                    f"{tuple(int(x) for x in detail['shape'])}") from err
                detail["shape"] = np.asarray(array.shape)
            self._interp.set_tensor(detail["index"], array)
        self.invoke()
        return {name: np.array(self._interp.get_tensor(d["index"])) for name, d in self._out}

    def invoke(self) -> None:
        """Run once on whatever is in the input tensors (used by ``bench`` to time the interpreter alone)."""
        try:
            self._interp.invoke()
        except (ValueError, RuntimeError) as err:
            raise ConversionError(f"LiteRT failed to run the model: {' '.join(str(err).split())[:300]}") from err

    def set_inputs(self, arrays: list[NDArray[Any]]) -> None:
        """Copy already-typed arrays into the input tensors (for timing loops)."""
        for (_, detail), array in zip(self._in, arrays, strict=True):
            self._interp.set_tensor(detail["index"], array)

    def ops_details(self) -> list[dict[str, Any]]:
        """Every op of the graph in execution order: ``op_name`` (the builtin, e.g. ``CONV_2D``), ``index``, and
        the tensor indices of its ``inputs`` and ``outputs``."""
        return list(self._interp._get_ops_details())

    def tensor(self, index: int) -> NDArray[Any]:
        """A copy of tensor ``index`` after the last run (intermediates need ``preserve_all_tensors=True``)."""
        return np.array(self._interp.get_tensor(index))

    def tensor_details(self) -> list[dict[str, Any]]:
        """The interpreter's tensor details; with ``preserve_all_tensors`` each entry also has its ``value``
        after a run (None when the tensor cannot be read)."""
        details = self._interp.get_tensor_details()
        for detail in details:
            try:
                detail["value"] = np.array(self._interp.get_tensor(detail["index"]))
            except ValueError:
                detail["value"] = None
        return list(details)
