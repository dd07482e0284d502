"""Run a converter in a child process, so a segfault or an out-of-memory kill becomes a one-line error (exit 4).

The TFLite converter and coremltools are C++ underneath: on an odd graph they can crash the interpreter, and a
large model can grow until the kernel kills it. Both used to take edgeexport down with them (core dump, no
report, an exit code nobody chose). ``call`` runs ``module:function`` in a child and returns its result;
``EdgeExportError``s raised in the child are raised again in the parent with their class, message and hint;
a child that dies raises ``ChildCrashedError`` naming the stage, the signal and the peak resident memory.

Children come from a multiprocessing *forkserver* that has imported TensorFlow once (``edgeexport._preload``;
coremltools too when the run converts to Core ML), so a conversion does not pay for those imports again; the
server is started at the beginning of a run (``warm_up``), while the parent loads the model. The parent waits in a Python loop, so
Ctrl-C and SIGTERM are handled within a tenth of a second even while the converter is deep in C++; the child
ignores SIGINT, is killed by the parent, and exits by itself if its parent disappears.

``EDGEEXPORT_ISOLATE=0`` runs in-process (debugging, cost comparisons). ``EDGEEXPORT_MAX_CHILD_RSS_MB`` stops a
child whose resident memory passes that many MiB (default: no limit besides the kernel's).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterable
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from typing import Any

from edgeexport.errors import ConversionError, EdgeExportError
from edgeexport.interrupt import on_interrupt, register
from edgeexport.limits import disk_full
from edgeexport.targets.base import target_info
from edgeexport.testhooks import VARIABLE, hook

PRELOAD = ["edgeexport._preload"]
_preloaded: list[str] = list(PRELOAD)
# stage -> the child's peak resident bytes, for every call of this process (benchmarks/memory.py reads it)
PEAKS: dict[str, int] = {}
# stage -> this (parent) process's largest resident bytes while that child ran: what the parent holds meanwhile
PARENT_RESIDENT: dict[str, int] = {}
_POLL_SECONDS = 0.1
_context: BaseContext | None = None


class ChildCrashedError(ConversionError):
    """The converter's child process died (signal or memory); ``stage`` names what it was doing."""

    def __init__(self, message: str, *, stage: str, peak_rss_bytes: int | None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.stage = stage
        self.peak_rss_bytes = peak_rss_bytes


def enabled() -> bool:
    """Whether converters run in a child (``EDGEEXPORT_ISOLATE`` unset or not ``0``). Not inside a daemonic
    process (a ``check --jobs`` worker): it may not have children, and it is already the isolation, since
    ``check`` retries a cell whose worker died and then reports it."""
    import multiprocessing

    if multiprocessing.current_process().daemon:
        return False
    return os.environ.get("EDGEEXPORT_ISOLATE", "1") != "0"


def _ctx() -> BaseContext:
    global _context
    if _context is None:
        import multiprocessing

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(_preloaded))
        _context = context
    return _context


def preload_for(targets: Iterable[str]) -> tuple[str, ...]:
    """The modules the forkserver should import, beyond TensorFlow, for conversions to ``targets``."""
    return tuple(sorted({p for t in targets if (p := target_info(t).preload) is not None}))


def warm_up(preload: tuple[str, ...] = ()) -> None:
    """Start the forkserver now (it imports TensorFlow, and ``preload``, while the caller does other work).

    Idempotent; a server that lacks one of ``preload`` is replaced by one with all of them, so a later Core ML
    conversion does not import coremltools in every child.
    """
    if not enabled():
        return
    from multiprocessing import forkserver

    wanted = [module for module in preload if module not in _preloaded]
    if wanted:
        _preloaded.extend(wanted)
        shutdown()
        if _context is not None:
            _context.set_forkserver_preload(list(_preloaded))
    _ctx()
    forkserver.ensure_running()
    register(shutdown)
    atexit.register(shutdown)


def shutdown() -> None:
    """Stop the forkserver at once. Left alone, it lives until it notices its parent is gone, which it cannot do
    while still importing TensorFlow, and meanwhile it keeps the caller's stdout/stderr pipes open."""
    from multiprocessing import forkserver

    server = forkserver._forkserver  # the stdlib keeps the server's pid only here
    pid = getattr(server, "_forkserver_pid", None)
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            # reaps it (no zombie; its CPU time counts in ours) and forgets it, so the next run starts a new one
            getattr(server, "_stop")()  # noqa: B009 - private in the stdlib, untyped


def call(stage: str, target: str, *args: Any, **kwargs: Any) -> Any:
    """``module.function(*args, **kwargs)`` (``target`` is ``"module:function"``) in a child; its return value.

    ``stage`` names the step in errors (e.g. ``"convert tflite (int8)"``). Arguments and result must pickle.
    """
    return call_timed(stage, target, *args, **kwargs)[0]


