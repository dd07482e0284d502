"""The artifact side of per-layer errors: every dynamic tensor of a TFLite or Core ML artifact, and their values.

TFLite runs in LiteRT with all tensors preserved (quantized tensors dequantized with their own scale and zero
point); Core ML runs in the MIL executor with its intermediate values kept, in the program's fp16/fp32 types.
Only tensors that depend on the input are listed: weights dequantized once are not activations.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import UnsupportedError
from edgeexport.verify.layer_match import ArtifactTensor


class ArtifactProbe:
    """The artifact's dynamic tensors (``tensors``) and a way to collect chosen ones over all samples."""

    tensors: list[ArtifactTensor]
    input_specs: Any

    def collect(self, feeds: Mapping[str, NDArray[Any]], keys: Sequence[str]) -> dict[str, NDArray[Any]]:
        raise NotImplementedError


class _TfliteProbe(ArtifactProbe):
    def __init__(self, path: Path) -> None:
        from edgeexport.runtimes.tflite import TfliteRunner

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LiteRT warns that preserving all tensors is for debugging: it is
            self.runner = TfliteRunner(path, preserve_all_tensors=True)
        self.input_specs = self.runner.inputs
        details = {int(d["index"]): d for d in self.runner._interp.get_tensor_details()}
        self.details = details
        dynamic = {int(d["index"]) for d in self.runner._interp.get_input_details()}
        self.tensors = []
        for op in self.runner.ops_details():
            reads = [int(i) for i in op["inputs"] if int(i) in dynamic]
            if not reads or op["op_name"] == "DELEGATE":
                continue  # weights dequantized once are not activations; a delegate node repeats its ops' outputs
            for out in op["outputs"]:
                if int(out) in dynamic:
                    continue
                dynamic.add(int(out))
                d = details[int(out)]
                self.tensors.append(ArtifactTensor(str(out), str(d["name"]), str(op["op_name"]),
                                                   tuple(str(i) for i in reads), tuple(int(x) for x in d["shape"])))

    def collect(self, feeds: Mapping[str, NDArray[Any]], keys: Sequence[str]) -> dict[str, NDArray[Any]]:
        count = len(next(iter(feeds.values())))
        keys = list(dict.fromkeys(keys))
        parts: dict[str, list[NDArray[Any]]] = {k: [] for k in keys}
        for i in range(count):
            self.runner.run({k: v[i : i + 1] for k, v in feeds.items()})
            for key in keys:
                detail = self.details[int(key)]
                value = self.runner.tensor(int(key))
                scale, zero = detail.get("quantization", (0.0, 0))
                if np.dtype(detail["dtype"]).kind in "iu" and scale:
                    value = (value.astype(np.float32) - np.float32(zero)) * np.float32(scale)
                parts[key].append(value.astype(np.float32))
        return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


class _MilProbe(ArtifactProbe):
    def __init__(self, path: Path, precision: str) -> None:
        from edgeexport.runtimes.mil import load_program

        self.program = load_program(path)
        self.precision = precision
        self.input_specs = self.program.inputs
        dynamic = {spec.name for spec in self.program.inputs}
        self.tensors = []
        for step in self.program._steps:
            refs = [r for _, ref in step.inputs for r in ((ref,) if isinstance(ref, str) else ref)]
            reads = [r for r in refs if r in dynamic]
            if step.constexpr or not reads:
                continue
            for name, dtype, shape in step.outputs:
                dynamic.add(name)
                if dtype is None or shape is None or any(d is None for d in shape):
                    continue
                self.tensors.append(ArtifactTensor(name, name, step.op_type, tuple(reads),
                                                   tuple(int(d) for d in shape if d is not None)))

    def collect(self, feeds: Mapping[str, NDArray[Any]], keys: Sequence[str]) -> dict[str, NDArray[Any]]:
        count = len(next(iter(feeds.values())))
        parts: dict[str, list[NDArray[Any]]] = {k: [] for k in keys}
        for i in range(count):
            self.program.run({k: v[i : i + 1] for k, v in feeds.items()}, precision=self.precision,
                             keep_intermediates=True)
            for key in keys:
                parts[key].append(np.asarray(self.program.intermediates[key], dtype=np.float32))
        return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


def open_probe(artifact: Path, precision: str) -> ArtifactProbe:
    if artifact.suffix.lower() == ".tflite":
        return _TfliteProbe(artifact)
    if artifact.suffix.lower() in (".mlpackage", ".mlmodel"):
        return _MilProbe(artifact, precision)
    raise UnsupportedError(f"per-layer errors cannot read {artifact.name}", hint="expected .tflite or .mlpackage")
