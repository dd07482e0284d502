"""Apply a ``Pruning`` recipe to a Keras 3 model (Keras is imported inside functions only).

What gets pruned (decided here, documented for users):

* Kernels of ``Conv1D/Conv2D/Conv3D``, ``Dense`` and ``DepthwiseConv2D`` layers; never biases, BatchNorm
  parameters or embeddings.
* The stem layer (a conv or dense that reads a model input with at most 4 channels, e.g. RGB) is skipped: it holds
  few weights and every later feature depends on it. Kernels with fewer than ``min_weights`` weights are skipped.
* ``"magnitude"`` masks the smallest weights (per tensor, or ranked globally with ``scope="global"``).
* ``"n:m"`` keeps ``n`` of every ``m`` weights along the input-channel axis; layers whose input-channel count is not
  a multiple of ``m``, and depthwise convs (they have no input-channel reduction), are skipped.
* ``"channels"`` removes output channels (smallest L1 norm) for real from Conv/Dense layers whose output reaches
  only channel-wise layers (BatchNorm, activations, pooling, padding, dropout, depthwise convs with multiplier 1)
  and then Conv/Dense inputs. It rebuilds the model from its config with fewer filters/units and sliced weights.
  A layer is left intact (and reported) when its output reaches a model output, an Add/Concatenate/Multiply, a
  Flatten/Reshape, or any layer not known to be channel-wise.

The input model is never modified; a new model is returned.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.catalog.model import Pruning
from edgeexport.compress.pruning import (
    PruneStats,
    channels_to_keep,
    magnitude_masks,
    nm_mask,
    sparsity,
)
from edgeexport.errors import UnsupportedError

_PRUNABLE = ("Conv1D", "Conv2D", "Conv3D", "Dense", "DepthwiseConv2D")
_CHANNEL_PRODUCERS = ("Conv1D", "Conv2D", "Conv3D", "Dense")
# Layers whose output channel c depends only on input channel c and that have no per-channel weights to slice.
_PASS_THROUGH = (
    "ReLU", "Activation", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "UpSampling1D", "UpSampling2D", "Cropping1D", "Cropping2D", "GaussianNoise", "GaussianDropout", "Identity",
)
_STEM_MAX_CHANNELS = 4
# Activations that mix channels (the output at channel c depends on every channel), so they are not pass-through.
_MIXING_ACTIVATIONS = ("softmax", "log_softmax")


def _kind(layer: Any) -> str:
    return type(layer).__name__


def _clone(model: Any) -> Any:
    import keras

    try:
        clone = keras.models.clone_model(model)
    except Exception as err:
        raise UnsupportedError(f"cannot prune {type(model).__name__}: {err}",
                               hint="pruning needs a Sequential or functional Keras model") from err
    clone.set_weights(model.get_weights())
    return clone


def _graph(model: Any) -> tuple[dict[str, list[Any]], set[int], set[int]]:
    """Consumers of each layer (by name), ids of model input tensors and ids of model output tensors."""
    producers: dict[int, Any] = {}
    for layer in model.layers:
        for tensor in _as_list(layer.output):
            producers[id(tensor)] = layer
    consumers: dict[str, list[Any]] = {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        for tensor in _inputs(layer):
            producer = producers.get(id(tensor))
            if producer is not None and producer is not layer:
                consumers[producer.name].append(layer)
    return consumers, {id(t) for t in model.inputs}, {id(t) for t in model.outputs}


def _inputs(layer: Any) -> list[Any]:
    """The layer's input tensors; [] for a layer called more than once (shared), which Keras cannot answer."""
    try:
        return _as_list(layer.input)
    except (AttributeError, ValueError):
        return []


def _shared(layer: Any) -> bool:
    return len(getattr(layer, "_inbound_nodes", [])) > 1


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def kernel_macs(model: Any) -> int:
    """Multiply-accumulates of the model's Conv/Dense/DepthwiseConv layers for one sample: each output position
    (all output dims but batch and channels) costs one kernel's worth of MACs. 0 if a spatial dim is dynamic."""
    total = 0
    for layer in model.layers:
        if _kind(layer) not in _PRUNABLE or not layer.get_weights():
            continue
        positions = 1
        for dim in tuple(layer.output.shape)[1:-1]:
            if dim is None:
                return 0
            positions *= int(dim)
        total += positions * int(layer.get_weights()[0].size)
    return total


