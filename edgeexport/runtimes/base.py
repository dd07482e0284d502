"""The one contract every runtime has: named real-valued feeds in, named outputs out.

``BaseRunner.run`` checks the feeds once, for every runtime (Polygraphy's ``infer``/``infer_impl`` split): the
names must be the artifact's inputs (a single unnamed feed is accepted for a single-input artifact), and every
array must have the input's rank and every fixed non-batch dimension. A subclass implements ``_run`` on feeds
that passed, keyed by its own input names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import DataError
from edgeexport.types import TensorSpec

Arrays = dict[str, NDArray[Any]]


class Runner(Protocol):
    """What verification, localization and the smoke run need of a runtime.

    ``runtime_name`` is the engine that runs the artifact (a ``runtimes.names.Engine``);
    ``loops_batch`` is True when ``run`` accepts N samples for an artifact whose batch is fixed at 1 (it loops
    itself), False when the caller must feed one sample at a time. ``fallback`` is empty, or says why the
    artifact runs on another engine than the one asked for (the result must say so).
    """

    fallback: str

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def runtime_name(self) -> str: ...

    @property
    def loops_batch(self) -> bool: ...

    def run(self, feeds: Mapping[str, NDArray[Any]]) -> Arrays: ...


class BaseRunner(ABC):
    """Input checks in one place; see the module docstring. Subclasses set ``inputs``/``outputs`` in ``__init__``."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    loops_batch: bool = False
    fallback: str = ""

    @property
    @abstractmethod
    def runtime_name(self) -> str: ...

    def aliases(self) -> Mapping[str, str]:
        """Other names a feed may use for an input (e.g. a TFLite tensor name for its signature name)."""
        return {}

    def run(self, feeds: Mapping[str, NDArray[Any]]) -> Arrays:
        """Outputs by name for ``feeds`` (input name -> array with a leading batch axis when the input has one).

        Raises DataError (exit 3) naming the input for an unknown or missing name, a wrong rank or a fixed
        dimension that differs."""
        return self._run(self.checked_feeds(feeds))

    def checked_feeds(self, feeds: Mapping[str, NDArray[Any]]) -> Arrays:
        """``feeds`` keyed by this runner's input names, each checked against its ``TensorSpec``."""
        aliases = self.aliases()
        given = {aliases.get(name, name): np.asarray(value) for name, value in feeds.items()}
        known = [spec.name for spec in self.inputs]
        if len(known) == 1 and len(given) == 1 and known[0] not in given:
            given = {known[0]: next(iter(given.values()))}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise DataError(f"unknown input(s) {', '.join(unknown)}; the model takes {', '.join(known)}")
        missing = [name for name in known if name not in given]
        if missing:
            raise DataError(f"missing input(s) {', '.join(missing)}; the model takes {', '.join(known)}")
        for spec in self.inputs:
            _check_shape(spec, given[spec.name])
        return {name: given[name] for name in known}

    @abstractmethod
    def _run(self, feeds: Arrays) -> Arrays: ...


def _check_shape(spec: TensorSpec, array: NDArray[Any]) -> None:
    """Rank and fixed dims must match; dim 0 may differ (runners loop or resize over the batch)."""
    if not spec.shape:  # a scalar input: one value per run, several runs on a 1-D axis (edgeexport.runs)
        if array.ndim > 1:
            raise DataError(f"input {spec.name!r} is a scalar; got an array of shape {tuple(array.shape)}")
        return
    if array.ndim != len(spec.shape):
        raise DataError(f"input {spec.name!r} has shape {_dims(spec)}; got rank {array.ndim} {tuple(array.shape)}")
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
        if axis > 0 and want is not None and want != got:
            raise DataError(f"input {spec.name!r} has shape {_dims(spec)}; got {tuple(array.shape)}")


def _dims(spec: TensorSpec) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in spec.shape) + ")"
