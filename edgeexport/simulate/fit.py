"""Fit a device profile's free cost parameters to measured latencies (one fitter for every kind of evidence).

Each measurement row (``measurements.Row``: an artifact on one runtime path of the device, threads, measured
ms) is predicted by the simulator itself (``placement.place`` on the candidate profile, so the fit and
``simulate`` cannot disagree). The fit minimises, with ``scipy.optimize.least_squares`` (trust region, bounds),

    sum_rows (log predicted - log measured)^2  +  PRIOR^2 x sum_params (z - z_base)^2

over parameters z = log(value) of one unit: per-dtype efficiencies (``conv@int8``, ``depthwise@fp32``,
``default@fp16``: bounded to (0, 1]), the per-op cost ``op_overhead_us``, the fixed ``invoke_us`` and, when
the rows have the evidence, ``serial_fraction`` (several thread counts) or the DRAM ``memory_bandwidth_gbps``
that weights spill over (a model bigger than ``on_chip_bytes``), and a GPU's ``occupancy_elements`` (output
elements a kernel needs to fill it). Overheads are bounded below by ~0. The small prior keeps parameters the
rows cannot identify at the base profile's values. Per unit kind (see the tuples below): an Edge TPU fits its
per-layer cost even from a few rows (``PER_LAYER``); a GPU fits no invoke cost, no bandwidth (the SoC's is
stated) and no "default" efficiency (its non-MAC ops are linked or memory-bound).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgeexport.catalog.model import ComputeUnit, DeviceProfile
from edgeexport.errors import DataError
from edgeexport.simulate.estimate import memory_model
from edgeexport.simulate.graph import OpGraph
from edgeexport.simulate.placement import ACCELERATORS, Placement, place
from edgeexport.targets.base import TFLITE

PRIOR = 0.2
# (lower, upper) bounds of each parameter kind, in its own unit
BOUNDS: dict[str, tuple[float, float]] = {
    "efficiency": (1e-4, 1.0),
    "op_overhead_us": (1e-3, 5e3),
    "invoke_us": (1e-3, 5e5),
    "partition_us": (1e-3, 5e4),
    "serial_fraction": (1e-3, 0.95),
    "memory_bandwidth_gbps": (1e-3, 1e3),
    "occupancy_elements": (1.0, 1e7),
    "vector_gbps": (1e-2, 1e3),
}
_OVERHEADS = frozenset({"op_overhead_us", "invoke_us", "partition_us"})
# accelerators that run a delegate's compiled graph: no CPU-style per-op dispatch is assumed (the fitted
# op_overhead_us may go to ~0), a fixed invoke_us per run, activations and weights at a fitted on-chip/DRAM rate
GRAPH_COMPILED = ("npu", "dsp", "tpu", "ane")
SMALL_FIT = 8
# compiled accelerators that still pay a fixed cost per layer (the Edge TPU steps through its instruction
# stream layer by layer: MobileNet's 33 ops take 2.4 ms, DenseNet's 251 take 25 ms at a tenth of the MACs of
# ResNet-50): their per-op cost is fitted even from a few rows, with a prior toward the base value
PER_LAYER = ("tpu",)
# units whose fixed per-inference cost is not fitted: a GPU delegate's invoke uploads the input and reads
# back the output (microseconds for an image classifier; the copies are costed as partition crossings), and
# rows of big models alone would otherwise trade it against the launch cost per kernel
NO_INVOKE = ("gpu",)
# units whose non-MAC ops are linked into the previous kernel or cost their bytes at the DRAM bandwidth (a
# GPU delegate), so no "default" efficiency is fitted for them
MEMORY_BOUND_REST = ("gpu",)
# units that stream from the SoC's DRAM, whose bandwidth the profile states (DEVICES.md 2.5): not fitted
KNOWN_BANDWIDTH = ("gpu",)
# scale of the linear prior on fixed invoke/partition costs (us): 5 ms costs the fit one prior unit
FIXED_COST_SCALE_US = 5000.0
# families a unit's efficiencies are fitted for separately when the rows spend time in them
MAIN_FAMILIES = ("conv", "depthwise")
# units fitted with a robust (Cauchy) loss on the log residual instead of plain least squares. Their rows
# are few (8 per Edge TPU) and some are of uncertain identity (the Coral "densenet" may not be DenseNet-121,
# DEVICES.md section 1; Inception-ResNet-v2 runs twice as fast as its 56 MB of weights streamed at the
# ResNets' rate allow): with squares, one such row moves every parameter and the other rows pay for it.
# Cauchy (rho(r) = c^2 ln(1 + (r / c)^2), c = ROBUST_SCALE) is quadratic below c and grows only
# logarithmically above it, so a row the physics cannot explain stops pulling once it is clearly off.
ROBUST_KINDS = ("tpu",)
ROBUST_SCALE = 0.2  # log residual (about +-20 %, the validation goal's tolerance) where rows stop being trusted


@dataclass(frozen=True)
class Sample:
    """One row ready to predict: the artifact's graph, its runtime path on the device, threads and measured ms.
    ``label`` names the row, ``arch`` its architecture (the unit of leave-one-architecture-out)."""

    graph: OpGraph
    path: str
    threads: int | None
    ms: float
    label: str
    arch: str
    precision: str


@dataclass(frozen=True)
class UnitFit:
    """A fitted unit: the new unit, the fitted parameters (name -> value), residual per row in percent
    (predicted / measured - 1) and the rms of the log residual."""

    unit: ComputeUnit
    parameters: dict[str, float]
    residuals_pct: dict[str, float]
    rms_log: float


def target_unit(device: DeviceProfile, path: str) -> ComputeUnit:
    """The unit a runtime path is for: the CPU for ``cpu``/``coreml-cpu_only``, else the path's first accelerator."""
    from edgeexport.simulate.placement import _preference

    prefs = _preference(path, device)
    return next((u for u in prefs if u.kind in ACCELERATORS), prefs[-1])


