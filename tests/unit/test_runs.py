"""Fixed shapes as the model declares them: how data sets split into runs (edgeexport.runs) and how data is
checked against fixed leading dimensions and scalar inputs. No framework import."""

from __future__ import annotations

import numpy as np
import pytest

from edgeexport.errors import DataError
from edgeexport.runs import count_samples, data_shape, join_runs, run_count, split_runs
from edgeexport.sources.base import check_feeds
from edgeexport.types import TensorSpec
from edgeexport.verify.inputs import seeded_inputs


def test_fixed_first_dimension_is_a_run_of_that_many_rows() -> None:
    shapes = [(3, 6), (6, 4)]  # Gemm with transA: A (3, 6) is not a batch of 3
    a, b = np.arange(36.0).reshape(6, 6), np.arange(48.0).reshape(12, 4)
    runs = list(split_runs(shapes, [a, b]))
    assert len(runs) == 2
    assert runs[1][0].shape == (3, 6) and runs[1][1].shape == (6, 4)
    assert np.array_equal(runs[1][0], a[3:])
    assert run_count(shapes, [5, 12]) is None  # 5 rows are not whole runs of 3


def test_scalar_inputs_keep_rank_zero_and_outputs_join() -> None:
    runs = list(split_runs([(3, 4), ()], [np.zeros((6, 4)), np.array([1.0, 2.0])]))
    assert [r[1].shape for r in runs] == [(), ()] and float(runs[1][1]) == 2.0
    joined = join_runs([{"y": np.float32(1)}, {"y": np.float32(2)}])
    assert joined["y"].shape == (2,)
    assert join_runs([{"y": np.float32(5)}])["y"].shape == (1,)


def test_seeded_inputs_honor_fixed_dims_at_any_position() -> None:
    specs = (TensorSpec("x", (3, 4, 5), "float32"), TensorSpec("k", (), "int64"), TensorSpec("v", (5,), "float32"))
    data = seeded_inputs(specs, 2)
    assert data.arrays["x"].shape == (6, 4, 5) and data.arrays["k"].shape == (2,) and data.arrays["v"].shape == (10,)
    assert data.count == 2
    assert data.head(1).arrays["x"].shape == (3, 4, 5)
    assert data_shape((None, 8), 4) == (4, 8)
    assert count_samples([(None, 8)], [np.zeros((7, 8))]) == 7


def test_check_feeds_accepts_one_run_and_refuses_partial_runs() -> None:
    specs = (TensorSpec("x", (3, 4, 5), "float32"),)
    assert check_feeds(specs, {"x": np.zeros((3, 4, 5))})["x"].shape == (3, 4, 5)
    with pytest.raises(DataError, match="multiple of 3"):
        check_feeds(specs, {"x": np.zeros((4, 4, 5))})
    with pytest.raises(DataError, match="expected N\\*3x4x5"):
        check_feeds(specs, {"x": np.zeros((4, 5))})
    scalar = (TensorSpec("k", (), "float32"),)
    assert check_feeds(scalar, {"k": np.float32(2)})["k"].shape == (1,)
