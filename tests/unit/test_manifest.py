"""Manifest building, preprocessing parsing and the schema validator (no TensorFlow, no conversion)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from edgeexport.bundle.manifest import (
    ModelInfo,
    Preprocessing,
    build_manifest,
    parse_preprocessing,
    read_labels,
)
from edgeexport.errors import DataError
from edgeexport.jsonschemas import check_schema, load_schema, validate
from edgeexport.types import ModelSummary, Permutation, TensorSpec
from tests.helpers.reports import SOURCE_SHA, typed_report as _report

@pytest.fixture
def manifest(tmp_path: Path) -> dict[str, Any]:
    model = tmp_path / "digits_cnn.int8.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(200)))
    report, entry = _report(model.name)
    return build_manifest(report, entry, model, preprocessing=parse_preprocessing("scale=0.0625"),
                          info=ModelInfo(labels=tuple("0123456789")), embedded=("tflite.metadata.x",),
                          not_embedded=(("tflite.TFLITE_METADATA", "no writer"),))


def test_manifest_from_report_is_valid_and_exact(manifest: dict[str, Any], tmp_path: Path) -> None:
    assert validate(manifest) == []
    data = (tmp_path / "digits_cnn.int8.tflite").read_bytes()
    assert manifest["artifact"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["artifact"]["size_bytes"] == len(data) == 208
    assert manifest["model"] == {"name": "digits_cnn", "version": SOURCE_SHA[:12], "description": "", "author": "",
                                 "license": "", "source_format": "keras", "source_sha256": SOURCE_SHA}
    assert manifest["inputs"][0]["quantization"] == {"scale": 0.0039, "zero_point": -128}
    assert manifest["outputs"][0]["shape"] == [None, 10]
    assert "preprocessing" not in manifest  # schema 2.0: per input
    assert manifest["inputs"][0]["preprocessing"] == {"kind": "affine", "scale": 0.0625, "mean": [0.0], "std": [1.0],
                                                      "channel_order": "none", "source": "user"}
    assert manifest["labels"] == list("0123456789")
    # Wall time and local paths would make the same conversion give a different manifest on each machine.
    assert manifest["verification"] == {"passed": True, "summary": {
        "status": "ok", "artifact": "m.tflite", "reference": "digits_cnn.keras", "failure": None, "reason": "",
        "runtime": "litert", "samples": 64, "data_origin": "digits.npz [test]", "tolerance_source": "preset int8"}}
    assert manifest["simulated_latency"] == [{"device": "pixel-8", "p50_ms": 0.052, "low_ms": 0.036,
                                              "high_ms": 0.073, "unit": "npu"}]
    assert manifest["not_embedded"] == [{"what": "tflite.TFLITE_METADATA", "why": "no writer"}]


def test_absent_stages_are_recorded_as_absent(tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(b"12345678")
    report, entry = _report(model.name, verification=None, estimates=())
    manifest = build_manifest(report, entry, model, preprocessing=Preprocessing(), info=ModelInfo())
    assert validate(manifest) == []
    assert manifest["verification"] is None and manifest["simulated_latency"] == [] and manifest["labels"] is None
    pre = manifest["inputs"][0]["preprocessing"]
    assert pre["kind"] == "identity" and pre["source"] == "default"


def test_package_files_are_listed_with_hashes(tmp_path: Path) -> None:
    package = tmp_path / "m.fp16.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Manifest.json").write_text("{}")
    (package / "Data" / "w.bin").write_bytes(b"\x00" * 100)
    report, entry = _report(package.name, target="coreml", preset="fp16")
    manifest = build_manifest(report, entry, package, preprocessing=Preprocessing(), info=ModelInfo())
    assert validate(manifest) == []
    assert manifest["artifact"]["format"] == "mlpackage"
    assert [f["path"] for f in manifest["artifact"]["files"]] == ["m.fp16.mlpackage/Data/w.bin",
                                                                  "m.fp16.mlpackage/Manifest.json"]
    assert manifest["artifact"]["size_bytes"] == 102


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda m: m.pop("inputs"), "(top level): 'inputs' is a required property"),
    (lambda m: m.update(target="onnx"), "target: 'onnx' is not one of"),
    (lambda m: m["artifact"].update(sha256="XYZ"), "artifact/sha256: 'XYZ' does not match"),
    (lambda m: m["artifact"].update(size_bytes=0), "artifact/size_bytes: 0 is less than the minimum of 1"),
    (lambda m: m["inputs"][0].update(shape=[1, "8"]), "inputs/0/shape/1: '8' is not of type 'integer', 'null'"),
    (lambda m: m["inputs"][0]["quantization"].update(zero_point=True), "True is not of type 'integer'"),
    (lambda m: m.update(extra=1), "('extra' was unexpected)"),
    (lambda m: m["inputs"][0]["preprocessing"].update(channel_order="rgba"),
     "inputs/0/preprocessing/channel_order: 'rgba'"),
    (lambda m: m["inputs"][0].pop("preprocessing"), "'preprocessing' is a required property"),
    (lambda m: m.update(preprocessing=m["inputs"][0]["preprocessing"]), "('preprocessing' was unexpected)"),
    (lambda m: m["verification"]["summary"].update(nested={"a": 1}), "verification/summary/nested: {'a': 1} is not"),
    (lambda m: m.update(schema_version="1.0"), "schema_version: '1.0' does not match"),
    (lambda m: m["simulated_latency"][0].update(p50_ms=-1.0), "simulated_latency/0/p50_ms: -1.0 is less"),
])
def test_invalid_manifests_are_refused(manifest: dict[str, Any], mutate: Any, expected: str) -> None:
    broken = copy.deepcopy(manifest)
    mutate(broken)
    errors = validate(broken)
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize("name", ["manifest.schema.json", "report.schema.json"])
def test_published_schemas_are_valid_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    check_schema(name)  # jsonschema's own meta-schema check: a malformed schema would validate anything
    assert validate({}, name) != []


@pytest.mark.parametrize(("spec", "expected"), [
    (None, Preprocessing()),
    ("none", Preprocessing()),
    ("scale=0.0625", Preprocessing(scale=0.0625, source="user")),
    ("scale=1/255,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,channel_order=RGB",
     Preprocessing(1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "rgb", "user")),
])
def test_parse_preprocessing(spec: str | None, expected: Preprocessing) -> None:
    assert parse_preprocessing(spec) == expected


def test_parse_preprocessing_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "pre.toml"
    path.write_text("[preprocessing]\nscale = 0.5\nmean = [0.5]\nstd = [0.25]\n")
    assert parse_preprocessing(path) == Preprocessing(0.5, (0.5,), (0.25,), "none", "user")


@pytest.mark.parametrize(("spec", "message"), [
    ("scale", "not KEY=VALUE"), ("scale=abc", "not a number"), ("gamma=2", "unknown preprocessing key"),
    ("std=0", "std must be > 0"), ("channel_order=xyz", "channel_order"), ("scale=1/0", "not a number"),
    ("mean=1:2,std=1:2:3", "one per channel"),
])
def test_bad_preprocessing_is_bad_input(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        parse_preprocessing(spec)
    assert info.value.exit_code == 3


def test_labels_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("cat\ndog\n\n")
    assert read_labels(path) == ("cat", "dog")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="empty"):
        read_labels(tmp_path / "empty.txt")


def test_manifest_json_round_trips(manifest: dict[str, Any]) -> None:
    assert validate(json.loads(json.dumps(manifest))) == []


def test_a_dtype_outside_the_schema_is_unsupported(tmp_path: Path) -> None:
    from edgeexport.errors import UnsupportedError

    model = tmp_path / "m.tflite"
    model.write_bytes(b"12345678")
    report, entry = _report(model.name, outputs=(TensorSpec("probs", (None, 10), "complex64"),))
    with pytest.raises(UnsupportedError, match="complex64") as info:
        build_manifest(report, entry, model, preprocessing=Preprocessing(), info=ModelInfo())
    assert info.value.exit_code == 4


def test_coreml_layout_falls_back_to_the_source_layout(tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(b"12345678")
    summary = ModelSummary(inputs=(TensorSpec("image", (None, 8, 8, 1), "float32", "NHWC"),), outputs=(), ops=(),
                           params=0, macs=0)
    unlaid = (TensorSpec("image", (1, 8, 8, 1), "float32"),)
    report, entry = _report(model.name, summary=summary, inputs=unlaid)
    manifest = build_manifest(report, entry, model, preprocessing=Preprocessing(), info=ModelInfo())
    assert manifest["inputs"][0]["layout"] == "NHWC"
    # A permuted tensor (ONNX NCHW -> NHWC) must not inherit the source's layout.
    report, entry = _report(model.name, summary=summary, inputs=unlaid,
                            permutations=(Permutation("input", "image", (0, 2, 3, 1)),))
    manifest = build_manifest(report, entry, model, preprocessing=Preprocessing(), info=ModelInfo())
    assert manifest["inputs"][0]["layout"] is None