def get_param(unit: ComputeUnit, name: str) -> float:
    """The current value of parameter ``name`` on ``unit`` (``efficiency.<key>`` resolves like the simulator)."""
    if name.startswith("efficiency."):
        from edgeexport.simulate.cost import efficiency

        key = name.split(".", 1)[1]
        family, _, dtype = key.partition("@")
        return efficiency(unit, family, dtype) if dtype else unit.efficiency_for(family)
    value = getattr(unit, name)
    if value is None:
        if name == "serial_fraction":
            from edgeexport.simulate.cost import CPU_SERIAL_FRACTION

            return CPU_SERIAL_FRACTION
        if name == "partition_us":
            from edgeexport.simulate.placement import SYNC_US

            return SYNC_US.get(unit.kind, 0.0)
    return float(value)


def set_params(unit: ComputeUnit, values: dict[str, float]) -> ComputeUnit:
    """``unit`` with the given parameters replaced. A fitted ``default@<dtype>`` also covers, in that dtype,
    the unit's other plain family keys (they would otherwise win over it, see ``cost.efficiency``)."""
    eff = dict(unit.efficiency)
    fields: dict[str, float] = {}
    for name, value in values.items():
        if name.startswith("efficiency."):
            eff[name.split(".", 1)[1]] = float(value)
        else:
            fields[name] = float(value)
    for name, value in values.items():
        key = name.split(".", 1)[1] if name.startswith("efficiency.") else ""
        if key.startswith("default@"):
            dtype = key.split("@", 1)[1]
            for family in [k for k in unit.efficiency if "@" not in k and k != "default"]:
                eff.setdefault(f"{family}@{dtype}", float(value))
    return replace(unit, efficiency=eff, **fields)  # type: ignore[arg-type]


