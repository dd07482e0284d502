"""Regression rules of `check --baseline` on hand-made cell metrics (no conversion, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeexport.check import Cell, CellOutcome, CheckConfig, CheckResult, ModelEntry
from edgeexport.check_baseline import DEFAULT_THRESHOLDS, compare, parse_thresholds, regression_markdown
from edgeexport.errors import ProfileError

OLD = {"size_bytes": 10_000.0, "latency_ms": 1.0, "peak_memory_bytes": 50_000.0, "accuracy_points": 97.0,
       "sqnr_db": 40.0, "cosine": 0.9999, "accelerator_ops_pct": 100.0}


def _run(new: dict[str, float | None], regression: dict[str, float] | None = None) -> tuple[list[str], str]:
    entry = ModelEntry(Path("m.keras"), ("pixel-8",), ("int8",), (), None, None, {})
    config = CheckConfig(Path("c.toml"), Path("out"), 64, (entry,), {**DEFAULT_THRESHOLDS, **(regression or {})})
    outcome = CellOutcome(Cell(0, 0, "pixel-8", "int8"), (), (), metrics={"tflite": new})
    result = CheckResult((), 0, cells=(outcome,))
    found, cases = compare(config, result, {"m.keras.pixel-8.int8": {"metrics": {"tflite": OLD}}})
    assert len(cases) == 1 and (cases[0].failure is None) == (not found)
    return [r.metric for r in found], regression_markdown(found)


def test_unchanged_and_within_limits_pass() -> None:
    assert _run(dict(OLD)) == ([], "")
    within = {**OLD, "size_bytes": 10_150.0, "latency_ms": 1.04, "accuracy_points": 96.6, "sqnr_db": 37.5}
    assert _run(within)[0] == []
    better = {**OLD, "size_bytes": 5_000.0, "latency_ms": 0.5, "accuracy_points": 99.0}
    assert _run(better)[0] == []


@pytest.mark.parametrize(("metric", "value"), [
    ("size_bytes", 10_300.0), ("latency_ms", 1.06), ("peak_memory_bytes", 60_000.0), ("accuracy_points", 96.0),
    ("sqnr_db", 36.0), ("cosine", 0.998), ("accelerator_ops_pct", 80.0),
])
def test_each_metric_regresses_past_its_default_limit(metric: str, value: float) -> None:
    metrics, markdown = _run({**OLD, metric: value})
    assert metrics == [metric]
    assert f"| m.keras.pixel-8.int8 | tflite | {metric} |" in markdown


def test_limits_come_from_the_config_and_missing_metrics_are_not_compared() -> None:
    assert _run({**OLD, "latency_ms": 1.06}, {"latency_pct": 10.0})[0] == []
    assert _run({**OLD, "accuracy_points": None})[0] == []


def test_bad_thresholds_are_exit_3() -> None:
    with pytest.raises(ProfileError, match="latency_percent"):
        parse_thresholds({"latency_percent": 5}, "check.regression")
    with pytest.raises(ProfileError, match="non-negative"):
        parse_thresholds({"size_pct": -1}, "check.regression")
    assert parse_thresholds({"size_pct": 1}, "x")["size_pct"] == 1.0
