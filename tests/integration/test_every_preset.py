"""Every shipped preset, for every target it claims, on the digits sample: the artifact runs, verifies within the
preset's own tolerance on digits.npz, and keeps the model's accuracy within the preset's accuracy budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import convert
from edgeexport.catalog import list_presets

CASES = [(preset.name, target) for preset in list_presets() for target in sorted(preset.targets)]


def test_the_catalog_ships_the_presets_the_docs_promise() -> None:
    names = {name for name, _ in CASES}
    assert {"fp32", "fp16", "dynamic-int8", "int8", "int8-io", "int16x8", "w8", "palettize-6", "palettize-4", "w8a8",
            "prune-50", "prune-75", "prune-2:4", "prune-channels-25"} <= names


# Low-rank presets distil for up to 30 epochs each: they run with the slow tests (issue 15 keeps `make test` small).
SLOW_PREFIXES = ("lowrank-",)


@pytest.mark.parametrize(("preset", "target"), [
    pytest.param(p, t, marks=pytest.mark.slow) if p.startswith(SLOW_PREFIXES) else (p, t) for p, t in CASES
], ids=[f"{t}-{p}" for p, t in CASES])
def test_preset_verifies_on_real_digits(samples: Path, tmp_path: Path, preset: str, target: str) -> None:
    report = convert(samples / "digits_cnn.keras", tmp_path, targets=(target,), preset=preset,
                     calibration=samples / "digits.npz", verify_data=samples / "digits.npz", verify_samples=360)
    entry = report.artifacts[0]
    assert entry.artifact.target == target and entry.artifact.size_bytes > 0
    verification = entry.verification
    assert verification is not None and verification.passed, verification.failure_line()
    classifier = verification.to_dict()["outputs"][0]["metrics"]["classifier"]
    assert classifier["reference_accuracy"] > 0.95
    drop_budget = verification.tolerance.accuracy_drop_max
    assert drop_budget is None or classifier["accuracy_drop_points"] <= drop_budget