def with_unit(device: DeviceProfile, unit: ComputeUnit) -> DeviceProfile:
    return replace(device, units=tuple(unit if u.name == unit.name else u for u in device.units))


def predict(sample: Sample, device: DeviceProfile) -> Placement:
    """The simulator's placement (and time) of one sample on ``device``."""
    if _SUITE_CACHE is not None:  # the host suite: cache sizes measured by calibrate, as its closed form uses
        from edgeexport.simulate.cost import MemoryModel

        memory = MemoryModel(cache_bytes=_SUITE_CACHE[0], weights_resident=sample.graph.weight_bytes <= _SUITE_CACHE[1])
        return place(sample.graph, device, sample.path, threads=sample.threads, memory=memory)
    return place(sample.graph, device, sample.path, threads=sample.threads, memory=memory_model(sample.graph, device))


def default_parameters(device: DeviceProfile, unit: ComputeUnit, samples: Sequence[Sample]) -> list[str]:
    """Which parameters of ``unit`` the rows can identify (see the module docstring)."""
    dtypes: dict[str, float] = {}
    families: dict[tuple[str, str], float] = {}
    major: set[str] = set()  # dtypes that take >= 10 % of some row's time on this unit
    for sample in samples:
        placement = predict(sample, device)
        row: dict[str, float] = {}
        for op, name, t in zip(sample.graph.ops, placement.units, placement.times, strict=True):
            if name == unit.name:
                dtypes[t.dtype] = dtypes.get(t.dtype, 0.0) + t.seconds
                row[t.dtype] = row.get(t.dtype, 0.0) + t.seconds
                families[(op.family, t.dtype)] = families.get((op.family, t.dtype), 0.0) + t.seconds
        major |= {d for d, v in row.items() if v >= 0.1 * sum(row.values())}
    params: list[str] = []
    compiled = unit.kind in GRAPH_COMPILED
    for dtype in sorted(dtypes):
        if dtype not in major:
            continue  # e.g. the fp32 QUANTIZE/DEQUANTIZE at the ends of an int8 model: nothing to fit
        if not compiled and unit.kind not in MEMORY_BOUND_REST:
            # a graph-compiled accelerator's non-MAC ops cost their memory traffic, not a share of the MAC peak
            params.append(f"efficiency.default@{dtype}")
        for family in MAIN_FAMILIES:
            if families.get((family, dtype), 0.0) > 0.1 * dtypes[dtype]:
                params.append(f"efficiency.{family}@{dtype}")
    # the interpreter's own invoke is microseconds on a CPU: only accelerators get a fitted fixed cost. A
    # compiled accelerator with fewer than SMALL_FIT rows keeps its base fixed costs (they come from a
    # bigger fit of the same accelerator family, see the base profiles' sources): a handful of rows of
    # three architectures cannot separate them from throughput
    if not compiled or len(samples) >= SMALL_FIT:
        params += ["op_overhead_us"] + (["invoke_us"] if unit.kind in ACCELERATORS and unit.kind not in NO_INVOKE else [])
    elif unit.kind in PER_LAYER:
        params.append("op_overhead_us")
    if unit.kind == "cpu" and len({s.threads for s in samples}) > 1:
        params.append("serial_fraction")
    if unit.occupancy_elements is not None:
        params.append("occupancy_elements")
    if unit.vector_gbps is not None:
        # the rate of the accelerator's ops without MACs: what separates DenseNet's concatenations from
        # MobileNet's convs, which per-layer cost and MAC throughput alone cannot (see cost.op_time)
        params.append("vector_gbps")
    if unit.kind == "cpu" and any(memory_model(s.graph, device).weight_stream_share > 0
                                  and not memory_model(s.graph, device).weights_resident for s in samples):
        # rows of models whose weights stream from DRAM each run carry the CPU's bandwidth (host_fit's ResNets)
        params.append("memory_bandwidth_gbps")
    if unit.kind in ACCELERATORS and unit.kind not in KNOWN_BANDWIDTH:
        # what an accelerator streams (spilled weights, activations beyond its on-chip memory) at a rate
        # nothing published states: fit it
        params.append("memory_bandwidth_gbps")
    # fewer parameters than rows (the prior makes the rest well-posed, but keep the fit honest)
    while len(params) >= len(samples) and any(p.startswith("efficiency.") and "conv@" not in p for p in params):
        params.remove(next(p for p in reversed(params) if p.startswith("efficiency.") and "conv@" not in p))
    return params


