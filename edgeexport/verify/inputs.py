"""Inputs for calibration and verification: user data from ``.npz`` files, or seeded random inputs.

An ``.npz`` holds arrays keyed by input name (or one array for a single-input model) and optionally
``labels``. One file may carry several splits with keys ``<split>__<name>`` (e.g. ``calibration__image``,
``test__image``, ``test__labels``); calibration reads the ``calibration`` split and verification the
``test`` split when the file has them.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import DataError
from edgeexport.runs import Shape, count_samples, data_shape, head_rows
from edgeexport.sources.base import check_feeds
from edgeexport.types import TensorSpec

SPLIT_SEPARATOR = "__"
LABELS_KEY = "labels"
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


def read_npz(path: Path, *, what: str = "data") -> dict[str, NDArray[Any]]:
    """Every array of an ``.npz`` file (pickles refused); DataError (exit 3) when missing or unreadable."""
    if not path.is_file():
        raise DataError(f"{what} file not found: {path}")
    try:
        with path.open("rb") as handle:
            head = handle.read(6)
    except OSError as err:
        raise DataError(f"cannot read {what} file {path.name}: {err.strerror or err}") from err
    # numpy reads anything that is not a zip or .npy as a pickle, and then calls a text file "pickled data".
    if not zipfile.is_zipfile(path) and not head.startswith((b"\x93NUMPY", b"\x80")):
        raise DataError(f"cannot read {what} file {path.name}: not an .npz archive "
                        "(not a zip file: text, or truncated?)",
                        hint="write it with numpy.savez(path, input_name=array, ...)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as err:  # zlib: a corrupt member
        raise DataError(f"cannot read {what} file {path.name} as .npz: {err}") from err


def load_npz(path: Path, specs: tuple[TensorSpec, ...], *, split: str, what: str = "data") -> Dataset:
    """Read ``path`` and match its arrays to ``specs``; raise DataError (exit 3) on any mismatch."""
    raw = read_npz(path, what=what)
    if not raw:
        raise DataError(f"{what} file {path.name} holds no arrays")
    prefix = f"{split}{SPLIT_SEPARATOR}"
    if any(key.startswith(prefix) for key in raw):
        raw = {key[len(prefix):]: value for key, value in raw.items() if key.startswith(prefix)}
    elif any(SPLIT_SEPARATOR in key for key in raw):
        splits = sorted({key.split(SPLIT_SEPARATOR)[0] for key in raw if SPLIT_SEPARATOR in key})
        raise DataError(f"{what} file {path.name} has no '{split}' split", hint=f"splits found: {', '.join(splits)}")
    labels = raw.pop(LABELS_KEY, None)
    arrays = check_feeds(specs, raw, what=f"{what} {path.name}")
    if labels is not None:
        labels = np.asarray(labels)
        count = len(next(iter(arrays.values())))
        if labels.ndim != 1 or len(labels) != count or labels.dtype.kind not in "iu":
            raise DataError(f"labels in {path.name} must be {count} integers, got {labels.dtype}{list(labels.shape)}")
    return Dataset(arrays, labels, f"{path} [{split}]" if prefix else str(path), {s.name: s.shape for s in specs})


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
