"""Test hooks: let a test stop or crash a run at an exact point, through ``EDGEEXPORT_TEST_HOOK``.

``EDGEEXPORT_TEST_HOOK`` is a comma-separated list of ``ACTION:POINT``; actions are ``pause`` (write
``edgeexport-test-hook: paused at POINT`` to stderr, then sleep ``EDGEEXPORT_TEST_PAUSE`` seconds, default 60),
``segv`` (the process sends itself SIGSEGV), ``grow`` (allocate memory until something stops it) and ``oom``
(allocate 512 MiB, then SIGKILL itself, as the kernel's out-of-memory killer would). Points:
``artifact`` (an artifact is complete in the staging folder), ``commit`` (the journal is written, nothing moved
yet), ``convert`` (inside the converter child, before the converter runs). Unset, a hook costs one lookup.
"""

from __future__ import annotations

import os
import signal
import sys
import time

VARIABLE = "EDGEEXPORT_TEST_HOOK"


def hook(point: str) -> None:
    """Act on every ``ACTION:point`` in ``EDGEEXPORT_TEST_HOOK`` (nothing when it is unset)."""
    wanted = os.environ.get(VARIABLE)
    if not wanted:
        return
    for spec in wanted.split(","):
        action, _, where = spec.strip().partition(":")
        if where != point:
            continue
        if action == "pause":
            sys.stderr.write(f"edgeexport-test-hook: paused at {point}\n")
            sys.stderr.flush()
            time.sleep(float(os.environ.get("EDGEEXPORT_TEST_PAUSE", "60")))
        elif action == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif action == "oom":
            hoard = [b"\x01" * (64 * 2**20) for _ in range(8)]  # resident, so the parent sees the peak
            time.sleep(0.5)  # long enough for the parent's RSS poll to see it
            os.kill(os.getpid(), signal.SIGKILL)
            del hoard
        elif action == "grow":
            hoard = []
            while True:
                hoard.append(b"\x01" * (64 * 2**20))  # written bytes: resident, not just reserved
