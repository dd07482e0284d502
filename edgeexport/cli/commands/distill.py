"""``edgeexport distill TEACHER --student STUDENT.keras --data DATA.npz --out OUT.keras``: train a smaller Keras
architecture to mimic a teacher (knowledge distillation), then compare both."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from edgeexport.cli.options import device_option, json_option, unsafe_option

EXAMPLES = """\b
Examples:
  edgeexport distill sample_models/digits_cnn.keras --student small.keras --data sample_models/digits.npz \\
      --out build/small-distilled.keras --device pixel-8
  edgeexport convert build/small-distilled.keras --preset int8 --calibration sample_models/digits.npz
"""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


@click.command(name="distill", epilog=EXAMPLES)
@click.argument("teacher", type=click.Path(path_type=Path, exists=True))
@click.option("--student", "student", type=click.Path(path_type=Path, exists=True), required=True,
              help="The smaller Keras model (.keras/.h5) to train; same inputs and output shapes as the teacher.")
@click.option("--data", "data", type=click.Path(path_type=Path), required=True,
              help="Inputs (.npz): the train split, else calibration, else all arrays; labels are mixed in when present.")
@click.option("--out", "-o", "out", type=click.Path(path_type=Path), required=True,
              help="Where to write the distilled student (.keras).")
@click.option("--epochs", type=click.IntRange(1), default=300, show_default=True,
              help="Upper bound on epochs; early stopping on a held-out 15% usually ends sooner.")
@click.option("--temperature", type=click.FloatRange(min=0.1), default=4.0, show_default=True,
              help="Softmax temperature of the soft targets (Hinton et al.).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the split, shuffling and mixing.")
@device_option
@unsafe_option
@json_option
def command(teacher: Path, student: Path, data: Path, out: Path, epochs: int, temperature: float, seed: int,
            device: str | None, unsafe_deserialization: bool, as_json: bool) -> int:
    """Distil TEACHER into the STUDENT architecture on unlabelled data and compare accuracy, size and latency."""
    from edgeexport.compress.distill import DistillConfig, run_distill

    config = DistillConfig(epochs=epochs, temperature=temperature, seed=seed)
    err = sys.stderr
    on_tty = err.isatty() and not as_json
    bar: Any = None

    def on_epoch(epoch: int, total: int, train_loss: float, held_out: float) -> None:
        nonlocal bar
        if on_tty:
            if bar is None:
                bar = click.progressbar(length=total, label="distilling", file=err, show_pos=True)
                bar.__enter__()
            bar.label = f"distilling (held-out loss {held_out:.4f})"
            bar.update(1)
        else:
            click.echo(f"epoch {epoch}/{total}: loss {train_loss:.4f}, held-out {held_out:.4f}", err=True)

    try:
        summary = run_distill(teacher, student, data, out, config=config, device=device, unsafe=unsafe_deserialization,
                              on_epoch=on_epoch, say=lambda message: click.echo(message, err=True))
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if as_json:
        from edgeexport.serial import plain

        click.echo(json.dumps(plain(summary), indent=2))
        return 0
    result = summary.result
    click.echo(f"stopped after {result.epochs_run} epochs, kept epoch {result.best_epoch} "
               f"(held-out loss {result.best_holdout_loss:.4f}; {result.train_samples} train / "
               f"{result.holdout_samples} held-out samples; loss {', '.join(result.losses)}"
               f"{', labels mixed in' if summary.labels_used else ''})")
    where = f" on {summary.device}" if summary.device else " (pass --device for simulated latency)"
    click.echo(f"{'':8} {'params':>9} {'file':>10} {'accuracy':>9} {'agrees':>8} {'latency' + where}")
    for name, side in (("teacher", summary.teacher), ("student", summary.student)):
        latency = _ms(side.latency_ms) + (f" ({side.target} fp32)" if side.target else "")
        click.echo(f"{name:8} {side.params:9,d} {side.file_bytes:10,d} {_pct(side.accuracy):>9} "
                   f"{_pct(side.agreement):>8} {latency}")
    click.echo(f"scored on the {summary.eval_split} split ({summary.eval_samples} samples)"
               + ("; no labels there, so only agreement with the teacher" if summary.teacher.accuracy is None else ""))
    click.echo(f"wrote {summary.out} (weights sha256 {summary.weights_sha256[:16]}); convert it like any Keras model")
    return 0
