"""Preloaded by the converter forkserver when a run converts to Core ML: coremltools, once per run."""

from __future__ import annotations

from edgeexport.targets import coreml

coreml.import_coremltools()
