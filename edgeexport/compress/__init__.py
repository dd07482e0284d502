"""Framework-neutral compression helpers. ``pruning`` needs numpy only; ``keras_pruning`` imports Keras inside its
functions. Nothing heavy is imported here."""

from __future__ import annotations

from edgeexport.compress.pruning import (
    PruneStats,
    channels_to_keep,
    magnitude_masks,
    nm_mask,
    sparsity,
)

__all__ = ["PruneStats", "channels_to_keep", "magnitude_masks", "nm_mask", "sparsity"]
