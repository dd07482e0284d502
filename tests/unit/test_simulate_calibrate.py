"""The calibration fit on synthetic measurements, and its TOML round trip through the catalog loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeexport.catalog.devices import parse_device
from edgeexport.simulate.calibrate import Measurement, fit, profile_toml
from edgeexport.simulate.cost import cpu_speedup, op_time
from edgeexport.simulate.estimate import (
    apply_calibration,
    residuals_path,
    uncertainty_band,
)
from edgeexport.simulate.graph import Op

FACTS: dict[str, object] = {"cores": 2, "ghz": 2.5, "model": "Test CPU", "flop_cycle": 32, "vnni": True}
PER_CORE = 2.5 * 32  # GOP/s of one core at the theoretical peak


def _synthetic() -> list[Measurement]:
    """Cases generated from a known truth: conv fp32 at 60 % of one core, conv int8 at 3x that rate,
    depthwise fp32 at 20 %, 0.5 us per op and 3 us per invoke."""
    rows = []
    truth = {("conv", "fp32"): 0.6, ("conv", "int8"): 1.8, ("depthwise", "fp32"): 0.2, ("depthwise", "int8"): 0.3}
    for (family, dtype), eff in truth.items():
        for k, ops in enumerate((2e6, 8e6, 3e7)):
            seconds = ops / (PER_CORE * 1e9 * eff)
            rows.append(Measurement(f"{family}{k}", family, dtype, (seconds * 1e6 + 0.5 + 3.0) * 1e-3, int(ops), 1000, 1))
    for family in ("elementwise", "pad"):
        rows.append(Measurement(family, family, "fp32", (4e5 / 50e9 * 1e6 + 3.5) * 1e-3, 1000, 400_000, 1))
    rows.append(Measurement("chain1", "chain", "fp32", 3.5e-3, 0, 0, 1))
    rows.append(Measurement("chain16", "chain", "fp32", (3.0 + 16 * 0.5) * 1e-3, 0, 0, 16))
    return rows


def test_fit_recovers_known_efficiencies_and_overheads() -> None:
    unit, invoke_us = fit(_synthetic(), FACTS, threads=1)
    assert unit.op_overhead_us == pytest.approx(0.5, abs=1e-3)
    assert invoke_us == pytest.approx(3.0, abs=1e-3)
    assert unit.peak_gops["fp32"] == pytest.approx(2 * PER_CORE, rel=1e-3)
    # efficiencies are relative to the all-core peak scaled to 1 of 2 threads (cost.thread_fraction)
    share = cpu_speedup(2) / 2
    assert unit.efficiency["conv"] == pytest.approx(0.6 * share, rel=1e-3)
    assert unit.efficiency["depthwise"] == pytest.approx(0.2 * share, rel=1e-3)
    # int8 peak is 3x fp32 so that conv keeps one efficiency; depthwise int8 gets its own key
    assert unit.peak_gops["int8"] == pytest.approx(3 * 2 * PER_CORE, rel=1e-3)
    assert unit.efficiency["conv@int8"] == pytest.approx(0.6 * share, rel=1e-3)
    assert unit.efficiency["depthwise@int8"] == pytest.approx(0.1 * share, rel=1e-3)
    # the fitted unit predicts a conv int8 case back within rounding
    op = Op(0, "c", "CONV_2D", "conv", (), (), "int8", ops=8_000_000, read_bytes=500, write_bytes=500)
    predicted_us = op_time(op, unit, threads=1).seconds * 1e6
    assert predicted_us == pytest.approx(8e6 / (PER_CORE * 1e3 * 1.8) + 0.5, rel=1e-2)


def test_profile_toml_loads_through_the_catalog(tmp_path: Path) -> None:
    unit, _ = fit(_synthetic(), FACTS, threads=1)
    path = tmp_path / "my-host.toml"
    path.write_text(profile_toml("my-host", unit, FACTS, 1, 20), encoding="utf-8")
    profile = parse_device(path)
    cpu = profile.unit("cpu")
    assert cpu is not None and profile.device_class == "host"
    assert cpu.efficiency["conv"] == pytest.approx(0.6 * cpu_speedup(2) / 2, rel=1e-3)
    assert all("@" not in key for key in cpu.efficiency)
    assert profile.sources["units.cpu.op_overhead_us"].startswith("M:")
    # without residuals: the default band; with them: the saved percentiles and per-dtype efficiencies
    assert uncertainty_band(profile)[2].startswith("default")
    residuals_path(path).write_text(
        '{"n": 4, "ratio_p10": 0.8, "ratio_p90": 1.3, "efficiency_by_dtype": {"depthwise@int8": 0.1}}',
        encoding="utf-8",
    )
    low, high, source = uncertainty_band(profile)
    assert (low, high) == (0.8, 1.3) and "calibration" in source
    enriched = apply_calibration(profile).unit("cpu")
    assert enriched is not None and enriched.efficiency["depthwise@int8"] == 0.1
