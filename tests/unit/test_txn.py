"""The staged output directory: commit, abort, roll-forward after a kill, stale stages, the lock, hash checks.

No TensorFlow: these drive ``edgeexport.txn`` with plain files and folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeexport.errors import DataError, OutputPathError
from edgeexport.files import sha256_of as hash_path
from edgeexport.report.model import ArtifactReport, Report
from edgeexport.types import Artifact, ModelSummary, SourceModel
from edgeexport.txn import JOURNAL, STAGE_PREFIX, OutputTransaction, recover, verify_committed


def _state(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _first_run(out: Path) -> None:
    out.mkdir()
    (out / "a.tflite").write_bytes(b"A")
    (out / "m.mlpackage").mkdir()
    (out / "m.mlpackage" / "weights.bin").write_bytes(b"old weights")
    (out / "report.json").write_text(json.dumps({"artifacts": [{"path": "a.tflite", "sha256": hash_path(out / "a.tflite")}]}))


def test_commit_replaces_files_and_directories_together(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _first_run(out)
    with OutputTransaction(out) as txn:
        (txn.stage / "m.mlpackage").mkdir()
        (txn.stage / "m.mlpackage" / "model.mil").write_text("new")
        (txn.stage / "report.json").write_text("{}")
        txn.commit(remove=("a.tflite",))
    assert _state(out) == {"m.mlpackage/model.mil": b"new", "report.json": b"{}"}
    assert not list(out.glob(".*"))


def test_leaving_without_commit_keeps_the_old_state_and_removes_the_stage(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _first_run(out)
    before = _state(out)
    with pytest.raises(KeyboardInterrupt), OutputTransaction(out) as txn:
        (txn.stage / "a.tflite").write_bytes(b"B, complete but unverified")
        raise KeyboardInterrupt
    assert _state(out) == before and not list(out.glob(".*"))


def test_a_commit_killed_half_way_is_rolled_forward(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _first_run(out)
    stage = out / f"{STAGE_PREFIX}1-x"
    stage.mkdir()
    (stage / "report.json").write_text('{"artifacts": []}')
    (out / "b.tflite").write_bytes(b"B")  # already moved before the kill
    (out / JOURNAL).write_text(json.dumps({"stage": stage.name, "entries": ["b.tflite", "report.json"],
                                           "remove": []}))
    done = recover(out)
    assert done and (out / "report.json").read_text() == '{"artifacts": []}' and (out / "b.tflite").read_bytes() == b"B"
    assert not (out / JOURNAL).exists() and not stage.exists()


def test_a_stale_stage_is_removed_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _first_run(out)
    stale = out / f"{STAGE_PREFIX}99-y"
    stale.mkdir()
    (stale / "half.tflite").write_bytes(b"half")
    with OutputTransaction(out) as txn:
        assert not stale.exists()
        assert txn.stage.name.startswith(STAGE_PREFIX)


def test_a_journal_naming_paths_outside_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _first_run(out)
    (out / f"{STAGE_PREFIX}1-x").mkdir()
    (out / JOURNAL).write_text(json.dumps({"stage": f"{STAGE_PREFIX}1-x", "entries": ["../evil"]}))
    with pytest.raises(DataError, match="outside"):
        recover(out)


def test_a_second_run_into_the_same_directory_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with OutputTransaction(out), pytest.raises(OutputPathError, match="in use by another edgeexport run"):
        OutputTransaction(out).__enter__()


def test_verify_committed_refuses_an_artifact_the_report_does_not_describe(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _first_run(out)
    artifact = Artifact(path=out / "a.tflite", target="tflite", preset="fp32", device=None,
                        sha256=hash_path(out / "a.tflite"), size_bytes=1, gzip_bytes=1, source_sha256="",
                        conversion_seconds=0.0, inputs=(), outputs=())
    report = Report(SourceModel(out / "m.keras", "keras", ""), ModelSummary((), (), (), 0, 0),
                    (ArtifactReport(artifact),), out_dir=out)
    verify_committed(out, report)
    (out / "a.tflite").write_bytes(b"B")
    with pytest.raises(DataError, match="does not match report.json") as caught:
        verify_committed(out, report)
    assert caught.value.exit_code == 3
    (out / "a.tflite").unlink()
    with pytest.raises(DataError, match="missing"):
        verify_committed(out, report)
