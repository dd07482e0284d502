"""``edgeexport calibrate`` end to end (about a minute on 2 shared cores: marked slow)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeexport.catalog import load_device
from edgeexport.simulate.estimate import residuals_path, uncertainty_band


@pytest.mark.slow
def test_calibrate_writes_a_loadable_profile(tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    out = tmp_path / "my-host.toml"
    result = run_cli("calibrate", "--out", out, "--quiet", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["seconds"] < 180
    profile = load_device(out)
    cpu = profile.unit("cpu")
    assert cpu is not None and profile.name == "my-host"
    assert 0 < cpu.efficiency["conv"] <= 1 and cpu.peak_gops["int8"] > 0 and cpu.memory_bandwidth_gbps > 0
    saved = json.loads(residuals_path(out).read_text(encoding="utf-8"))
    assert saved["n"] >= 40 and saved["ratio_p10"] <= saved["ratio_p50"] <= saved["ratio_p90"]
    low, high, source = uncertainty_band(profile)
    assert low <= 1.0 <= high and "calibration" in source
