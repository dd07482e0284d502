"""Run a command under a resident-memory watchdog (issue 17's memory benchmarks on a shared machine).

Usage: ``python benchmarks/watchdog.py --limit-gib 9 -- CMD ARGS...``

``ulimit -v`` caps virtual memory, which TensorFlow reserves in large amounts it never touches, so it kills
healthy runs; this polls the resident memory (``VmRSS`` from /proc) of the command's whole process tree every
0.5 s instead, kills the tree (SIGKILL to its process group) above the limit, and prints the tree's peak.
The peak is sampled, so a spike shorter than the poll interval can be missed: it is a lower bound. The sum of
VmRSS counts pages that processes share (the converter child's TensorFlow libraries and the heap it inherited
from the forkserver) once per process; the tree's summed PSS (``/proc/PID/smaps_rollup``: a shared page split
among its sharers) is the physical memory, printed beside it.
Exit code: the command's, or 137 when the watchdog killed it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(root: int) -> int:
    """Resident memory (KiB) of ``root`` and all its descendants, now."""
    return tree_kib(root)[0]


def tree_kib(root: int) -> tuple[int, int]:
    """Summed VmRSS and summed PSS (KiB) of ``root`` and all its descendants, now."""
    tree, todo, rss, pss = _children(), [root], 0, 0
    while todo:
        pid = todo.pop()
        rss += _rss_kib(pid)
        pss += _pss_kib(pid)
        todo.extend(tree.get(pid, []))
    return rss, pss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-gib", type=float, default=9.0, help="kill above this tree RSS (GiB, default 9)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        parser.error("no command given")
    limit_kib = int(options.limit_gib * 2**20)
    process = subprocess.Popen(command, start_new_session=True)
    peak, peak_pss, killed, started = 0, 0, False, time.perf_counter()
    while process.poll() is None:
        rss, pss = tree_kib(process.pid)
        peak, peak_pss = max(peak, rss), max(peak_pss, pss)
        if rss > limit_kib:
            killed = True
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.5)
    code = process.wait()
    print(f"watchdog: tree peak {peak / 2**20:.2f} GiB summed VmRSS, {peak_pss / 2**20:.2f} GiB summed PSS "
          f"(sampled every 0.5 s), {time.perf_counter() - started:.0f} s"
          + (f", KILLED above {options.limit_gib} GiB" if killed else ""), file=sys.stderr)
    return 137 if killed else code


if __name__ == "__main__":
    raise SystemExit(main())
