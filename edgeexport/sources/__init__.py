"""Source formats: find a model on disk (no framework import), then load it into a ``LoadedModel``.

``open_source`` only looks at the path and hashes it; ``load`` imports the framework the format needs. Each
format is one module registered by name in ``LOADERS``.
"""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgeexport.errors import ModelFormatError
from edgeexport.files import sha256_of
from edgeexport.types import LoadOptions, SourceModel

if TYPE_CHECKING:
    from edgeexport.sources.base import LoadedModel

EXPECTED = "a Keras 3 .keras file, a legacy Keras .h5 file, a TensorFlow SavedModel directory, an .onnx file or a PyTorch .pt2 (torch.export.save)"

# format -> module under edgeexport.sources that defines ``load(source) -> LoadedModel``
LOADERS: dict[str, str] = {
    "keras": "keras",
    "h5": "keras",
    "savedmodel": "savedmodel",
    "onnx": "onnx",
    "pt2": "pytorch",
}

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def detect_format(path: Path) -> str:
    """Name the format of ``path`` from its suffix and first bytes; raise ModelFormatError if it is not a model."""
    if not path.exists():
        raise ModelFormatError(f"model not found: {path}", hint=f"expected {EXPECTED}")
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return "savedmodel"
        raise ModelFormatError(
            f"{path} is a directory but not a TensorFlow SavedModel (no saved_model.pb in it)", hint=f"expected {EXPECTED}"
        )
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise ModelFormatError(f"model file is empty: {path}", hint=f"expected {EXPECTED}")
    with path.open("rb") as handle:
        head = handle.read(8)
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise ModelFormatError(f"{path} is not a Keras 3 .keras archive (not a zip file; corrupt or truncated?)")
        from edgeexport.limits import check_keras_archive

        check_keras_archive(path)  # declared sizes and compression ratios, before anything unpacks it
        return "keras"
    if suffix in (".h5", ".hdf5"):
        if head != _HDF5_MAGIC:
            raise ModelFormatError(f"{path} is not an HDF5 file (corrupt or truncated legacy Keras .h5?)")
        from edgeexport.hdf5probe import check_hdf5

        check_hdf5(path)  # a corrupt file can hang HDF5 itself, beyond Ctrl-C: walk it in a child first
        return "h5"
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".pt2":
        if not zipfile.is_zipfile(path):
            raise ModelFormatError(f"{path} is not a torch.export archive (not a zip file; corrupt or truncated?)")
        return "pt2"
    raise ModelFormatError(f"unknown model format: {path.name}", hint=f"expected {EXPECTED}")


def open_source(path: str | Path, options: LoadOptions | None = None) -> SourceModel:
    """Find the model at ``path`` and identify its format without importing any framework."""
    resolved = Path(path)
    fmt = detect_format(resolved)
    return SourceModel(path=resolved, format=fmt, sha256=sha256_of(resolved), options=options or LoadOptions())


def load(source: SourceModel) -> LoadedModel:
    """Load the model with its own framework (imports TensorFlow or onnxruntime)."""
    module = importlib.import_module(f"edgeexport.sources.{LOADERS[source.format]}")
    loaded: LoadedModel = module.load(source)
    return loaded
