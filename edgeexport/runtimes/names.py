"""The names of the engines that run artifacts, for code that must choose one (no framework import).

A runner's ``runtime_name`` is one of ``Engine``; ``CoremlRuntime`` is what a caller may ask for a Core ML
artifact (``VerifyOptions.coreml_runtime``, ``verify --coreml-runtime``).
"""

from __future__ import annotations

from enum import StrEnum

from edgeexport.targets.base import COREML


class Engine(StrEnum):
    """``LITERT``: the LiteRT interpreter; ``COREML``: Core ML's own ``MLModel.predict`` (macOS only; named
    like its target); ``MIL``: edgeexport's numpy MIL executor."""

    LITERT = "litert"
    COREML = COREML
    MIL = "mil"


class CoremlRuntime(StrEnum):
    """Which engine runs a Core ML artifact: ``AUTO`` is Core ML where it can load the model (macOS), else the
    MIL executor; ``COREML`` and ``MIL`` ask for one engine (Core ML off macOS is UnsupportedError, exit 4)."""

    AUTO = "auto"
    MIL = Engine.MIL.value
    COREML = Engine.COREML.value