def call_timed(stage: str, target: str, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Like ``call``, with the seconds the function itself took in the child (without process start-up)."""
    if not enabled():
        started = time.perf_counter()
        return _resolve(target)(*args, **kwargs), time.perf_counter() - started
    from edgeexport.release import release_memory

    release_memory()  # what the parent freed before this stage is not resident while the child converts
    context = _ctx()
    receive, send = context.Pipe(duplex=False)
    process = context.Process(  # type: ignore[attr-defined]
        target=_child, args=(send, stage, target, args, kwargs, os.getpid(), os.environ.get(VARIABLE)), daemon=True)
    process.start()
    send.close()
    limit_mb = os.environ.get("EDGEEXPORT_MAX_CHILD_RSS_MB")
    limit = int(float(limit_mb) * 2**20) if limit_mb else None
    peak = held = 0

    def kill() -> None:
        if process.is_alive():
            process.kill()

    try:
        with on_interrupt(kill):
            while True:
                ready = wait([receive, process.sentinel], timeout=_POLL_SECONDS)
                peak = max(peak, _peak_rss(process.pid))
                held = max(held, _peak_rss(None, field="VmRSS"))
                if receive in ready:
                    try:
                        message = receive.recv()
                    except EOFError:
                        message = None
                    break
                if process.sentinel in ready:
                    message = receive.recv() if receive.poll() else None
                    break
                if limit is not None and peak > limit:
                    kill()
                    process.join()
                    raise ChildCrashedError(
                        f"{stage} used more than {limit_mb} MiB of memory (peak {_mib(peak)}) and was stopped",
                        stage=stage, peak_rss_bytes=peak,
                        hint="raise EDGEEXPORT_MAX_CHILD_RSS_MB, use a smaller model or fewer calibration samples")
    finally:
        kill()
        process.join()
        receive.close()
    PEAKS[stage] = max(PEAKS.get(stage, 0), peak)
    PARENT_RESIDENT[stage] = max(PARENT_RESIDENT.get(stage, 0), held)
    if message is None:
        raise _crash(stage, process.exitcode, peak)
    return _unpack(stage, message)


def _child(send: Connection, stage: str, target: str, args: tuple[Any, ...], kwargs: dict[str, Any],
           parent: int, hooks: str | None) -> None:
    # The forkserver's environment is the one it started with; the caller's test hooks travel explicitly.
    if hooks:
        os.environ[VARIABLE] = hooks
    else:
        os.environ.pop(VARIABLE, None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it kills this process when interrupted
    threading.Thread(target=_orphan_watch, args=(parent,), daemon=True).start()
    try:
        hook("convert")
        started = time.perf_counter()
        value = _resolve(target)(*args, **kwargs)
        result: tuple[Any, ...] = ("ok", value, time.perf_counter() - started)
    except EdgeExportError as err:
        result = ("error", type(err).__module__, type(err).__qualname__, err.message, err.hint,
                  getattr(err, "ops", None))
    except BaseException as err:
        full = disk_full(err)
        result = ("bug", traceback.format_exc()) if full is None else \
            ("error", "edgeexport.errors", "OutputPathError", full.message, full.hint, None)
    send.send(result)
    send.close()


def _orphan_watch(parent: int) -> None:
    """Leave when the parent is gone (killed with SIGKILL, say), instead of converting for nobody."""
    while True:
        time.sleep(0.5)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _unpack(stage: str, message: tuple[Any, ...]) -> tuple[Any, float]:
    if message[0] == "ok":
        return message[1], float(message[2])
    if message[0] == "error":
        _, module, qualname, text, hint, ops = message
        try:
            cls = getattr(importlib.import_module(module), qualname)
        except (ImportError, AttributeError):
            cls = ConversionError
        if not (isinstance(cls, type) and issubclass(cls, EdgeExportError)):
            cls = ConversionError
        err = cls.__new__(cls)
        EdgeExportError.__init__(err, text, hint=hint)
        if ops is not None:
            err.ops = ops
        raise err
    raise RuntimeError(f"{stage} failed in the converter process:\n{message[1]}")


def _crash(stage: str, exitcode: int | None, peak: int) -> ChildCrashedError:
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
        why = {signal.SIGSEGV: "segmentation fault", signal.SIGKILL: "killed, most likely out of memory",
               signal.SIGABRT: "aborted", signal.SIGBUS: "bus error"}.get(signal.Signals(number), "killed") \
            if name.startswith("SIG") else "killed"
        text = f"{stage} crashed ({name}: {why}) at a peak of {_mib(peak)} resident"
    else:
        text = f"{stage} ended without a result (exit status {exitcode}) at a peak of {_mib(peak)} resident"
    return ChildCrashedError(text, stage=stage, peak_rss_bytes=peak or None,
                             hint="the converter ran in a child process; try another preset or report the model")


def _peak_rss(pid: int | None, *, field: str = "VmHWM") -> int:
    """The process's resident high-water mark (VmHWM; or another /proc status ``field``) in bytes; 0 when it
    cannot be read. ``pid`` None: this process."""
    try:
        with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB" if size else "unknown memory"
