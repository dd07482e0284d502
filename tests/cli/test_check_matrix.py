"""`edgeexport check` at scale (issue 16): one 2 models x 2 devices x 2 presets matrix run serially, in 2 worker
processes and on a real local Ray cluster gives the same results; baselines catch a changed model (exit 7) and
reuse unchanged cells; the evidence bundle catches a one-byte change in any artifact."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLES, CliResult

DEVICES = ("pixel-8", "raspberry-pi-5")
PRESETS = ("fp32", "fp16")


def build_tiny(path: Path, filters: int) -> None:
    """A small CNN on the digits input (8x8x1), trained briefly so its outputs vary with the input."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    with np.load(SAMPLES / "digits.npz") as data:
        images, labels = data["test__image"], data["test__labels"]
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=30, batch_size=64, verbose=0)
    model.save(path)


def write_config(directory: Path, tiny: Path) -> Path:
    config = directory / "edgeexport.toml"
    models = "".join(
        f"[[check.models]]\npath = '{path}'\ndevices = {list(DEVICES)}\npresets = {list(PRESETS)}\n"
        f"targets = ['tflite']\ncalibration = '{SAMPLES / 'digits.npz'}'\ndata = '{SAMPLES / 'digits.npz'}'\n"
        for path in (SAMPLES / "digits_cnn.keras", tiny))
    config.write_text(f"[check]\nsamples = 64\n[check.budgets]\nmax_size_kb = 200\n{models}")
    return config


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("matrix")
    build_tiny(directory / "tiny.keras", filters=4)
    return write_config(directory, directory / "tiny.keras")


