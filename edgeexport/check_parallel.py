"""``check --jobs N``: cells in worker processes, with progress, and nothing half-written when interrupted.

Workers are started with the ``spawn`` method: conversion is not thread-safe and TensorFlow holds global state,
so every cell runs in a process of its own that imported nothing from the parent. The parent hands each idle
worker one cell at a time over its own queue, so it always knows which cell a worker holds: a worker that dies
(killed, out of memory) has its cell retried once on a fresh worker, then reported as an error case.
Workers ignore SIGINT; on Ctrl-C the parent terminates them and removes the output directories of the cells
that were running, and writes no report (check.json, JUnit and Markdown are written only after every cell).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from edgeexport.check import Cell, CellOutcome, CheckConfig, run_cell
from edgeexport.errors import EXIT_UNSUPPORTED
from edgeexport.verify.junit import TestCase

CRASH_ENV = "EDGEEXPORT_CHECK_CRASH"  # fault injection for tests: "CELL" (always) or "CELL:ONCE_MARKER_PATH"
RETRIES = 1


def default_jobs() -> int:
    """The number of cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def outcome_status(outcome: CellOutcome) -> str:
    """``error``, ``failed`` (a check failed), ``reused`` or ``ok``."""
    if outcome.error_code or any(c.error for c in outcome.cases):
        return "error"
    if any(c.failure for c in outcome.cases):
        return "failed"
    return "reused" if outcome.reused else "ok"


class CellProgress(Protocol):
    """What the runners tell the user: a cell started, said something, or finished."""

    def started(self, name: str) -> None: ...

    def message(self, text: str) -> None: ...

    def finished(self, name: str, outcome: CellOutcome) -> None: ...

    def retrying(self, name: str, why: str) -> None: ...

    def close(self) -> None: ...


class LineProgress:
    """One line per finished cell (CI logs): ``[3/8] cell: ok in 1.2 s (2 running, 0 failed, ETA 9 s)``."""

    def __init__(self, total: int, workers: int, stream: IO[str] | None = None) -> None:
        self.total, self.workers, self.stream = total, max(1, workers), stream or sys.stderr
        self.done = self.failed = self.running = 0
        self.started_at = time.perf_counter()

    def started(self, name: str) -> None:
        self.running += 1

    def message(self, text: str) -> None:
        pass

    def finished(self, name: str, outcome: CellOutcome) -> None:
        self.running -= 1
        self.done += 1
        status = outcome_status(outcome)
        self.failed += status in ("error", "failed")
        timing = f" in {outcome.seconds:.1f} s" if outcome.seconds else ""  # a dead worker's cell has no time
        self.stream.write(f"[{self.done}/{self.total}] {name}: {status}{timing} "
                          f"({self.running} running, {self.failed} failed, ETA {self.eta()})\n")
        self.stream.flush()

    def retrying(self, name: str, why: str) -> None:
        self.running -= 1
        self.stream.write(f"{name}: {why}, retrying once\n")
        self.stream.flush()

    def eta(self) -> str:
        """Remaining cells x mean wall time per finished cell so far (includes worker start-up)."""
        if self.done >= self.total:
            return "0 s"
        per_cell = (time.perf_counter() - self.started_at) / self.done
        return f"{per_cell * (self.total - self.done):.0f} s"

    def close(self) -> None:
        pass


