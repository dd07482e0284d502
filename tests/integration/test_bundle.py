"""Bundles from a real conversion: manifests validate, hashes match, metadata is embedded and the embedded
artifacts still compute the same outputs; the CLI writes the same bundles."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeexport.bundle import ModelInfo, parse_preprocessing, validate, write_bundles
from edgeexport.targets.metadata import TFLITE_METADATA_NAME, read_tflite_metadata
from edgeexport.files import sha256_of as artifact_sha256

LABELS = tuple(str(d) for d in range(10))


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests import support

    root = Path(__file__).resolve().parents[2] / "sample_models"
    out = tmp_path_factory.mktemp("bundle") / "digits"
    labels = out.parent / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    support.convert(root / "digits_cnn.keras", out, targets=("tflite", "coreml"), preset="fp16",
                       device="iphone-15-pro", verify_data=root / "digits.npz", bundle=True, labels=labels,
                       preprocess="scale=0.0625")
    return out


def _manifest(out: Path, target: str) -> dict[str, Any]:
    return json.loads((out / "bundle" / target / "manifest.json").read_text())


@pytest.mark.parametrize("target", ["tflite", "coreml"])
def test_convert_bundle_writes_valid_manifests(converted: Path, target: str) -> None:
    manifest = _manifest(converted, target)
    assert validate(manifest) == []
    bundled = converted / "bundle" / target / manifest["artifact"]["path"]
    assert artifact_sha256(bundled) == manifest["artifact"]["sha256"]
    report = json.loads((converted / "report.json").read_text())
    entry = next(a for a in report["artifacts"] if a["target"] == target)
    assert manifest["preset"] == entry["preset"] == "fp16" and manifest["device"] == "iphone-15-pro"
    assert [t["name"] for t in manifest["inputs"]] == [t["name"] for t in entry["inputs"]] == ["image"]
    assert manifest["inputs"][0]["shape"] == [1, 8, 8, 1] and manifest["inputs"][0]["layout"] == "NHWC"
    assert manifest["labels"] == list(LABELS)
    pre = manifest["inputs"][0]["preprocessing"]  # manifest 2.0: per input
    assert pre["scale"] == 0.0625 and pre["source"] == "user"
    if entry.get("verification"):
        assert manifest["verification"]["passed"] is entry["verification"]["passed"]
    assert len(manifest["simulated_latency"]) == len(entry["estimates"])


def test_tflite_metadata_is_embedded_and_outputs_are_unchanged(converted: Path,
                                                               digits_data: dict[str, np.ndarray]) -> None:
    from edgeexport.runtimes.tflite import TfliteRunner

    manifest = _manifest(converted, "tflite")
    bundled = converted / "bundle" / "tflite" / manifest["artifact"]["path"]
    original = converted / manifest["artifact"]["path"]
    assert bundled.read_bytes() != original.read_bytes()
    embedded = json.loads(read_tflite_metadata(bundled) or b"null")
    assert embedded["labels"] == list(LABELS) and embedded["inputs"] == manifest["inputs"]
    assert read_tflite_metadata(original) is None
    assert f"tflite.metadata.{TFLITE_METADATA_NAME}" in manifest["embedded"]
    assert [n["what"] for n in manifest["not_embedded"]] == ["tflite.TFLITE_METADATA"]
    images = digits_data["test__image"][:16]
    before = TfliteRunner(original).run({"image": images})["probs"]
    after = TfliteRunner(bundled).run({"image": images})["probs"]
    np.testing.assert_array_equal(before, after)
    accuracy = float(np.mean(after.argmax(axis=1) == digits_data["test__labels"][:16]))
    assert accuracy >= 0.8


def test_coreml_metadata_is_embedded(converted: Path) -> None:
    from coremltools.proto import Model_pb2

    manifest = _manifest(converted, "coreml")
    package = converted / "bundle" / "coreml" / manifest["artifact"]["path"]
    spec = Model_pb2.Model()
    spec.ParseFromString(next(package.rglob("*.mlmodel")).read_bytes())
    meta = spec.description.metadata
    assert json.loads(meta.userDefined["com.edgeexport.labels"]) == list(LABELS)
    assert json.loads(meta.userDefined["com.edgeexport.preprocessing"])["image"]["scale"] == 0.0625
    assert meta.versionString == manifest["model"]["version"]
    assert "fp16" in meta.shortDescription
    assert spec.description.input[0].shortDescription.startswith("float32[1x8x8x1] NHWC; x = (raw * 0.0625")
    assert "10 classes" in spec.description.output[0].shortDescription
    assert manifest["not_embedded"] == [] and "coreml.userDefined.labels" in manifest["embedded"]
    # Weights are untouched: only the description changed.
    original = converted / manifest["artifact"]["path"]
    weights = "Data/com.apple.CoreML/weights/weight.bin"
    assert (package / weights).read_bytes() == (original / weights).read_bytes()


def test_bundles_are_byte_deterministic(converted: Path, tmp_path: Path) -> None:
    copy = tmp_path / "again"
    shutil.copytree(converted, copy, ignore=shutil.ignore_patterns("bundle"))
    results = write_bundles(copy, preprocessing=parse_preprocessing("scale=0.0625"), info=ModelInfo(labels=LABELS))
    for result in results:
        target = result.manifest["target"]
        assert result.manifest["artifact"]["sha256"] == _manifest(converted, target)["artifact"]["sha256"]
        assert result.manifest_path.read_bytes() == (converted / "bundle" / target / "manifest.json").read_bytes()


def test_bundle_command(converted: Path, tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    copy = tmp_path / "cli"
    shutil.copytree(converted, copy, ignore=shutil.ignore_patterns("bundle"))
    result = run_cli("bundle", copy, "--preprocess", "scale=1/16", "--model-version", "2.1.0", "--json")
    assert result.code == 0, result.err
    written = json.loads(result.out)
    assert sorted(w["manifest"]["target"] for w in written) == ["coreml", "tflite"]
    assert all(w["manifest"]["model"]["version"] == "2.1.0" for w in written)
    assert _manifest(copy, "tflite")["inputs"][0]["preprocessing"]["scale"] == 0.0625
    bad = run_cli("bundle", copy, "--preprocess", "scale=abc")
    assert bad.code == 3 and "scale value 'abc' is not a number" in bad.err
    # convert reads --preprocess before converting, so a bad one costs nothing and leaves nothing behind.
    early = run_cli("convert", Path(__file__).resolve().parents[2] / "sample_models" / "digits_cnn.keras",
                    "--out", tmp_path / "early", "--bundle", "--preprocess", "std=0")
    assert early.code == 3 and "std must be > 0" in early.err
    assert not (tmp_path / "early").exists()
    missing = run_cli("bundle", tmp_path / "nothing-here")
    assert missing.code == 3 and "no report.json" in missing.err


@pytest.mark.parametrize("target", ["tflite", "coreml"])
def test_manifest_sections_match_report_json(converted: Path, target: str) -> None:
    """The manifest is built from typed objects; report.json read as plain JSON must say the same: the
    verification's scalar facts (wall times left out, local paths cut to file names) and the latency bands."""
    import math
    import re

    manifest = _manifest(converted, target)
    entry = next(a for a in json.loads((converted / "report.json").read_text())["artifacts"] if a["target"] == target)
    verification = entry["verification"]
    expected = {k: re.split(r"[\\/]", v)[-1] if isinstance(v, str) and v.startswith("/") else v
                for k, v in verification.items()
                if k not in ("passed", "seconds") and (v is None or isinstance(v, str | int | float))
                and not (isinstance(v, float) and not math.isfinite(v))}
    assert manifest["verification"] == {"passed": verification["passed"], "summary": expected}
    assert expected["runtime"] in ("litert", "mil") and expected["samples"] > 0
    assert manifest["simulated_latency"] == [
        {"device": e["device"], "p50_ms": e["p50_ms"], "low_ms": e["low_ms"], "high_ms": e["high_ms"], "unit": e["path"]}
        for e in entry["estimates"]]


def test_report_html_is_the_same_from_the_report_read_back(converted: Path) -> None:
    from edgeexport.report.html import render_html
    from edgeexport.report.model import load_report

    written = (converted / "report.html").read_text()
    assert render_html(load_report(converted / "report.json")) == written
    assert written.count("<tr>") >= 3 and "est. latency iphone-15-pro" in written
