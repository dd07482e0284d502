"""Preloaded by the converter forkserver when a run converts to Core ML: coremltools, once per run."""

from __future__ import annotations

from edgeexport.quiet import import_coremltools
from edgeexport.targets import coreml  # noqa: F401 - imported for its side effect: the module loads once

import_coremltools()
