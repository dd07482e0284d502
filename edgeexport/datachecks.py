"""Checks that data and bundle inputs fit the model, so a wrong file is refused instead of quietly skewing results.

* Labels in verification data must be class indices of the model's classifier output: ``0 .. classes-1``.
  Labels 100..109 on a 10-class model used to make accuracy disappear from the report without a word.
* ``bundle --labels`` must give one label per class of the artifact's classifier output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeexport.errors import DataError
from edgeexport.types import TensorSpec


def check_label_range(labels: np.ndarray[Any, np.dtype[Any]], classes: int, *, output: str = "") -> None:
    """DataError (exit 3) when an integer label is negative or not below ``classes``."""
    if not labels.size:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        where = f" output {output}" if output else ""
        raise DataError(f"labels run from {low} to {high}, but the model's classifier{where} has {classes} classes "
                        f"(labels 0..{classes - 1})", hint="labels must be class indices, counted from 0")


def classifier_classes(outputs: Sequence[TensorSpec]) -> list[int]:
    """Class counts of the classifier-shaped ``outputs`` (2-D ``[batch, classes]``, classes >= 2)."""
    return [int(shape[1]) for shape in (o.shape for o in outputs)
            if len(shape) == 2 and isinstance(shape[1], int) and shape[1] >= 2]


def check_bundle_labels(labels: Sequence[str] | None, name: str, outputs: Sequence[TensorSpec]) -> None:
    """DataError when the labels' count matches none of the classifier ``outputs`` of the artifact ``name``."""
    if labels is None:
        return
    counts = classifier_classes(outputs)
    if not counts:
        raise DataError(f"--labels gives {len(labels)} labels, but {name} has no classifier output "
                        "([batch, classes]) to name")
    if len(labels) not in counts:
        wanted = " or ".join(str(c) for c in sorted(set(counts)))
        raise DataError(f"--labels gives {len(labels)} labels, but {name} has {wanted} classes",
                        hint="one label per line, one line per class, in class-index order")


def _plain_name(name: str) -> str:
    """An endpoint tensor name without the exporter's decorations (``serve_image:0`` -> ``image``)."""
    return name.split(":")[0].removeprefix("serve_")


def input_order_notes(source_inputs: Sequence[str], artifacts: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """One note per artifact whose inputs come in another order than the source model's (feed them by name).

    ``artifacts`` pairs an artifact's file name with its input names in the artifact's own order.
    """
    notes = []
    wanted = [_plain_name(name) for name in source_inputs]
    for name, inputs in artifacts:
        got = [_plain_name(i) for i in inputs]
        if len(got) > 1 and sorted(got) == sorted(wanted) and got != wanted:
            notes.append(f"{name} takes its inputs in the order {', '.join(got)} (the source model's order is "
                         f"{', '.join(wanted)}): feed them by name, not by position")
    return notes