def _stem_reason(layer: Any, input_ids: set[int], min_weights: int) -> str | None:
    kernel = layer.get_weights()[0]
    if kernel.size < min_weights:
        return f"kernel has {kernel.size} weights (< {min_weights})"
    inputs = _inputs(layer)
    if any(id(t) in input_ids for t in inputs) and kernel.shape[-2] <= _STEM_MAX_CHANNELS:
        return f"stem layer reading the model input ({kernel.shape[-2]} channels) is kept dense"
    return None


def prune_keras_model(model: Any, pruning: Pruning, *, scope: str = "per-tensor",
                      min_weights: int = 64) -> tuple[Any, PruneStats]:
    """A pruned copy of ``model`` and what was done (see the module docstring for which layers are touched).

    ``scope`` ("per-tensor" or "global") applies to magnitude pruning; ``min_weights`` (default 64) skips tiny
    kernels. Raises ``UnsupportedError`` for models that cannot be cloned (subclassed) or an unknown method."""
    if pruning.method == "channels":
        return _prune_channels(model, pruning, min_weights)
    if pruning.method not in ("magnitude", "n:m"):
        raise UnsupportedError(f"unknown pruning method {pruning.method!r}")
    import keras

    clone = _clone(model)
    _, input_ids, _ = _graph(clone)
    params_before = int(model.count_params())
    chosen, skipped = [], []
    for layer in clone.layers:
        if isinstance(layer, keras.Model):
            skipped.append((layer.name, "nested model: its layers are not pruned"))
            continue
        if _kind(layer) not in _PRUNABLE or not layer.get_weights():
            continue
        reason = _stem_reason(layer, input_ids, min_weights)
        kernel = layer.get_weights()[0]
        if reason is None and pruning.method == "n:m":
            m = int(pruning.m or 4)
            if _kind(layer) == "DepthwiseConv2D":
                reason = "depthwise conv has no input-channel reduction for n:m"
            elif kernel.shape[-2] % m:
                reason = f"input channels {kernel.shape[-2]} not a multiple of {m}"
        if reason:
            skipped.append((layer.name, reason))
        else:
            chosen.append(layer)
    kernels = [layer.get_weights()[0] for layer in chosen]
    if pruning.method == "magnitude":
        masks = magnitude_masks(kernels, pruning.sparsity, scope=scope)
    else:
        masks = [nm_mask(k, int(pruning.n or 2), int(pruning.m or 4), axis=-2) for k in kernels]
    pruned = []
    for layer, kernel, mask in zip(chosen, kernels, masks, strict=True):
        weights = layer.get_weights()
        weights[0] = np.where(mask, kernel, 0).astype(kernel.dtype)
        layer.set_weights(weights)
        pruned.append(weights[0])
    stats = PruneStats(
        method=pruning.method, target_sparsity=pruning.sparsity, achieved_sparsity=sparsity(pruned),
        params_before=params_before, params_after=int(clone.count_params()),
        layers_pruned=tuple(layer.name for layer in chosen), layers_skipped=tuple(skipped),
        macs_before=kernel_macs(model), macs_after=kernel_macs(clone),
    )
    return clone, stats


def _channel_path_problem(start: Any, consumers: dict[str, list[Any]],
                          output_ids: set[int]) -> tuple[str | None, list[Any], list[Any]]:
    """Follow ``start``'s output through channel-wise layers. Returns (problem or None, channel-wise layers on the
    way that hold per-channel weights, terminal Conv/Dense layers whose input axis must be sliced)."""
    sliced, terminals = [], []
    frontier, seen = [start], set()
    while frontier:
        layer = frontier.pop()
        if any(id(t) in output_ids for t in _as_list(layer.output)):
            return f"output reaches the model output through {layer.name}", [], []
        if _shared(layer):
            return f"layer {layer.name} is shared (called more than once)", [], []
        for nxt in consumers.get(layer.name, []):
            if nxt.name in seen:
                continue
            seen.add(nxt.name)
            kind = _kind(nxt)
            if _shared(nxt):
                return f"output reaches shared layer {nxt.name}", [], []
            activation = getattr(getattr(nxt, "activation", None), "__name__", "")
            if kind in _CHANNEL_PRODUCERS:
                terminals.append(nxt)
            elif kind == "Activation" and activation in _MIXING_ACTIVATIONS:
                return f"output reaches {activation} layer {nxt.name}, which mixes channels", [], []
            elif kind in _PASS_THROUGH:
                frontier.append(nxt)
            elif (kind == "BatchNormalization" and nxt.axis in (-1, len(nxt.input.shape) - 1)) or (kind == "DepthwiseConv2D" and int(nxt.depth_multiplier) == 1):
                sliced.append(nxt)
                frontier.append(nxt)
            else:
                return f"output reaches {kind} layer {nxt.name}, where removing channels is unsafe", [], []
    return None, sliced, terminals


