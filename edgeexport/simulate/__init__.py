"""On-device latency/memory simulation from the artifact itself, host benchmarking and calibration.

``simulate(artifact, device)`` reads a ``.tflite`` (flatbuffers only, no TensorFlow) or an ``.mlpackage``
(coremltools) into a costed op graph, places it on the device's units and returns a ``LatencyEstimate``.
``edgeexport.simulate.bench.bench`` measures real latency here; ``edgeexport.simulate.calibrate`` fits this
machine's profile.
"""

from __future__ import annotations

from edgeexport.simulate.estimate import (
    BudgetStatus,
    LatencyEstimate,
    OpEstimate,
    simulate,
)
from edgeexport.simulate.graph import Op, OpGraph, Tensor, read_graph

__all__ = ["BudgetStatus", "LatencyEstimate", "Op", "OpEstimate", "OpGraph", "Tensor", "read_graph", "simulate"]
