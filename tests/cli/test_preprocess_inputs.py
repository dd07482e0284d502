"""``--preprocess NAME:...`` per input of a real two-input Keras model (issue 17 item 7), into manifest 2.0.

TFLite takes this model's inputs in the reverse order (beta, alpha); each manifest input must still carry the
preprocessing stated for it by name, and the order must be visible in the terminal, the report and the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeexport.jsonschemas import validate
from tests.conftest import CliResult

Run = Callable[..., CliResult]


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    first, second = keras.Input((4,), name="alpha"), keras.Input((3,), name="beta")
    joined = keras.layers.Concatenate()([keras.layers.Dense(5)(first), keras.layers.Dense(5)(second)])
    path = tmp_path_factory.mktemp("two") / "two.keras"
    keras.Model([first, second], keras.layers.Dense(2)(joined)).save(path)
    return path


@pytest.fixture(scope="module")
def bundled(two_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CliResult]:
    """One convert with a bundle and a preprocessing per input (in-process CLI, once for the module)."""
    import contextlib
    import io

    from edgeexport.cli.main import main

    out = tmp_path_factory.mktemp("two-out") / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main(["convert", str(two_inputs), "--target", "tflite", "--samples", "8", "--bundle",
                  "--preprocess", "alpha:scale=0.5", "--preprocess", "beta:scale=1/255,mean=0.5,std=0.25",
                  "--out", str(out)])
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    return out, CliResult(code, stdout.getvalue(), stderr.getvalue())


def test_each_input_gets_its_own_preprocessing_in_artifact_order(bundled: tuple[Path, CliResult]) -> None:
    out, result = bundled
    assert result.code == 0, result.out + result.err
    manifest = json.loads((out / "bundle" / "tflite" / "manifest.json").read_text())
    assert validate(manifest) == [] and manifest["schema_version"] == "2.0"
    rows = [(t["source_name"], t["shape"], t["preprocessing"]["scale"], t["preprocessing"]["mean"])
            for t in manifest["inputs"]]
    # beta first: the TFLite converter reversed the inputs; each keeps the block given for its own name.
    assert rows == [("beta", [1, 3], 1 / 255, [0.5]), ("alpha", [1, 4], 0.5, [0.0])]
    report = json.loads((out / "report.json").read_text())
    assert [t["name"] for t in report["artifacts"][0]["inputs"]] == [t["name"] for t in manifest["inputs"]]
    assert any("takes its inputs in the order beta, alpha" in note for note in report["notes"])
    assert "takes its inputs in the order beta, alpha" in " ".join(result.out.split())
    # Embedded into the .tflite too, per input.
    from edgeexport.targets.metadata import read_tflite_metadata

    embedded = json.loads(read_tflite_metadata(out / "bundle" / "tflite" / "two.fp32.tflite") or b"{}")
    assert [t["preprocessing"]["scale"] for t in embedded["inputs"]] == [1 / 255, 0.5]


def test_an_unnamed_preprocess_on_two_inputs_is_a_usage_error(run_cli: Run, bundled: tuple[Path, CliResult]) -> None:
    out, _ = bundled
    before = (out / "bundle" / "tflite" / "manifest.json").read_bytes()
    result = run_cli("bundle", out, "--preprocess", "scale=0.5")
    assert result.code == 2 and "Traceback" not in result.err
    assert "--preprocess without an input name, but the model has 2 inputs (alpha, beta)" in result.err
    assert "NAME:scale=" in result.err
    assert (out / "bundle" / "tflite" / "manifest.json").read_bytes() == before  # nothing rewritten


def test_a_name_the_model_does_not_have_is_a_usage_error(run_cli: Run, bundled: tuple[Path, CliResult]) -> None:
    out, _ = bundled
    result = run_cli("bundle", out, "--preprocess", "gamma:scale=0.5", "--preprocess", "alpha:scale=2")
    assert result.code == 2 and "names input(s) gamma, which the model does not have (its inputs: alpha, beta" in result.err


def test_star_applies_to_every_input(run_cli: Run, tmp_path: Path, bundled: tuple[Path, CliResult]) -> None:
    import shutil

    out, _ = bundled
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    result = run_cli("bundle", copy, "--preprocess", "*:scale=0.25", "--json")
    assert result.code == 0, result.err
    (entry,) = json.loads(result.out)
    assert [t["preprocessing"]["scale"] for t in entry["manifest"]["inputs"]] == [0.25, 0.25]


def test_convert_refuses_an_unnamed_preprocess_before_converting(run_cli: Run, two_inputs: Path,
                                                                 tmp_path: Path) -> None:
    result = run_cli("convert", two_inputs, "--target", "tflite", "--no-verify", "--bundle",
                     "--preprocess", "scale=0.5", "--out", tmp_path / "out")
    assert result.code == 2 and "but the model has 2 inputs" in result.err
    assert "converting to" not in result.err and not list((tmp_path / "out").glob("*.tflite"))
