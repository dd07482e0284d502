"""A .npz whose member is corrupt inside its deflate stream is bad input (exit 3), not a zlib traceback.

Found by tests/integration/test_fuzz_loaders.py (npz, slow set): zipfile raises zlib.error, which read_npz let
through.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgeexport.errors import DataError
from edgeexport.verify.inputs import read_npz


def test_a_corrupt_deflate_stream_is_a_data_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32))
    raw = buffer.getvalue()
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("image.npy", raw)
    data = bytearray(path.read_bytes())
    start = data.index(b"image.npy") + len("image.npy") + 10  # the deflate block header of the first member
    data[start:start + 16] = bytes(16)
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive, pytest.raises(zlib.error):
        archive.read("image.npy")  # the stream really is corrupt
    with pytest.raises(DataError, match="cannot read data file d.npz as .npz") as caught:
        read_npz(path)
    assert caught.value.exit_code == 3


def test_op_names_that_arrive_as_bytes_are_still_named() -> None:
    """A corrupt ONNX file can carry op types that are not UTF-8; protobuf then returns bytes (found by the fuzz)."""
    from edgeexport.errors import UnsupportedOpError

    err = UnsupportedOpError({b"Conv\xff": 2, "Gemm": 1}, where="m.onnx")
    assert err.one_line() == "unsupported op(s) in m.onnx: Conv\ufffd x2, Gemm"
