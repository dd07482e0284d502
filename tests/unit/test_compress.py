"""Framework-neutral pruning masks (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeexport.compress.pruning import (
    channels_to_keep,
    magnitude_masks,
    nm_mask,
    sparsity,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.75, 0.9])
def test_magnitude_per_tensor_hits_target_exactly(rng: np.random.Generator, target: float) -> None:
    arrays = [rng.normal(size=(3, 3, 8, 16)), rng.normal(size=(37, 11)), rng.normal(size=(5,))]
    masks = magnitude_masks(arrays, target)
    for a, m in zip(arrays, masks, strict=True):
        assert m.shape == a.shape and m.dtype == bool
        assert abs((1 - m.mean()) - target) <= 0.5 / a.size + 1e-12
        # everything dropped is no larger than anything kept
        if (~m).any() and m.any():
            assert np.abs(a[~m]).max() <= np.abs(a[m]).min()
    pruned = [np.where(m, a, 0) for a, m in zip(arrays, masks, strict=True)]
    assert abs(sparsity(pruned) - target) < 0.01


def test_magnitude_global_ranks_across_tensors(rng: np.random.Generator) -> None:
    small, large = rng.normal(scale=0.01, size=(100,)), rng.normal(scale=1.0, size=(100,))
    masks = magnitude_masks([small, large], 0.5, scope="global")
    total_zeroed = sum(int((~m).sum()) for m in masks)
    assert total_zeroed == 100
    assert (~masks[0]).sum() > 90       # the small-magnitude tensor loses almost everything
    with pytest.raises(ValueError):
        magnitude_masks([small], 0.5, scope="layer")


def test_ties_still_give_exact_count() -> None:
    masks = magnitude_masks([np.ones((10, 10))], 0.37)
    assert int((~masks[0]).sum()) == 37


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8)])
def test_nm_pattern_holds_in_every_group(rng: np.random.Generator, n: int, m: int) -> None:
    kernel = rng.normal(size=(3, 3, 16, 8))              # Keras conv: (kh, kw, cin, cout); input axis -2
    mask = nm_mask(kernel, n, m, axis=-2)
    groups = np.moveaxis(mask, -2, -1).reshape(3, 3, 8, 16 // m, m)
    assert (groups.sum(axis=-1) == n).all()
    # within each group the kept weights are the largest ones
    mags = np.moveaxis(np.abs(kernel), -2, -1).reshape(3, 3, 8, 16 // m, m)
    kept_min = np.where(groups, mags, np.inf).min(axis=-1)
    dropped_max = np.where(groups, -np.inf, mags).max(axis=-1)
    assert (kept_min >= dropped_max).all()
    assert sparsity([np.where(mask, kernel, 0)]) == pytest.approx(1 - n / m)


def test_nm_dense_axis0_and_short_tail(rng: np.random.Generator) -> None:
    dense = rng.normal(size=(10, 3))                      # 10 inputs: two full groups of 4 and a tail of 2
    mask = nm_mask(dense, 2, 4, axis=0)
    assert (mask[:4].sum(axis=0) == 2).all() and (mask[4:8].sum(axis=0) == 2).all()
    assert mask[8:].all()                                 # a tail no longer than n keeps everything
    with pytest.raises(ValueError):
        nm_mask(dense, 4, 4, axis=0)


def test_channels_to_keep_drops_lowest_l1(rng: np.random.Generator) -> None:
    kernel = rng.normal(size=(3, 3, 4, 8))
    kernel[..., [1, 6]] *= 0.001
    keep = channels_to_keep(kernel, 0.25)
    assert keep.tolist() == [0, 2, 3, 4, 5, 7]
    assert channels_to_keep(kernel[..., :1], 0.9).tolist() == [0]          # never below min_keep
    assert channels_to_keep(rng.normal(size=(16, 10)), 0.5).size == 5


def test_sparsity_of_nothing_and_of_zeros() -> None:
    assert sparsity([]) == 0.0
    assert sparsity([np.zeros((2, 2)), np.ones(4)]) == 0.5


def test_prune_by_magnitude_zeroes_the_smallest_and_keeps_dtype() -> None:
    from edgeexport.compress.pruning import prune_by_magnitude

    signs = np.where(np.arange(100) % 2, 1, -1).reshape(10, 10)
    weights = [(np.arange(1, 101).reshape(10, 10) * signs).astype(np.float32),
               np.linspace(-1, 1, 64, dtype=np.float16).reshape(8, 8)]
    pruned, achieved = prune_by_magnitude(weights, 0.25)
    assert [p.dtype for p in pruned] == [np.float32, np.float16]
    assert np.count_nonzero(pruned[0] == 0) == 25
    assert np.all(np.abs(weights[0][pruned[0] == 0]) <= 25)  # the 25 smallest magnitudes are the ones gone
    assert abs(achieved - (25 + np.count_nonzero(pruned[1] == 0)) / 164) < 1e-12
