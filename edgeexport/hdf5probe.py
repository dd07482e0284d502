"""Read a legacy ``.h5`` model's every object, attribute and dataset in a child process, with a deadline.

The HDF5 C library can loop forever on some corrupt files (a mutated symbol table or attribute heap: the slow
fuzz test found three in 300 mutations of the digits MLP), inside a call that holds the GIL, so neither Ctrl-C
nor a timer in our process can stop it. A child that walks the file first turns such a file into a one-line
ModelFormatError (exit 3) instead of a hang. The child imports only h5py (about 0.3 s); a valid file is walked in
well under a second for the sizes Keras writes, so the deadline is generous.

    python -m edgeexport.hdf5probe FILE   # exit 0: readable; 1: an error (printed); killed at the deadline
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edgeexport.errors import ModelFormatError

# Seconds the walk may take (EDGEEXPORT_HDF5_PROBE_SECONDS; default 30: 100x a 240 MB ResNet152V2 .h5's walk).
PROBE_SECONDS = float(os.environ.get("EDGEEXPORT_HDF5_PROBE_SECONDS", "30"))


def check_hdf5(path: Path, seconds: float | None = None) -> None:
    """Raise ModelFormatError when ``path`` cannot be walked whole by h5py within ``seconds`` (default
    PROBE_SECONDS), or the walk fails; return quietly for a readable file."""
    limit = PROBE_SECONDS if seconds is None else seconds
    try:
        done = subprocess.run([sys.executable, "-m", "edgeexport.hdf5probe", str(path)], capture_output=True,
                              text=True, timeout=limit, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        raise ModelFormatError(f"{path.name} is a corrupt HDF5 file: reading its structure did not finish in "
                               f"{limit:.0f} s", hint="re-save the model, preferably as .keras") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        why = lines[-1] if lines else f"the reader exited with {done.returncode}"
        raise ModelFormatError(f"{path.name} is a corrupt HDF5 file: {why}", hint="re-save the model, preferably as .keras")


def _walk(path: str) -> None:
    import h5py

    def visit(_name: str, obj: object) -> None:
        attrs = getattr(obj, "attrs", None)
        if attrs is not None:
            for key in attrs:
                attrs[key]  # reading the value is the check
        if isinstance(obj, h5py.Dataset):
            obj[()]

    with h5py.File(path, "r") as handle:
        visit("/", handle)
        handle.visititems(visit)


if __name__ == "__main__":
    try:
        _walk(sys.argv[1])
    except Exception as err:  # any failure of the walk is what the parent reports
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(1) from None
