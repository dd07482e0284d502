"""A numpy executor for Core ML ML Program (MIL) models, to verify ``.mlpackage`` files where Core ML cannot run.

Core ML itself only runs on macOS. On Linux we read the package's MIL program with coremltools' own loader and
execute it op by op with numpy kernels (one small function per op, grouped by family in this package).

    program = load_program(Path("model.mlpackage"))
    outputs = program.run({"input": x})            # precision="auto": the program's own fp16/fp32 types
    program.unsupported_ops()                       # {} when every op has a kernel

Only numpy is imported here; coremltools (and with it TensorFlow) is imported by ``load_program``.
"""

from __future__ import annotations

from edgeexport.runtimes.mil.program import (
    PRECISIONS,
    MilProgram,
    load_program,
    supported_ops,
)

__all__ = ["PRECISIONS", "MilProgram", "load_program", "supported_ops"]
