"""Imported once by the converter forkserver (``edgeexport.isolate``): TensorFlow, which every converter needs.

Each converter child is forked from the server, so TensorFlow is imported once per run, not once per
conversion. Importing it starts no TensorFlow thread pools (those start with the first op), which is what
makes forking afterwards safe. ``edgeexport._preload_coreml`` adds coremltools (and the torch it imports),
preloaded only when a run converts to Core ML.
"""

from __future__ import annotations

from edgeexport.sources.tfgraph import quiet_tensorflow
from edgeexport.targets import tflite  # noqa: F401 - imported for its side effect: the module loads once

quiet_tensorflow()