def _prune_channels(model: Any, pruning: Pruning, min_weights: int) -> tuple[Any, PruneStats]:
    import keras

    if not isinstance(model, keras.Model) or not hasattr(model, "get_config"):
        raise UnsupportedError("channel pruning needs a Sequential or functional Keras model")
    consumers, _input_ids, output_ids = _graph(model)
    out_keep: dict[str, NDArray[Any]] = {}   # producer name -> output channels kept
    in_keep: dict[str, NDArray[Any]] = {}    # layer name -> input channels kept (terminals, BN, depthwise)
    skipped: list[tuple[str, str]] = []
    removed = total = 0
    for layer in model.layers:
        if _kind(layer) not in _CHANNEL_PRODUCERS or not layer.get_weights():
            continue
        if getattr(layer, "groups", 1) != 1:
            skipped.append((layer.name, "grouped conv"))
            continue
        kernel = layer.get_weights()[0]
        if kernel.size < min_weights:
            skipped.append((layer.name, f"kernel has {kernel.size} weights (< {min_weights})"))
            continue
        problem, sliced, terminals = _channel_path_problem(layer, consumers, output_ids)
        if problem:
            skipped.append((layer.name, problem))
            continue
        keep = channels_to_keep(kernel, pruning.sparsity, axis=-1)
        if keep.size == kernel.shape[-1]:
            skipped.append((layer.name, f"{kernel.shape[-1]} channels are too few to remove {pruning.sparsity:.0%}"))
            continue
        if any(t.name in in_keep for t in terminals) or any(s.name in in_keep for s in sliced):
            skipped.append((layer.name, "shares a consumer with another pruned layer"))
            continue
        out_keep[layer.name] = keep
        for other in (*sliced, *terminals):
            in_keep[other.name] = keep
        removed += kernel.shape[-1] - keep.size
        total += kernel.shape[-1]
    config = copy.deepcopy(model.get_config())
    for entry in config["layers"]:
        # Stale per-layer build shapes would rebuild layers with the old channel counts; shapes are re-inferred.
        entry.pop("build_config", None)
        name = entry["config"].get("name")
        if name in out_keep:
            key = "units" if entry["class_name"] == "Dense" else "filters"
            entry["config"][key] = int(out_keep[name].size)
    rebuilt = type(model).from_config(config)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new_layer = rebuilt.get_layer(layer.name)
        new_layer.set_weights(_slice_weights(layer, weights, in_keep.get(layer.name), out_keep.get(layer.name)))
    stats = PruneStats(
        method="channels", target_sparsity=pruning.sparsity,
        achieved_sparsity=removed / total if total else 0.0,
        params_before=int(model.count_params()), params_after=int(rebuilt.count_params()),
        layers_pruned=tuple(out_keep), layers_skipped=tuple(skipped), channels_removed=removed,
        macs_before=kernel_macs(model), macs_after=kernel_macs(rebuilt),
    )
    return rebuilt, stats


def _slice_weights(layer: Any, weights: list[NDArray[Any]], in_keep: NDArray[Any] | None,
                   out_keep: NDArray[Any] | None) -> list[NDArray[Any]]:
    kind = _kind(layer)
    if kind == "BatchNormalization":
        return [w[in_keep] for w in weights] if in_keep is not None else weights
    if kind == "DepthwiseConv2D":
        if in_keep is None:
            return weights
        # Depthwise kernel (kh, kw, channels, 1); its bias is per channel.
        return [weights[0][..., in_keep, :], *(w[in_keep] for w in weights[1:])]
    kernel = weights[0]
    if in_keep is not None:
        kernel = np.take(kernel, in_keep, axis=-2)
    rest = weights[1:]
    if out_keep is not None:
        kernel = np.take(kernel, out_keep, axis=-1)
        rest = [w[out_keep] for w in rest]
    return [kernel, *rest]
