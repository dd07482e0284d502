"""Core ML from a torch ExportedProgram: coremltools' own ExportedProgram frontend (``source="pytorch"``).

The program is decomposed to the ATen core op set first (coremltools 9 reads ExportedPrograms in that dialect);
inputs keep the program's names and shapes (NCHW for images), as the TFLite artifact of the same source does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeexport.types import ExportedGraph


def program_and_inputs(ct: Any, exported: ExportedGraph) -> tuple[Any, list[Any], str]:
    """What ``ct.convert`` takes for the ``.pt2`` at ``exported.program``: the decomposed program, its input
    types, the source."""
    import torch

    program = torch.export.load(str(exported.program)).run_decompositions({})
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    inputs = []
    for name in program.graph_signature.user_inputs:
        value = placeholders[name].meta["val"]
        dtype = np.dtype(str(value.dtype).removeprefix("torch."))
        inputs.append(ct.TensorType(name=name, shape=tuple(int(d) for d in value.shape), dtype=dtype.type))
    return program, inputs, "pytorch"
