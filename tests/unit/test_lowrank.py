"""Low-rank factorization math (numpy only), the low-rank presets in the catalog, and the MCU auto rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeexport.catalog import load_device, load_preset
from edgeexport.catalog.policy import choose_preset
from edgeexport.compress.lowrank import (
    energy_rank,
    keep_rank_svd,
    keep_rank_tucker,
    plan_kernel,
    svd_factors,
    tucker2_factors,
    tucker_params,
)
from edgeexport.errors import ProfileError


def _low_rank_matrix(rows: int, cols: int, rank: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(rows, rank)) @ rng.normal(size=(rank, cols))).astype(np.float32)


def test_svd_recovers_a_low_rank_dense_kernel_exactly() -> None:
    kernel = _low_rank_matrix(64, 48, 5)
    factors = svd_factors(kernel, 5)
    a, b = factors.weights
    assert a.shape == (64, 5) and b.shape == (5, 48)
    np.testing.assert_allclose(a @ b, kernel, rtol=1e-4, atol=1e-4)
    assert factors.relative_error < 1e-5
    assert svd_factors(kernel, 2).relative_error > 0.1


def test_conv_svd_factors_compose_to_the_kernel() -> None:
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 8, 12)).astype(np.float32)
    a, b = svd_factors(kernel, 12).weights  # full rank of (72, 12)
    assert a.shape == (3, 3, 8, 12) and b.shape == (1, 1, 12, 12)
    np.testing.assert_allclose(np.einsum("hwir,ro->hwio", a, b[0, 0]), kernel, rtol=1e-4, atol=1e-4)


def test_tucker2_at_full_rank_is_exact_and_truncation_costs_error() -> None:
    rng = np.random.default_rng(2)
    kernel = rng.normal(size=(3, 3, 6, 10)).astype(np.float32)
    full = tucker2_factors(kernel, 6, 10)
    first, core, last = full.weights
    assert first.shape == (1, 1, 6, 6) and core.shape == (3, 3, 6, 10) and last.shape == (1, 1, 10, 10)
    rebuilt = np.einsum("hwab,ia,bo->hwio", core, first[0, 0], last[0, 0])
    np.testing.assert_allclose(rebuilt, kernel, rtol=1e-4, atol=1e-4)
    assert full.relative_error < 1e-5 < tucker2_factors(kernel, 3, 4).relative_error


def test_keep_rank_respects_the_parameter_budget() -> None:
    for rows, cols, bias in ((64, 256, 256), (256, 256, 256), (144, 32, 32), (32, 10, 10)):
        rank = keep_rank_svd(rows, cols, 0.5, bias)
        assert rank * (rows + cols) + bias <= 0.5 * (rows * cols + bias)
        assert (rank + 1) * (rows + cols) + bias > 0.5 * (rows * cols + bias)
    r = keep_rank_tucker(3, 3, 16, 32, 0.25, 32)
    assert tucker_params(3, 3, 16, 32, r, r, 32) <= 0.25 * (3 * 3 * 16 * 32 + 32)
    assert keep_rank_svd(4, 4, 0.25, 4) == 0  # too small to split within a quarter


def test_energy_rank_counts_squared_singular_values() -> None:
    values = np.array([3.0, 2.0, 1.0, 0.5])  # squares 9, 4, 1, 0.25 of 14.25
    assert energy_rank(values, 0.6) == 1
    assert energy_rank(values, 0.9) == 2
    assert energy_rank(values, 0.95) == 3
    assert energy_rank(values, 1.0) == 4
    with pytest.raises(ValueError):
        energy_rank(values, 0.0)


def test_plan_skips_a_kernel_where_no_rank_saves_parameters() -> None:
    rng = np.random.default_rng(3)
    square = rng.normal(size=(32, 32)).astype(np.float32)  # flat spectrum: 95% energy needs most of the rank
    rank, factors = plan_kernel("fc", square, 32, keep=None, energy=0.95)
    assert factors is None and rank.rank == 0 and "would not reduce" in rank.reason
    rank, factors = plan_kernel("fc", _low_rank_matrix(64, 64, 4), 64, keep=None, energy=0.95)
    assert factors is not None and rank.rank <= 4 and rank.params_after < rank.params_before
    assert rank.macs_after < rank.macs_before


def test_lowrank_presets_load_and_compose() -> None:
    half = load_preset("lowrank-50")
    assert half.pruning is not None and half.pruning.method == "lowrank" and half.pruning.sparsity == 0.5
    assert half.quantization.tflite_mode == "fp32" and half.quantization.coreml_precision == "fp32"
    quarter = load_preset("lowrank-25")
    assert quarter.pruning is not None and quarter.pruning.sparsity == 0.75 and quarter.pruning.form == "tucker2"
    energy = load_preset("lowrank-energy-95")
    assert energy.pruning is not None and energy.pruning.energy == 0.95 and energy.pruning.sparsity == 0.0
    combined = load_preset("lowrank-50+int8")
    assert combined.targets == frozenset({"tflite"}) and combined.pruning == half.pruning
    assert combined.quantization.tflite_mode == "int8"
    with pytest.raises(ProfileError, match="factorizes twice"):
        load_preset("lowrank-50+prune-50")


def test_bad_lowrank_tables_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[presets.mine]\ndescription = "x"\ntargets = ["tflite"]\n[presets.mine.pruning]\n'
                    'method = "magnitude"\nsparsity = 0.5\nform = "svd"\n[presets.mine.tolerance]\n'
                    'top1_agreement_min = 0.9\n')
    with pytest.raises(ProfileError, match="lowrank"):
        load_preset("mine", extra_files=[path])
    path.write_text('[presets.mine]\ndescription = "x"\ntargets = ["tflite"]\n[presets.mine.pruning]\n'
                    'method = "lowrank"\nenergy = 0.9\nsparsity = 0.5\n[presets.mine.tolerance]\n'
                    'top1_agreement_min = 0.9\n')
    with pytest.raises(ProfileError, match="not both"):
        load_preset("mine", extra_files=[path])


def test_auto_on_an_mcu_factorizes_a_model_whose_int8_weights_do_not_fit() -> None:
    mcu = load_device("nrf52840")  # 1 MiB flash
    small, why_small = choose_preset(mcu, "tflite", model_bytes=150_000)
    assert small.name == "prune-channels-25+int8-io", why_small
    big, why_big = choose_preset(mcu, "tflite", model_bytes=8 * 2**20)  # ~2 MiB of int8 weights
    assert big.name == "lowrank-25+int8-io"
    assert "1 MiB flash" in why_big and "2 MiB of int8 weights" in why_big and "distill" not in why_big
    _, why_huge = choose_preset(mcu, "tflite", model_bytes=64 * 2**20)
    assert "edgeexport distill" in why_huge
    no_data, why = choose_preset(mcu, "tflite", model_bytes=8 * 2**20, calibration=False)
    assert no_data.name == "lowrank-25+fp32" and "no calibration data" in why
    phone, _ = choose_preset(load_device("pixel-8"), "tflite", model_bytes=8 * 2**20)
    assert phone.pruning is None
