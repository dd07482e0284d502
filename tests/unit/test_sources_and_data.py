"""Format detection and data validation: no framework import needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeexport.errors import DataError, ModelFormatError
from edgeexport.files import sha256_of as hash_path
from edgeexport.sources import detect_format, open_source
from edgeexport.types import TensorSpec
from edgeexport.verify.inputs import load_npz, seeded_inputs

IMAGE = TensorSpec("image", (None, 8, 8, 1), "float32", layout="NHWC")
TOKENS = TensorSpec("tokens", (None, 5), "int32", value_range=(0, 99))


def test_formats_are_detected_from_path_and_bytes(samples: Path, tmp_path: Path) -> None:
    assert detect_format(samples / "digits_cnn.keras") == "keras"
    assert detect_format(samples / "digits_mlp.h5") == "h5"
    assert detect_format(samples / "digits_mlp_savedmodel") == "savedmodel"
    fake_h5 = tmp_path / "fake.h5"
    fake_h5.write_text("not hdf5 at all")
    with pytest.raises(ModelFormatError, match="not an HDF5 file"):
        detect_format(fake_h5)


def test_directory_hash_changes_with_any_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one")
    first = hash_path(tmp_path)
    (tmp_path / "a.txt").write_text("two")
    assert hash_path(tmp_path) != first
    assert len(first) == 64


def test_open_source_names_the_model(samples: Path) -> None:
    source = open_source(samples / "digits_cnn.keras")
    assert source.name == "digits_cnn" and source.format == "keras"


def test_npz_split_and_single_array(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    images = np.random.default_rng(0).random((7, 8, 8, 1)).astype(np.float32)
    np.savez(path, calibration__image=images, test__image=images[:3], test__labels=np.arange(3))
    calibration = load_npz(path, (IMAGE,), split="calibration")
    test = load_npz(path, (IMAGE,), split="test")
    assert calibration.count == 7 and calibration.labels is None
    assert test.count == 3 and list(test.labels) == [0, 1, 2]
    single = tmp_path / "single.npz"
    np.savez(single, whatever=images)
    assert load_npz(single, (IMAGE,), split="calibration").count == 7


def test_npz_errors_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, test__image=np.zeros((3, 8, 8, 1), np.float32))
    with pytest.raises(DataError, match="no 'calibration' split"):
        load_npz(path, (IMAGE,), split="calibration")
    np.savez(path, image=np.zeros((3, 8, 8, 1), np.float32), labels=np.zeros(2, np.int64))
    with pytest.raises(DataError, match="labels"):
        load_npz(path, (IMAGE,), split="test")
    np.savez(path, tokens=np.zeros((3, 5), np.float32))
    with pytest.raises(DataError, match="token ids"):
        load_npz(path, (TOKENS,), split="test")
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not an .npz archive"):
        load_npz(tmp_path / "bad.npz", (IMAGE,), split="test")


def test_seeded_inputs_respect_dtype_and_range() -> None:
    data = seeded_inputs((IMAGE, TOKENS), 16, seed=3)
    assert data.arrays["image"].dtype == np.float32 and data.arrays["image"].shape == (16, 8, 8, 1)
    assert 0.0 <= data.arrays["image"].min() and data.arrays["image"].max() < 1.0
    tokens = data.arrays["tokens"]
    assert tokens.dtype == np.int32 and tokens.min() >= 0 and tokens.max() <= 99
    again = seeded_inputs((IMAGE, TOKENS), 16, seed=3)
    assert np.array_equal(again.arrays["tokens"], tokens)
