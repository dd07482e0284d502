"""A fixed subset of the onnx wheel's backend node tests through convert + verify against the tests' own expected
outputs (benchmarks/onnx_conformance.py runs all of them). Each case covers a shape rule of issue 14: a fixed first
dimension that is not a batch, a second input of fixed shape, scalar inputs, SAME_LOWER padding, Flatten over
axis 0, and an op TFLite cannot run, refused with exit 4 naming it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import onnx_conformance as conformance  # noqa: E402

CASES = {
    "test_abs": "pass",                        # x is (3, 4, 5): axis 0 is not a batch
    "test_gemm_transposeA": "pass",            # A (6, 3) and B (6, 4): two fixed inputs
    "test_clip_default_max": "pass",           # a scalar bound
    "test_averagepool_2d_same_lower": "pass",  # SAME_LOWER rewritten as explicit pads
    "test_flatten_axis0": "pass",              # onnx2tf's channels-last graph disagreed: retried
    "test_basic_conv_with_padding": "pass",    # weights frozen as an exporter writes them
    "test_cumsum_1d": "refused",               # TFLite has no builtin for it here
}


@pytest.mark.parametrize("test", sorted(CASES))
def test_node_test_result(test: str, tmp_path: Path) -> None:
    outcome = conformance.run_case(test, conformance.node_tests().get(test, "?"), "tflite", tmp_path)
    assert outcome.result == CASES[test], outcome
    if outcome.result == "refused":
        assert "cumsum" in outcome.detail.lower() and "for tflite" in outcome.detail  # named at plan time


# Core ML: ONNX -> onnx2tf -> coremltools, run by our MIL executor against the tests' expected outputs.
COREML_CASES = {
    "test_abs": "pass",                       # a fixed axis 0 of 3
    "test_cumsum_1d": "pass",                 # TFLite refuses it; Core ML runs it
    "test_gemm_transposeA": "pass",           # two fixed inputs
    "test_add_uint8": "refused",              # uint8 model inputs: refused at plan time, named
    "test_maxpool_2d_dilations": "refused",   # Dilation2D: refused at plan time, named
}


@pytest.mark.parametrize("test", sorted(COREML_CASES))
def test_node_test_result_coreml(test: str, tmp_path: Path) -> None:
    outcome = conformance.run_case(test, conformance.node_tests().get(test, "?"), "coreml", tmp_path)
    assert outcome.result == COREML_CASES[test], outcome
    if outcome.result == "refused":
        assert "for coreml" in outcome.detail, outcome


def test_verify_expected_fails_on_wrong_expected_outputs(tmp_path: Path) -> None:
    from tests.support import convert
    from edgeexport.verify.expected import verify_expected

    model, inputs, expected = conformance.read_case("test_abs")
    report = convert(model, tmp_path / "abs", targets=("tflite",), write_report=False, verify=False)
    artifact = report.artifacts[0].artifact
    assert verify_expected(artifact, inputs, expected).passed
    wrong = {k: v + np.float32(0.5) for k, v in expected.items()}
    result = verify_expected(artifact, inputs, wrong)
    assert result.status == "verification_failed" and "y" in result.failure_line()


def test_sample_is_spread_over_the_op_list() -> None:
    tests = conformance.node_tests()
    sample = conformance.spread_sample(tests, 40)
    ops = {tests[t] for t in sample}
    assert len(sample) == 40 and len(ops) == 40
    assert len(set(conformance.OPS)) >= 50
