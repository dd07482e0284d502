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
  edgeexport check --baseline baseline/check.json --update-baseline baseline/  # compare, then keep the new one
  edgeexport check --jobs 4 --evidence build/evidence ; edgeexport check --ray auto
\b
Exit codes: 0 all checks passed, 5 a verification or accuracy check failed, 6 a budget was exceeded,
7 regressed against the baseline, 3/4 a model could not be read or converted (the worst code wins).
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
@click.option("--baseline", "baseline", type=click.Path(path_type=Path), default=None,
              help="A previous check.json (or a directory of them): fail (exit 7) on regressions beyond "
                   "[check.regression]; cells with identical inputs are reused, not recomputed.")
@click.option("--update-baseline", "update_baseline", type=click.Path(path_type=Path), default=None,
              help="Also write this run's result as a baseline (a file, or DIR/check.json for a directory).")
@click.option("--no-reuse", is_flag=True, help="Recompute every cell even when the baseline has identical inputs.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Cells run in this many worker processes (default: the number of cores; 1: in this process).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run cells as Ray tasks: no value starts a local cluster (--jobs CPUs), 'auto' joins "
                   "RAY_ADDRESS's cluster, or a cluster address. Needs edgeexport[ray].")
@click.option("--evidence", "evidence_dir", type=click.Path(path_type=Path), default=None,
              help="Write DIR/evidence.json: sha256 of every input and output, tool and dependency versions, "
                   "platform (check it later with `edgeexport evidence verify DIR`).")
@warn_only_option
@json_option
def command(config_path: Path | None, junit_path: Path | None, markdown_path: Path | None, out_dir: Path | None,
            baseline: Path | None, update_baseline: Path | None, no_reuse: bool, jobs: int | None,
            ray_address: str | None, evidence_dir: Path | None, warn_only: bool, as_json: bool) -> int:
    """Convert, verify and simulate every model x device x preset of the config, judge budgets, write JUnit XML,
    a Markdown summary and JSON, and exit with the worst status."""
    from rich.console import Console

    from edgeexport.check import find_config, load_config
    from edgeexport.check_baseline import regression_markdown
    from edgeexport.check_parallel import default_jobs
    from edgeexport.check_run import check_json, execute
    from edgeexport.report.jsonfile import dumps, write_json, write_text
    from edgeexport.report.markdown import check_summary
    from edgeexport.verify.junit import write_junit

    if ray_address is not None:
        from edgeexport.check_ray import import_ray

        import_ray()  # fail before any conversion when the extra is missing (exit 2)
    config = load_config(find_config(config_path))
    if out_dir is not None:
        config = dataclasses.replace(config, out=out_dir)
    console = Console(stderr=True, highlight=False)
    run = execute(config, jobs=jobs or default_jobs(), console=console, ray_address=ray_address, baseline=baseline,
                  reuse_cells=not no_reuse)
    result = run.result
    junit = junit_path or config.out / "junit.xml"
    write_junit(junit, "edgeexport.check", result.cases)
    markdown = check_summary(result.rows, exit_code=result.exit_code, failures=result.failures,
                             cases=len(result.cases), seconds=result.seconds) + regression_markdown(run.regressions)
    summary_path = markdown_path or config.out / "summary.md"
    write_text(summary_path, markdown)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as stream:
            stream.write(markdown)
    data = check_json(run, junit=junit, markdown=summary_path)
    check_path = write_json(config.out / "check.json", data)
    if update_baseline is not None:
        target = update_baseline / "check.json" if update_baseline.is_dir() or str(update_baseline).endswith("/") \
            else update_baseline
        write_json(target, data)
    if evidence_dir is not None:
        from edgeexport.evidence import write_evidence

        inputs = [(role, path) for m in config.models
                  for role, path in (("model", m.path), ("calibration", m.calibration), ("data", m.data))
                  if path is not None]
        write_evidence(evidence_dir, config_path=config.source, models=inputs, out=config.out,
                       reports=result.reports, outputs=[("report", junit), ("report", summary_path)],
                       check_json=check_path, reused=[r for r in run.records if r["reused"]])
    if as_json:
        sys.stdout.write(dumps(data))
    else:
        click.echo(markdown)
        console.print(f"junit: {junit}\nmarkdown: {summary_path}"
                      + (f"\nevidence: {evidence_dir / 'evidence.json'}" if evidence_dir is not None else ""))
    return 0 if warn_only else result.exit_code
