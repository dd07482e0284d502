"""``edgeexport bundle``: an output directory with report.json -> app-ready folders (artifact + manifest.json)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeexport.cli.options import json_option

EXAMPLES = """\b
Examples:
  edgeexport bundle build/digits --preprocess scale=0.0625 --labels labels.txt
  edgeexport bundle build/digits --preprocess preprocessing.toml --model-version 1.2.0 --json
  edgeexport bundle build/two --preprocess image:scale=1/255 --preprocess mask:scale=1
"""


@click.command("bundle", epilog=EXAMPLES)
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--labels", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="Class labels, one per line (recorded in the manifest and embedded where the format allows).")
@click.option("--preprocess", "preprocess", multiple=True, metavar="[NAME:]KEY=VALUE,...|FILE.toml",
              help="Input preprocessing x = (raw * scale - mean) / std, e.g. scale=0.0625 or "
                   "scale=1/255,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,channel_order=rgb; for a model with "
                   "several inputs give one per input, NAME:scale=... (repeat), or *:scale=... for every input "
                   "(default: none).")
@click.option("--model-version", default=None, help="Model version for the manifest (default: source sha256 prefix).")
@click.option("--description", default="", help="One-line model description.")
@click.option("--author", default="", help="Model author.")
@click.option("--license", "license_", default="", help="Model licence (e.g. an SPDX id).")
@click.option("--no-embed", is_flag=True, help="Copy artifacts unchanged instead of embedding metadata.")
@json_option
def command(out_dir: Path, labels: Path | None, preprocess: tuple[str, ...], model_version: str | None,
            description: str, author: str, license_: str, no_embed: bool, as_json: bool) -> None:
    """Write OUT_DIR/bundle/<target>/ for each artifact in OUT_DIR/report.json: the artifact with metadata
    embedded where its format supports it, and a manifest.json valid against the published schema
    (edgeexport/schemas/manifest.schema.json)."""
    from edgeexport.bundle import (
        ModelInfo,
        parse_preprocess_specs,
        read_labels,
        write_bundles,
    )
    from edgeexport.report.jsonfile import dumps

    info = ModelInfo(version=model_version, description=description, author=author, license=license_,
                     labels=read_labels(labels) if labels else None)
    results = write_bundles(out_dir, preprocessing=parse_preprocess_specs(preprocess), info=info, embed=not no_embed)
    if as_json:
        sys.stdout.write(dumps([{"directory": str(r.directory), "manifest": r.manifest} for r in results]))
        return
    for result in results:
        manifest = result.manifest
        missing = ", ".join(item["what"] for item in manifest["not_embedded"]) or "nothing"
        click.echo(f"{result.directory}: {manifest['artifact']['path']} ({manifest['artifact']['size_bytes']:,} bytes), "
                   f"manifest.json; embedded {len(manifest['embedded'])} field(s), not embedded: {missing}")
