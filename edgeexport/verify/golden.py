"""Golden files: inputs and reference outputs saved once, so an artifact can be checked later without the
reference framework (no TensorFlow import, no source model).

Layout of the ``.npz`` (``allow_pickle=False`` safe): ``input__<name>`` per artifact input (already in the
artifact's layout), ``output__<name>`` per artifact output (the *reference* model's values, permuted to the
artifact's layout and keyed by the artifact's output name), optional ``labels``, and ``meta``: a JSON string
with the format version, output names, reference names, the tolerance and preset used and the data origin.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.catalog.model import Tolerance
from edgeexport.errors import DataError
from edgeexport.verify.inputs import read_npz

FORMAT = "edgeexport-golden/1"
INPUT_PREFIX = "input__"
OUTPUT_PREFIX = "output__"


@dataclass(frozen=True)
class Golden:
    """What a golden file holds. ``outputs`` are reference values keyed by the artifact's output names."""

    inputs: dict[str, NDArray[Any]]
    outputs: dict[str, NDArray[Any]]
    labels: NDArray[Any] | None
    tolerance: Tolerance
    preset: str | None
    origin: str
    reference: str
    reference_names: dict[str, str]

    @property
    def samples(self) -> int:
        return len(next(iter(self.inputs.values())))


def save_golden(path: Path, golden: Golden) -> Path:
    """Write ``golden`` to ``path`` atomically (temporary file in the same directory, then a rename)."""
    meta = {
        "format": FORMAT,
        "inputs": list(golden.inputs),
        "outputs": list(golden.outputs),
        "reference_names": golden.reference_names,
        "tolerance": dataclasses.asdict(golden.tolerance),
        "preset": golden.preset,
        "origin": golden.origin,
        "reference": golden.reference,
    }
    arrays: dict[str, Any] = {f"{INPUT_PREFIX}{k}": v for k, v in golden.inputs.items()}
    arrays.update({f"{OUTPUT_PREFIX}{k}": np.asarray(v, dtype=np.float32) for k, v in golden.outputs.items()})
    if golden.labels is not None:
        arrays["labels"] = golden.labels
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez_compressed(stream, **arrays)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_golden(path: Path) -> Golden:
    """Read a golden file; DataError (exit 3) when it is missing, unreadable or not a golden file."""
    raw = read_npz(path, what="golden")
    try:
        meta = json.loads(str(raw.pop("meta")))
    except (KeyError, ValueError) as err:
        raise DataError(f"{path.name} is not an edgeexport golden file (no readable 'meta')",
                        hint="write one with edgeexport verify ARTIFACT --reference MODEL --save-golden FILE") from err
    if meta.get("format") != FORMAT:
        raise DataError(f"{path.name} has golden format {meta.get('format')!r}; this edgeexport reads {FORMAT}")
    try:
        inputs = {name: raw[f"{INPUT_PREFIX}{name}"] for name in meta["inputs"]}
        outputs = {name: raw[f"{OUTPUT_PREFIX}{name}"] for name in meta["outputs"]}
        tolerance = Tolerance(**meta["tolerance"])
    except (KeyError, TypeError) as err:
        raise DataError(f"golden file {path.name} is incomplete: {err}") from err
    if not inputs or not outputs:
        raise DataError(f"golden file {path.name} holds no inputs or no outputs")
    return Golden(inputs, outputs, raw.get("labels"), tolerance, meta.get("preset"), str(meta.get("origin", "")),
                  str(meta.get("reference", "")), dict(meta.get("reference_names", {})))
