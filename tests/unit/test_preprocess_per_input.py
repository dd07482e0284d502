"""``--preprocess`` per input, by name (issue 17 item 7): parsing, matching artifact names, errors (no TF)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeexport.bundle.manifest import ModelInfo, Preprocessing, build_manifest
from edgeexport.bundle.preprocess import parse_preprocess_specs
from edgeexport.errors import DataError, UsageError
from edgeexport.jsonschemas import validate
from edgeexport.types import ModelSummary, TensorSpec
from tests.helpers.reports import typed_report

HALF = Preprocessing(scale=0.5, source="user")
RGB = Preprocessing(1 / 255, (0.5,), (0.25,), "none", "user")
# TFLite names a Keras input "alpha" "serve_alpha:0" and took these two in the reverse order.
ARTIFACT_INPUTS = ["serve_beta:0", "serve_alpha:0"]


def test_named_specs_go_to_their_inputs_whatever_the_artifact_order() -> None:
    specs = parse_preprocess_specs(("alpha:scale=0.5", "beta:scale=1/255,mean=0.5,std=0.25"))
    assert specs.for_inputs(ARTIFACT_INPUTS) == [RGB, HALF]
    assert specs.for_inputs(["alpha", "beta"]) == [HALF, RGB]
    # A colon inside a mean list is not a name.
    assert parse_preprocess_specs("scale=1,mean=0.1:0.2:0.3").unnamed is not None


def test_an_input_nobody_names_gets_the_identity_and_star_means_every_input() -> None:
    assert parse_preprocess_specs("alpha:scale=0.5").for_inputs(ARTIFACT_INPUTS) == [Preprocessing(), HALF]
    every = parse_preprocess_specs(("*:scale=0.5", "beta:scale=1/255,mean=0.5,std=0.25"))
    assert every.for_inputs(ARTIFACT_INPUTS) == [RGB, HALF]


def test_an_unnamed_spec_fits_one_input_and_is_a_usage_error_on_two() -> None:
    assert parse_preprocess_specs("scale=0.5").for_inputs(["serve_image:0"]) == [HALF]
    with pytest.raises(UsageError, match=r"without an input name, but the model has 2 inputs \(alpha, beta\)") as err:
        parse_preprocess_specs("scale=0.5").for_inputs(ARTIFACT_INPUTS, ["alpha", "beta"])
    assert err.value.exit_code == 2 and "NAME:scale=" in str(err.value.hint)


@pytest.mark.parametrize(("specs", "error", "message"), [
    (("gamma:scale=2",), UsageError, r"names input\(s\) gamma, which the model does not have \(its inputs: beta, alpha"),
    (("alpha:scale=2", "alpha:scale=3"), UsageError, "names input 'alpha' twice"),
    (("scale=2", "scale=3"), UsageError, "twice without an input name"),
    (("alpha:scale=abc",), DataError, "scale value 'abc' is not a number"),
    (("alpha:gamma=1",), DataError, "unknown preprocessing key"),
])
def test_bad_specs(specs: tuple[str, ...], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_preprocess_specs(specs).for_inputs(ARTIFACT_INPUTS)


def test_a_toml_file_with_one_table_per_input(tmp_path: Path) -> None:
    path = tmp_path / "pre.toml"
    path.write_text("[preprocessing.alpha]\nscale = 0.5\n\n[preprocessing.beta]\nscale = '1/255'\nmean = [0.5]\n"
                    "std = [0.25]\n")
    assert parse_preprocess_specs(str(path)).for_inputs(ARTIFACT_INPUTS) == [RGB, HALF]
    single = tmp_path / "one.toml"
    single.write_text("[preprocessing]\nscale = 0.5\n")
    assert parse_preprocess_specs(("alpha:" + str(single),)).for_inputs(ARTIFACT_INPUTS) == [Preprocessing(), HALF]


def test_the_manifest_carries_each_inputs_preprocessing_in_artifact_order(tmp_path: Path) -> None:
    model = tmp_path / "two.fp32.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    summary = ModelSummary(inputs=(TensorSpec("alpha", (None, 4), "float32"), TensorSpec("beta", (None, 3), "float32")),
                           outputs=(TensorSpec("out", (None, 2), "float32"),), ops=(), params=0, macs=0)
    report, entry = typed_report(model.name, preset="fp32", summary=summary,
                                 inputs=(TensorSpec("serve_beta:0", (1, 3), "float32"),
                                         TensorSpec("serve_alpha:0", (1, 4), "float32")),
                                 outputs=(TensorSpec("out", (1, 2), "float32"),))
    specs = parse_preprocess_specs(("alpha:scale=0.5", "beta:scale=1/255,mean=0.5,std=0.25"))
    manifest = build_manifest(report, entry, model, preprocessing=specs, info=ModelInfo())
    assert validate(manifest) == []
    assert manifest["schema_version"] == "2.0"
    assert [(t["name"], t["source_name"], t["preprocessing"]["scale"]) for t in manifest["inputs"]] == [
        ("serve_beta:0", "beta", 1 / 255), ("serve_alpha:0", "alpha", 0.5)]
    with pytest.raises(UsageError):
        build_manifest(report, entry, model, preprocessing=HALF, info=ModelInfo())
