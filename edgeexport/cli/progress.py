"""Progress for a run: a spinner on a terminal, one line per finished stage otherwise (CI logs show progress).

A spinner on a pipe prints nothing, so a long conversion in CI looked hung. ``StageLines`` writes
``  done  loading digits_cnn.keras (2.1 s)`` to stderr when the next stage starts, and the last stage's line
when the run ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console


class StageLines:
    """A progress callback that prints each stage once it is over, with how long it took (wall seconds)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.current: str | None = None
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        self.finish()
        self.current, self.started = message, time.perf_counter()

    def finish(self) -> None:
        """Print the stage in progress as done (nothing when none is)."""
        if self.current is not None:
            self.stream.write(f"  done  {self.current} ({time.perf_counter() - self.started:.1f} s)\n")
            self.stream.flush()
            self.current = None


@contextmanager
def progress_for(console: Console, status_text: str = "starting") -> Iterator[Callable[[str], None]]:
    """A spinner when ``console`` is a terminal, else ``StageLines`` on stderr."""
    if console.is_terminal:
        with console.status(status_text, spinner="dots") as status:
            yield lambda message: status.update(message)
        return
    lines = StageLines()
    try:
        yield lines
        lines.finish()
    finally:
        lines.current = None
