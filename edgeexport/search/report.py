"""What the precision search did, step by step, for report.json and the terminal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeexport.search.sensitivity import LayerSensitivity
from edgeexport.serial import plain


@dataclass(frozen=True)
class Candidate:
    """One converted, verified and simulated candidate.

    ``base`` is the preset it starts from, ``layers`` the layers kept in float (``keep`` precision), ``metric``
    the budget metric (accuracy drop in points, or the worst output's SQNR in dB; None when not measured),
    ``passed`` whether the artifact passed verification under the budget, ``p50_ms`` its simulated latency on
    the device (None without ``--device``), ``size_bytes`` the artifact size, ``seconds`` the time it took,
    ``sha256`` the artifact's hash (the final artifact, rebuilt from the recipe, must have the chosen one's).
    Placement on the device (``search.latency``): ``path`` the runtime path ``p50_ms`` is for,
    ``accelerator_partitions`` how many partitions run on an accelerator there, ``float_on`` what its float ops
    run on (e.g. ``"fp32 on cpu"``), ``fastest_ms`` the latency on the device's fastest path (ms).
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
    sha256: str = ""
    path: str = ""
    accelerator_partitions: int = 0
    float_on: str = ""
    fastest_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Its fields (``serial.plain``; ``Report.from_dict`` reads them back) and ``layers_in_float``."""
        data: dict[str, Any] = plain(self)
        data["layers_in_float"] = list(self.layers)
        return data


@dataclass(frozen=True)
class SearchStep:
    """One step: ``phase`` (``"base"``, ``"sensitivity"``: a whole-model alternative or one layer kept in float,
    ``"quantize-one"``: one layer quantized alone, ``"greedy"``), what changed, and the
    candidate that resulted; ``chosen`` marks the step whose candidate the search kept going from."""

    phase: str
    change: str
    candidate: Candidate
    chosen: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Its fields, with the candidate's also at the top level (one flat row per step for readers)."""
        return {**self.candidate.to_dict(), **plain(self), "candidate": self.candidate.to_dict()}


@dataclass(frozen=True)
class SearchReport:
    """The whole search for one artifact. ``metric`` names the budget metric (``"accuracy_drop"`` in points or
    ``"sqnr_db"``); ``per_layer_sqnr_db`` is the base artifact's per-layer error against the float model (layer,
    SQNR in dB), empty where it could not be measured (``per_layer_note`` says why); ``placement`` says where the
    candidates were placed on the device and why (``search.latency.deployment``)."""

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
    sensitivity: tuple[LayerSensitivity, ...] = ()
    placement: str = ""

    @property
    def candidates(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        """Its fields (``serial.plain``, per-layer SQNR as ``[layer, dB]`` pairs) and the candidate count."""
        data: dict[str, Any] = plain(self)
        data["chosen"] = self.chosen.to_dict()
        data["steps"] = [s.to_dict() for s in self.steps]
        data["candidates"] = self.candidates
        return data

    def lines(self) -> list[str]:
        """The search as terminal lines: one per step, then the verdict."""
        unit = "pts drop" if self.metric == "accuracy_drop" else "dB SQNR"
        out = [f"{self.target}: precision search from {self.base} for {self.budget}"
               + (f" on {self.device}" if self.device else "")]
        for step in self.steps:
            c = step.candidate
            metric = (c.failure or "n/a")[:70] if c.metric is None else f"{c.metric:.2f} {unit}"
            latency = "" if c.p50_ms is None else f", {c.p50_ms:.3f} ms"
            if c.p50_ms is not None and c.path:
                latency += f" ({c.path}" + (f", {c.accelerator_partitions} accel. partition(s)"
                                            if c.accelerator_partitions else "") + ")"
            mark = "*" if step.chosen else " "
            verdict = "meets budget" if c.passed else "misses"
            out.append(f" {mark} {step.phase:<11} {step.change:<34} {metric}{latency}, {verdict}")
        if self.placement:
            out.append(f"   placement: {self.placement}")
        if self.sensitivity:
            def fmt(value: float | None, suffix: str) -> str:
                return "n/a" if value is None else f"{value:.2f}{suffix}"

            top = "; ".join(f"{r.rank}. {r.layer} (float alone {fmt(r.float_metric, '')}, quantized alone "
                            f"{fmt(r.alone_metric, '')}, layer sqnr {fmt(r.sqnr_db, ' dB')})"
                            for r in self.sensitivity[:5])
            out.append(f"   sensitivity ranking ({unit}): {top}")
        c = self.chosen
        if c.p50_ms is not None and c.fastest_ms is not None and c.fastest_ms < 0.9 * c.p50_ms:
            # say it rather than hide it: on a tiny graph the accelerator's fixed costs can outweigh its throughput
            out.append(f"   note: the device's fastest path runs the kept candidate in {c.fastest_ms:.3f} ms, "
                       f"faster than the {c.path} path it was ranked on ({c.p50_ms:.3f} ms)")
        floats = ", ".join(self.chosen.layers) or "none"
        out.append(f"{self.target}: {'kept' if self.met else 'budget NOT met; best kept'}: {self.chosen.base} with "
                   f"{len(self.chosen.layers)} layer(s) in float ({floats}); stopped: {self.stop_reason} "
                   f"({self.candidates} candidates, {self.seconds:.1f} s); recipe {self.recipe}"
                   + (f" saved to {self.saved_to}" if self.saved_to else ""))
        return out