class LiveProgress:
    """A live rich display on a terminal: cells done / total, running, failed, ETA, and the latest message."""

    def __init__(self, total: int, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self.failed = self.running = 0
        self.progress = Progress(SpinnerColumn(), TextColumn("cells"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("running {task.fields[running]}, failed {task.fields[failed]}"),
                                 TimeRemainingColumn(), TextColumn("{task.description}"), console=console,
                                 transient=True)
        self.task = self.progress.add_task("", total=total, running=0, failed=0)
        self.progress.start()

    def started(self, name: str) -> None:
        self.running += 1
        self.progress.update(self.task, running=self.running, description=name)

    def message(self, text: str) -> None:
        self.progress.update(self.task, description=text[:60])

    def finished(self, name: str, outcome: CellOutcome) -> None:
        self.running -= 1
        self.failed += outcome_status(outcome) in ("error", "failed")
        self.progress.update(self.task, advance=1, running=self.running, failed=self.failed)

    def retrying(self, name: str, why: str) -> None:
        self.running -= 1
        self.progress.console.print(f"{name}: {why}, retrying once")

    def close(self) -> None:
        self.progress.stop()


def make_progress(total: int, workers: int, console: Any) -> CellProgress:
    """A live display when ``console`` is a terminal, else one line per finished cell on stderr."""
    if console.is_terminal:
        return LiveProgress(total, console)
    return LineProgress(total, workers)


def remove_partial(config: CheckConfig, cells: Sequence[Cell]) -> None:
    """Delete the output directories of cells that did not finish, so no report points at missing artifacts."""
    for cell in cells:
        shutil.rmtree(cell.out_dir(config), ignore_errors=True)


def died_outcome(config: CheckConfig, cell: Cell, exitcode: int | None, tries: int) -> CellOutcome:
    """The error case of a cell whose worker died on every try (exit 4: the conversion did not complete)."""
    model = config.models[cell.model]
    message = f"worker died (exit code {exitcode}) on all {tries} tries"
    return CellOutcome(cell, (TestCase(cell.classname(config), "convert", error=message),),
                       ({"model": model.path.name, "device": cell.device, "preset": cell.preset, "target": "-",
                         "status": f"error: {message}"},), EXIT_UNSUPPORTED)


def maybe_crash(name: str) -> None:
    """Fault injection for tests: kill this worker process when ``EDGEEXPORT_CHECK_CRASH`` names the cell
    (``CELL`` every time; ``CELL:MARKER`` only while MARKER does not exist, creating it)."""
    spec = os.environ.get(CRASH_ENV, "")
    cell, _, marker = spec.partition(":")
    if not spec or cell != name:
        return
    if marker:
        if Path(marker).exists():
            return
        Path(marker).touch()
    os._exit(86)


def run_serial(config: CheckConfig, cells: Sequence[Cell], progress: CellProgress) -> list[CellOutcome]:
    """Every cell in this process, in order (``--jobs 1``)."""
    outcomes: list[CellOutcome] = []
    for cell in cells:
        name = cell.classname(config)
        progress.started(name)
        try:
            outcome = run_cell(config, cell, progress.message)
        except BaseException:
            remove_partial(config, [cell])
            raise
        outcomes.append(outcome)
        progress.finished(name, outcome)
    return outcomes


@dataclass
class _Worker:
    process: Any  # multiprocessing.context.SpawnProcess
    tasks: Any  # its own multiprocessing Queue
    cell: Cell | None = None


def _worker_main(config: CheckConfig, tasks: Any, results: Any) -> None:
    """A worker's loop: take a cell, run it, send its outcome (or a bug's traceback) back; stop on None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        cell = tasks.get()
        if cell is None:
            return
        try:
            maybe_crash(cell.classname(config))
            results.put(("done", cell.index, run_cell(config, cell)))
        except Exception:
            results.put(("bug", cell.index, traceback.format_exc()))


def run_parallel(config: CheckConfig, cells: Sequence[Cell], jobs: int, progress: CellProgress) -> list[CellOutcome]:
    """Every cell in up to ``jobs`` spawned worker processes; outcomes in any order (``gather`` sorts them)."""
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    pending: deque[Cell] = deque(cells)
    tries: dict[int, int] = {}
    outcomes: dict[int, CellOutcome] = {}
    workers: list[_Worker] = []
    by_index = {cell.index: cell for cell in cells}

    def spawn() -> _Worker:
        tasks: Any = context.Queue()
        process = context.Process(target=_worker_main, args=(config, tasks, results), daemon=True)
        process.start()
        worker = _Worker(process, tasks)
        workers.append(worker)
        return worker

    def assign(worker: _Worker) -> None:
        worker.cell = pending.popleft() if pending else None
        worker.tasks.put(worker.cell)
        if worker.cell is not None:
            tries[worker.cell.index] = tries.get(worker.cell.index, 0) + 1
            progress.started(worker.cell.classname(config))

    try:
        for _ in range(min(jobs, len(cells))):
            assign(spawn())
        while len(outcomes) < len(cells):
            try:
                kind, index, payload = results.get(timeout=0.2)
            except queue.Empty:
                _reap(config, workers, pending, tries, outcomes, progress, spawn, assign)
                continue
            if kind == "bug":
                raise RuntimeError(f"cell {by_index[index].classname(config)} raised in its worker:\n{payload}")
            outcomes[index] = payload
            progress.finished(by_index[index].classname(config), payload)
            worker = next(w for w in workers if w.cell is not None and w.cell.index == index)
            assign(worker)
    except BaseException:
        running = [w.cell for w in workers if w.cell is not None and w.cell.index not in outcomes]
        _stop(workers, graceful=False)
        remove_partial(config, running)
        raise
    _stop(workers, graceful=True)
    return [outcomes[cell.index] for cell in cells]


def _reap(config: CheckConfig, workers: list[_Worker], pending: deque[Cell], tries: dict[int, int],
          outcomes: dict[int, CellOutcome], progress: CellProgress, spawn: Callable[[], _Worker],
          assign: Callable[[_Worker], None]) -> None:
    """Find workers that died holding a cell: retry the cell once on a new worker, then report it as an error."""
    for worker in list(workers):
        if worker.cell is None or worker.process.is_alive():
            continue
        cell, worker.cell = worker.cell, None
        workers.remove(worker)
        name = cell.classname(config)
        remove_partial(config, [cell])
        if tries[cell.index] <= RETRIES:
            pending.appendleft(cell)
            progress.retrying(name, f"worker died (exit code {worker.process.exitcode})")
        else:
            outcomes[cell.index] = died_outcome(config, cell, worker.process.exitcode, tries[cell.index])
            progress.finished(name, outcomes[cell.index])
        if pending:
            assign(spawn())


def _stop(workers: list[_Worker], *, graceful: bool) -> None:
    """Ask idle workers to stop (graceful) or terminate them at once. An idle worker holds no cell, so one that
    is slow to exit (TensorFlow's exit handlers) is terminated after 2 s, and killed after 5 s more."""
    for worker in workers:
        if graceful and worker.process.is_alive():
            worker.tasks.put(None)
        elif worker.process.is_alive():
            worker.process.terminate()
    for grace, action in ((2.0, "terminate"), (5.0, "kill")):
        deadline = time.monotonic() + grace
        for worker in workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        for worker in workers:
            if worker.process.is_alive():
                getattr(worker.process, action)()
    for worker in workers:
        worker.process.join(timeout=1.0)
