"""Divergence localization: the first layer where a TFLite artifact departs from its Keras reference.

The artifact runs with every intermediate tensor preserved; each Keras layer output is mapped to the TFLite
tensor that computes it: by name first (TFLite keeps the Keras name scopes, ``model_1/conv1_1/Relu;...``;
the last op carrying a layer's name wins, followed through unnamed same-shape ops such as a separate SOFTMAX
or a DEQUANTIZE), then by position and shape for what is left. Quantized intermediates are dequantized with
their own scale and zero point. Per mapped layer the error curve holds cosine similarity and SQNR (dB); the
first layer under the tolerance's cosine/SQNR limits is the suggested culprit, to keep in float through a
per-layer override of the preset.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeexport.catalog.model import Tolerance
from edgeexport.errors import UnsupportedError
from edgeexport.sources.base import LoadedModel
from edgeexport.verify.compare import artifact_feeds
from edgeexport.verify.inputs import load_npz, seeded_inputs
from edgeexport.verify.metrics import cosine_per_sample

DEFAULT_SAMPLES = 32
# Used when the tolerance sets no cosine limit: below this a layer output is clearly not the same signal.
FALLBACK_COSINE = 0.99


@dataclass(frozen=True)
class LayerError:
    """The artifact's error at one Keras layer output. ``matched_by`` is ``"name"`` or ``"position"``."""

    layer: str
    layer_type: str
    tensor: str
    matched_by: str
    shape: tuple[int, ...]
    cosine: float
    sqnr_db: float
    max_abs: float
    over: bool


@dataclass(frozen=True)
class Localization:
    """The per-layer error curve (Keras layer order), the first layer over tolerance, the layer where SQNR
    dropped most, and a suggested preset override. ``unmapped`` lists layers with no TFLite tensor."""

    layers: tuple[LayerError, ...]
    first_over: str | None
    largest_drop: str | None
    suggestion: str
    unmapped: tuple[str, ...]
    samples: int
    cosine_limit: float
    sqnr_limit: float | None

    def lines(self) -> list[str]:
        """A readable error curve and the verdict, one string per line."""
        out = [f"per-layer error ({self.samples} samples; limits cos >= {self.cosine_limit:g}"
               + (f", sqnr >= {self.sqnr_limit:g} dB" if self.sqnr_limit is not None else "") + "):"]
        for e in self.layers:
            sq = "inf" if math.isinf(e.sqnr_db) else f"{e.sqnr_db:6.1f}"
            flag = "  <-- first over tolerance" if e.layer == self.first_over else ("  over" if e.over else "")
            out.append(f"  {e.layer:<24} {e.layer_type:<24} cos {e.cosine:.5f}  sqnr {sq} dB{flag}")
        out.append(f"first layer over tolerance: {self.first_over or 'none'}"
                   + (f"; largest SQNR drop at {self.largest_drop}" if self.largest_drop else ""))
        if self.suggestion:
            out.append(f"suggestion: {self.suggestion}")
        return out

    def to_dict(self) -> dict[str, Any]:
        from edgeexport.report.model import plain

        data: dict[str, Any] = plain(self)
        for layer in data["layers"]:
            if layer["sqnr_db"] is None:
                layer["sqnr_db"] = "inf"
        return data


def _layer_names(segment: str) -> list[str]:
    """Path components of one TFLite tensor name, e.g. ``digits_cnn_1/conv1_1/Relu`` -> every part."""
    return [part for part in segment.split("/") if part]


def _mentions(tensor_name: str, layer: str) -> bool:
    pattern = re.compile(re.escape(layer) + r"(_\d+)?")
    return any(pattern.fullmatch(part) for seg in tensor_name.split(";") for part in _layer_names(seg))


