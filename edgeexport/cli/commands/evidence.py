"""``edgeexport evidence verify DIR``: re-hash every file an evidence manifest lists."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeexport.cli.options import json_option

EXAMPLES = """\\b
Examples:
  edgeexport check --evidence build/evidence
  edgeexport evidence verify build/evidence
\\b
Exit codes: 0 every file matches, 3 a file changed or is missing (each one is named), or no manifest.
"""


@click.group()
def command() -> None:
    """Evidence bundles written by `edgeexport check --evidence DIR`."""


@command.command("verify", epilog=EXAMPLES)
@click.argument("directory", type=click.Path(path_type=Path))
@json_option
def verify(directory: Path, as_json: bool) -> int:
    """Re-hash every input and output listed in DIR/evidence.json and name each one that changed."""
    from edgeexport.errors import BadInputError
    from edgeexport.evidence import verify_evidence
    from edgeexport.report.jsonfile import dumps

    checked, problems = verify_evidence(directory)
    if as_json:
        sys.stdout.write(dumps({"checked": checked, "problems": [p.__dict__ for p in problems]}))
    for problem in problems:
        click.echo(problem.line(), err=True)
    if problems:
        raise BadInputError(f"{len(problems)} of {checked} files in {directory / 'evidence.json'} changed or are missing")
    if not as_json:
        click.echo(f"evidence ok: {checked} files match {directory / 'evidence.json'}")
    return 0
