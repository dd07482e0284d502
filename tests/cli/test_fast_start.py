"""`edgeexport --help`, `--version` and `python -m edgeexport` answer without importing TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeexport import __version__
from tests.conftest import ROOT

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


def test_core_ml_verify_and_simulate_print_no_third_party_chatter(samples: Path) -> None:
    """coremltools prints version warnings and, off macOS, a "Failed to load _MLModelProxy" line per native proxy
    on import; a fresh process (where the import really happens) must show none of it on stderr."""
    package = ROOT / "ios_demo" / "DigitsDemo.swiftpm" / "Sources" / "DigitsDemo" / "Resources" / "digits_cnn.fp16.mlpackage"
    # As from a user's shell: not the TF_* log settings this test session exported.
    shell = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    for args in (["verify", package, "--reference", samples / "digits_cnn.keras", "--samples", "8"],
                 ["simulate", package, "--device", "iphone-15-pro"]):
        result = subprocess.run([sys.executable, "-m", "edgeexport", *map(str, args)], capture_output=True, text=True,
                                timeout=300, env=shell)
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == "", result.stderr
        assert "iphone-15-pro" in result.stdout or "PASS" in result.stdout
