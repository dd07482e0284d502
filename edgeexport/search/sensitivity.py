"""Layer sensitivity for the precision search: three measures, one ranking.

For every weighted layer the search has (when time allows):

- ``float_metric``: the budget metric with only this layer kept in float (all others quantized), the measure of
  NNCF's accuracy-aware quantization and Polygraphy's precision debugging: how much keeping it helps;
- ``alone_metric``: the metric with only this layer quantized (all others in float), how much quantizing it hurts
  on its own (Polygraphy's other direction);
- ``sqnr_db``: the per-layer error of the planned artifact against the float model at this layer's output
  (``verify.layers``; the worse of tensor and median channel SQNR, in dB), free once the base is built.

Each measure ranks the layers (most sensitive first: most recovered, most lost, lowest SQNR); a layer's rank is the
mean of its ranks over the measures it has, ties broken by model order. A measure that is the same for every layer
(conv1 alone in float recovers nothing on the outlier model, nor does any other single layer) ranks them all equal
and so does not move the order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgeexport.search.report import Candidate


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer's measures (None: not measured, e.g. the time limit came first) and its combined ``rank``
    (1 = most sensitive). Metrics are the budget metric: accuracy drop in points, or the worst output's SQNR
    in dB; ``sqnr_db`` is the per-layer error of the planned artifact at this layer (dB)."""

    layer: str
    rank: int
    float_metric: float | None
    alone_metric: float | None
    sqnr_db: float | None


def score(candidate: Candidate | None, metric: str) -> float | None:
    """Higher is better: minus the accuracy drop, or the SQNR (None when not measured)."""
    if candidate is None or candidate.metric is None:
        return None
    return -candidate.metric if metric == "accuracy_drop" else candidate.metric


def _ranks(values: Mapping[str, float | None], layers: Sequence[str], higher_first: bool) -> dict[str, float]:
    """Rank of each measured layer (1 = first; equal values share their mean rank); unmeasured layers get none."""
    measured = [(n, v) for n, v in values.items() if v is not None and n in layers]
    if len({round(v, 9) for _, v in measured}) <= 1:
        return {}  # a measure that does not separate the layers carries no order
    ordered = sorted(measured, key=lambda nv: -nv[1] if higher_first else nv[1])
    ranks: dict[str, float] = {}
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and math.isclose(ordered[j + 1][1], ordered[i][1], rel_tol=0, abs_tol=1e-9):
            j += 1
        for k in range(i, j + 1):
            ranks[ordered[k][0]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def rank_layers(layers: Sequence[str], singles: Mapping[str, Candidate], alone: Mapping[str, Candidate],
                per_layer: Mapping[str, float], metric: str) -> list[LayerSensitivity]:
    """``layers`` (model order) ranked by their mean rank over the three measures, most sensitive first.

    ``singles``: candidates with one layer kept in float; ``alone``: candidates with only that layer quantized;
    ``per_layer``: per-layer SQNR (dB) of the planned artifact. Layers with no measure at all rank last."""
    kept = {n: score(singles.get(n), metric) for n in layers}
    hurt = {n: score(alone.get(n), metric) for n in layers}
    sqnr = {n: (min(per_layer[n], 150.0) if n in per_layer else None) for n in layers}
    rankings = [_ranks(kept, layers, higher_first=True), _ranks(hurt, layers, higher_first=False),
                _ranks(sqnr, layers, higher_first=False)]
    position = {n: i for i, n in enumerate(layers)}

    def mean_rank(name: str) -> float:
        found = [r[name] for r in rankings if name in r]
        return sum(found) / len(found) if found else math.inf

    order = sorted(layers, key=lambda n: (mean_rank(n), position[n]))

    def raw(candidate: Candidate | None) -> float | None:
        return None if candidate is None else candidate.metric

    return [LayerSensitivity(n, i + 1, raw(singles.get(n)), raw(alone.get(n)), sqnr[n]) for i, n in enumerate(order)]
