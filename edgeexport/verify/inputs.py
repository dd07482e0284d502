"""Inputs for calibration and verification: user data from ``.npz`` files, or seeded random inputs.

An ``.npz`` holds arrays keyed by input name (or one array for a single-input model) and optionally
``labels``. One file may carry several splits with keys ``<split>__<name>`` (e.g. ``calibration__image``,
``test__image``, ``test__labels``); calibration reads the ``calibration`` split and verification the
``test`` split when the file has them. ``Dataset`` and ``seeded_inputs`` live in ``edgeexport.datasets`` (sources
use them too) and are re-exported here.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.datasets import DEFAULT_SEED, Dataset, seeded_inputs
from edgeexport.errors import DataError
from edgeexport.sources.base import check_feeds
from edgeexport.types import TensorSpec

__all__ = ["DEFAULT_SEED", "LABELS_KEY", "SPLIT_SEPARATOR", "Dataset", "load_npz", "read_npz", "seeded_inputs"]

SPLIT_SEPARATOR = "__"
LABELS_KEY = "labels"


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
