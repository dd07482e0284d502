"""Which artifact tensor computes which reference layer's output: matching by name, aware of op fusion.

Converters keep the source's name scopes in tensor names: TFLite as ``Model_1/conv1_1/Relu`` (several ';'-joined
names when ops were fused, e.g. ``.../re_lu_3_1/Relu;.../bn_1/batchnorm/mul_1;.../depthwise_1/depthwise``), Core ML
with '/' turned into '_' (``StatefulPartitionedCall_Model_1_conv1_1_Relu_cast_fp16``). Keras 3 scopes a layer
``L`` as ``L_<n>``; a scope is the leftmost layer name of each ';'-separated segment (later parts are op names
inside the layer, such as ``add`` or ``mul_1``, which may collide with layer names).

Fusion: one artifact tensor that mentions several layers (conv + BatchNorm + ReLU) computes the output of the
*last* of them in the reference's order, so it is compared with that layer's output; the earlier layers of the
group are reported as fused into it. A layer whose group ends in an unnamed op (e.g. a conv whose bias absorbed a
following add) is left unmapped rather than guessed: a guess would report a conversion error that is not there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Unnamed ops that may end a layer's computation after its last named op (TFLite and MIL op names, lowercased):
# the (de)quantize/cast around it, or, for a layer with its own activation, a separate softmax/sigmoid. Other unnamed
# ops (a scale by 1/6 in a hard sigmoid, the softmax of a following Activation layer) compute something else.
PASS_THROUGH = frozenset({"dequantize", "quantize", "cast"})
ACTIVATIONS = frozenset({"softmax", "logistic", "sigmoid"})


@dataclass(frozen=True)
class ArtifactTensor:
    """One op output of the artifact, in execution order. ``inputs`` are the dynamic (input-dependent) tensors the
    op reads, by key; constants are left out. ``shape`` excludes nothing (batch first)."""

    key: str
    name: str
    op: str
    inputs: tuple[str, ...]
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Match:
    """Reference layer -> the artifact tensor that computes its output, and the layers fused into it."""

    layer: str
    tensor: ArtifactTensor
    fused: tuple[str, ...]


def _segments(name: str) -> list[str]:
    return [re.sub(r"[^A-Za-z0-9]+", "_", seg) for seg in name.split(";") if seg]


def _patterns(layers: Sequence[str], suffixed: bool) -> list[tuple[str, re.Pattern[str]]]:
    tail = r"_\d+(?=_|$)" if suffixed else r"(?=_|$)"
    return [(layer, re.compile(r"(?:^|(?<=_))" + re.escape(re.sub(r"[^A-Za-z0-9]+", "_", layer)) + tail))
            for layer in layers]


def _leftmost(segment: str, patterns: list[tuple[str, re.Pattern[str]]]) -> str | None:
    """The layer scope of one name segment: the leftmost match, the longest at that position."""
    best: tuple[int, int, str] | None = None
    for layer, pattern in patterns:
        found = pattern.search(segment)
        if found is None:
            continue
        key = (found.start(), -(found.end() - found.start()), layer)
        if best is None or key < best:
            best = key
    return None if best is None else best[2]


def mentioned_layers(names: Sequence[str], layers: Sequence[str]) -> list[set[str]]:
    """For every artifact tensor name, the reference layers whose scope it carries.

    Keras-3 style ``<layer>_<n>`` scopes are used when any name has one; otherwise bare layer names."""
    suffixed = _patterns(layers, True)
    found = [{m for seg in _segments(n) if (m := _leftmost(seg, suffixed))} for n in names]
    if any(found):
        return found
    bare = _patterns(layers, False)
    return [{m for seg in _segments(n) if (m := _leftmost(seg, bare))} for n in names]


def match_layers(layers: Sequence[tuple[str, tuple[int, ...]]], tensors: Sequence[ArtifactTensor],
                 folds: Mapping[str, str] | None = None, activated: frozenset[str] = frozenset()
                 ) -> tuple[list[Match], list[str]]:
    """Map reference layers (name, per-sample shape) to artifact tensors; returns (matches, unmapped layers).

    ``folds`` maps a layer to the normalization layer that alone consumes its output (conv -> BatchNorm): when
    the normalization layer has no tensor of its own, converters folded it into the layer's weights, so the
    layer's tensor is compared with the normalization's output. ``activated`` names layers with a built-in
    activation (Dense(activation="softmax")), whose unnamed softmax/sigmoid op still belongs to them.

    ``tensors`` must hold only dynamic tensors in execution order. Shapes are compared up to a channels-first /
    channels-last permutation (Core ML and onnx2tf change layout), see ``layout_axes``.
    """
    order = {name: i for i, (name, _) in enumerate(layers)}
    shapes = dict(layers)
    mentions = mentioned_layers([t.name for t in tensors], [name for name, _ in layers])
    owner: dict[str, str] = {}
    fused_into: dict[str, set[str]] = {}
    for tensor, mentioned in zip(tensors, mentions):
        if not mentioned:
            continue
        last = max(mentioned, key=lambda n: order[n])
        owner[tensor.key] = last
        fused_into.setdefault(last, set()).update(mentioned - {last})
    consumers: dict[str, list[ArtifactTensor]] = {}
    for tensor in tensors:
        for key in tensor.inputs:
            consumers.setdefault(key, []).append(tensor)
    matches: list[Match] = []
    mapped: set[str] = set()
    taken: set[str] = set()
    for name, _ in layers:
        own = [t for t in tensors if owner.get(t.key) == name]
        if not own:
            continue
        chosen = own[-1]
        # A separate activation, softmax or dequantize after the layer's last named op still belongs to it, when
        # it is unnamed, reads only this tensor and keeps its shape.
        while True:
            nxt = [c for c in consumers.get(chosen.key, []) if c.key not in owner and len(c.inputs) == 1
                   and (c.op.lower() in PASS_THROUGH or (c.op.lower() in ACTIVATIONS and name in activated))
                   and c.shape[1:] == chosen.shape[1:]]
            if len(nxt) != 1:
                break
            chosen = nxt[0]
        if chosen.key in taken or layout_axes(shapes[name], chosen.shape[1:]) is None:
            continue
        taken.add(chosen.key)
        fused = tuple(sorted((n for n in fused_into.get(name, ()) if n not in mapped), key=lambda n: order[n]))
        matches.append(Match(name, chosen, fused))
        mapped.add(name)
        mapped.update(fused)
    for index, found in enumerate(matches):
        norm = (folds or {}).get(found.layer)
        if norm is not None and norm not in mapped and norm not in owner.values() and shapes[norm] == shapes[found.layer]:
            matches[index] = Match(norm, found.tensor, (*found.fused, found.layer))
            mapped.add(norm)
    matches.sort(key=lambda m: order[m.layer])
    unmapped = [name for name, _ in layers if name not in mapped]
    return matches, unmapped


def layout_candidates(reference: tuple[int, ...], artifact: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every axes tuple (of a batch-first array) among identity, channels-last -> channels-first and the reverse
    that turns the reference's per-sample shape into the artifact's (several when dims are equal, e.g. 16x16x16)."""
    rank = len(reference) + 1
    if len(reference) != len(artifact):
        return []
    options = [tuple(range(rank))]
    if rank >= 3:
        options += [(0, rank - 1, *range(1, rank - 1)), (0, *range(2, rank), 1)]
    full = (1, *reference)
    return [axes for axes in options if tuple(full[a] for a in axes)[1:] == tuple(artifact)]


def layout_axes(reference: tuple[int, ...], artifact: tuple[int, ...],
                prefer: tuple[int, ...] | None = None) -> tuple[int, ...] | None:
    """The permutation from ``layout_candidates``: ``prefer`` when it fits, else the first; None when none fits."""
    found = layout_candidates(reference, artifact)
    if prefer is not None and prefer in found:
        return prefer
    return found[0] if found else None