# A CPU kernel's dispatch costs microseconds (a few on phone cores, tens on a Cortex-A53): a fit that wants
# more is trading it against the efficiencies, which a graph with more or fewer ops then gets wrong
CPU_OP_OVERHEAD_MAX_US = 100.0


def _bounds(name: str, kind: str = "") -> tuple[float, float]:
    if name == "op_overhead_us" and kind in ("cpu", "mcu"):
        return BOUNDS[name][0], CPU_OP_OVERHEAD_MAX_US
    return BOUNDS["efficiency" if name.startswith("efficiency.") else name]


def fit_unit(device: DeviceProfile, unit_name: str, samples: Sequence[Sample],
             parameters: Sequence[str] | None = None, *, prior: float = PRIOR, robust: bool | None = None) -> UnitFit:
    """Fit ``unit_name``'s parameters of ``device`` to ``samples`` (see the module docstring); ``robust``:
    Cauchy loss on the rows (default: for units of a kind in ``ROBUST_KINDS``)."""
    from scipy.optimize import least_squares

    if not samples:
        raise DataError(f"no measurement rows for unit {unit_name!r} of {device.name}")
    base = next((u for u in device.units if u.name == unit_name), None)
    if base is None:
        raise DataError(f"{device.name} has no unit {unit_name!r}")
    names = list(parameters) if parameters is not None else default_parameters(device, base, samples)
    lows = np.log([_bounds(n, base.kind)[0] for n in names])
    highs = np.log([_bounds(n, base.kind)[1] for n in names])
    raised: set[str] = set()
    floor_us = min(s.ms for s in samples) * 1e3
    start = [get_param(base, n) if n not in _OVERHEADS or get_param(base, n) > 0 else 0.05 * floor_us for n in names]
    z0 = np.clip(np.log([max(v, 1e-6) for v in start]), lows + 1e-9, highs - 1e-9)
    # the prior pulls multiplicative parameters (efficiencies, bandwidth, serial fraction) toward the base
    # profile; fixed costs have no meaningful base in log space and are left to the rows and their bounds
    # (a CPU kernel dispatch or a GPU kernel launch has a physical base value, microseconds: it keeps the prior)
    weights = np.array([0.0 if n in _OVERHEADS and not (n == "op_overhead_us" and base.kind in ("cpu", "mcu", "gpu", *PER_LAYER))
                        else prior for n in names])
    measured = np.log([s.ms for s in samples])
    robust = base.kind in ROBUST_KINDS if robust is None else robust

    def unit_of(z: np.ndarray[Any, Any]) -> ComputeUnit:
        assert base is not None
        return set_params(base, {n: float(math.exp(v)) for n, v in zip(names, z, strict=True)})

    def residuals(z: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        dev = with_unit(device, unit_of(z))
        pred = np.log([max(predict(s, dev).total_ms, 1e-9) for s in samples])
        rows = robust_residuals(pred - measured) if robust else pred - measured
        # a fixed cost is presumed small unless the rows demand it: prior x (cost / FIXED_COST_SCALE_US)
        fixed = np.array([prior * math.exp(v) / FIXED_COST_SCALE_US if n in ("invoke_us", "partition_us") else 0.0
                          for n, v in zip(names, z, strict=True)])
        return np.concatenate([rows, weights * (z - z0), fixed])

    z = z0
    for _ in range(4):
        if not names:
            break
        z = least_squares(residuals, z, bounds=(lows, highs), method="trf", x_scale=1.0, diff_step=1e-3,
                          max_nfev=60 * (len(names) + 1)).x
        # an efficiency pinned at 1 means the profile's peak for that dtype is too low (peaks of accelerators
        # are mostly derived from one row with an assumed efficiency): double it and refit
        pinned = {n.split("@", 1)[1] for n, v in zip(names, z, strict=True)
                  if n.startswith("efficiency.") and "@" in n and v > -1e-3}
        pinned &= set(base.peak_gops)
        if not pinned:
            break
        base = replace(base, peak_gops={d: v * (2.0 if d in pinned else 1.0) for d, v in base.peak_gops.items()})
        z = np.array([v - math.log(2.0) if n.startswith("efficiency.") and n.split("@", 1)[-1] in pinned else v
                      for n, v in zip(names, z, strict=True)])
        z = np.clip(z, lows + 1e-9, highs - 1e-9)
        z0 = np.array([v - math.log(2.0) if n.startswith("efficiency.") and n.split("@", 1)[-1] in pinned else v
                       for n, v in zip(names, z0, strict=True)])
        raised.update(pinned)
    unit = unit_of(z)
    dev = with_unit(device, unit)
    logs = [math.log(max(predict(s, dev).total_ms, 1e-9) / s.ms) for s in samples]
    values = {n: float(math.exp(v)) for n, v in zip(names, z, strict=True)}
    values.update({f"peak_gops.{d}": float(unit.peak_gops[d]) for d in sorted(raised)})
    return UnitFit(unit, values, {s.label: (math.exp(r) - 1) * 100 for s, r in zip(samples, logs, strict=True)},
                   float(np.sqrt(np.mean(np.square(logs)))))


def fit_device(device: DeviceProfile, samples: Sequence[Sample],
               progress: Callable[[str], None] | None = None) -> tuple[DeviceProfile, dict[str, tuple[UnitFit, int]]]:
    """Fit every unit that has rows: CPU rows first (their fit also prices the CPU fallback of accelerator
    paths), then each accelerator. Returns the fitted profile and, per unit name, its fit and row count."""
    by_unit: dict[str, list[Sample]] = {}
    for sample in samples:
        by_unit.setdefault(target_unit(device, sample.path).name, []).append(sample)
    order = sorted(by_unit, key=lambda n: 0 if (device.unit("cpu") or device.units[0]).name == n else 1)
    fits: dict[str, tuple[UnitFit, int]] = {}
    for name in order:
        fitted = fit_unit(device, name, by_unit[name])
        device = with_unit(device, fitted.unit)
        fits[name] = (fitted, len(by_unit[name]))
        if progress is not None:
            progress(f"{device.name} {name}: {len(by_unit[name])} rows, rms log residual {fitted.rms_log:.3f}, "
                     + ", ".join(f"{k}={v:.4g}" for k, v in fitted.parameters.items()))
    return device, fits


def robust_residuals(r: np.ndarray[Any, Any], scale: float = ROBUST_SCALE) -> np.ndarray[Any, Any]:
    """Signed residuals whose squares are the Cauchy loss of the log residuals ``r``:
    ``scale^2 x ln(1 + (r / scale)^2)``; ~``r`` for ``|r| << scale``. Only the row residuals go through it;
    the priors on the parameters stay quadratic."""
    out: np.ndarray[Any, Any] = np.sign(r) * scale * np.sqrt(np.log1p(np.square(r / scale)))
    return out


def baseline_k(train: Sequence[Sample], precision: str) -> float:
    """The naive model's ms per MAC (geometric mean over the training rows of that precision, else all)."""
    rows = [s for s in train if s.precision == precision and s.graph.macs > 0] or [s for s in train if s.graph.macs > 0]
    if not rows:
        raise DataError("no training rows with MACs for the baseline")
    return math.exp(float(np.mean([math.log(s.ms / s.graph.macs) for s in rows])))


@dataclass(frozen=True)
class CrossValidation:
    """Leave-one-architecture-out predictions for one unit: (label, arch, measured, ours, baseline) in ms."""

    unit: str
    rows: tuple[tuple[str, str, float, float, float], ...]

    def stats(self) -> dict[str, float]:
        """rows, architectures, median abs % error and share within +-10/25 % (ours and baseline), ratio bands."""
        ours = np.array([abs(p / m - 1) * 100 for _, _, m, p, _ in self.rows])
        base = np.array([abs(b / m - 1) * 100 for _, _, m, _, b in self.rows])
        ratio = np.array([m / p for _, _, m, p, _ in self.rows])
        return {
            "rows": float(len(self.rows)), "architectures": float(len({a for _, a, *_ in self.rows})),
            "median_abs_pct": float(np.median(ours)), "within_10_pct": float(np.mean(ours <= 10) * 100),
            "within_25_pct": float(np.mean(ours <= 25) * 100), "ratio_p10": float(np.percentile(ratio, 10)),
            "ratio_p90": float(np.percentile(ratio, 90)), "baseline_median_abs_pct": float(np.median(base)),
            "baseline_within_25_pct": float(np.mean(base <= 25) * 100),
        }


def leave_one_architecture_out(device: DeviceProfile, unit_name: str, samples: Sequence[Sample],
                               prefit_cpu: DeviceProfile | None = None, parameters: Sequence[str] | None = None,
                               prior: float = PRIOR) -> CrossValidation:
    """Fit ``unit_name`` without each architecture in turn and predict that architecture's rows, with the
    k x MACs baseline fitted on the same training rows. ``prefit_cpu``: the device whose other units are
    already fitted (the CPU that prices an accelerator path's fallback ops)."""
    dev = prefit_cpu or device
    out: list[tuple[str, str, float, float, float]] = []
    for arch in sorted({s.arch for s in samples}):
        train = [s for s in samples if s.arch != arch]
        test = [s for s in samples if s.arch == arch]
        if not train:
            continue
        fitted = with_unit(dev, fit_unit(dev, unit_name, train, parameters, prior=prior).unit)
        for s in test:
            k = baseline_k(train, s.precision)
            out.append((s.label, arch, s.ms, predict(s, fitted).total_ms, k * s.graph.macs))
    return CrossValidation(unit_name, tuple(out))


def refine_suite_fit(unit: ComputeUnit, cases: Sequence[tuple[OpGraph, float, str]], threads: int,
                     cache: tuple[int, int], invoke_us: float) -> ComputeUnit:
    """The host micro-benchmark calibration through this fitter: start from its closed-form ``unit`` and
    fit the unit's ``family@dtype`` efficiencies and ``op_overhead_us`` to the suite's single-op cases
    (graph, measured ms, name), with ``invoke_us`` (the benchmark harness, not part of the profile)
    subtracted from each measurement. Cases are cache-resident, as in the closed form."""
    from edgeexport.catalog.model import DeviceProfile as _Device

    device = _Device(name="host", display_name="host", device_class="host", units=(unit,), ram_bytes=2**30,
                     flash_bytes=None, os="linux", os_version="", targets=frozenset({TFLITE}))
    samples = [Sample(g, "cpu", threads, max(ms - invoke_us * 1e-3, 1e-4), name, name, "")
               for g, ms, name in cases if g.ops]
    names = [f"efficiency.{k}" for k in unit.efficiency if "@" in k] + ["op_overhead_us"]
    if len(samples) <= len(names):
        return unit
    global _SUITE_CACHE
    _SUITE_CACHE = cache
    try:
        return fit_unit(device, unit.name, samples, names).unit
    finally:
        _SUITE_CACHE = None


_SUITE_CACHE: tuple[int, int] | None = None
