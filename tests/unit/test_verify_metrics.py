"""Metrics, tolerance judging, output matching, JUnit and golden files: numpy only, no TensorFlow."""

from __future__ import annotations

import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from edgeexport.catalog.model import Tolerance
from edgeexport.errors import DataError
from edgeexport.types import Permutation, Status, TensorSpec
from edgeexport.verify.compare import (
    artifact_feeds,
    compare_outputs,
    judge,
    match,
    worst_failure,
)
from edgeexport.verify.golden import Golden, load_golden, save_golden
from edgeexport.verify.junit import TestCase, junit_xml, verification_cases, write_junit
from edgeexport.verify.metrics import compute, cosine_per_sample, sqnr_db
from edgeexport.verify.stage import Verification, preset_from_name


def _probs(n: int = 50, classes: int = 10, seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(n, classes))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def test_identical_outputs() -> None:
    ref = _probs()
    m = compute(ref, ref.copy())
    assert m.max_abs == 0 and m.rmse == 0 and m.cosine == pytest.approx(1.0) and math.isinf(m.sqnr_db)
    assert m.classifier is not None and m.classifier.top1_agreement == 1.0 and m.classifier.top5_overlap == 1.0


def test_sqnr_and_errors_match_their_definitions() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(64, 32))
    noise = rng.normal(size=ref.shape)
    noise *= np.sqrt(np.sum(ref**2) / np.sum(noise**2) / 100.0)  # noise power = signal / 100 -> 20 dB
    m = compute(ref, ref + noise)
    assert m.sqnr_db == pytest.approx(20.0, abs=1e-6)
    assert m.max_abs == pytest.approx(np.abs(noise).max()) and m.rmse == pytest.approx(np.sqrt(np.mean(noise**2)))
    assert m.classifier is not None  # 2-D with 32 columns looks like class scores
    assert sqnr_db(np.zeros(3), np.ones(3)) == -math.inf


def test_cosine_per_sample_edge_cases() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    out = np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])
    assert cosine_per_sample(ref, out) == pytest.approx([0.0, 1.0, 0.0, -1.0])


def test_classifier_agreement_and_accuracy() -> None:
    ref = _probs(10)
    out = ref.copy()
    top = np.argmax(out[0])
    out[0, top], out[0, (top + 1) % 10] = 0.0, 1.0  # one sample of ten changes its arg-max
    labels = np.argmax(ref, axis=1)
    m = compute(ref, out, labels)
    c = m.classifier
    assert c is not None and c.top1_agreement == pytest.approx(0.9)
    assert c.reference_accuracy == 1.0 and c.artifact_accuracy == pytest.approx(0.9)
    assert c.accuracy_drop_points == pytest.approx(10.0)
    assert compute(ref[:, :1], out[:, :1]).classifier is None  # one column is not class scores


def test_judge_names_the_worst_failing_metric() -> None:
    ref = _probs(20)
    rng = np.random.default_rng(2)
    tolerance = Tolerance(max_abs=1e-3, cosine_min=0.999, sqnr_db_min=30.0, top1_agreement_min=0.99)
    slightly = compute(ref, ref + rng.normal(scale=1e-4, size=ref.shape).astype(np.float32))
    assert all(c.passed for c in judge("probs", slightly, tolerance))
    badly = compute(ref, _probs(20, seed=9))
    checks = judge("probs", badly, tolerance)
    assert [c.label for c in checks] == ["max_abs", "cosine", "sqnr", "top1"]
    assert not any(c.passed for c in checks)
    comparisons, _ = compare_outputs({"probs": ref}, {"probs": _probs(20, seed=9)}, tolerance)
    line = worst_failure(comparisons)
    assert line is not None and line.startswith("probs: ")
    worst = max(checks, key=lambda c: c.severity)
    assert line == worst.line() and (" < " in line or " > " in line)


def test_skipped_checks_do_not_fail_and_do_not_pass() -> None:
    ref = np.random.default_rng(3).normal(size=(8, 4, 4, 2)).astype(np.float32)
    checks = judge("feat", compute(ref, ref), Tolerance(cosine_min=0.99, top1_agreement_min=0.9))
    assert [(c.label, c.passed) for c in checks] == [("cosine", True), ("top1", None)]


def test_matching_by_name_then_shape_records_guesses() -> None:
    pairs, guesses = match([("probs", (10,)), ("box", (4,))], [("Identity_1", (4,)), ("probs", (10,))])
    assert pairs == [("probs", "probs", "name"), ("box", "Identity_1", "shape")]
    assert guesses == ("output 'box' matched to artifact output 'Identity_1' by shape",)


