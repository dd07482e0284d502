"""How data sets map onto model runs when a model declares fixed shapes.

Every data set in edgeexport keeps its samples on a leading axis. A model takes them in *runs*:

* an input whose axis 0 is dynamic takes any number of rows per run (the batch);
* an input whose axis 0 is fixed at ``B`` takes exactly ``B`` rows per run, whatever ``B`` is (a batch-1 image
  model takes one row; ``Gemm``'s ``A`` of shape (3, 6) takes 3): a data set of ``k`` runs holds ``k * B`` rows;
* a scalar (rank-0) input takes one element per run: a data set of ``k`` runs holds a 1-D array of ``k`` values.

Outputs of several runs are joined along axis 0; a scalar output becomes one element per run. No framework is
imported here, so the reference runners, the artifact runners, calibration and the seeded inputs share one rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

Shape = tuple[int | None, ...]


def rows_per_run(shape: Shape) -> int | None:
    """Rows of the data set one run of an input of ``shape`` takes: 1 for a scalar, ``shape[0]`` when fixed,
    None when axis 0 is dynamic (any number)."""
    if not shape:
        return 1
    return shape[0]


def data_shape(shape: Shape, runs: int) -> tuple[int, ...]:
    """The shape of a data-set array holding ``runs`` runs of an input of ``shape`` (dynamic trailing dims -> 1)."""
    if not shape:
        return (runs,)
    rows = rows_per_run(shape)
    return (runs * (rows or 1), *(1 if d is None else d for d in shape[1:]))


def is_fixed(shapes: Sequence[Shape]) -> bool:
    """True when some input fixes its rows per run (a fixed axis 0 or a scalar), so feeds must be split."""
    return any(rows_per_run(s) is not None for s in shapes)


def run_count(shapes: Sequence[Shape], rows: Sequence[int]) -> int | None:
    """How many runs ``rows`` data-set rows per input make; None when the rows do not divide into whole runs
    or the inputs disagree. With only dynamic inputs each row is a sample and a run can take all of them."""
    counts = set()
    for shape, n in zip(shapes, rows, strict=True):
        unit = rows_per_run(shape)
        if unit is None:
            counts.add(n)
            continue
        if unit == 0 or n % unit:
            return None
        counts.add(n // unit)
    if len(counts) > 1:
        return None
    return counts.pop() if counts else 1


def split_runs(shapes: Sequence[Shape], arrays: Sequence[NDArray[Any]]) -> Iterator[list[NDArray[Any]]]:
    """Yield the arrays of each run (scalar inputs reshaped to rank 0). Inputs with a dynamic axis 0 are cut
    like the fixed ones (one sample per run) when any input is fixed, else passed whole in one run."""
    if not is_fixed(shapes):
        yield list(arrays)
        return
    count = run_count(shapes, [len(a) if a.ndim else 1 for a in arrays])
    if count is None:
        raise ValueError("the rows of the data do not divide into whole runs of the model's fixed input shapes")
    for run in range(count):
        parts: list[NDArray[Any]] = []
        for shape, array in zip(shapes, arrays, strict=True):
            if not shape:
                parts.append(np.asarray(array.reshape(-1)[run]).reshape(()))
                continue
            unit = rows_per_run(shape) or 1
            parts.append(array[run * unit:(run + 1) * unit])
        yield parts


def join_runs(parts: Sequence[Mapping[str, NDArray[Any]]]) -> dict[str, NDArray[Any]]:
    """The outputs of consecutive runs joined along axis 0 (a scalar output gives one element per run)."""
    if len(parts) == 1:
        return {k: np.atleast_1d(np.asarray(v)) for k, v in parts[0].items()}
    return {k: np.concatenate([np.atleast_1d(np.asarray(p[k])) for p in parts], axis=0) for k in parts[0]}


def count_samples(shapes: Sequence[Shape], arrays: Sequence[NDArray[Any]]) -> int:
    """Samples (runs for a fixed-shape model, rows otherwise) in a data set; 0 when empty."""
    if not arrays:
        return 0
    if not is_fixed(shapes):
        return len(arrays[0])
    return run_count(shapes, [len(a) if a.ndim else 1 for a in arrays]) or 0


def head_rows(shape: Shape, samples: int) -> int:
    """Rows of an input that the first ``samples`` samples span."""
    unit = rows_per_run(shape)
    return samples * (unit or 1) if unit is not None else samples
