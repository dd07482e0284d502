"""`edgeexport --help`, `--version` and `python -m edgeexport` answer without importing TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgeexport import __version__

PROBE = """
import sys
from edgeexport.cli.main import main
try:
    main({args!r})
except SystemExit as exit_:
    code = exit_.code
heavy = sorted(m for m in ("tensorflow", "coremltools", "onnx2tf", "keras") if m in sys.modules)
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["convert", "--help"], ["inspect", "--help"]])
def test_help_does_not_import_frameworks(args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HEAVY:\n" in result.stderr or result.stderr.rstrip().endswith("HEAVY:")


def test_python_dash_m_and_version() -> None:
    result = subprocess.run([sys.executable, "-m", "edgeexport", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_help_lists_commands_and_exit_codes() -> None:
    result = subprocess.run([sys.executable, "-m", "edgeexport", "--help"], capture_output=True, text=True, timeout=60)
    assert "convert" in result.stdout and "inspect" in result.stdout
    assert "5 verification failed" in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "edgeexport", "frobnicate"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "No such command" in result.stderr
