"""Reports read back into the same typed objects: ``serial.structure`` inverts ``serial.plain``, and
``load_report`` validates against the published schema before it trusts a file."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeexport.errors import BadInputError
from edgeexport.report.model import Report, load_report
from edgeexport.serial import StructureError, plain, structure
from edgeexport.types import Artifact, ModelSummary, Permutation, SourceModel, Status, TensorSpec


@dataclass(frozen=True)
class _Sample:
    ratio: float
    pairs: tuple[tuple[str, float], ...]
    status: Status
    optional: int | None = None


def test_plain_and_structure_are_inverse_with_infinities_and_pairs() -> None:
    value = _Sample(math.inf, (("conv", 1.5), ("fc", -math.inf)), Status.NOT_VERIFIABLE, 3)
    data = json.loads(json.dumps(plain(value), allow_nan=False))
    assert data["ratio"] == "inf" and data["status"] == "not_verifiable"
    assert structure(_Sample, data) == value
    assert structure(_Sample, {**data, "pairs": {"conv": 1.5, "fc": "-inf"}}) == value  # pairs written as an object


def test_structure_names_the_field_that_does_not_fit() -> None:
    with pytest.raises(StructureError, match=r"_Sample.status: 'green' is not a Status"):
        structure(_Sample, {"ratio": 1.0, "pairs": [], "status": "green"})
    with pytest.raises(StructureError, match="missing field 'ratio'"):
        structure(_Sample, {"pairs": [], "status": "ok"})


def _report(tmp_path: Path) -> Report:
    spec = TensorSpec("image", (1, 8, 8, 1), "float32", "NHWC")
    artifact = Artifact(path=tmp_path / "m.fp32.tflite", target="tflite", preset="fp32", device=None, sha256="a" * 64,
                        size_bytes=10, gzip_bytes=5, source_sha256="b" * 64, conversion_seconds=0.25, inputs=(spec,),
                        outputs=(spec,), permutations=(Permutation("input", "image", (0, 2, 3, 1)),))
    from edgeexport.report.model import ArtifactReport

    return Report(source=SourceModel(tmp_path / "m.keras", "keras", "b" * 64),
                  summary=ModelSummary((spec,), (spec,), (("Conv2D", 2),), 10, 20),
                  artifacts=(ArtifactReport(artifact),), out_dir=tmp_path, total_seconds=1.25)


def test_report_reads_back_equal(tmp_path: Path) -> None:
    report = _report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps(report.to_dict()))
    assert load_report(tmp_path / "report.json") == report


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d.update(status="fine"), "status: 'fine' is not one of"),
    (lambda d: d["artifacts"][0].update(sha256="x"), "artifacts/0/sha256: 'x' does not match"),
    (lambda d: d.pop("source"), "'source' is a required property"),
])
def test_invalid_report_is_bad_input_naming_the_place(tmp_path: Path, mutate: object, expected: str) -> None:
    data = _report(tmp_path).to_dict()
    mutate(data)  # type: ignore[operator]
    (tmp_path / "invalid.json").write_text(json.dumps(data))  # not report.json: the session check skips it
    with pytest.raises(BadInputError, match=expected):
        load_report(tmp_path / "invalid.json")
