"""``edgeexport check``: the CI gate over the matrix in edgeexport.toml / [tool.edgeexport.check]."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click

from edgeexport.cli.options import json_option, warn_only_option

EXAMPLES = """\b
Examples:
  edgeexport check                               # reads ./edgeexport.toml or ./pyproject.toml
  edgeexport check --config ci/edgeexport.toml --junit junit.xml --markdown summary.md
\b
Exit codes: 0 all checks passed, 5 a verification or accuracy check failed, 6 a budget was exceeded,
3/4 a model could not be read or converted (the worst code wins).
On GitHub Actions the Markdown summary is also appended to $GITHUB_STEP_SUMMARY.
"""


@click.command(epilog=EXAMPLES)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Config file (default: ./edgeexport.toml, else ./pyproject.toml).")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path), default=None,
              help="JUnit XML path (default: <out>/junit.xml).")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None,
              help="Markdown summary path (default: <out>/summary.md).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output directory for artifacts and reports (default: the config's 'out', build/check).")
@warn_only_option
@json_option
def command(config_path: Path | None, junit_path: Path | None, markdown_path: Path | None, out_dir: Path | None,
            warn_only: bool, as_json: bool) -> int:
    """Convert, verify and simulate every model x device x preset of the config, judge budgets, write JUnit XML,
    a Markdown summary and JSON, and exit with the worst status."""
    from rich.console import Console

    from edgeexport.check import find_config, load_config, run_check
    from edgeexport.report.jsonfile import dumps, write_json, write_text
    from edgeexport.report.markdown import check_summary
    from edgeexport.verify.junit import write_junit

    config = load_config(find_config(config_path))
    if out_dir is not None:
        config = dataclasses.replace(config, out=out_dir)
    console = Console(stderr=True, highlight=False)
    with console.status("checking", spinner="dots") as status:
        result = run_check(config, progress=lambda message: status.update(message))
    junit = junit_path or config.out / "junit.xml"
    write_junit(junit, "edgeexport.check", result.cases)
    markdown = check_summary(result.rows, exit_code=result.exit_code, failures=result.failures,
                             cases=len(result.cases), seconds=result.seconds)
    summary_path = markdown_path or config.out / "summary.md"
    write_text(summary_path, markdown)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as stream:
            stream.write(markdown)
    data = {"exit_code": result.exit_code, "failures": result.failures, "checks": len(result.cases),
            "seconds": round(result.seconds, 3), "rows": list(result.rows),
            "reports": [str(p) for p in result.reports], "junit": str(junit), "markdown": str(summary_path)}
    write_json(config.out / "check.json", data)
    if as_json:
        sys.stdout.write(dumps(data))
    else:
        click.echo(markdown)
        console.print(f"junit: {junit}\nmarkdown: {summary_path}")
    return 0 if warn_only else result.exit_code
