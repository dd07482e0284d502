"""One ``check`` run: reuse what the baseline already has, run the rest (here, in workers or on Ray), compare.

The same cells in the same order come out of every runner; only wall times differ.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeexport.check import CellOutcome, CheckConfig, CheckResult, cells_of, error_outcome, gather
from edgeexport.check_baseline import Regression, cell_record, compare, fingerprint, load_baseline, reuse
from edgeexport.errors import EXIT_REGRESSED, EdgeExportError


@dataclass(frozen=True)
class CheckRun:
    """A finished run: the result (regression cases included), every cell's JSON record, the regressions found
    against the baseline (empty without one), how many cells were reused and which runner ran the rest."""

    result: CheckResult
    records: tuple[dict[str, Any], ...]
    regressions: tuple[Regression, ...]
    reused: int
    runner: str


def execute(config: CheckConfig, *, jobs: int, console: Any, ray_address: str | None = None,
            baseline: Path | None = None, reuse_cells: bool = True, transfer: str = "auto") -> CheckRun:
    """Run the matrix of ``config``. ``jobs`` 1 runs in this process, more in spawned workers, ``ray_address``
    (``local``, ``auto`` or an address) on Ray with that many CPUs for a local cluster. With ``baseline`` (a check
    JSON or a directory of them) a cell whose fingerprint matches is reused unless ``reuse_cells`` is False, and
    every cell is compared with it. ``console`` is a rich Console for the progress display."""
    from edgeexport.check_parallel import make_progress, run_parallel, run_serial

    started = time.perf_counter()
    old = load_baseline(baseline) if baseline is not None else {}
    cells = cells_of(config)
    hashes: dict[Path, str] = {}
    prints = {cell.index: fingerprint(config, cell, hashes) for cell in cells}
    reused = []
    todo = []
    for cell in cells:
        record = old.get(cell.classname(config))
        if reuse_cells and record is not None and record.get("fingerprint") == prints[cell.index]:
            reused.append(_trusted(config, reuse(record, cell)))
        else:
            todo.append(cell)
    trusted = sum(o.reused for o in reused)  # a reused cell refused for a stale report is not counted
    if trusted:
        console.print(f"reused {trusted} of {len(cells)} cells from the baseline (same inputs)")
    runner = "ray" if ray_address is not None else ("serial" if jobs <= 1 or len(todo) <= 1 else f"jobs {jobs}")
    progress = make_progress(len(todo), jobs, console)
    try:
        if ray_address is not None:
            from edgeexport.check_ray import run_ray

            computed = run_ray(config, todo, ray_address, jobs, progress, transfer=transfer) if todo else []
        elif runner == "serial":
            computed = run_serial(config, todo, progress)
        else:
            computed = run_parallel(config, todo, jobs, progress)
    finally:
        progress.close()
    result = gather(config, [*reused, *computed], time.perf_counter() - started)
    regressions: list[Regression] = []
    if old:
        regressions, cases = compare(config, result, old)
        result = dataclasses.replace(result, cases=result.cases + tuple(cases),
                                     exit_code=max(result.exit_code, EXIT_REGRESSED if regressions else 0))
    records = tuple(cell_record(config, o, prints[o.cell.index]) for o in result.cells)
    return CheckRun(result, records, tuple(regressions), trusted, runner)


def _trusted(config: CheckConfig, outcome: CellOutcome) -> CellOutcome:
    """A reused cell whose report.json is in this run's ``--out`` vouches for the artifacts there: it must still
    describe them (sha256), or the cell is refused (exit 3) instead of passed on the baseline's word. A reused cell
    with no report there (the baseline came from another ``--out``) claims nothing about this directory's files."""
    from edgeexport.bundle.writer import read_report

    if outcome.report is None or not (config.out / outcome.report).is_file():
        return outcome
    folder = (config.out / outcome.report).parent
    try:
        read_report(folder)  # validated, and every artifact's sha256 checked against the file
    except EdgeExportError as err:
        return error_outcome(config, outcome.cell, err, 0.0)
    return outcome


def check_json(run: CheckRun, *, junit: Path, markdown: Path) -> dict[str, Any]:
    """The ``check.json`` document: the summary the command always wrote, plus ``cells`` and ``regressions``."""
    result = run.result
    return {"exit_code": result.exit_code, "failures": result.failures, "checks": len(result.cases),
            "seconds": round(result.seconds, 3), "rows": list(result.rows),
            "reports": [str(p) for p in result.reports], "junit": str(junit), "markdown": str(markdown),
            "reused_cells": run.reused,
            "regressions": [dataclasses.asdict(r) | {"delta": r.delta} for r in run.regressions],
            "cells": list(run.records)}
