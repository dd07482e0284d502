"""`check --jobs` and `check --ray` when things go wrong: a real SIGINT leaves nothing half-written and no worker
behind; a worker that dies is retried once, then its cell is an error case (issue 16)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLES, CliResult


def digits_config(directory: Path, devices: tuple[str, ...], presets: tuple[str, ...]) -> Path:
    config = directory / "edgeexport.toml"
    config.write_text(
        f"[check]\nsamples = 32\n[[check.models]]\npath = '{SAMPLES / 'digits_cnn.keras'}'\n"
        f"devices = {list(devices)}\npresets = {list(presets)}\ntargets = ['tflite']\n"
        f"calibration = '{SAMPLES / 'digits.npz'}'\ndata = '{SAMPLES / 'digits.npz'}'\n")
    return config


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow  # a fresh interpreter, two spawned workers importing TensorFlow: 30-90 s
def test_sigint_stops_the_workers_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    config = digits_config(tmp_path, ("pixel-8", "raspberry-pi-5"), ("fp32", "fp16", "dynamic-int8"))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "edgeexport", "check", "--config", str(config), "--out",
                                str(out), "--jobs", "2"], stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    assert process.stderr is not None
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        if line.startswith("[1/6]") or not line:
            break
    assert lines[-1].startswith("[1/6]"), "".join(lines)
    workers = [pid for pid in _children(process.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 2
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130, rest
    assert "aborted" in rest or "interrupted" in rest  # click turns KeyboardInterrupt into Abort
    for _ in range(50):
        if not any(_alive(pid) for pid in workers):
            break
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)
    # no run-level report, no staging directory or temporary file, and every report that exists is complete
    assert not any((out / name).exists() for name in ("check.json", "junit.xml", "summary.md"))
    leftovers = [p for p in out.rglob(".*")]
    assert leftovers == []
    reports = list(out.rglob("report.json"))
    assert 1 <= len(reports) < 6
    for report in reports:
        for artifact in json.loads(report.read_text())["artifacts"]:
            path = report.parent / artifact["path"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact["sha256"]


@pytest.mark.slow  # spawned workers or a local Ray cluster, each importing TensorFlow: about a minute each
@pytest.mark.parametrize("runner", [("--jobs", "2"), ("--ray", "--jobs", "2")], ids=["jobs", "ray"])
def test_a_dying_worker_is_retried_once_then_reported(run_cli: Callable[..., CliResult], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, runner: tuple[str, ...]) -> None:
    if "--ray" in runner:
        pytest.importorskip("ray")
    config = digits_config(tmp_path, ("pixel-8", "raspberry-pi-5"), ("fp32",))
    # pixel-8's worker dies on its first try only; raspberry-pi-5's on every try
    monkeypatch.setenv("EDGEEXPORT_CHECK_CRASH", f"digits_cnn.keras.pixel-8.fp32:{tmp_path / 'crashed-once'}")
    once = run_cli("check", "--config", config, "--out", tmp_path / "once", *runner, "--json")
    assert once.code == 0, once.err
    assert (tmp_path / "crashed-once").exists()
    assert "--ray" in runner or "digits_cnn.keras.pixel-8.fp32: worker died (exit code 86), retrying once" in once.err
    monkeypatch.setenv("EDGEEXPORT_CHECK_CRASH", "digits_cnn.keras.raspberry-pi-5.fp32")
    always = run_cli("check", "--config", config, "--out", tmp_path / "always", *runner, "--json")
    assert always.code == 4, always.err
    data = json.loads(always.out)
    died = [row for row in data["rows"] if row["device"] == "raspberry-pi-5"]
    assert len(died) == 1 and "died" in died[0]["status"] and "2 tries" in died[0]["status"]
    assert [row["status"] for row in data["rows"] if row["device"] == "pixel-8"] == ["ok"]
