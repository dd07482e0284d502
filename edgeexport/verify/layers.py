"""Per-layer error of an artifact against its reference model: every intermediate output compared.

Reference side: Keras (every layer's output through a probe model), ONNX (every node output, added as graph
outputs for onnxruntime) or SavedModel (every float op output of the frozen serving graph). Artifact side: TFLite (LiteRT with all tensors preserved; quantized tensors dequantized
with their own scale and zero point) or Core ML (the MIL executor's intermediate values, in the program's fp16/fp32
types). Tensors are matched by what they compute (``edgeexport.verify.layer_match``: names, fusion-aware), and
layouts by the channels-first/-last permutation that fits.

Metrics per layer: mean cosine similarity over samples, SQNR (dB) over all values, and the median over channels
of the per-channel SQNR (dB). The channel figure is what finds an outlier channel: when one channel of a tensor
has a hundred times the range of the others, a per-tensor int8 scale ruins every other channel while the tensor's
overall SQNR, dominated by the large channel, still looks good.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import UnsupportedError
from edgeexport.sources.base import LoadedModel
from edgeexport.types import Permutation
from edgeexport.verify.compare import artifact_feeds
from edgeexport.verify.layer_match import ArtifactTensor, Match, layout_axes, layout_candidates, match_layers
from edgeexport.verify.layer_probes import ArtifactProbe, open_probe
from edgeexport.verify.metrics import cosine_per_sample, sqnr_db

if TYPE_CHECKING:
    import onnx

# A finite stand-in for an exact (inf dB) SQNR when layers are ranked and plotted.
SQNR_CAP_DB = 150.0
# Matching by value: samples used, and the least cosine similarity that counts as "computes the same thing".
MATCH_SAMPLES = 4
MATCH_COSINE = 0.5


@dataclass(frozen=True)
class LayerError:
    """The artifact's error at one reference layer output.

    ``fused`` names reference layers folded into this tensor by the converter (a conv before its BatchNorm), which
    have no tensor of their own; ``channel_sqnr_db`` is the median per-channel SQNR (channels on the reference's
    channel axis: last for Keras, 1 for ONNX). SQNRs are in dB (``inf`` when exact); ``max_abs`` in the layer's
    units. ``over`` is set by ``judge_layers``; ``matched_by`` is ``"name"`` or ``"value"`` (see ``match_by_value``).
    """

    layer: str
    layer_type: str
    tensor: str
    fused: tuple[str, ...]
    shape: tuple[int, ...]
    cosine: float
    sqnr_db: float
    channel_sqnr_db: float
    max_abs: float
    over: bool = False
    matched_by: str = "name"

    @property
    def score_db(self) -> float:
        """The worse of the two SQNRs, capped: lower is worse (what layers are ranked by)."""
        return min(self.sqnr_db, self.channel_sqnr_db, SQNR_CAP_DB)


@dataclass(frozen=True)
class ReferenceLayers:
    """Reference intermediate outputs: (layer name, layer type, per-sample shape) in topological order, their
    values (samples first) and the channel axis of their layout (-1 channels-last, 1 channels-first)."""

    layers: tuple[tuple[str, str, tuple[int, ...]], ...]
    values: dict[str, NDArray[Any]]
    channel_axis: int
    folds: dict[str, str] = dataclasses.field(default_factory=dict)
    activated: frozenset[str] = frozenset()
    match_by: str = "name"


def reference_layers(model: LoadedModel, inputs: Mapping[str, NDArray[Any]]) -> ReferenceLayers:
    """Every intermediate output of ``model`` on ``inputs``; UnsupportedError (exit 4) for other formats."""
    if (keras_model := model.keras_model()) is not None:
        return _keras_layers(model, keras_model, inputs)
    if (onnx_model := model.onnx_model()) is not None:
        return _onnx_layers(onnx_model, inputs)
    if (function := model.serving_function()) is not None:
        return _savedmodel_layers(model, function, inputs)
    raise UnsupportedError(f"per-layer errors need a Keras, ONNX or SavedModel reference, not {model.source.format}")


def _keras_layers(model: LoadedModel, keras_model: Any, inputs: Mapping[str, NDArray[Any]]) -> ReferenceLayers:
    import keras

    layers, outputs = [], []
    for layer in keras_model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        try:
            output = layer.output
        except (AttributeError, ValueError):  # a shared layer has several outputs: no single tensor to compare
            continue
        if isinstance(output, list | tuple):
            continue
        layers.append((layer.name, type(layer).__name__, tuple(int(d) for d in output.shape[1:] if d is not None)))
        outputs.append(output)
    if not outputs:
        raise UnsupportedError("the reference model has no layer outputs to compare")
    probe = keras.Model(keras_model.inputs, outputs)
    names = [spec.name for spec in model.summary.inputs]
    ordered = [np.asarray(inputs[name]) for name in names]
    values = probe(ordered if len(ordered) > 1 else ordered[0], training=False)
    values = values if isinstance(values, list | tuple) else [values]
    activated = frozenset(layer.name for layer in keras_model.layers
                          if getattr(getattr(layer, "activation", None), "__name__", "linear") != "linear")
    return ReferenceLayers(tuple(layers), {n: np.asarray(v) for (n, _, _), v in zip(layers, values)}, -1,
                           _keras_folds(keras_model), activated)


def _keras_folds(keras_model: Any) -> dict[str, str]:
    """Layer -> the BatchNormalization layer that is its only consumer (what converters fold into conv weights)."""
    consumers: dict[str, list[str]] = {}
    for layer in keras_model.layers:
        for node in getattr(layer, "_inbound_nodes", []):
            for tensor in getattr(node, "input_tensors", []):
                history = getattr(tensor, "_keras_history", None)
                if history is not None:
                    consumers.setdefault(history.operation.name, []).append(layer.name)
    kinds = {layer.name: type(layer).__name__ for layer in keras_model.layers}
    return {name: users[0] for name, users in consumers.items()
            if len(users) == 1 and kinds.get(users[0]) == "BatchNormalization"}


def _onnx_layers(model: onnx.ModelProto, inputs: Mapping[str, NDArray[Any]]) -> ReferenceLayers:
    import onnx
    import onnxruntime as ort

    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.output)}
    present = {o.name for o in proto.graph.output}
    layers: list[tuple[str, str, str]] = []
    for index, node in enumerate(proto.graph.node):
        if not node.output or node.output[0] not in types or node.op_type in ("Constant", "Shape"):
            continue
        out = node.output[0]
        if out not in present:
            proto.graph.output.append(types[out])
            present.add(out)
        layers.append((node.name or f"{node.op_type}_{index}", node.op_type, out))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = [out for _, _, out in layers]
    count = len(next(iter(inputs.values())))
    parts = [session.run(wanted, {k: np.asarray(v[i : i + 1]) for k, v in inputs.items()}) for i in range(count)]
    values = {name: np.concatenate([np.asarray(p[j]) for p in parts], axis=0)
              for j, (name, _, _) in enumerate(layers)}
    float_layers = [(name, kind, tuple(values[name].shape[1:])) for name, kind, _ in layers
                    if values[name].dtype.kind == "f" and values[name].ndim >= 2]
    return ReferenceLayers(tuple(float_layers), {n: values[n] for n, _, _ in float_layers}, 1, match_by="value")


def _savedmodel_layers(model: LoadedModel, function: Any, inputs: Mapping[str, NDArray[Any]]) -> ReferenceLayers:
    """Every float op output of the SavedModel's frozen, inlined serving graph (run one sample at a time, the
    fixed batch-1 signature), named by op name without the call wrappers."""
    from edgeexport.sources.tfgraph import frozen_graph_def, quiet_tensorflow

    tf = quiet_tensorflow()
    graph_def = frozen_graph_def(function)

    def imported() -> None:
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(imported, [])
    ops = wrapped.graph.get_operations()
    placeholders = {op.name: op.outputs[0] for op in ops if op.type == "Placeholder"}
    names = [spec.name for spec in model.summary.inputs]
    feeds = [placeholders[n] for n in names] if all(n in placeholders for n in names) else list(placeholders.values())
    fetch = [op for op in ops if op.type not in ("Const", "Placeholder", "Identity", "NoOp") and op.outputs
             and op.outputs[0].dtype.is_floating and op.outputs[0].shape.rank and op.outputs[0].shape.rank >= 2]
    if not fetch:
        raise UnsupportedError("the SavedModel's graph has no intermediate float tensors to compare")
    pruned = wrapped.prune(feeds, [op.outputs[0] for op in fetch])
    count = len(next(iter(inputs.values())))
    parts = [pruned(*[tf.constant(np.asarray(inputs[n][i : i + 1])) for n in names]) for i in range(count)]
    layers, values = [], {}
    for j, op in enumerate(fetch):
        name = op.name
        while name.startswith(("StatefulPartitionedCall/", "PartitionedCall/")):
            name = name.split("/", 1)[1]
        values[name] = np.concatenate([np.asarray(p[j]) for p in parts], axis=0)
        layers.append((name, str(op.type), tuple(values[name].shape[1:])))
    return ReferenceLayers(tuple(layers), values, -1, match_by="value")


def channel_sqnr_db(reference: NDArray[Any], actual: NDArray[Any], axis: int) -> float:
    """Median over channels (``axis`` of batch-first arrays) of each channel's SQNR in dB; for 2-D outputs the
    feature axis is the channel. ``inf`` when exact."""
    ref = np.moveaxis(reference.astype(np.float64), axis if reference.ndim > 2 else -1, -1)
    out = np.moveaxis(actual.astype(np.float64), axis if actual.ndim > 2 else -1, -1)
    ref = ref.reshape(-1, ref.shape[-1])
    out = out.reshape(-1, out.shape[-1])
    signal = np.sum(ref**2, axis=0)
    noise = np.sum((ref - out) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(noise == 0, np.inf, np.where(signal == 0, -np.inf, 10 * np.log10(signal / noise)))
    return float(np.median(per))


def per_layer_errors(
    artifact: Path,
    reference: LoadedModel,
    inputs: Mapping[str, NDArray[Any]],
    *,
    permutations: Sequence[Permutation] = (),
    precision: str = "auto",
) -> list[LayerError]:
    """The error of ``artifact`` at every reference layer it computes, in reference layer order (``compare_layers``
    without the list of unmatched layers). ``over`` is not set: judge with ``judge_layers`` or rank by ``score_db``.
    """
    return compare_layers(artifact, reference, inputs, permutations=permutations, precision=precision)[0]


def compare_layers(
    artifact: Path,
    reference: LoadedModel,
    inputs: Mapping[str, NDArray[Any]],
    *,
    permutations: Sequence[Permutation] = (),
    precision: str = "auto",
) -> tuple[list[LayerError], list[str]]:
    """The error of ``artifact`` (.tflite or .mlpackage) at every reference layer it could be matched to, on
    ``inputs`` (reference input name -> array, samples first), in reference layer order; and the reference layers
    with no matching artifact tensor. ``precision`` goes to the MIL executor (``"auto"`` or ``"fp32"``).

    Keras layers are matched by name (``layer_match``). ONNX node names do not survive onnx2tf and SavedModel op
    names are not layers, so those are matched by value (``match_by_value``), which the result records in
    ``matched_by``. Raises UnsupportedError (exit 4) for other references or when no layer could be matched.
    """
    unsliced = [s.name for s in reference.summary.inputs if not s.shape or s.shape[0] not in (None, 1)]
    if unsliced:
        # Layers are compared one sample (row) at a time; a scalar or a fixed axis 0 of several rows is not a
        # sample axis (edgeexport.runs), so slicing it would feed the model shapes it does not take.
        raise UnsupportedError(f"per-layer comparison needs a sample axis; input(s) {', '.join(unsliced)} of "
                               "the reference are scalars or have a fixed first dimension")
    ref = reference_layers(reference, inputs)
    probe = open_probe(Path(artifact), precision)
    feeds, _ = artifact_feeds(inputs, probe.input_specs, permutations)
    how = ref.match_by
    if how == "name":
        matches, unmapped = match_layers([(name, shape) for name, _, shape in ref.layers], probe.tensors, ref.folds,
                                         ref.activated)
    else:
        matches, unmapped = match_by_value(ref, probe, feeds)
    if not matches:
        raise UnsupportedError(f"no layer of the reference could be matched to a tensor of {Path(artifact).name}")
    collected = probe.collect(feeds, [m.tensor.key for m in matches])
    kinds = {name: kind for name, kind, _ in ref.layers}
    # Where a shape fits several layouts (16x16x16), the artifact's layout is the one its unambiguous tensors use.
    votes: Counter[tuple[int, ...]] = Counter()
    for m in matches:
        found = layout_candidates(tuple(ref.values[m.layer].shape[1:]), m.tensor.shape[1:])
        if len(found) == 1 and len(found[0]) >= 3:
            votes[found[0]] += 1
    errors = []
    for m in matches:
        expected = ref.values[m.layer]
        usual = [axes for axes, _ in votes.most_common() if len(axes) == expected.ndim]
        if how == "value":
            axes = _best_axes(expected, collected[m.tensor.key], m.tensor.shape)
        else:
            axes = layout_axes(tuple(expected.shape[1:]), m.tensor.shape[1:], usual[0] if usual else None)
        actual = _aligned(collected[m.tensor.key], m.tensor.shape, expected.shape, axes)
        errors.append(LayerError(m.layer, kinds[m.layer], m.tensor.name[:160], m.fused, tuple(expected.shape[1:]),
                                 float(np.mean(cosine_per_sample(expected, actual))), sqnr_db(expected, actual),
                                 channel_sqnr_db(expected, actual, ref.channel_axis),
                                 float(np.max(np.abs(expected.astype(np.float64) - actual))) if expected.size else 0.0,
                                 matched_by=how))
    return errors, unmapped


def _aligned(value: NDArray[Any], tensor_shape: tuple[int, ...], reference_shape: tuple[int, ...],
             axes: tuple[int, ...] | None) -> NDArray[Any]:
    """Artifact values (samples stacked on axis 0) in the reference's layout and shape."""
    actual = value.reshape((reference_shape[0], *tensor_shape[1:]))
    if axes is not None and axes != tuple(range(len(reference_shape))):
        actual = np.transpose(actual, np.argsort(axes))
    return actual.reshape(reference_shape)


