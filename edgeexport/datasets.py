"""Data sets of model inputs (arrays by input name, leading sample axis) and seeded random inputs.

Below both ``sources`` (a source's own conversion check feeds it one seeded input) and ``verify`` (calibration and
verification data, ``verify.inputs``), so neither depends on the other for them. No framework imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.runs import Shape, count_samples, data_shape, head_rows
from edgeexport.types import TensorSpec

DEFAULT_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """Arrays keyed by input name (leading axis = samples), optional integer labels, and where they came from."""

    arrays: dict[str, NDArray[Any]]
    labels: NDArray[Any] | None
    origin: str
    # the model's input shapes by name: with a fixed axis 0 or a scalar input a sample is a run (edgeexport.runs)
    shapes: dict[str, Shape] = field(default_factory=dict)

    @property
    def count(self) -> int:
        if self.shapes:
            return count_samples([self.shapes[k] for k in self.arrays], list(self.arrays.values()))
        return len(next(iter(self.arrays.values())))

    def head(self, n: int) -> Dataset:
        """The first ``n`` samples (all when ``n`` is larger than the data set)."""
        rows = {k: head_rows(self.shapes[k], n) if k in self.shapes else n for k in self.arrays}
        return Dataset({k: v[:rows[k]] for k, v in self.arrays.items()},
                       None if self.labels is None else self.labels[:n], self.origin, self.shapes)


def seeded_inputs(specs: tuple[TensorSpec, ...], count: int, *, seed: int = DEFAULT_SEED) -> Dataset:
    """Random inputs drawn from each spec's declared range (dtype-aware), reproducible for a given seed.

    Floats without a declared range are drawn uniformly from [0, 1), the range of scaled images; integers
    without one from [0, 10). Dynamic dimensions other than the batch become 1. ``count`` is in samples: runs of
    the model's fixed shapes where it has them (``count * B`` rows for a fixed axis 0 of ``B``, see
    ``edgeexport.runs``).
    """
    rng = np.random.default_rng(seed)
    arrays: dict[str, NDArray[Any]] = {}
    for spec in specs:
        shape = data_shape(spec.shape, count)
        dtype = np.dtype(spec.dtype)
        low, high = spec.value_range if spec.value_range else ((0.0, 1.0) if dtype.kind == "f" else (0, 9))
        if dtype.kind in "iu":
            arrays[spec.name] = rng.integers(int(low), int(high) + 1, size=shape).astype(dtype)
        elif dtype.kind == "b":
            arrays[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            arrays[spec.name] = rng.uniform(low, high, size=shape).astype(dtype)
    return Dataset(arrays, None, f"seeded random inputs (seed {seed})", {s.name: s.shape for s in specs})
