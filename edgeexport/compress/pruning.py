"""Framework-neutral pruning on numpy arrays: magnitude masks, N:M masks, channel selection, sparsity.

Masks are boolean arrays of the weight's shape: ``True`` keeps a weight, ``False`` zeroes it. Ties in magnitude are
broken by position (a stable sort), so the number of zeroed weights always equals the target exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class PruneStats:
    """What pruning did to a model.

    ``achieved_sparsity`` is the fraction of zero weights in the tensors that were pruned (0..1; for channel
    pruning it is the fraction of output channels removed from the pruned layers). ``params_before`` and
    ``params_after`` count all parameters of the model; ``macs_before``/``macs_after`` count the multiply-
    accumulates of its Conv/Dense/DepthwiseConv layers for one sample (0 when a shape is dynamic).
    ``layers_skipped`` pairs a layer name with the reason.
    """

    method: str
    target_sparsity: float
    achieved_sparsity: float
    params_before: int
    params_after: int
    layers_pruned: tuple[str, ...]
    layers_skipped: tuple[tuple[str, str], ...] = ()
    channels_removed: int = 0
    macs_before: int = 0
    macs_after: int = 0

    @property
    def params_removed_fraction(self) -> float:
        """Share of all parameters that are gone (channel pruning) in 0..1; 0 for masking methods."""
        return 1.0 - self.params_after / self.params_before if self.params_before else 0.0


def _check_fraction(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")


def _smallest_k_mask(magnitudes: NDArray[Any], k: int) -> NDArray[Any]:
    """A flat keep-mask that drops exactly the ``k`` smallest entries (stable order breaks ties)."""
    keep = np.ones(magnitudes.size, dtype=bool)
    if k > 0:
        order = np.argsort(magnitudes.ravel(), kind="stable")
        keep[order[:k]] = False
    return keep


def magnitude_masks(arrays: Sequence[NDArray[Any]], sparsity: float, *, scope: str = "per-tensor") -> list[NDArray[Any]]:
    """Keep-masks that zero the ``sparsity`` fraction (0..1) of smallest-magnitude weights.

    ``scope="per-tensor"`` (default) prunes each array to ``round(sparsity * size)`` zeros; ``"global"`` ranks all
    weights of all arrays together, so layers with small weights lose more of them, and zeroes
    ``round(sparsity * total)`` weights in all."""
    _check_fraction(sparsity)
    if scope == "per-tensor":
        return [
            _smallest_k_mask(np.abs(a), int(round(sparsity * a.size))).reshape(a.shape) for a in arrays
        ]
    if scope != "global":
        raise ValueError(f"scope must be 'per-tensor' or 'global', got {scope!r}")
    flat = np.concatenate([np.abs(np.asarray(a, dtype=np.float64)).ravel() for a in arrays]) if arrays else np.zeros(0)
    keep = _smallest_k_mask(flat, int(round(sparsity * flat.size)))
    masks, start = [], 0
    for a in arrays:
        masks.append(keep[start:start + a.size].reshape(a.shape))
        start += a.size
    return masks


def nm_mask(array: NDArray[Any], n: int, m: int, *, axis: int) -> NDArray[Any]:
    """Keep-mask with at most ``n`` non-zeros in every group of ``m`` consecutive weights along ``axis`` (the input
    axis: -2 for a Keras Conv kernel ``(kh, kw, cin, cout)``, 0 for a Dense kernel ``(in, out)``). The largest
    magnitudes are kept. A trailing group shorter than ``m`` keeps at most ``n`` weights as well."""
    if not 0 < n < m:
        raise ValueError(f"need 0 < n < m, got n={n}, m={m}")
    moved = np.moveaxis(np.abs(np.asarray(array)), axis, -1)
    length = moved.shape[-1]
    keep = np.zeros(moved.shape, dtype=bool)
    for start in range(0, length, m):
        group = moved[..., start:start + m]
        if group.shape[-1] <= n:
            keep[..., start:start + m] = True
            continue
        # Indices of the n largest in each group; stable order on the negated values keeps ties deterministic.
        top = np.argsort(-group, axis=-1, kind="stable")[..., :n]
        block = np.zeros(group.shape, dtype=bool)
        np.put_along_axis(block, top, True, axis=-1)
        keep[..., start:start + m] = block
    return np.moveaxis(keep, -1, axis)


def channels_to_keep(kernel: NDArray[Any], fraction: float, *, axis: int = -1, min_keep: int = 1) -> NDArray[Any]:
    """Sorted indices of the output channels (along ``axis``) to keep: the ``fraction`` (0..1) of channels with the
    smallest L1 norm are dropped, at least ``min_keep`` are kept."""
    _check_fraction(fraction)
    moved = np.moveaxis(np.abs(np.asarray(kernel, dtype=np.float64)), axis, -1)
    norms = moved.reshape(-1, moved.shape[-1]).sum(axis=0)
    count = norms.size
    keep_count = max(min_keep, count - int(round(fraction * count)))
    order = np.argsort(-norms, kind="stable")[:keep_count]
    return np.sort(order)


def sparsity(arrays: Sequence[NDArray[Any]]) -> float:
    """Fraction (0..1) of exactly-zero entries over all ``arrays``; 0.0 for no weights."""
    total = sum(int(np.asarray(a).size) for a in arrays)
    if total == 0:
        return 0.0
    zeros = sum(int(np.count_nonzero(np.asarray(a) == 0)) for a in arrays)
    return zeros / total


def prune_by_magnitude(arrays: Sequence[NDArray[Any]], fraction: float) -> tuple[list[NDArray[Any]], float]:
    """``arrays`` with the ``fraction`` (0..1) smallest-magnitude weights of each zeroed (dtypes kept), and the
    sparsity reached over all of them. For sources we can only mask, not rebuild (ONNX, SavedModel)."""
    masks = magnitude_masks(arrays, fraction)
    pruned = [np.where(mask, array, 0).astype(array.dtype) for array, mask in zip(arrays, masks)]
    return pruned, sparsity(pruned)

