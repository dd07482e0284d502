"""Shared fixtures: the sample models, an in-process CLI runner, and artifacts converted once per session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"


@dataclass(frozen=True)
class CliResult:
    """Exit code and captured streams of one in-process ``edgeexport`` run."""

    code: int
    out: str
    err: str


@pytest.fixture(scope="session", autouse=True)
def _private_user_config(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or write the real user config: profiles `simulate --device host` calibrates and
    caches go to a temporary XDG_CONFIG_HOME."""
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config"))
    os.environ.pop("EDGEEXPORT_DEVICE_DIR", None)


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``edgeexport ARGS...`` in this process (TensorFlow is imported once per session, not per call)."""
    from edgeexport.cli.main import main

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def digits_data() -> dict[str, object]:
    import numpy as np

    with np.load(SAMPLES / "digits.npz") as archive:
        return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="session", autouse=True)
def every_report_reads_back(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every report.json the suite writes under pytest's temporary directories validates against the published
    schema and reads back into a Report whose ``to_dict()`` is the file (checked once, at the end)."""
    yield
    import json

    from edgeexport.report.model import load_report

    broken = []
    for path in sorted(tmp_path_factory.getbasetemp().rglob("report.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "schema_version" not in data:
            continue  # a test's deliberately broken file
        try:
            if load_report(path).to_dict() != data:
                broken.append(f"{path}: does not read back equal")
        except Exception as err:  # noqa: BLE001 - collect every failure, report them together
            broken.append(f"{path}: {err}")
    assert not broken, "reports that do not round-trip:\n" + "\n".join(broken)
