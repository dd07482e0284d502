"""`edgeexport presets [SPEC]`: list quantization/pruning presets with their tolerances, or explain one spec.

User presets come from ``--preset-file`` and from ``pyproject.toml`` in the current directory
(``[tool.edgeexport.presets.<name>]`` or ``[tool.edgeexport] preset_files``). No framework imports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgeexport.catalog import (
    Preset,
    Tolerance,
    list_presets,
    load_preset,
    presets_from_pyproject,
)
from edgeexport.serial import plain


def describe_tolerance(tolerance: Tolerance) -> str:
    """A compact one-line rendering, e.g. ``cos>=0.98 sqnr>=15dB top1>=0.95 drop<=2pt``."""
    parts = []
    if tolerance.max_abs is not None:
        parts.append(f"max|d|<={tolerance.max_abs:g}")
    if tolerance.mean_abs is not None:
        parts.append(f"mean|d|<={tolerance.mean_abs:g}")
    if tolerance.cosine_min is not None:
        parts.append(f"cos>={tolerance.cosine_min:g}")
    if tolerance.sqnr_db_min is not None:
        parts.append(f"sqnr>={tolerance.sqnr_db_min:g}dB")
    if tolerance.top1_agreement_min is not None:
        parts.append(f"top1>={tolerance.top1_agreement_min:g}")
    if tolerance.accuracy_drop_max is not None:
        parts.append(f"drop<={tolerance.accuracy_drop_max:g}pt")
    return " ".join(parts) or "-"


def _preset_dict(preset: Preset) -> dict[str, Any]:
    q, p, t = preset.quantization, preset.pruning, preset.tolerance
    return {
        "name": preset.name, "description": preset.description, "targets": sorted(preset.targets),
        "parts": list(preset.parts), "source": preset.source,
        "quantization": {"tflite_mode": q.tflite_mode, "coreml_precision": q.coreml_precision,
                         "coreml_weights": q.coreml_weights, "requires_calibration": q.requires_calibration},
        "pruning": None if p is None else {"method": p.method, "sparsity": p.sparsity, "n": p.n, "m": p.m,
                                           "energy": p.energy, "form": p.form},
        "tolerance": plain(t),
        "overrides": [{"keep": o.keep, "op_type": o.op_type, "name": o.name} for o in preset.overrides],
        "min_coreml_deployment_target": preset.min_coreml_deployment_target,
    }


def _extra_files(preset_files: tuple[str, ...]) -> list[Path]:
    return [*presets_from_pyproject(Path("pyproject.toml")), *(Path(f) for f in preset_files)]


@click.command(name="presets")
@click.argument("spec", required=False)
@click.option("--preset-file", "preset_files", multiple=True, type=click.Path(dir_okay=False),
              help="A TOML file with [presets.<name>] tables (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(spec: str | None, preset_files: tuple[str, ...], as_json: bool) -> None:
    """List presets (name, targets, what it does, tolerance), or explain SPEC such as prune-50+int8."""
    extra = _extra_files(preset_files)
    if spec is not None:
        preset = load_preset(spec, extra_files=extra)
        if as_json:
            click.echo(json.dumps(_preset_dict(preset), indent=2))
            return
        data = _preset_dict(preset)
        click.echo(f"{preset.name}: {preset.description}")
        click.echo(f"  targets      {', '.join(data['targets'])}")
        q = preset.quantization
        click.echo(f"  tflite       {q.tflite_mode or '-'}")
        weights = f" + {q.coreml_weights}" if q.coreml_weights else ""
        click.echo(f"  coreml       {q.coreml_precision or '-'}{weights}")
        click.echo(f"  calibration  {'required' if q.requires_calibration else 'not needed'}")
        if preset.pruning is not None:
            p = preset.pruning
            if p.method == "lowrank":
                share = f"{p.energy:.0%} of squared singular values" if p.energy is not None \
                    else f"{1 - p.sparsity:.0%} of each factorized layer's parameters"
                click.echo(f"  low-rank     keep {share} ({p.form or 'svd'} for k x k convs)")
            else:
                detail = f"{p.n}:{p.m}" if p.method == "n:m" else f"{p.sparsity:.0%}"
                click.echo(f"  pruning      {p.method} {detail}")
        click.echo(f"  tolerance    {describe_tolerance(preset.tolerance)}")
        for o in preset.overrides:
            click.echo(f"  keep {o.keep}    op_type={o.op_type or '*'} name={o.name or '*'}")
        if preset.min_coreml_deployment_target:
            click.echo(f"  needs        {preset.min_coreml_deployment_target}+ for Core ML")
        return
    presets = list_presets(extra_files=extra)
    if as_json:
        click.echo(json.dumps([_preset_dict(p) for p in presets], indent=2))
        return
    rows = [[p.name, ",".join(sorted(p.targets)), p.description, describe_tolerance(p.tolerance)] for p in presets]
    header = ["name", "targets", "what it does", "tolerance"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
    desc_width = 70
    click.echo(f"{header[0].ljust(widths[0])}  {header[1].ljust(widths[1])}  "
               f"{header[2].ljust(desc_width)}  {header[3]}")
    for name, targets, desc, tol in rows:
        short = desc if len(desc) <= desc_width else desc[: desc_width - 3] + "..."
        click.echo(f"{name.ljust(widths[0])}  {targets.ljust(widths[1])}  {short.ljust(desc_width)}  {tol}")
    click.echo("\nCombine one pruning or low-rank preset and one quantization preset with '+', e.g. prune-50+int8 "
               "or lowrank-50+int8. To go smaller than these, train a smaller architecture with `edgeexport "
               "distill`. "
               "`edgeexport presets NAME` explains one.")
