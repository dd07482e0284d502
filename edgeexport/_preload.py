"""Imported once by the converter forkserver (``edgeexport.isolate``): the heavy imports every child shares.

Each converter child is forked from the server, so TensorFlow and coremltools are imported once per run, not
once per conversion. Importing them starts no TensorFlow thread pools (those start with the first op), which
is what makes forking afterwards safe.
"""

from __future__ import annotations

from edgeexport.quiet import import_coremltools
from edgeexport.sources.tfgraph import quiet_tensorflow
from edgeexport.targets import coreml, tflite  # noqa: F401 - imported for their side effect: the modules load once

quiet_tensorflow()
import_coremltools()
