"""edgeexport: convert trained models to TFLite/LiteRT and Core ML, tuned per device, verified and simulated.

The public API lives in ``edgeexport.api`` and is re-exported here lazily, so that importing the package
(for ``edgeexport --help``) does not import TensorFlow.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("convert", "inspect", "verify", "simulate", "bench", "load_device", "load_preset")


def __getattr__(name: str) -> Any:
    if name in _API:
        from edgeexport import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgeexport' has no attribute {name!r}")
