"""``edgeexport convert``: model file -> verified artifacts + report.json + a terminal summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgeexport.cli.options import (
    config_defaults,
    device_option,
    import_option,
    input_shape_option,
    json_option,
    parse_input_shapes,
    project_preset_files,
    unsafe_option,
    warn_only_option,
)
from edgeexport.targets.base import target_names

if TYPE_CHECKING:
    from edgeexport.search import PrecisionSearch

EXAMPLES = """\b
Examples:
  edgeexport convert sample_models/digits_cnn.keras --out build/digits
  edgeexport convert model.keras --target tflite --preset fp16 --out out/
  edgeexport convert saved_model_dir/ --target coreml --out out/
  edgeexport convert model.keras --preset int8 --calibration data.npz --out out/
  edgeexport convert model.keras --device pixel-8 --preset auto --calibration data.npz --out out/
"""


@click.command(epilog=EXAMPLES, context_settings={"default_map": config_defaults("convert")})
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output directory (default: build/<model name>).")
@click.option("--target", "-t", "targets", multiple=True, type=click.Choice(target_names()),
              help="Target format; repeat for several (default: both, or what the device runs).")
@click.option("--preset", "-p", default=None,
              help="Preset name, a composition like prune-50+int8, or auto (needs --device). Default: fp32, "
                   "or auto with --device. See `edgeexport presets`.")
@device_option
@click.option("--calibration", "-c", default=None, metavar="DATA.npz|synthetic",
              help="Calibration samples for int8 presets (arrays keyed by input name); 'synthetic' accepts random data.")
@click.option("--data", "verify_data", type=click.Path(path_type=Path), default=None,
              help="Data to verify with (.npz; default: seeded random inputs).")
@click.option("--samples", "verify_samples", type=click.IntRange(1), default=64, show_default=True,
              help="How many samples to verify on.")
@click.option("--no-verify", is_flag=True, help="Skip numerical verification (the artifact still runs once).")
@click.option("--coreml-precision", type=click.Choice(["auto", "fp32"]), default="auto", show_default=True,
              help="How the MIL executor computes fp16 programs on Linux: auto rounds each op to fp16 like the GPU/ANE.")
@click.option("--preset-file", "preset_files", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="TOML file with your own [presets.NAME] tables (repeatable).")
@click.option("--bundle", "bundle", is_flag=True,
              help="Also write app bundles (artifact + manifest.json) under OUT/bundle/<target>/.")
@click.option("--labels", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="Class labels for the bundle manifest, one per line.")
@click.option("--preprocess", "preprocess", multiple=True, metavar="[NAME:]KEY=VALUE,...|FILE.toml",
              help="Input preprocessing for the bundle manifest, e.g. scale=0.0625; for a model with several "
                   "inputs one per input, NAME:scale=... (repeat), or *:scale=... for all (default: none).")
@click.option("--check-budgets", is_flag=True,
              help="Fail (exit 6) when the simulated model does not fit the device's RAM/flash or the budgets below.")
@click.option("--max-latency-ms", type=click.FloatRange(min=0), default=None,
              help="Latency budget on --device (simulated p50, ms); implies --check-budgets.")
@click.option("--max-size-kb", type=click.FloatRange(min=0), default=None,
              help="Artifact size budget (KiB); implies --check-budgets.")
@click.option("--finetune-epochs", type=click.IntRange(0), default=30, show_default=True,
              help="Distillation epochs after pruning (on the calibration data; 0 turns it off).")
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0), default=None, metavar="POINTS",
              help="Accuracy budget (points, needs labelled --data): search which layers to keep in float until met.")
@click.option("--min-sqnr", "min_sqnr_db", type=float, default=None, metavar="DB",
              help="Label-free budget: the worst output's SQNR against the reference (dB); searched like the above.")
@click.option("--search-timeout", type=click.FloatRange(min=0), default=600.0, show_default=True, metavar="SECONDS",
              help="Time limit of the precision search.")
@click.option("--save-preset", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="FILE.toml",
              help="Write the searched recipe as a preset TOML (rebuild with --preset NAME --preset-file FILE).")
@click.option("--localize", is_flag=True,
              help="Attach the per-layer error to every verified artifact (default: failed ones, and passing ones "
                   "where it is cheap).")
@input_shape_option
@click.option("--keep-layout", is_flag=True,
              help="ONNX models: keep the NCHW layout at the artifact's inputs/outputs (default: NHWC, as onnx2tf builds it).")
@unsafe_option
@import_option
@warn_only_option
@json_option
def command(
    model: Path,
    out_dir: Path | None,
    targets: tuple[str, ...],
    preset: str | None,
    device: str | None,
    calibration: str | None,
    verify_data: Path | None,
    verify_samples: int,
    no_verify: bool,
    coreml_precision: str,
    preset_files: tuple[Path, ...],
    bundle: bool,
    labels: Path | None,
    preprocess: tuple[str, ...],
    input_shapes: tuple[str, ...],
    keep_layout: bool,
    check_budgets: bool,
    max_latency_ms: float | None,
    max_size_kb: float | None,
    finetune_epochs: int,
    max_accuracy_drop: float | None,
    min_sqnr_db: float | None,
    search_timeout: float,
    save_preset: Path | None,
    localize: bool,
    unsafe_deserialization: bool,
    imports: tuple[str, ...],
    warn_only: bool,
    as_json: bool,
) -> int:
    """Convert MODEL (.keras, .h5, SavedModel directory, .onnx) to TFLite and Core ML.

    Each artifact is written as <model>.<preset>.tflite / .mlpackage in the output directory, run once,
    verified against the original model and, with --device, simulated on that device. A report.json
    (versioned schema) is written next to the artifacts.
    """
    from rich.console import Console

    from edgeexport.api import Budgets, BundleOptions, ConvertOptions, VerifyOptions, convert
    from edgeexport.report.jsonfile import dumps
    from edgeexport.report.terminal import render_report
    from edgeexport.types import LoadOptions

    search = _precision_search(max_accuracy_drop, min_sqnr_db, search_timeout, save_preset, verify_data, no_verify)
    load = LoadOptions(unsafe_deserialization=unsafe_deserialization, input_shapes=parse_input_shapes(input_shapes),
                       keep_layout=keep_layout, imports=imports)
    out = out_dir or Path("build") / model.name.split(".")[0]
    chosen_preset = preset or ("auto" if device else "fp32")
    if chosen_preset == "auto" and not device:
        raise click.UsageError("--preset auto needs --device to choose for (add --device NAME, or name a preset)")
    options = ConvertOptions(
        targets=targets or None,
        preset=chosen_preset,
        device=device,
        calibration=None if calibration is None else "synthetic" if calibration == "synthetic" else Path(calibration),
        preset_files=preset_files + project_preset_files(),
        load=load,
        verify=VerifyOptions(enabled=not no_verify, data=verify_data, samples=verify_samples,
                             coreml_precision="fp32" if coreml_precision == "fp32" else "auto",
                             localize="always" if localize else "auto"),
        budgets=Budgets(max_latency_ms=max_latency_ms,
                        max_size_bytes=None if max_size_kb is None else int(max_size_kb * 1024)),
        check_budgets=check_budgets or max_latency_ms is not None or max_size_kb is not None,
        finetune_epochs=finetune_epochs,
        warn_only=warn_only,
        bundle=BundleOptions(labels=labels, preprocess=preprocess) if bundle else None,
        precision_search=search,
    )
    # A pipe or CI log is not a terminal; rich would then wrap at 80 columns and cut the artifact names.
    console = Console(stderr=as_json, highlight=False, width=None if sys.stdout.isatty() else 120)
    from edgeexport.cli.progress import progress_for

    with progress_for(console) as progress:
        report = convert(model, out, options, progress=progress)
    if as_json:
        sys.stdout.write(dumps(report.to_dict()))
    else:
        render_report(report, console)
        console.print(f"html: {out / 'report.html'}" + (f"\nbundles: {out / 'bundle'}" if bundle else ""))
    return report.exit_code


def _precision_search(max_accuracy_drop: float | None, min_sqnr_db: float | None, timeout_s: float,
                      save_preset: Path | None, verify_data: Path | None, no_verify: bool) -> PrecisionSearch | None:
    """The budget of ``--max-accuracy-drop`` / ``--min-sqnr`` (None when neither is given); usage errors exit 2."""
    if max_accuracy_drop is None and min_sqnr_db is None:
        if save_preset is not None:
            raise click.UsageError("--save-preset needs a budget: --max-accuracy-drop POINTS or --min-sqnr DB")
        return None
    if no_verify:
        raise click.UsageError("a budget needs verification: drop --no-verify")
    if max_accuracy_drop is not None and verify_data is None:
        raise click.UsageError("--max-accuracy-drop needs labelled data: add --data DATA.npz (with test__labels), "
                               "or use --min-sqnr DB")
    from edgeexport.search import PrecisionSearch

    return PrecisionSearch(max_accuracy_drop=max_accuracy_drop, min_sqnr_db=min_sqnr_db, timeout_s=timeout_s,
                           save_preset=save_preset)
