"""Divergence localization: where an artifact departs from its reference, layer by layer.

``edgeexport.verify.layers.compare_layers`` (``per_layer_errors`` for callers such as a precision search) gives
the error at every reference layer the artifact computes (TFLite or Core ML artifacts; Keras, ONNX or SavedModel
references; fused groups compared at their last layer). This module
judges the curve against a tolerance, ranks the layers by error and words the verdict: the first layer over
tolerance in reference order is the suggested culprit, to keep in float through a per-layer preset override.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from edgeexport.catalog.model import Tolerance
from edgeexport.sources.base import LoadedModel
from edgeexport.types import Permutation
from edgeexport.verify.inputs import load_npz, seeded_inputs
from edgeexport.verify.layers import LayerError, compare_layers, judge_layers

__all__ = ["CHEAP_MAC_SAMPLES", "DEFAULT_SAMPLES", "LayerError", "Localization", "cheap", "localize", "localize_tflite"]

DEFAULT_SAMPLES = 32
# Every layer's output is kept for every sample (reference and artifact side), so the sample count is cut to what
# fits this many bytes of reference layer outputs, measured on one sample first (at least one sample). Seen
# (issue 17): MobileNetV2 224 int8 at 32 samples took the parent to 5.6 GiB while localizing; ResNet152V2 at
# 299x299 holds 530 MiB of layer outputs per sample on each side, so a floor of 2 samples cost it 2 GiB.
LAYER_OUTPUT_BYTES = 512 * 2**20
MIN_SAMPLES = 1
# Used when the tolerance sets no cosine / SQNR limit: below these a layer output is clearly not the same signal.
FALLBACK_COSINE = 0.99
FALLBACK_SQNR_DB = 20.0
# How many layers the terminal lists, worst first (report.json and report.html have all of them).
TOP_LAYERS = 5
# A passing artifact gets its per-layer error without being asked when the reference's multiply-accumulates over
# the compared samples stay under this (the digits CNN: 7e6; MobileNetV2 0.35 at 64x64: 3e8; at 224x224: 2e9).
CHEAP_MAC_SAMPLES = 1_000_000_000


def cheap(macs: int, samples: int) -> bool:
    """Whether comparing every layer of a reference with ``macs`` multiply-accumulates per sample on ``samples``
    samples is cheap enough to do for every verified artifact (``CHEAP_MAC_SAMPLES``); unknown MACs (0) are not."""
    return 0 < macs * samples <= CHEAP_MAC_SAMPLES


@dataclass(frozen=True)
class Localization:
    """The per-layer error curve (reference layer order), the first layer over tolerance, the layer where SQNR
    dropped most from the layer before it (``largest_drop``, by ``largest_drop_db`` dB: where the error is
    introduced, which need not be the layer with the lowest SQNR, where errors have accumulated), and a suggested
    preset override. ``unmapped`` lists layers with no artifact tensor."""

    layers: tuple[LayerError, ...]
    first_over: str | None
    largest_drop: str | None
    suggestion: str
    unmapped: tuple[str, ...]
    samples: int
    cosine_limit: float
    sqnr_limit: float
    data_origin: str = ""
    largest_drop_db: float = 0.0

    @property
    def worst(self) -> tuple[LayerError, ...]:
        """Layers ordered by error, worst first (lowest of SQNR and channel SQNR)."""
        return tuple(sorted(self.layers, key=lambda e: (e.score_db, e.cosine)))

    def lines(self, top: int = TOP_LAYERS) -> list[str]:
        """The ``top`` layers by error (lowest SQNR first) and the verdict, one string per line."""
        over = sum(e.over for e in self.layers)
        shown = self.worst[:top]
        out = [(f"per-layer error ({len(self.layers)} layers compared, {over} over tolerance; {self.samples} samples; "
                f"limits cos >= {self.cosine_limit:g}, sqnr and channel sqnr >= {self.sqnr_limit:g} dB); "
                f"top {len(shown)} by error (lowest SQNR first; all {len(self.layers)} in report.json):")]
        for e in shown:
            flags = [f for f, on in (("<-- first over tolerance", e.layer == self.first_over),
                                     ("over", e.over and e.layer != self.first_over),
                                     ("<-- largest drop", e.layer == self.largest_drop)) if on]
            fused = f" (+{', '.join(e.fused)})" if e.fused else ""
            out.append(f"  {e.layer + fused:<34} {e.layer_type:<20} cos {e.cosine:.5f}  sqnr {_db(e.sqnr_db)} dB  "
                       f"channel sqnr {_db(e.channel_sqnr_db)} dB" + "".join(f"  {f}" for f in flags))
        out.append(f"first layer over tolerance: {self.first_over or 'none'}" + self.drop_phrase(shown))
        if self.unmapped:
            out.append(f"not compared (no artifact tensor computes them): {len(self.unmapped)} layers")
        if self.suggestion:
            out.append(f"suggestion: {self.suggestion}")
        return out

    def drop_phrase(self, shown: tuple[LayerError, ...] | None = None) -> str:
        """``"; error grows most at X (-N dB from the layer before)"``, saying when X is not among ``shown`` (the
        listed layers rank by accumulated error, the drop by the error a layer adds); empty without a drop."""
        if not self.largest_drop:
            return ""
        listed = shown is None or any(e.layer == self.largest_drop for e in shown)
        return (f"; error grows most at {self.largest_drop} (SQNR -{self.largest_drop_db:.1f} dB from the layer "
                f"before it{'' if listed else '; not among the layers listed'})")

    def to_dict(self) -> dict[str, Any]:
        from edgeexport.serial import plain

        data: dict[str, Any] = plain(self)
        for layer, error in zip(data["layers"], self.layers, strict=True):
            layer["score_db"] = error.score_db
        data["worst"] = [e.layer for e in self.worst]
        return data


def _db(value: float) -> str:
    return f"{value:6.1f}" if math.isfinite(value) else ("   inf" if value > 0 else "  -inf")


def _reduced_precision(artifact: Path) -> bool:
    """Whether the artifact stores anything below float32 (int8/int16 tensors, fp16 weights or compute)."""
    if artifact.suffix.lower() == ".tflite":
        import numpy as np

        from edgeexport.runtimes.tflite import TfliteRunner

        details = TfliteRunner(artifact)._interp.get_tensor_details()
        return any(np.dtype(d["dtype"]) in (np.int8, np.uint8, np.int16, np.float16) for d in details)
    from edgeexport.runtimes.mil import load_program

    program = load_program(artifact)
    if any(op.startswith("constexpr_") or op in ("quantize", "dequantize") for op in program.op_histogram()):
        return True
    return any(str(dtype) in ("float16", "int8", "uint8") for dtype in program._var_dtypes.values())


def localize(
    artifact: Path,
    model: LoadedModel,
    *,
    data: Path | None = None,
    tolerance: Tolerance | None = None,
    samples: int = DEFAULT_SAMPLES,
    preset: str | None = None,
    permutations: tuple[Permutation, ...] = (),
    precision: str = "auto",
) -> Localization:
    """Compare every reference layer output of ``model`` with the artifact tensor that computes it, on ``samples``
    inputs (the ``test`` split of ``data``, else seeded random inputs; fewer, at least ``MIN_SAMPLES``, when
    their layer outputs would pass ``LAYER_OUTPUT_BYTES``; the result records the count used), and judge them
    against ``tolerance``.

    Raises UnsupportedError (exit 4) for references without layers (SavedModel) or when nothing could be matched.
    """
    from edgeexport.verify.stage import preset_from_name

    tolerance = tolerance or Tolerance()
    specs = model.summary.inputs
    dataset = (load_npz(data, specs, split="test", what="verification data").head(samples) if data
               else seeded_inputs(specs, samples))
    if dataset.count > MIN_SAMPLES:
        dataset = dataset.head(_samples_that_fit(model, dataset.head(1).arrays, dataset.count))
    errors, unmapped = compare_layers(artifact, model, dataset.arrays, permutations=permutations,
                                        precision=precision)
    cos_limit = tolerance.cosine_min if tolerance.cosine_min is not None else FALLBACK_COSINE
    sqnr_limit = tolerance.sqnr_db_min if tolerance.sqnr_db_min is not None else FALLBACK_SQNR_DB
    curve = judge_layers(errors, cos_limit, sqnr_limit)
    first = next((e.layer for e in curve if e.over), None)
    drop, largest = 0.0, None
    for before, e in itertools.pairwise(curve):
        step = before.score_db - e.score_db
        if step > drop:
            drop, largest = step, e.layer
    suggestion = ""
    if first is not None and _reduced_precision(Path(artifact)):
        name = preset or preset_from_name(Path(artifact)) or "NAME"
        suggestion = (f'keep "{first}" in float with a preset override: [[presets.{name}.overrides]] '
                      f'name = "{first}" keep = "fp32"')
    elif first is not None:
        suggestion = (f'the float artifact already differs at "{first}": not a precision loss, but a conversion '
                      "problem or an artifact converted from another model")
    return Localization(tuple(curve), first, largest, suggestion, tuple(unmapped), dataset.count, cos_limit,
                        sqnr_limit, dataset.origin, drop)


def _samples_that_fit(model: LoadedModel, one: Mapping[str, NDArray[Any]], wanted: int) -> int:
    """How many samples keep the reference's layer outputs within ``LAYER_OUTPUT_BYTES`` (one sample measured)."""
    from edgeexport.release import release_memory
    from edgeexport.verify.layers import reference_layers

    per_sample = sum(value.nbytes for value in reference_layers(model, one).values.values())
    release_memory()
    return max(MIN_SAMPLES, min(wanted, LAYER_OUTPUT_BYTES // max(per_sample, 1)))


# The name this function had when only TFLite artifacts were supported.
localize_tflite = localize