def test_recorded_permutation_is_applied_and_never_guessed() -> None:
    ref = np.random.default_rng(4).normal(size=(3, 2, 4, 5)).astype(np.float32)  # NCHW reference
    nhwc = ref.transpose(0, 2, 3, 1)
    perm = (Permutation("output", "y", (0, 2, 3, 1)),)
    ok, _ = compare_outputs({"y": ref}, {"y": nhwc}, Tolerance(max_abs=1e-6), permutations=perm)
    assert ok[0].passed and ok[0].metrics is not None and ok[0].metrics.max_abs == 0
    unknown, _ = compare_outputs({"y": ref}, {"y": nhwc}, Tolerance(max_abs=1e-6))
    assert not unknown[0].passed and "no layout permutation recorded" in (unknown[0].error or "")


def _verification(status: Status, outputs: tuple = (), reason: str = "") -> Verification:
    return Verification(status, "m.int8.tflite", "m.keras", outputs, Tolerance(cosine_min=0.99), "preset int8",
                        "seeded", 4, "litert", reason=reason, seconds=0.5)


def test_verification_status_exit_codes_and_junit(tmp_path: Path) -> None:
    ref = _probs(16)
    tolerance = Tolerance(cosine_min=0.999, top1_agreement_min=0.99, accuracy_drop_max=1.0)
    comparisons, _ = compare_outputs({"probs": ref}, {"probs": _probs(16, seed=5)}, tolerance)
    failed = _verification(Status.VERIFICATION_FAILED, comparisons)
    assert not failed.passed and failed.exit_code == 5 and failed.headline().startswith("FAIL ")
    assert failed.failure_line().startswith("probs: ")
    path = write_junit(tmp_path / "out" / "v.xml", "suite", verification_cases(failed))
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "2", "1")  # no labels: skipped
    blocked = _verification(Status.NOT_VERIFIABLE, reason="not verifiable on this platform: op gelu")
    assert not blocked.passed and blocked.exit_code == 4 and blocked.headline() == "not verifiable"
    assert blocked.failure_line() == "not verifiable on this platform: op gelu"
    assert blocked.to_dict()["status"] == "not_verifiable"
    xml = junit_xml("s", verification_cases(blocked))
    assert 'errors="1"' in xml and "op gelu" in xml
    assert junit_xml("s", [TestCase("c", "n", failure="a < b")]).count("<failure") == 1


def test_golden_file_round_trip(tmp_path: Path) -> None:
    golden = Golden({"image": np.ones((3, 2), np.float32)}, {"probs": _probs(3)}, np.array([1, 2, 3]),
                    Tolerance(cosine_min=0.99), "int8", "digits.npz [test]", "m.keras", {"probs": "probs"})
    back = load_golden(save_golden(tmp_path / "g.npz", golden))
    assert back.samples == 3 and back.preset == "int8" and back.tolerance == golden.tolerance
    assert np.array_equal(back.outputs["probs"], golden.outputs["probs"]) and back.labels is not None
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary left behind
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(DataError, match="not an edgeexport golden file"):
        load_golden(tmp_path / "plain.npz")


def test_preset_from_artifact_name_and_light_imports() -> None:
    assert preset_from_name(Path("digits_cnn.int8-io.tflite")) == "int8-io"
    assert preset_from_name(Path("model.tflite")) is None


def test_verify_modules_do_not_import_frameworks() -> None:
    import subprocess

    code = ("import sys, edgeexport.verify.stage, edgeexport.verify.localize, edgeexport.verify.junit, "
            "edgeexport.cli.commands.verify; heavy = [m for m in ('tensorflow', 'keras', 'coremltools', "
            "'ai_edge_litert.interpreter') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr[-1500:]


def test_artifact_feeds_rename_transpose_and_refuse_other_models() -> None:
    image = np.zeros((2, 3, 8, 8), np.float32)  # NCHW reference
    spec = TensorSpec("serving_image", (1, 8, 8, 3), "float32")
    feeds, guesses = artifact_feeds({"image": image}, (spec,), (Permutation("input", "image", (0, 2, 3, 1)),))
    assert feeds["serving_image"].shape == (2, 8, 8, 3) and "by shape" in guesses[0]
    with pytest.raises(DataError, match="takes 8x8x3 per sample but the reference's input 'image' is 3x8x8"):
        artifact_feeds({"image": image}, (spec,))  # no recorded permutation: never guessed
    with pytest.raises(DataError, match="takes 64 per sample"):
        artifact_feeds({"image": np.zeros((2, 8, 8, 1), np.float32)}, (TensorSpec("pixels", (1, 64), "float32"),))