@pytest.fixture(scope="module")
def serial(matrix: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The matrix run in this process, with a baseline and an evidence bundle written."""
    from edgeexport.cli.main import main

    out = tmp_path_factory.mktemp("serial")
    with pytest.raises(SystemExit) as exited:
        main(["check", "--config", str(matrix), "--out", str(out), "--jobs", "1",
              "--update-baseline", str(out / "baseline.json"), "--evidence", str(out / "evidence")])
    assert exited.value.code == 0
    yield out


def normalized_json(out: Path) -> dict[str, Any]:
    """check.json with wall times dropped and the output directory replaced by OUT."""
    text = (out / "check.json").read_text().replace(str(out), "OUT")
    data = json.loads(text)
    data.pop("seconds")
    for cell in data["cells"]:
        cell.pop("seconds")
        for case in cell["cases"]:
            case.pop("seconds")
    return data


def normalized_junit(out: Path) -> str:
    return re.sub(r' time="[0-9.]+"', "", (out / "junit.xml").read_text())


@pytest.mark.slow  # about 60 s idle (two worker start-ups and a Ray cluster), over 2 minutes on a busy machine
def test_serial_jobs_and_ray_give_the_same_results(run_cli: Callable[..., CliResult], matrix: Path, serial: Path,
                                                   tmp_path: Path) -> None:
    pytest.importorskip("ray")
    parallel = run_cli("check", "--config", matrix, "--out", tmp_path / "jobs", "--jobs", "2")
    assert parallel.code == 0, parallel.err
    assert re.search(r"\[8/8\] \S+: ok in [0-9.]+ s \(0 running, 0 failed, ETA 0 s\)", parallel.err)
    on_ray = run_cli("check", "--config", matrix, "--out", tmp_path / "ray", "--ray", "--jobs", "2")
    assert on_ray.code == 0, on_ray.err
    expected = normalized_json(serial)
    assert len(expected["cells"]) == 8 and expected["checks"] == 24  # 8 tflite artifacts x (convert, verify, budgets)
    assert all(cell["conversions"] == 1 and not cell["reused"] for cell in expected["cells"])
    for out in (tmp_path / "jobs", tmp_path / "ray"):
        assert normalized_json(out) == expected
        assert normalized_junit(out) == normalized_junit(serial)
    # in the same order as the serial run: models, then devices, then presets
    assert [c["id"] for c in expected["cells"]] == [f"{m}.{d}.{p}" for m in ("digits_cnn.keras", "tiny.keras")
                                                    for d in DEVICES for p in PRESETS]


def test_baseline_catches_a_changed_model_and_reuses_the_rest(run_cli: Callable[..., CliResult], serial: Path,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    changed = tmp_path / "changed"
    changed.mkdir()
    build_tiny(changed / "tiny.keras", filters=12)  # more filters: bigger and slower
    config = write_config(changed, changed / "tiny.keras")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "step_summary.md"))
    result = run_cli("check", "--config", config, "--out", tmp_path / "new", "--baseline", serial / "baseline.json",
                     "--jobs", "1", "--json")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    assert result.code == 7, result.err
    data = json.loads(result.out)
    regressed = {(r["cell"], r["metric"]) for r in data["regressions"]}
    assert ("tiny.keras.pixel-8.fp32", "size_bytes") in regressed
    assert {cell for cell, _ in regressed} == {f"tiny.keras.{d}.{p}" for d in DEVICES for p in PRESETS}
    size = next(r for r in data["regressions"] if r["cell"] == "tiny.keras.pixel-8.fp32" and r["metric"] == "size_bytes")
    assert size["new"] > size["old"] * 1.02 and size["delta"] == size["new"] - size["old"]
    summary = (tmp_path / "new" / "summary.md").read_text()
    assert "Regressed against the baseline" in summary and "| tiny.keras.pixel-8.fp32 | tflite | size_bytes |" in summary
    assert (tmp_path / "step_summary.md").read_text() == summary
    junit = ET.parse(tmp_path / "new" / "junit.xml").getroot()
    failed = [c.get("classname") for c in junit.iter("testcase") if c.get("name") == "regression"
              and c.find("failure") is not None]
    assert sorted(failed) == sorted(f"tiny.keras.{d}.{p}.tflite" for d in DEVICES for p in PRESETS)
    # the unchanged model's cells were reused: no conversion ran, nothing was written for them
    cells = {c["id"]: c for c in data["cells"]}
    for device in DEVICES:
        for preset in PRESETS:
            assert cells[f"digits_cnn.keras.{device}.{preset}"]["reused"] is True
            assert cells[f"digits_cnn.keras.{device}.{preset}"]["conversions"] == 0
            assert cells[f"tiny.keras.{device}.{preset}"]["conversions"] == 1
    assert data["reused_cells"] == 4 and not (tmp_path / "new" / "digits_cnn").exists()

    # against its own baseline: recomputed (no reuse) it is 0, and with reuse nothing is converted at all
    again = run_cli("check", "--config", config, "--out", tmp_path / "again", "--baseline", tmp_path / "new" / "check.json",
                    "--no-reuse", "--jobs", "1", "--json")
    assert again.code == 0, again.err
    assert sum(c["conversions"] for c in json.loads(again.out)["cells"]) == 8
    reused = run_cli("check", "--config", config, "--out", tmp_path / "reused", "--baseline", tmp_path / "again",
                     "--json")
    assert reused.code == 0, reused.err
    assert json.loads(reused.out)["reused_cells"] == 8
    assert sum(c["conversions"] for c in json.loads(reused.out)["cells"]) == 0


def test_evidence_verify_catches_a_one_byte_change_in_any_artifact(run_cli: Callable[..., CliResult],
                                                                    serial: Path) -> None:
    evidence = serial / "evidence"
    ok = run_cli("evidence", "verify", evidence)
    assert ok.code == 0, ok.err
    manifest = json.loads((evidence / "evidence.json").read_text())
    roles = {role for f in manifest["files"] for role in f["roles"]}
    assert roles == {"config", "model", "calibration", "data", "artifact", "report"}
    assert manifest["dependencies"]["tensorflow"] and manifest["platform"]["python"]
    artifacts = [evidence / f["path"] for f in manifest["files"] if f["roles"] == ["artifact"]]
    assert len(artifacts) == 8
    for path in artifacts:
        original = path.read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x01
        path.write_bytes(bytes(flipped))
        try:
            result = run_cli("evidence", "verify", evidence)
        finally:
            path.write_bytes(original)
        assert result.code == 3
        assert f"{path.name}: changed" in result.err and "1 of" in result.err
    assert run_cli("evidence", "verify", evidence).code == 0


def test_ray_without_the_extra_is_exit_2_naming_it(run_cli: Callable[..., CliResult], matrix: Path,
                                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what Python does when ray is not installed: ImportError
    result = run_cli("check", "--config", matrix, "--out", tmp_path, "--ray")
    assert result.code == 2 and "edgeexport[ray]" in result.err
    assert not (tmp_path / "check.json").exists()


def test_regression_thresholds_come_from_the_config(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    config = tmp_path / "edgeexport.toml"
    config.write_text("[check]\n[check.regression]\nlatency_percent = 5\n[[check.models]]\npath = 'x.keras'\n")
    result = run_cli("check", "--config", config, "--out", tmp_path / "out")
    assert result.code == 3 and "latency_percent" in result.err and "latency_pct" in result.err


def test_evidence_verify_without_a_manifest_is_exit_3(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    result = run_cli("evidence", "verify", tmp_path)
    assert result.code == 3 and "evidence.json" in result.err

