"""Calibrate this machine the first time it is simulated, and cache the profile in the user device dir.

``simulate --device host`` calls ``ensure_host_calibrated`` before it loads the profile: when the ``host``
profile it would get is still the shipped placeholder, the micro-benchmark suite runs once (about a minute
here), prints one notice, and writes ``$XDG_CONFIG_HOME/edgeexport/devices/host.toml`` (default
``~/.config/edgeexport/devices``; ``$EDGEEXPORT_DEVICE_DIR`` overrides both), which every later run loads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

HOST = "host"


def needs_calibration(name: str) -> bool:
    """True when ``name`` is ``host`` and the profile it resolves to is the uncalibrated placeholder."""
    if name != HOST:
        return False
    from edgeexport.catalog import load_device
    from edgeexport.catalog.devices import is_placeholder

    return is_placeholder(load_device(HOST))


def ensure_host_calibrated(name: str, notice: Callable[[str], None]) -> Path | None:
    """Calibrate the host once when ``needs_calibration(name)``; ``notice`` gets one line before it starts.
    Returns the written profile's path, or None when nothing had to be done. Raises OutputPathError when
    the user device dir cannot be written."""
    if not needs_calibration(name):
        return None
    from edgeexport.catalog.devices import user_device_dir
    from edgeexport.simulate.calibrate import calibrate

    out = user_device_dir() / f"{HOST}.toml"
    notice(f"host: calibrating this machine once (about a minute), cached in {out}; --no-calibrate skips it")
    return calibrate(out).path
