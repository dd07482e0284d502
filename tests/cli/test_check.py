"""`edgeexport check`: the conformance gate's exit codes, JUnit XML and Markdown, on the shipped sample configs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, CliResult

DATA = ROOT / "tests" / "data"


def _junit_counts(path: Path) -> tuple[int, int, list[tuple[str, str, bool]]]:
    root = ET.parse(path).getroot()
    cases = [(c.get("classname", ""), c.get("name", ""), c.find("failure") is not None) for c in root.iter("testcase")]
    return int(root.get("tests", "0")), int(root.get("failures", "0")), cases


def test_passing_matrix_exits_0_with_valid_junit(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    result = run_cli("check", "--config", DATA / "check_pass.toml", "--out", tmp_path)
    assert result.code == 0, result.err
    tests, failures, cases = _junit_counts(tmp_path / "junit.xml")
    assert failures == 0
    # pixel-8 runs tflite; iphone-15-pro runs tflite and coreml: 3 artifacts x (convert, verify, accuracy, budgets)
    assert tests == 12 == len(cases)
    assert {c[0] for c in cases} == {"digits_cnn.keras.pixel-8.auto.tflite", "digits_cnn.keras.iphone-15-pro.auto.tflite",
                                     "digits_cnn.keras.iphone-15-pro.auto.coreml"}
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("## edgeexport check: passed")
    assert summary.count("| digits_cnn.keras |") == 3
    data = json.loads((tmp_path / "check.json").read_text())
    assert data["exit_code"] == 0 and len(data["reports"]) == 2


def test_failing_budgets_exit_6_and_name_the_failures(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    result = run_cli("check", "--config", DATA / "check_fail.toml", "--out", tmp_path)
    assert result.code == 6, result.err
    tests, failures, cases = _junit_counts(tmp_path / "junit.xml")
    assert (tests, failures) == (3, 2)
    failed = {name for _, name, failed in cases if failed}
    assert failed == {"verify", "budgets"}
    root = ET.parse(tmp_path / "junit.xml").getroot()
    messages = [f.get("message", "") for f in root.iter("failure")]
    assert any("size" in m and "5,120 B" in m for m in messages)
    assert any("cosine" in m for m in messages)
    assert "failed (exit 6)" in (tmp_path / "summary.md").read_text()


def test_warn_only_reports_but_exits_0(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    result = run_cli("check", "--config", DATA / "check_fail.toml", "--out", tmp_path, "--warn-only", "--json")
    assert result.code == 0
    assert json.loads(result.out)["exit_code"] == 6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[check]\n", "check.models"),
        ("[check]\n[[check.models]]\npath = 'x.keras'\ncolour = 'red'\n", "colour"),
        ("[check]\n[check.budgets]\nmax_size_mb = 3\n[[check.models]]\npath = 'x.keras'\n", "max_size_mb"),
        ("[check]\n[check.budgets]\nmax_size_kb = -1\n[[check.models]]\npath = 'x.keras'\n", "non-negative"),
    ],
    ids=["no-models", "unknown-model-field", "unknown-budget", "negative-budget"],
)
def test_bad_config_is_exit_3_naming_the_field(run_cli: Callable[..., CliResult], tmp_path: Path, text: str,
                                               message: str) -> None:
    config = tmp_path / "edgeexport.toml"
    config.write_text(text)
    result = run_cli("check", "--config", config, "--out", tmp_path / "out")
    assert result.code == 3 and message in result.err


def test_missing_model_in_matrix_is_an_error_case(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    config = tmp_path / "edgeexport.toml"
    config.write_text("[check]\n[[check.models]]\npath = 'missing.keras'\ndevices = ['host']\npresets = ['fp32']\n")
    result = run_cli("check", "--config", config, "--out", tmp_path / "out")
    assert result.code == 3
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    assert root.get("errors") == "1"


def test_not_verifiable_artifact_gives_the_same_exit_code_as_convert(
        run_cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One Status decides both commands: a Core ML artifact that the MIL executor cannot run is exit 4 in
    `convert` and in `check`, and a JUnit error (could not be checked), never a failure or a pass."""
    from edgeexport.runtimes.mil import registry

    registry.kernels()
    monkeypatch.delitem(registry._KERNELS, "softmax")  # a real package and executor, one kernel withdrawn
    model = ROOT / "sample_models" / "digits_cnn.keras"
    data = ROOT / "sample_models" / "digits.npz"
    converted = run_cli("convert", model, "--target", "coreml", "--data", data, "--out", tmp_path / "convert")
    config = tmp_path / "edgeexport.toml"
    config.write_text(f"[check]\n[[check.models]]\npath = '{model}'\ndevices = ['iphone-15-pro']\npresets = ['fp32']\n"
                      f"targets = ['coreml']\ndata = '{data}'\n")
    checked = run_cli("check", "--config", config, "--out", tmp_path / "check")
    assert converted.code == checked.code == 4, (converted.err, checked.err)
    root = ET.parse(tmp_path / "check" / "junit.xml").getroot()
    assert (root.get("failures"), root.get("errors")) == ("0", "1")
    assert "not verifiable on this platform: op softmax" in next(root.iter("error")).get("message", "")
    assert json.loads((tmp_path / "check" / "check.json").read_text())["exit_code"] == 4


def test_a_reused_cell_whose_artifact_was_replaced_is_refused_exit_3(
        run_cli: Callable[..., CliResult], tmp_path: Path, samples: Path) -> None:
    """The path in which ``check`` trusts a report it did not just write: a cell reused from ``--baseline`` (same
    inputs) whose report.json is in ``--out``. Another model's artifact put under the name the report describes
    (what an interrupted or hand-made re-run leaves) must not pass on the baseline's word: exit 3, named."""
    config = tmp_path / "edgeexport.toml"
    config.write_text('[check]\nout = "out"\nsamples = 8\n[[check.models]]\n'
                      f'path = "{samples / "digits_cnn.keras"}"\ndevices = ["pixel-8"]\npresets = ["fp32"]\n'
                      'targets = ["tflite"]\n')
    out = tmp_path / "out"
    first = run_cli("check", "--config", config, "--update-baseline", tmp_path / "base.json", "--json")
    assert first.code == 0, first.err
    cell = out / "digits_cnn" / "pixel-8" / "fp32"
    artifact = cell / "digits_cnn.fp32.tflite"
    assert artifact.is_file()
    # unchanged, the cell is reused (nothing converted) and passes
    again = run_cli("check", "--config", config, "--baseline", tmp_path / "base.json", "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["reused_cells"] == 1
    # another model's artifact under the name the committed report describes
    other = run_cli("convert", samples / "digits_mlp.h5", "--target", "tflite", "--out", tmp_path / "mlp",
                    "--no-verify")
    assert other.code == 0, other.err
    artifact.write_bytes((tmp_path / "mlp" / "digits_mlp.fp32.tflite").read_bytes())
    stale = run_cli("check", "--config", config, "--baseline", tmp_path / "base.json", "--json")
    assert stale.code == 3, stale.err
    data = json.loads(stale.out)
    assert data["exit_code"] == 3 and data["reused_cells"] == 0
    (record,) = data["cells"]
    assert record["error_code"] == 3 and not record["reused"]
    (case,) = record["cases"]
    assert "digits_cnn.fp32.tflite does not match report.json" in case["error"]
    root = ET.parse(out / "junit.xml").getroot()
    messages = [e.get("message", "") for e in root.iter("error")]
    assert len(messages) == 1 and messages[0].startswith("digits_cnn.fp32.tflite does not match")
