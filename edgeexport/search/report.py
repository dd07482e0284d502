"""What the precision search did, step by step, for report.json and the terminal."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Candidate:
    """One converted, verified and simulated candidate.

    ``base`` is the preset it starts from, ``layers`` the layers kept in float (``keep`` precision), ``metric``
    the budget metric (accuracy drop in points, or the worst output's SQNR in dB; None when not measured),
    ``passed`` whether the artifact passed verification under the budget, ``p50_ms`` its simulated latency on
    the device (None without ``--device``), ``size_bytes`` the artifact size, ``seconds`` the time it took.
    """

    base: str
    layers: tuple[str, ...]
    keep: str
    metric: float | None
    passed: bool
    p50_ms: float | None
    size_bytes: int
    seconds: float
    failure: str = ""

    def to_dict(self) -> dict[str, Any]:
        metric = None if self.metric is None or not math.isfinite(self.metric) else round(self.metric, 4)
        return {"base": self.base, "layers_in_float": list(self.layers), "keep": self.keep, "metric": metric,
                "passed": self.passed, "p50_ms": None if self.p50_ms is None else round(self.p50_ms, 5),
                "size_bytes": self.size_bytes, "seconds": round(self.seconds, 3), "failure": self.failure or None}


@dataclass(frozen=True)
class SearchStep:
    """One step: ``phase`` (``"base"``, ``"sensitivity"``, ``"greedy"``, ``"fallback"``), what changed, and the
    candidate that resulted; ``chosen`` marks the step whose candidate the search kept going from."""

    phase: str
    change: str
    candidate: Candidate
    chosen: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "change": self.change, "chosen": self.chosen, **self.candidate.to_dict()}


@dataclass(frozen=True)
class SearchReport:
    """The whole search for one artifact. ``metric`` names the budget metric (``"accuracy_drop"`` in points or
    ``"sqnr_db"``); ``per_layer_sqnr_db`` is the base artifact's per-layer error against the float model (layer,
    SQNR in dB), empty where it could not be measured (``per_layer_note`` says why)."""

    target: str
    device: str | None
    budget: str
    metric: str
    base: str
    steps: tuple[SearchStep, ...]
    chosen: Candidate
    met: bool
    stop_reason: str
    recipe: str
    saved_to: str | None
    seconds: float
    per_layer_sqnr_db: tuple[tuple[str, float], ...] = ()
    per_layer_note: str = ""

    @property
    def candidates(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "device": self.device, "budget": self.budget, "metric": self.metric,
            "base": self.base, "met": self.met, "stop_reason": self.stop_reason, "recipe": self.recipe,
            "saved_to": self.saved_to, "seconds": round(self.seconds, 3), "candidates": self.candidates,
            "chosen": self.chosen.to_dict(),
            "per_layer_sqnr_db": [{"layer": name, "sqnr_db": None if not math.isfinite(v) else round(v, 2)}
                                  for name, v in self.per_layer_sqnr_db],
            "per_layer_note": self.per_layer_note or None,
            "steps": [s.to_dict() for s in self.steps],
        }

    def lines(self) -> list[str]:
        """The search as terminal lines: one per step, then the verdict."""
        unit = "pts drop" if self.metric == "accuracy_drop" else "dB SQNR"
        out = [f"{self.target}: precision search from {self.base} for {self.budget}"
               + (f" on {self.device}" if self.device else "")]
        for step in self.steps:
            c = step.candidate
            metric = (c.failure or "n/a")[:70] if c.metric is None else f"{c.metric:.2f} {unit}"
            latency = "" if c.p50_ms is None else f", {c.p50_ms:.3f} ms"
            mark = "*" if step.chosen else " "
            verdict = "meets budget" if c.passed else "misses"
            out.append(f" {mark} {step.phase:<11} {step.change:<34} {metric}{latency}, {verdict}")
        floats = ", ".join(self.chosen.layers) or "none"
        out.append(f"{self.target}: {'kept' if self.met else 'budget NOT met; best kept'}: {self.chosen.base} with "
                   f"{len(self.chosen.layers)} layer(s) in float ({floats}); stopped: {self.stop_reason} "
                   f"({self.candidates} candidates, {self.seconds:.1f} s); recipe {self.recipe}"
                   + (f" saved to {self.saved_to}" if self.saved_to else ""))
        return out
