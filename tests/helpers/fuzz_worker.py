"""Run fuzz cases in a worker process with a per-case timeout (the slow set of tests/integration/test_fuzz_loaders).

``run_cases`` starts ``python -m tests.helpers.fuzz_worker FORMAT FOLDER``, sends it one seed per line on stdin and
waits at most ``timeout_s`` for the ``FUZZ <seed> <outcome>`` line on stdout. A case that does not answer in time
is recorded as ``"timeout after N s"``, the worker is killed (its whole process group) and a new one started for
the next seed; so is a worker that died. The outcome of a case is the exit code the CLI would use (int) or a
string saying what went wrong (an exception that is not an ``EdgeExportError``, files left behind, a hang).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARK = "FUZZ "


class _Worker:
    def __init__(self, fmt: str, folder: Path) -> None:
        self.log = (folder / f"worker-{time.monotonic_ns()}.log").open("wb")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        # Unbuffered bytes on our side: a buffered reader could hold the answer while select() waits for more.
        self.process = subprocess.Popen([sys.executable, "-m", "tests.helpers.fuzz_worker", fmt, str(folder)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, cwd=ROOT,
                                        env=env, bufsize=0, start_new_session=True)
        self.selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        self.pending = b""

    def ask(self, seed: int, timeout_s: float) -> int | str:
        """The case's outcome; ``timeout_s`` counts from the question (a new worker's imports included)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(f"{seed}\n".encode())
        except BrokenPipeError:
            return f"worker died (exit {self.process.poll()})"
        deadline = time.monotonic() + timeout_s
        while True:
            while b"\n" in self.pending:
                line, self.pending = self.pending.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(MARK):
                    _, got, outcome = text.split(" ", 2)
                    if int(got) == seed:
                        return int(outcome) if outcome.lstrip("-").isdigit() else outcome
            left = deadline - time.monotonic()
            if left <= 0:
                return f"timeout after {timeout_s:.0f} s"
            if not self.selector.select(left):
                continue
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                return f"worker died (exit {self.process.wait()})"
            self.pending += chunk

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.selector.close()
        self.log.close()


def run_cases(fmt: str, seeds: Iterable[int], folder: Path, *, timeout_s: float = 60.0,
              cases_per_worker: int = 100) -> dict[int, int | str]:
    """Outcome per seed (see the module docstring); ``folder`` holds one sub-folder per case while it runs."""
    results: dict[int, int | str] = {}
    worker: _Worker | None = None
    done_by_worker = 0
    try:
        for seed in seeds:
            if worker is None or done_by_worker >= cases_per_worker:
                if worker is not None:
                    worker.close()
                worker, done_by_worker = _Worker(fmt, folder), 0
            outcome = worker.ask(seed, timeout_s)
            done_by_worker += 1
            results[seed] = outcome
            if not isinstance(outcome, int):
                worker.close()
                worker = None
            shutil.rmtree(folder / str(seed), ignore_errors=True)
    finally:
        if worker is not None:
            worker.close()
    return results


def _serve(fmt: str, folder: Path) -> None:
    from tests.integration.test_fuzz_loaders import run_case

    for line in sys.stdin:
        seed = int(line)
        case = folder / str(seed)
        case.mkdir(parents=True, exist_ok=True)
        try:
            outcome: int | str = run_case(fmt, seed, case)
        except BaseException as err:  # any escape is the finding this worker reports
            last = traceback.format_exception(err)[-1].strip().replace("\n", " ")
            outcome = f"{type(err).__name__} (a traceback): {last[:300]}"
        sys.stdout.write(f"\n{MARK}{seed} {outcome}\n")  # a newline first: a library may have left a line open
        sys.stdout.flush()


if __name__ == "__main__":
    _serve(sys.argv[1], Path(sys.argv[2]))