def _keras_probe(model: LoadedModel) -> tuple[Any, list[tuple[str, str, tuple[int, ...]]]]:
    keras_model = getattr(model, "model", None)
    if keras_model is None or not hasattr(keras_model, "layers"):
        raise UnsupportedError(f"layer localization needs a Keras reference model, not {model.source.format}")
    import keras

    layers, outputs = [], []
    for layer in keras_model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        try:
            output = layer.output
        except (AttributeError, ValueError):  # shared layers have several outputs: no single tensor to compare
            continue
        if isinstance(output, list | tuple):
            continue
        layers.append((layer.name, type(layer).__name__, tuple(int(d) for d in output.shape[1:] if d is not None)))
        outputs.append(output)
    if not outputs:
        raise UnsupportedError("the reference model has no layer outputs to compare")
    return keras.Model(keras_model.inputs, outputs), layers


def _map_layers(
    layers: list[tuple[str, str, tuple[int, ...]]], ops: list[dict[str, Any]], tensors: dict[int, dict[str, Any]]
) -> dict[str, tuple[int, str]]:
    """Keras layer name -> (TFLite tensor index, how it was matched)."""
    produced = [int(op["outputs"][0]) for op in ops if len(op["outputs"]) == 1]
    consumers: dict[int, list[int]] = {}
    for op in ops:
        for idx in op["inputs"]:
            consumers.setdefault(int(idx), []).append(int(op["outputs"][0]) if len(op["outputs"]) == 1 else -1)
    names = [name for name, _, _ in layers]

    def trailing(idx: int) -> tuple[int, ...]:
        return tuple(int(d) for d in tensors[idx]["shape"][1:])

    def unnamed(idx: int) -> bool:
        return not any(_mentions(tensors[idx]["name"], n) for n in names)

    mapping: dict[str, tuple[int, str]] = {}
    claimed: set[int] = set()
    for name, _, shape in layers:
        candidates = [idx for idx in produced if _mentions(tensors[idx]["name"], name)]
        if not candidates:
            continue
        chosen = candidates[-1]
        # A separate activation or dequantize op after the layer's last named op still belongs to the layer.
        while True:
            nxt = [c for c in consumers.get(chosen, []) if c >= 0 and unnamed(c) and trailing(c) == trailing(chosen)]
            if len(nxt) != 1:
                break
            chosen = nxt[0]
        if trailing(chosen) == shape:
            mapping[name] = (chosen, "name")
            claimed.add(chosen)
    order = {idx: pos for pos, idx in enumerate(produced)}
    last = -1
    for name, _, shape in layers:
        if name in mapping:
            last = order.get(mapping[name][0], last)
            continue
        for idx in produced[last + 1 :]:
            if idx not in claimed and unnamed(idx) and trailing(idx) == shape:
                mapping[name] = (idx, "position")
                claimed.add(idx)
                last = order[idx]
                break
    return mapping


def _dequantized(detail: dict[str, Any], value: np.ndarray) -> np.ndarray:
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.dtype(detail["dtype"]).kind in "iu" and scale:
        return (value.astype(np.float32) - np.float32(zero)) * np.float32(scale)
    return value.astype(np.float32)


def _reduced_precision(details: Any) -> bool:
    """Whether the artifact stores anything below float32 (int8/int16 tensors or float16 weights)."""
    return any(np.dtype(d["dtype"]) in (np.int8, np.uint8, np.int16, np.float16) for d in details)


class _Stats:
    """Running per-layer error over samples: the same figures as the metrics of all samples at once."""

    def __init__(self) -> None:
        self.cosines = 0.0
        self.count = 0
        self.signal = 0.0
        self.noise = 0.0
        self.max_abs = 0.0
        self.shape: tuple[int, ...] = ()

    def add(self, reference: np.ndarray, actual: np.ndarray) -> None:
        """Fold in one batch (samples first) of reference and artifact values."""
        ref, out = reference.astype(np.float64), actual.astype(np.float64)
        self.cosines += float(np.sum(cosine_per_sample(ref, out)))
        self.count += len(ref)
        self.signal += float(np.sum(ref**2))
        self.noise += float(np.sum((ref - out) ** 2))
        self.max_abs = max(self.max_abs, float(np.max(np.abs(ref - out))) if ref.size else 0.0)
        self.shape = tuple(reference.shape[1:])

    def cosine(self) -> float:
        return self.cosines / self.count if self.count else 1.0

    def sqnr_db(self) -> float:
        """As ``metrics.sqnr_db`` over all samples: inf when identical, -inf for a zero signal."""
        if self.noise == 0.0:
            return math.inf
        if self.signal == 0.0:
            return -math.inf
        return 10.0 * math.log10(self.signal / self.noise)


