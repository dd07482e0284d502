"""Running a Core ML artifact: real Core ML on macOS, the numpy MIL executor everywhere else.

``CoremlRunner`` has the one contract every runner has (``run(feeds) -> outputs by name``), so verification
does not care which engine ran. ``runtime``:

* ``auto`` (default): Core ML's own ``MLModel.predict`` when on macOS and the model loads there, else ``mil``.
* ``coreml``: Core ML only; ``UnsupportedError`` (exit 4) where it cannot run (any OS but macOS).
* ``mil``: the numpy executor (``edgeexport.runtimes.mil``), on any OS.

(``runtimes.names.CoremlRuntime``.)

``precision`` is ``"auto"`` (the program's own fp16/fp32 types; Core ML may use any compute unit) or
``"fp32"`` (the MIL executor skips fp16 rounding; Core ML is restricted to the CPU, its fp32 engine).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import DataError, ModelFormatError, UnsupportedError
from edgeexport.runtimes.base import BaseRunner
from edgeexport.runtimes.mil import PRECISIONS, MilProgram, load_program
from edgeexport.runtimes.names import CoremlRuntime, Engine
from edgeexport.types import TensorSpec

RUNTIMES = tuple(CoremlRuntime)


class CoremlRunner(BaseRunner):
    """Runs one ``.mlpackage`` (or ML Program ``.mlmodel``); see the module docstring for the options.

    ``fallback`` says why ``runtime="auto"`` ran the MIL executor on macOS, where Core ML itself was expected
    (empty otherwise: off macOS the executor is the only engine, not a fallback).
    """

    def __init__(self, path: Path, *, runtime: str = "auto", precision: str = "auto") -> None:
        if runtime not in RUNTIMES:
            raise DataError(f"unknown Core ML runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
        if precision not in PRECISIONS:
            raise DataError(f"unknown Core ML precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        self.path = Path(path)
        self.precision = precision
        self._program: MilProgram = load_program(self.path)  # also validates the package (ModelFormatError)
        self.inputs: tuple[TensorSpec, ...] = self._program.inputs
        self.outputs: tuple[TensorSpec, ...] = self._program.outputs
        self._mlmodel: Any = None
        self._runtime: str = Engine.MIL
        self.fallback = ""
        if runtime in (CoremlRuntime.AUTO, CoremlRuntime.COREML):
            self._mlmodel = self._load_coreml(strict=runtime == CoremlRuntime.COREML)
            if self._mlmodel is not None:
                self._runtime = Engine.COREML

    @property
    def runtime_name(self) -> str:
        """``Engine.COREML`` (Core ML's own predict) or ``Engine.MIL`` (our numpy executor)."""
        return self._runtime

    def _load_coreml(self, *, strict: bool) -> Any:
        on_macos = sys.platform == "darwin"  # a variable, so the type checker keeps the macOS path on Linux
        if not on_macos:
            if strict:
                raise UnsupportedError(
                    f"Core ML cannot run {self.path.name} on {sys.platform}: Core ML prediction needs macOS",
                    hint="use runtime 'mil' (the numpy executor) or 'auto'",
                )
            return None
        try:
            from edgeexport.quiet import import_coremltools

            import_coremltools()
            import coremltools as ct

            units = ct.ComputeUnit.CPU_ONLY if self.precision == "fp32" else ct.ComputeUnit.ALL
            return ct.models.MLModel(str(self.path), compute_units=units)
        except Exception as exc:
            reason = " ".join(str(exc).split())[:200]
            if strict:
                raise ModelFormatError(f"Core ML could not load {self.path}: {reason}") from exc
            # auto: the MIL executor still checks the package, and the result says it was not Core ML itself.
            self.fallback = f"Core ML could not load {self.path.name} ({reason}); ran it with the MIL executor instead"
            return None

    @property
    def program(self) -> MilProgram:
        """The MIL program of the package (loaded whichever runtime runs it)."""
        return self._program

    def _run(self, feeds: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """Outputs by name for one set of inputs (input name -> array of the declared shape)."""
        if self._mlmodel is None:
            return self._program.run(feeds, precision=self.precision)
        raw = self._mlmodel.predict({name: np.asarray(value) for name, value in feeds.items()})
        return {spec.name: np.asarray(raw[spec.name]) for spec in self.outputs}
