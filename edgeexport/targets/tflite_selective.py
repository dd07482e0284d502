"""TFLite selective quantization from one calibration: layers kept in float without recalibrating each time.

TFLite's quantizer works in two passes: calibration (run the representative data through the float model and record
every tensor's range; ``_experimental_calibrate_only``) and quantization of the calibrated model (``mlir_quantize``,
with a deny-list of nodes left in float). The precision search (issue 13) converts dozens of candidates that differ
only in the deny-list, so ``QuickBuilder`` calibrates once per activation type and re-runs only the quantization
pass per candidate: on MobileNetV2 that is a second instead of a full conversion. ``tflite.convert`` goes through
the same ``quantize`` for presets with overrides, so a candidate built here has the bytes the normal conversion of
the same preset writes (the search checks that for the recipe it keeps).

Not ``int16x8``: TFLite converts 16-bit activations with its older quantizer, which has no deny-list and one
activation type per model (the MLIR quantizer asked for int16 writes convolutions LiteRT refuses to prepare), so an
int16x8 model is int16x8 throughout and a layer can neither stay in float nor be int16 inside an int8 model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from edgeexport.catalog.model import Preset
from edgeexport.files import gzip_size, sha256_of, size_of
from edgeexport.targets.overrides import matching_names, tflite_op_types
from edgeexport.types import Artifact, ExportedGraph

TARGET = "tflite"
# Modes whose float layers the quantization pass can leave out (int8-io rewrites the interface afterwards).
QUICK_MODES = ("int8",)


def quantize(tf: Any, calibrated: bytes, mode: str, nodes: Sequence[str], op_types: Sequence[str],
             disable_per_channel: bool = False) -> bytes:
    """The quantization pass over a calibrated model: ``nodes`` (tensor names) and ``op_types`` (TFLite builtins)
    stay in float, activations int8 (``mode`` is ``int8`` or ``int8-io``, whose interface is rewritten afterwards).
    ``tf`` is the imported TensorFlow module (quietly, by the caller); the quantizer lives in its lite modules."""
    from tensorflow.lite.python import convert as lite_convert

    del tf, mode
    result: bytes = lite_convert.mlir_quantize(calibrated, disable_per_channel=disable_per_channel,
                                               fully_quantize=False,
                                               denylisted_ops=list(op_types), denylisted_nodes=list(nodes))
    return result


def calibrate(converter: Any) -> bytes:
    """Run a configured converter's calibration pass only (the float model with every tensor's recorded range)."""
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True
    calibrated: bytes = converter.convert()
    converter._experimental_calibrate_only = False
    return calibrated


def node_names(flatbuffer: bytes) -> list[str]:
    """Names of every op output tensor of a TFLite model (what override globs are matched against)."""
    from edgeexport.runtimes.tflite import TfliteRunner

    runner = TfliteRunner(flatbuffer)
    names = {int(d["index"]): str(d["name"]) for d in runner.tensor_details()}
    return [names[index] for op in runner.ops_details() for index in op["outputs"]]


def calibrated_model(exported: ExportedGraph, preset: Preset, calibration: Mapping[str, NDArray[Any]],
                     out_path: Path) -> None:
    """Write ``preset``'s calibrated model to ``out_path`` and the fully quantized one to ``out_path.full``
    (its tensor names are what overrides match). A module-level function, so a child process can run it."""
    from edgeexport.quiet import captured_output
    from edgeexport.sources.tfgraph import quiet_tensorflow
    from edgeexport.targets.tflite import configured_converter

    tf = quiet_tensorflow()
    converter = configured_converter(tf, exported, dataclasses.replace(preset, overrides=()), calibration)
    with captured_output():
        full: bytes = converter.convert()
        calibrated = calibrate(converter)
    out_path.write_bytes(calibrated)
    out_path.with_suffix(".full").write_bytes(full)


def quantize_to(calibrated_path: Path, mode: str, nodes: Sequence[str], op_types: Sequence[str],
                out_path: Path) -> None:
    """``quantize`` of the calibrated model at ``calibrated_path`` into ``out_path`` (for a child process)."""
    from edgeexport.quiet import captured_output
    from edgeexport.sources.tfgraph import quiet_tensorflow

    tf = quiet_tensorflow()
    with captured_output():  # the quantizer prints its options from C++
        out_path.write_bytes(quantize(tf, calibrated_path.read_bytes(), mode, nodes, op_types))


class QuickBuilder:
    """Candidates of one exported model that differ only in which layers stay in float, from one calibration per
    activation type. ``build`` returns None for presets it cannot build this way (the caller converts normally)."""

    def __init__(self, exported: ExportedGraph, calibration: Mapping[str, NDArray[Any]], workdir: Path) -> None:
        self.exported = exported
        self.calibration = calibration
        self.workdir = workdir
        self._calibrated: dict[str, tuple[Path, list[str]]] = {}
        self.calibrations = 0

    def applies(self, preset: Preset) -> bool:
        """Whether ``preset`` is a calibrated int8 preset (float I/O) without pruning whose overrides name layers."""
        mode = preset.quantization.tflite_mode or ""
        return (mode in QUICK_MODES and preset.pruning is None and bool(preset.overrides)
                and all(o.name and not o.op_type for o in preset.overrides))

    def build(self, preset: Preset, out_path: Path, like: Artifact) -> Artifact | None:
        """Quantize ``preset`` into ``out_path``; the Artifact copies ``like`` (the same model's planned artifact:
        inputs, outputs, source) with this file's path, hashes and sizes. None when ``applies`` is false."""
        from edgeexport import isolate

        if not self.applies(preset):
            return None
        mode = preset.quantization.tflite_mode or ""
        if mode not in self._calibrated:
            path = self.workdir / f"calibrated-{id(self)}-{mode}.tflite"
            isolate.call(f"calibrate {TARGET} ({mode})", "edgeexport.targets.tflite_selective:calibrated_model",
                         self.exported, preset, self.calibration, path)
            self.calibrations += 1
            self._calibrated[mode] = (path, node_names(path.with_suffix(".full").read_bytes()))
        calibrated, names = self._calibrated[mode]
        nodes = matching_names(preset.overrides, names)
        if not nodes:
            return None  # no tensor carries these names: the normal conversion reports it as bad input
        _, seconds = isolate.call_timed(f"quantize {TARGET} ({preset.name})",
                                        "edgeexport.targets.tflite_selective:quantize_to", calibrated, mode, nodes,
                                        tflite_op_types(preset.overrides), out_path)
        return dataclasses.replace(like, path=out_path, preset=preset.name, sha256=sha256_of(out_path),
                                   size_bytes=size_of(out_path), gzip_bytes=gzip_size(out_path),
                                   conversion_seconds=round(seconds, 3),
                                   warnings=(f"kept {len(nodes)} tensor(s) in float (quantization pass only)",))


def quick_builder(target: str, exported: ExportedGraph, calibration: Mapping[str, NDArray[Any]] | None,
                  workdir: Path) -> QuickBuilder | None:
    """A ``QuickBuilder`` for TFLite artifacts with calibration data; None otherwise (other targets convert each
    candidate in full)."""
    if target != TARGET or calibration is None:
        return None
    return QuickBuilder(exported, calibration, workdir)
