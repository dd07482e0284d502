"""``edgeexport verify``: check an artifact against its reference model, or against a golden file.

Exit codes: 0 pass, 5 failed (one line names the worst metric and output), 4 not verifiable on this platform
(an op the MIL executor cannot run), 3 bad data or files; ``--warn-only`` turns 5 and 4 into 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgeexport.cli.options import config_defaults, warn_only_option
from edgeexport.runtimes.names import CoremlRuntime
from edgeexport.types import Status

if TYPE_CHECKING:
    from edgeexport.sources.base import LoadedModel
    from edgeexport.types import Artifact
    from edgeexport.verify.localize import Localization
    from edgeexport.verify.stage import Verification

EXAMPLES = """\b
Examples:
  edgeexport verify build/digits/digits_cnn.int8.tflite --reference sample_models/digits_cnn.keras \\
      --data sample_models/digits.npz --junit verify.xml
  edgeexport verify out/model.fp16.tflite --reference model.keras --data data.npz --save-golden golden.npz
  edgeexport verify out/model.fp16.tflite --golden golden.npz
  edgeexport verify out/model.int8.tflite --reference model.keras --data data.npz --localize
"""


@click.command(epilog=EXAMPLES, context_settings={"default_map": config_defaults("verify")})
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--reference", "-r", type=click.Path(path_type=Path), default=None,
              help="The source model the artifact was converted from (.keras, .h5, SavedModel, .onnx).")
@click.option("--golden", "-g", type=click.Path(path_type=Path), default=None,
              help="Check against a golden file instead (no reference framework is loaded).")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Inputs (.npz keyed by input name; the 'test' split is used). Default: seeded random inputs.")
@click.option("--samples", type=click.IntRange(1), default=256, show_default=True, help="How many samples to compare.")
@click.option("--tolerance", "tolerance_preset", default=None, metavar="PRESET",
              help="Use this preset's tolerance (default: the preset in the artifact's file name, else fp32).")
@click.option("--atol", type=float, default=None, help="Maximum absolute error (output units).")
@click.option("--cosine", type=float, default=None, help="Minimum cosine similarity (0..1).")
@click.option("--sqnr", type=float, default=None, help="Minimum SQNR in dB.")
@click.option("--top1", type=float, default=None, help="Minimum top-1 agreement (0..1, classifiers).")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path), default=None,
              help="Write a JUnit XML file (one test case per output x check).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the result as JSON.")
@click.option("--save-golden", type=click.Path(path_type=Path), default=None,
              help="Save the inputs and reference outputs as a golden file for later --golden runs.")
@click.option("--localize", is_flag=True,
              help="Per-layer error against a Keras or ONNX reference: the worst layers and the first over tolerance "
                   "(also run on failure).")
@click.option("--coreml-precision", type=click.Choice(["auto", "fp32"]), default="auto", show_default=True,
              help="How the MIL executor computes fp16 Core ML programs (auto rounds each op to fp16).")
@click.option("--coreml-runtime", type=click.Choice([str(r) for r in CoremlRuntime]), default="auto", show_default=True,
              help="Engine for Core ML artifacts: Core ML on macOS, the numpy MIL executor elsewhere.")
@warn_only_option
def command(
    artifact: Path,
    reference: Path | None,
    golden: Path | None,
    data: Path | None,
    samples: int,
    tolerance_preset: str | None,
    atol: float | None,
    cosine: float | None,
    sqnr: float | None,
    top1: float | None,
    junit_path: Path | None,
    json_path: Path | None,
    save_golden: Path | None,
    localize: bool,
    coreml_precision: str,
    coreml_runtime: str,
    warn_only: bool,
) -> int:
    """Run ARTIFACT (.tflite or .mlpackage) and its reference on the same inputs and check the difference.

    Either --reference MODEL (with --data) or --golden FILE. Exit 0 pass, 5 fail, 4 not verifiable here,
    3 bad data; --warn-only always exits 0 after reporting.
    """
    from edgeexport.api import Tolerance, VerifyOptions, verify

    if (reference is None) == (golden is None):
        raise click.UsageError("give exactly one of --reference MODEL or --golden FILE")
    if golden is not None and (save_golden or localize):
        raise click.UsageError("--save-golden and --localize need --reference, not --golden")
    limits = Tolerance(max_abs=atol, cosine_min=cosine, sqnr_db_min=sqnr, top1_agreement_min=top1)
    tolerance: Tolerance | None = limits
    source = "command line"
    if limits == Tolerance():
        tolerance = None
        if tolerance_preset:
            from edgeexport.catalog import load_preset

            tolerance = load_preset(tolerance_preset).tolerance  # unknown name: exit 3 with the known names
            source = f"preset {tolerance_preset}"
    elif tolerance_preset:
        raise click.UsageError("--tolerance PRESET and explicit limits (--atol/--cosine/--sqnr/--top1) exclude each other")

    options = VerifyOptions(data=data, samples=samples,
                            coreml_precision="fp32" if coreml_precision == "fp32" else "auto",
                            coreml_runtime=CoremlRuntime(coreml_runtime))
    result = verify(artifact, reference=reference, golden=golden, options=options, tolerance=tolerance,
                    tolerance_source=source, save_golden=save_golden)
    _echo_result(result)
    localization = None
    if reference is not None and (localize or result.status is Status.VERIFICATION_FAILED):
        from edgeexport.sources import load, open_source
        from edgeexport.verify.stage import artifact_from_path

        localization = _localize(artifact_from_path(artifact), load(open_source(reference)), data, result,
                                 explicit=localize, samples=samples, precision=coreml_precision)
    if json_path is not None:
        from edgeexport.report.jsonfile import write_json

        payload = result.to_dict()
        if localization is not None:
            payload["localization"] = localization.to_dict()
        write_json(json_path, payload)
    if junit_path is not None:
        from edgeexport.verify.junit import verification_cases, write_junit

        write_junit(junit_path, f"edgeexport verify {artifact.name}", verification_cases(result))
    if save_golden is not None:
        click.echo(f"golden: {save_golden}")
    return 0 if warn_only else result.exit_code


def _echo_result(result: Verification) -> None:
    for comparison in result.outputs:
        m = comparison.metrics
        if m is None:
            click.echo(f"  {comparison.name}: {comparison.error}")
            continue
        parts = [f"cos {m.cosine:.6f}", f"sqnr {m.sqnr_db:.1f} dB", f"max_abs {m.max_abs:.3g}", f"rmse {m.rmse:.3g}"]
        if m.classifier is not None:
            top1 = m.classifier.top1_agreement
            parts.append("top1 n/a" if top1 is None else f"top1 {top1:.4f}")
            if m.classifier.accuracy_drop_points is not None:
                parts.append(f"acc {m.classifier.reference_accuracy:.2%} -> {m.classifier.artifact_accuracy:.2%}")
        shown = comparison.name if comparison.matched_by == "name" else f"{comparison.name}~{comparison.artifact_name}"
        click.echo(f"  {shown}: " + ", ".join(parts))
    for guess in result.guesses:
        click.echo(f"  note: {guess}")
    for warning in result.warnings:
        click.echo(f"  warning: {warning}")
    where = (f"{result.samples} samples from {result.data_origin}; tolerance {result.tolerance_source}; "
             f"ran with {result.runtime}")
    if result.status is Status.OK:
        click.echo(f"PASS {result.artifact} vs {result.reference} ({where})")
    elif result.status is Status.VERIFICATION_FAILED:
        click.echo(f"FAIL {result.artifact} vs {result.reference}: {result.failure_line()} ({where})")
    else:
        click.echo(f"NOT VERIFIED {result.artifact}: {result.reason} (this is not a pass)")


def _localize(art: Artifact, model: LoadedModel, data: Path | None, result: Verification, *, explicit: bool,
              samples: int, precision: str) -> Localization | None:
    from edgeexport.errors import UnsupportedError
    from edgeexport.verify.localize import DEFAULT_SAMPLES, localize

    try:
        found = localize(art.path, model, data=data, tolerance=result.tolerance, samples=min(samples, DEFAULT_SAMPLES),
                         preset=art.preset, permutations=art.permutations, precision=precision)
    except UnsupportedError as err:
        # A localization that cannot run here is a note: the verification's own result decides the exit code.
        click.echo(f"  (no layer localization{'' if explicit else ' after the failure'}: {err.one_line()})")
        return None
    for line in found.lines():
        click.echo(f"  {line}")
    return found