def localize_tflite(
    artifact: Path,
    model: LoadedModel,
    *,
    data: Path | None = None,
    tolerance: Tolerance | None = None,
    samples: int = DEFAULT_SAMPLES,
    preset: str | None = None,
) -> Localization:
    """Compare every Keras layer output of ``model`` with the matching tensor of the ``.tflite`` at
    ``artifact`` on ``samples`` inputs (the ``test`` split of ``data``, else seeded random inputs).

    Raises UnsupportedError (exit 4) when the reference is not a Keras model or no layer could be mapped.
    """
    from edgeexport.runtimes.tflite import TfliteRunner
    from edgeexport.verify.stage import preset_from_name

    tolerance = tolerance or Tolerance()
    specs = model.summary.inputs
    dataset = load_npz(data, specs, split="test", what="verification data").head(samples) if data else seeded_inputs(specs, samples)
    probe, layers = _keras_probe(model)
    input_names = [spec.name for spec in specs]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LiteRT warns that preserving all tensors is for debugging: it is
        runner = TfliteRunner(artifact, preserve_all_tensors=True)
    ops = runner.ops_details()
    tensors = {int(d["index"]): d for d in runner.tensor_details()}
    mapping = _map_layers(layers, ops, tensors)
    if not mapping:
        raise UnsupportedError(f"no layer of the reference could be matched to a tensor of {artifact.name}")
    feeds, _ = artifact_feeds(dataset.arrays, runner.inputs)
    # One sample at a time, keeping running sums: every layer's output for every sample at once grew to tens of
    # GB on ResNet152V2 at 299x299 (issue 17); now the peak is one sample's activations, on each side.
    stats: dict[str, _Stats] = {name: _Stats() for name in mapping}
    for i in range(dataset.count):
        expected = probe([dataset.arrays[name][i : i + 1] for name in input_names], training=False)
        expected = expected if isinstance(expected, list | tuple) else [expected]
        runner.run({k: v[i : i + 1] for k, v in feeds.items()})
        for (name, _, _), reference in zip(layers, expected):
            if name in mapping:
                ref = np.asarray(reference)
                idx = mapping[name][0]
                stats[name].add(ref, _dequantized(tensors[idx], runner.tensor(idx)).reshape(ref.shape))
        del expected

    cos_limit = tolerance.cosine_min if tolerance.cosine_min is not None else FALLBACK_COSINE
    sqnr_limit = tolerance.sqnr_db_min
    curve: list[LayerError] = []
    for name, kind, _ in layers:
        if name not in mapping:
            continue
        idx, how = mapping[name]
        layer = stats[name]
        cos, sq = layer.cosine(), layer.sqnr_db()
        over = cos < cos_limit or (sqnr_limit is not None and sq < sqnr_limit)
        curve.append(LayerError(name, kind, str(tensors[idx]["name"])[:120], how, layer.shape, cos, sq,
                                layer.max_abs, over))
    first = next((e.layer for e in curve if e.over), None)
    drop, largest = 0.0, None
    for before, e in zip(curve, curve[1:]):
        # A finite cap keeps an exact (inf dB) layer from making every later finite value look like a drop.
        step = min(before.sqnr_db, 120.0) - min(e.sqnr_db, 120.0)
        if step > drop:
            drop, largest = step, e.layer
    suggestion = ""
    if first is not None and _reduced_precision(tensors.values()):
        name = preset or preset_from_name(artifact) or "NAME"
        suggestion = (f'keep "{first}" in float with a preset override: [[presets.{name}.overrides]] '
                      f'name = "{first}" keep = "fp32"')
    elif first is not None:
        suggestion = (f'the float artifact already differs at "{first}": not a precision loss, but a conversion '
                      "problem or an artifact converted from another model")
    unmapped = tuple(n for n, _, _ in layers if n not in mapping)
    return Localization(tuple(curve), first, largest, suggestion, unmapped, dataset.count, cos_limit, sqnr_limit)