def _best_axes(expected: NDArray[Any], value: NDArray[Any], tensor_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Of the layouts that fit, the one under which the artifact tensor is most similar to the reference."""
    options = layout_candidates(tuple(expected.shape[1:]), tensor_shape[1:])
    if len(options) <= 1:
        return options[0] if options else None
    return max(options, key=lambda axes: float(np.mean(cosine_per_sample(
        expected, _aligned(value, tensor_shape, expected.shape, axes)))))


def match_by_value(ref: ReferenceLayers, probe: ArtifactProbe, feeds: Mapping[str, NDArray[Any]]
                   ) -> tuple[list[Match], list[str]]:
    """Match reference layers to artifact tensors by what they compute when names carry nothing (onnx2tf renames
    every op): each artifact tensor goes to the same-shaped reference layer it resembles most (cosine over the first
    ``MATCH_SAMPLES`` samples, at least ``MATCH_COSINE``), ties to the later layer (a fused Conv+Relu tensor is the
    Relu's output); each layer keeps the tensor most similar to it. This favours low errors, so a layer that went
    badly wrong may be left unmatched: the report says ``matched_by = "value"``."""
    head = {k: v[:MATCH_SAMPLES] for k, v in feeds.items()}
    shapes = [(i, name, shape) for i, (name, _, shape) in enumerate(ref.layers)]
    candidates = [t for t in probe.tensors if any(layout_candidates(shape, t.shape[1:]) for _, _, shape in shapes)]
    values = probe.collect(head, [t.key for t in candidates])
    chosen: dict[str, tuple[float, int, ArtifactTensor]] = {}  # layer -> (cosine, position, tensor)
    for position, tensor in enumerate(candidates):
        best: tuple[float, int, str] | None = None
        for index, name, shape in shapes:
            expected = ref.values[name][:MATCH_SAMPLES]
            for axes in layout_candidates(shape, tensor.shape[1:]):
                actual = _aligned(values[tensor.key], tensor.shape, expected.shape, axes)
                cos = float(np.mean(cosine_per_sample(expected, actual)))
                if cos >= MATCH_COSINE and (best is None or (cos, index) > best[:2]):
                    best = (cos, index, name)
        if best is not None:
            cos, _, name = best
            if name not in chosen or (cos, position) > chosen[name][:2]:
                chosen[name] = (cos, position, tensor)
    matches = [Match(name, chosen[name][2], ()) for _, name, _ in shapes if name in chosen]
    return matches, [name for _, name, _ in shapes if name not in chosen]


def judge_layers(errors: Sequence[LayerError], cosine_min: float, sqnr_min: float) -> list[LayerError]:
    """``errors`` with ``over`` set: cosine under ``cosine_min`` or either SQNR under ``sqnr_min`` (dB)."""
    from dataclasses import replace

    return [replace(e, over=e.cosine < cosine_min or e.score_db < sqnr_min) for e in errors]


def finite(value: float) -> float | str:
    """JSON-ready: ``inf`` / ``-inf`` as strings."""
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")
