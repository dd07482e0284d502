"""Running a Core ML artifact: real Core ML on macOS, the numpy MIL executor everywhere else.

``CoremlRunner`` has the one contract every runner has (``run(feeds) -> outputs by name``), so verification
does not care which engine ran. ``runtime``:

* ``"auto"`` (default): Core ML's own ``MLModel.predict`` when on macOS and the model loads there, else ``"mil"``.
* ``"coreml"``: Core ML only; ``UnsupportedError`` (exit 4) where it cannot run (any OS but macOS).
* ``"mil"``: the numpy executor (``edgeexport.runtimes.mil``), on any OS.

``precision`` is ``"auto"`` (the program's own fp16/fp32 types; Core ML may use any compute unit) or
``"fp32"`` (the MIL executor skips fp16 rounding; Core ML is restricted to the CPU, its fp32 engine).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeexport.errors import DataError, ModelFormatError, UnsupportedError
from edgeexport.runtimes.mil import PRECISIONS, MilProgram, load_program
from edgeexport.types import TensorSpec

RUNTIMES = ("auto", "coreml", "mil")


class CoremlRunner:
    """Runs one ``.mlpackage`` (or ML Program ``.mlmodel``); see the module docstring for the options."""

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
        self.runtime_used = "mil"
        if runtime in ("auto", "coreml"):
            self._mlmodel = self._load_coreml(strict=runtime == "coreml")
            if self._mlmodel is not None:
                self.runtime_used = "coreml"

    def _load_coreml(self, *, strict: bool) -> Any:
        if sys.platform != "darwin":
            if strict:
                raise UnsupportedError(
                    f"Core ML cannot run {self.path.name} on {sys.platform}: Core ML prediction needs macOS",
                    hint="use runtime 'mil' (the numpy executor) or 'auto'",
                )
            return None
        try:
            import coremltools as ct

            units = ct.ComputeUnit.CPU_ONLY if self.precision == "fp32" else ct.ComputeUnit.ALL
            return ct.models.MLModel(str(self.path), compute_units=units)
        except Exception as exc:
            if strict:
                raise ModelFormatError(f"Core ML could not load {self.path}: {' '.join(str(exc).split())[:200]}") from exc
            return None  # auto: the MIL executor still checks the package

    @property
    def program(self) -> MilProgram:
        """The MIL program of the package (loaded whichever runtime runs it)."""
        return self._program

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for one set of inputs (input name -> array of the declared shape)."""
        if self._mlmodel is None:
            return self._program.run(feeds, precision=self.precision)
        raw = self._mlmodel.predict({name: np.asarray(value) for name, value in feeds.items()})
        return {spec.name: np.asarray(raw[spec.name]) for spec in self.outputs}
