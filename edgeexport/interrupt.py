"""SIGINT and SIGTERM, honored within a couple of seconds at any stage, with nothing half-written left behind.

``install()`` (called by the CLI) turns SIGINT into ``KeyboardInterrupt`` and SIGTERM into ``Terminated`` (a
``KeyboardInterrupt`` whose exit code is 143), so the usual ``finally``/``with`` clean-ups run. A handler runs
only when the main thread executes Python: a converter deep in C++ may not return for minutes, and a library
may swallow the exception. So each signal also arms a timer: if the process is still alive ``GRACE_SECONDS``
later, the registered clean-ups (remove the staging folder, kill the converter child) run on the timer's thread
and the process exits with 128 + the signal number. ``deferred_signals()`` holds a signal back while a commit
renames files, so a commit is never cut in half.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

GRACE_SECONDS = float(os.environ.get("EDGEEXPORT_SIGNAL_GRACE", "2.0"))
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; the CLI exits 143."""

    exit_code = EXIT_SIGTERM


_cleanups: list[Callable[[], None]] = []
_permanent: list[Callable[[], None]] = []
_timers: list[threading.Timer] = []
_lock = threading.Lock()
_deferring = 0
_pending: int | None = None


Handlers = dict[int, "signal._HANDLER"]


def install() -> Handlers:
    """Route SIGINT and SIGTERM through ``_handler`` (main thread only); the handlers it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, _handler) for signum in (signal.SIGINT, signal.SIGTERM)}


def restore(previous: Handlers) -> None:
    """Put back what ``install`` replaced and cancel pending hard exits (a CLI run in-process leaves no trace)."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    while _timers:
        _timers.pop().cancel()


def exit_code(err: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return EXIT_SIGTERM if isinstance(err, Terminated) else EXIT_SIGINT


def _handler(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _deferring:
        _pending = signum
        return
    _raise(signum)


def _raise(signum: int) -> None:
    timer = threading.Timer(GRACE_SECONDS, _hard_exit, args=(signum,))
    timer.daemon = True
    timer.start()
    _timers.append(timer)
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


def _hard_exit(signum: int) -> None:
    """The main thread did not finish in time: clean up from here and leave."""
    if _deferring:  # a commit is renaming files; it takes milliseconds, so look again shortly
        timer = threading.Timer(0.2, _hard_exit, args=(signum,))
        timer.daemon = True
        timer.start()
        return
    run_cleanups()
    try:
        sys.stderr.write("interrupted\n" if signum == signal.SIGINT else "terminated\n")
        sys.stderr.flush()
    finally:
        os._exit(128 + signum)


def run_cleanups() -> None:
    """Run every registered clean-up once, newest first; failures are ignored (best effort on the way out)."""
    with _lock:
        pending = [*reversed(_cleanups), *_permanent]
        _cleanups.clear()
    for cleanup in pending:
        with suppress(Exception):
            cleanup()


def register(cleanup: Callable[[], None]) -> None:
    """Register ``cleanup`` for every hard exit from now on (e.g. stopping a server process); idempotent."""
    with _lock:
        if cleanup not in _permanent:
            _permanent.append(cleanup)


@contextmanager
def on_interrupt(cleanup: Callable[[], None]) -> Iterator[None]:
    """Register ``cleanup`` for the hard exit while the block runs (the block's own ``finally`` still runs first)."""
    with _lock:
        _cleanups.append(cleanup)
    try:
        yield
    finally:
        with _lock:
            if cleanup in _cleanups:
                _cleanups.remove(cleanup)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block is done, then act on the last one that arrived."""
    global _deferring, _pending
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending is not None:
            signum, _pending = _pending, None
            _raise(signum)
