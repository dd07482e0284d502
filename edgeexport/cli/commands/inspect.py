"""``edgeexport inspect``: what a model takes and computes, before converting it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeexport.cli.options import (
    import_option,
    input_shape_option,
    json_option,
    parse_input_shapes,
    unsafe_option,
)

EXAMPLES = """\b
Examples:
  edgeexport inspect sample_models/digits_cnn.keras
  edgeexport inspect saved_model_dir/ --json
  edgeexport inspect model.onnx --input-shape input=1,3,224,224
  edgeexport inspect build/digits/digits_cnn.fp32.tflite
"""


@click.command(epilog=EXAMPLES)
@click.argument("model", type=click.Path(path_type=Path))
@input_shape_option
@click.option("--keep-layout", is_flag=True,
              help="ONNX models: keep the NCHW layout at the artifact's inputs/outputs (default: NHWC, as onnx2tf builds it).")
@unsafe_option
@import_option
@json_option
def command(model: Path, input_shapes: tuple[str, ...], keep_layout: bool, unsafe_deserialization: bool,
            imports: tuple[str, ...], as_json: bool) -> int:
    """Show MODEL's inputs and outputs (names, shapes, dtypes), op histogram, parameters and MACs.

    MODEL may also be an artifact (.tflite, .mlpackage): it is then described from the file itself."""
    from rich.console import Console

    from edgeexport.api import inspect
    from edgeexport.artifact_info import artifact_summary, is_artifact
    from edgeexport.report.jsonfile import dumps
    from edgeexport.serial import plain
    from edgeexport.types import LoadOptions

    if is_artifact(model):  # an artifact is described from its own file: nothing to load or convert
        target, described, size = artifact_summary(model)
        if as_json:
            sys.stdout.write(dumps({"path": str(model), "format": target, "size_bytes": size,
                                    "summary": plain(described)}))
        else:
            from edgeexport.report.terminal import render_summary

            render_summary(described, Console(highlight=False), title=f"{model.name} ({target} artifact, {size:,} bytes)")
        return 0
    options = LoadOptions(unsafe_deserialization=unsafe_deserialization, input_shapes=parse_input_shapes(input_shapes),
                          keep_layout=keep_layout, imports=imports)
    console = Console(stderr=True, highlight=False)
    with console.status(f"loading {model.name}", spinner="dots"):
        found = inspect(model, options=options)
    source, summary, notes = found.source, found.summary, found.notes  # notes: e.g. what the MAC count could not see
    if as_json:
        data = {"path": str(source.path), "format": source.format, "sha256": source.sha256, "summary": plain(summary),
                "notes": list(notes)}
        sys.stdout.write(dumps(data))
    else:
        render = Console(highlight=False)
        from edgeexport.report.terminal import render_summary

        render_summary(summary, render, title=f"{source.path.name} ({source.format})")
        for note in notes:
            render.print(f"note: {note}")
    return 0
