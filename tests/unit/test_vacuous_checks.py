"""Checks that cannot tell a right artifact from a wrong one must say so (numpy only, no framework import)."""

from __future__ import annotations

import numpy as np

from edgeexport.catalog.model import Tolerance
from edgeexport.types import TensorSpec
from edgeexport.verify.compare import compare_outputs
from edgeexport.verify.inputs import seeded_inputs
from edgeexport.verify.metrics import classifier_metrics, input_independent


def test_top1_agreement_ignores_reference_ties() -> None:
    rng = np.random.default_rng(0)
    # An untrained 1000-class softmax: 0.001 everywhere, differences far below fp16 noise.
    reference = (np.full((20, 1000), 1e-3) + rng.normal(0, 1e-9, (20, 1000))).astype(np.float32)
    actual = reference + rng.normal(0, 4e-7, reference.shape).astype(np.float32)
    tied = classifier_metrics(reference, actual)
    assert tied.top1_ignored == 20 and tied.top1_agreement is None
    (comparison,), _ = compare_outputs({"p": reference}, {"p": actual}, Tolerance(top1_agreement_min=0.99))
    check = next(c for c in comparison.checks if c.metric == "top1_agreement")
    assert check.passed is None and comparison.passed  # skipped, not failed and not passed
    assert any("ignores 20 of 20" in w for w in comparison.warnings)
    # Clear winners still count, and a real flip among them still fails.
    clear = np.eye(10, dtype=np.float32)[np.arange(20) % 10] * 0.9 + 0.01
    flipped = clear.copy()
    flipped[0] = np.roll(flipped[0], 1)
    mixed = classifier_metrics(np.vstack([clear, reference[:5, :10]]), np.vstack([flipped, reference[:5, :10]]))
    assert mixed.top1_ignored == 5 and mixed.top1_agreement == 19 / 20


def test_constant_reference_output_is_flagged() -> None:
    constant = np.full((16, 10), 0.1, dtype=np.float32)
    assert input_independent(constant)
    (comparison,), _ = compare_outputs({"p": constant}, {"p": constant.copy()}, Tolerance(cosine_min=0.99))
    assert comparison.passed and any("same for every input" in w for w in comparison.warnings)
    varying = np.random.default_rng(1).uniform(0, 1, (16, 10)).astype(np.float32)
    assert not input_independent(varying)
    (fine,), _ = compare_outputs({"p": varying}, {"p": varying.copy()}, Tolerance(cosine_min=0.99))
    assert fine.warnings == ()


def test_integer_inputs_use_the_declared_range() -> None:
    spec = TensorSpec("tokens", (None, 12), "int32", value_range=(0.0, 999.0))
    tokens = seeded_inputs((spec,), 64).arrays["tokens"]
    assert tokens.min() >= 0 and tokens.max() <= 999 and tokens.max() > 100
