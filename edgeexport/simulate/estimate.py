"""``simulate``: artifact + device profile -> ``LatencyEstimate`` (latency, memory, energy, placement, budgets)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeexport.catalog.devices import is_placeholder
from edgeexport.catalog.model import DeviceProfile
from edgeexport.serial import plain
from edgeexport.simulate.cost import (
    DEFAULT_CACHE_BYTES,
    TPU_PARAMETER_CACHE_BYTES,
    MemoryModel,
    effective_threads,
    streamed_share,
)
from edgeexport.simulate.evidence import coverage, uncosted_ops, uncosted_warning, widen_band
from edgeexport.simulate.graph import OpGraph, read_graph
from edgeexport.simulate.memory import peak_activation_bytes
from edgeexport.simulate.placement import Partition, Placement, available_paths, place
from edgeexport.targets.base import target_info

# Band used when the profile has no calibration residuals: the +-20-30 % spread a single efficiency per
# family gives on phone CPUs (DEVICES.md section 4.3), widened to a 10th-90th percentile band.
DEFAULT_BAND = (0.70, 1.40)
TOP_OPS = 10
# Band of the shipped host placeholder: before calibration it was 2.3x to 9.8x off on six unseen models
# (issue 12), in either direction depending on the machine.
PLACEHOLDER_BAND = (0.1, 10.0)


@dataclass(frozen=True)
class OpEstimate:
    """One op's share of the estimate: time in ms on ``unit``, its MACs, and the roofline bound."""

    index: int
    name: str
    op_type: str
    family: str
    unit: str
    dtype: str
    ms: float
    macs: int
    bound: str


@dataclass(frozen=True)
class BudgetStatus:
    """Whether the artifact fits the device: RAM needed (arena + weights resident in RAM) and flash needed
    (weights stored) against the profile's ``ram_bytes``/``flash_bytes``. ``ok`` is False when either is over."""

    ok: bool
    ram_needed_bytes: int
    ram_bytes: int
    flash_needed_bytes: int
    flash_bytes: int | None
    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class LatencyEstimate:
    """Simulated run of one artifact on one device.

    Latencies in milliseconds (``p50_ms`` with a ``low_ms``..``high_ms`` band, the 10th-90th percentile of the
    calibration residuals), ``throughput_ips`` inferences per second at batch 1, ``energy_mj`` millijoules per
    inference (None when a unit used has no ``power_w``), memory and sizes in bytes.
    """

    artifact: str
    format: str
    device: str
    path: str
    threads: int | None
    compute_units: str
    p50_ms: float
    low_ms: float
    high_ms: float
    throughput_ips: float
    energy_mj: float | None
    macs: int
    peak_memory_bytes: int
    arena_bytes: int
    weights_bytes: int
    size_bytes: int
    sparsity: float
    top_ops: tuple[OpEstimate, ...]
    family_ms: tuple[tuple[str, float], ...]
    partitions: tuple[Partition, ...]
    alternatives: tuple[tuple[str, float], ...]
    budget: BudgetStatus
    band_source: str
    warnings: tuple[str, ...] = ()
    # what the estimate does not know (simulate.evidence): ops without a work model, and whether the graph
    # runs outside the profile's evidence (then the band above is already widened)
    uncosted_ops: tuple[str, ...] = ()
    extrapolated: bool = False
    extrapolation: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists; pairs become objects)."""
        data: dict[str, Any] = plain(self)
        data["family_ms"] = dict(self.family_ms)
        data["alternatives"] = dict(self.alternatives)
        return data


def simulate(
    artifact_path: Path,
    device: DeviceProfile,
    *,
    threads: int | None = None,
    compute_units: str = "all",
    delegate: str = "auto",
    graph: OpGraph | None = None,
    partitioner: str = "cost",
) -> LatencyEstimate:
    """Estimate latency, memory and energy of ``artifact_path`` (.tflite or .mlpackage) on ``device``.

    ``threads``: CPU threads (default: the unit's cores, at most 4). ``compute_units``: Core ML's setting
    (``all``, ``cpu_and_gpu``, ``cpu_only``, ``cpu_and_ne``). ``delegate``: LiteRT path ``cpu``, ``gpu``,
    ``npu`` or ``auto`` (the fastest available; the others are listed in ``alternatives``). Pass ``graph`` to
    reuse an already-read artifact. Raises ModelFormatError for an unreadable artifact.
    """
    graph = graph if graph is not None else read_graph(Path(artifact_path))
    device = apply_calibration(device)
    paths = available_paths(graph, device, compute_units)
    if delegate != "auto" and target_info(graph.target).has_delegates:
        if delegate not in paths:
            from edgeexport.errors import UnsupportedError

            raise UnsupportedError(f"{device.name} has no {delegate!r} path for LiteRT", hint=f"available: {', '.join(paths)}")
        paths = [delegate] + [p for p in paths if p != delegate]
    memory = memory_model(graph, device)
    placements = [place(graph, device, p, threads=threads, memory=memory, partitioner=partitioner) for p in paths]
    chosen = placements[0] if delegate != "auto" else min(placements, key=lambda pl: pl.total_ms)
    cpu = device.unit("cpu") or device.unit("mcu")
    used = threads if threads is not None or cpu is None else effective_threads(cpu, None)  # what the estimate assumed
    estimate = _estimate(graph, device, chosen, placements, used, compute_units, Path(artifact_path))
    return replace(estimate, warnings=estimate.warnings + _fallback_warnings(device, placements))


def _fallback_warnings(device: DeviceProfile, placements: list[Placement]) -> tuple[str, ...]:
    """Say so when an accelerator path hands every op back to the CPU (its estimate then equals the CPU's):
    the delegate's fixed and per-partition costs exceed what the accelerator saves on this graph."""
    kinds = {u.name: u.kind for u in device.units}
    out = []
    for pl in placements:
        if pl.path in ("cpu", "coreml-cpu_only") or not pl.units:
            continue
        if all(kinds.get(name) in ("cpu", "mcu") for name in pl.units):
            out.append(f"the {pl.path} path runs every op of this graph on the CPU (the accelerator's invoke and "
                       "partition costs exceed the time it would save), so its estimate equals the CPU's")
    return tuple(out)


def _estimate(
    graph: OpGraph,
    device: DeviceProfile,
    chosen: Placement,
    placements: list[Placement],
    threads: int | None,
    compute_units: str,
    artifact: Path,
) -> LatencyEstimate:
    p50 = chosen.total_ms
    low_f, high_f, band_source = uncertainty_band(device, chosen)
    known = coverage(device, graph.ops, [t.seconds for t in chosen.times], [t.dtype for t in chosen.times])
    if known.extrapolated:
        low_f, high_f = widen_band(low_f, high_f, known.share)
        band_source += f", widened for extrapolation ({100 * known.share:.0f} % of the time)"
    uncosted = uncosted_ops(graph.ops)
    not_known = tuple(w for w in (uncosted_warning(uncosted, graph.ops), known.reason) if w)
    per_op = [
        OpEstimate(op.index, op.name, op.op_type, op.family, unit, t.dtype, t.seconds * 1e3, op.macs, t.bound)
        for op, unit, t in zip(graph.ops, chosen.units, chosen.times, strict=True)
    ]
    families: dict[str, float] = defaultdict(float)
    for est in per_op:
        families[est.family] += est.ms
    energy = _energy_mj(device, chosen)
    arena = peak_activation_bytes(graph).peak_bytes
    budget = budget_status(graph, device, arena)
    resident = arena if _is_mcu(device) else arena + graph.size_bytes
    return LatencyEstimate(
        artifact=str(artifact),
        format=graph.format,
        device=device.name,
        path=chosen.path,
        threads=threads,
        compute_units=compute_units,
        p50_ms=p50,
        low_ms=p50 * low_f,
        high_ms=p50 * high_f,
        throughput_ips=1e3 / p50 if p50 > 0 else float("inf"),
        energy_mj=energy,
        macs=graph.macs,
        peak_memory_bytes=resident,
        arena_bytes=arena,
        weights_bytes=graph.weight_bytes,
        size_bytes=graph.size_bytes,
        sparsity=graph.sparsity,
        top_ops=tuple(sorted(per_op, key=lambda e: -e.ms)[:TOP_OPS]),
        family_ms=tuple(sorted(families.items(), key=lambda kv: -kv[1])),
        partitions=chosen.partitions,
        alternatives=tuple((pl.path, pl.total_ms) for pl in placements),
        budget=budget,
        band_source=band_source,
        warnings=graph.warnings + _precision_warnings(device, chosen) + _target_warnings(graph, device)
        + not_known + _placeholder_warnings(device),
        uncosted_ops=uncosted,
        extrapolated=known.extrapolated,
        extrapolation=known.reason,
    )


def _placeholder_warnings(device: DeviceProfile) -> tuple[str, ...]:
    if not is_placeholder(device):
        data = _residuals(device)
        if device.device_class == "host" and data is not None and "host_terms" not in data:
            # calibrated before simulate.hostterms: its weights-beyond-cache and threading terms are missing
            return (f"{device.name} was calibrated by an older edgeexport without its cache and thread-pool terms "
                    "(weight reads beyond the core's cache, unsplit kernels): re-run `edgeexport calibrate`",)
        return ()
    text = (f"{device.name} is an uncalibrated placeholder profile: this estimate is a guess (off by up to 10x); "
            "run `edgeexport calibrate` (simulate --device host does it once by itself unless --no-calibrate)")
    return (text,)


def memory_model(graph: OpGraph, device: DeviceProfile) -> MemoryModel:
    """Cache sizes ``calibrate`` found (largest cache for activations, the share of it a model's weights can
    keep; saved with the residuals), else DEFAULT_CACHE_BYTES for both; a microcontroller has no cache
    in front of its SRAM/flash (every byte counts)."""
    if _is_mcu(device):
        return MemoryModel(cache_bytes=0, weights_resident=False)
    data = _residuals(device) or {}
    cache = int(data.get("cache_bytes", DEFAULT_CACHE_BYTES))
    weight_cache = int(data.get("weight_cache_bytes", cache))
    on_chip = frozenset({"tpu"}) if graph.weight_bytes <= TPU_PARAMETER_CACHE_BYTES else frozenset()
    # units with their own on-chip memory size: weights stay there when they fit, else stream every run
    resident = frozenset(u.name for u in device.units if u.on_chip_bytes is not None and graph.weight_bytes <= u.on_chip_bytes)
    spill = frozenset(u.name for u in device.units if u.on_chip_bytes is not None and graph.weight_bytes > u.on_chip_bytes)
    shares = tuple((u.name, 1.0 - (u.on_chip_bytes or 0) / max(graph.weight_bytes, 1)) for u in device.units
                   if u.name in spill)
    # a calibrated cache streams only the weights that do not fit (cost.streamed_share); without one, all
    share = streamed_share(graph.weight_bytes, weight_cache) if data else 1.0
    from edgeexport.simulate.hostterms import from_residuals

    host = from_residuals(data)
    # with calibrated host terms only weights within the private cache are free (simulate.hostterms)
    fits = graph.weight_bytes <= (host.private_cache_bytes if host is not None else weight_cache)
    return MemoryModel(cache_bytes=cache, weights_resident=fits, resident_kinds=on_chip,
                       resident_units=resident, spill_units=spill, spill_shares=shares, weight_stream_share=share,
                       host=host)


def _precision_warnings(device: DeviceProfile, placement: Placement) -> tuple[str, ...]:
    by_name = {u.name: u for u in device.units}
    missing = sorted({f"{t.dtype} on {name}" for name, t in zip(placement.units, placement.times, strict=True)
                      if t.dtype not in by_name[name].peak_gops})
    if not missing:
        return ()
    return (f"no peak throughput in the profile for {', '.join(missing)}: estimated with slow reference kernels",)


def _target_warnings(graph: OpGraph, device: DeviceProfile) -> tuple[str, ...]:
    target = graph.target
    if device.targets and target not in device.targets:
        return (f"{device.name} does not run {target} artifacts; estimated as if its units ran this graph",)
    return ()


def _is_mcu(device: DeviceProfile) -> bool:
    return device.device_class == "mcu" or any(u.kind == "mcu" for u in device.units)


def budget_status(graph: OpGraph, device: DeviceProfile, arena_bytes: int) -> BudgetStatus:
    """RAM and flash check. On a microcontroller (TFLite Micro) weights stay in flash and only the arena
    needs RAM; elsewhere the model file is mapped into RAM next to the arena."""
    mcu = _is_mcu(device)
    ram_needed = arena_bytes if mcu else arena_bytes + graph.size_bytes
    flash_needed = graph.size_bytes
    messages: list[str] = []
    if ram_needed > device.ram_bytes:
        messages.append(
            f"needs {ram_needed / 1024:.0f} KiB of RAM (activations {arena_bytes / 1024:.0f} KiB"
            f"{'' if mcu else f' + model {graph.size_bytes / 1024:.0f} KiB'}); {device.name} has {device.ram_bytes / 1024:.0f} KiB"
        )
    if device.flash_bytes is not None and flash_needed > device.flash_bytes:
        messages.append(
            f"model is {flash_needed / 1024:.0f} KiB; {device.name} has {device.flash_bytes / 1024:.0f} KiB of flash"
        )
    return BudgetStatus(not messages, ram_needed, device.ram_bytes, flash_needed, device.flash_bytes, tuple(messages))


def _energy_mj(device: DeviceProfile, placement: Placement) -> float | None:
    by_name = {u.name: u for u in device.units}
    total = 0.0
    for part in placement.partitions:
        power = by_name[part.unit].power_w if part.unit in by_name else None
        if power is None:
            return None
        total += part.ms * power  # ms x W = mJ
    return total


def residuals_path(profile_path: Path) -> Path:
    """Where ``calibrate`` saves the residuals of a profile: ``<name>.residuals.json`` next to its TOML."""
    return profile_path.with_name(profile_path.stem + ".residuals.json")


def _residuals(device: DeviceProfile) -> dict[str, Any] | None:
    if device.path is None:
        return None
    path = residuals_path(Path(device.path))
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


def apply_calibration(device: DeviceProfile) -> DeviceProfile:
    """Add the per-dtype efficiencies (``family@dtype`` keys) saved by ``calibrate`` next to the profile's TOML
    to its CPU unit; the profile unchanged when there are none."""
    data = _residuals(device)
    extra = data.get("efficiency_by_dtype") if data else None
    if not isinstance(extra, dict) or not extra:
        return device
    units = tuple(
        replace(u, efficiency={**dict(u.efficiency), **{k: float(v) for k, v in extra.items()}}) if u.kind == "cpu" else u
        for u in device.units
    )
    return replace(device, units=units)


def main_unit(placement: Placement) -> str | None:
    """The unit name that runs most of a placement's time (None for an empty graph)."""
    share: dict[str, float] = defaultdict(float)
    for name, t in zip(placement.units, placement.times, strict=True):
        share[name] += t.seconds
    return max(share, key=lambda k: share[k]) if share else None


def uncertainty_band(device: DeviceProfile, placement: Placement | None = None) -> tuple[float, float, str]:
    """Multipliers (low, high) of the p50 estimate and where they come from: the 10th and 90th percentile of
    measured/predicted of the held-out rows when the unit that runs most of ``placement`` has a
    ``[validation.<unit>]`` table, else of the calibration suite when ``calibrate`` saved residuals, else
    DEFAULT_BAND (and the text says the unit is not validated). An uncalibrated placeholder (the shipped ``host``)
    gets PLACEHOLDER_BAND and says so."""
    if is_placeholder(device):
        return PLACEHOLDER_BAND[0], PLACEHOLDER_BAND[1], "uncalibrated placeholder profile (run edgeexport calibrate)"
    unit = main_unit(placement) if placement is not None else None
    check = device.validation.get(unit) if unit is not None else None
    if check is not None and check.rows > 0:
        text = (f"{device.name} {unit}: validated on {check.rows} published rows, median error "
                f"{check.median_abs_pct:.0f} % ({check.within_25_pct:.0f} % within 25 %, held-out architectures)")
        return min(check.ratio_p10, 1.0), max(check.ratio_p90, 1.0), text
    data = _residuals(device)
    if data is not None:
        try:
            low, high = float(data["ratio_p10"]), float(data["ratio_p90"])
            return min(low, 1.0), max(high, 1.0), f"calibration residuals (n={data.get('n', '?')})"
        except (KeyError, TypeError, ValueError):
            pass
    if unit is not None and unit in device.fits:
        return DEFAULT_BAND[0], DEFAULT_BAND[1], (f"{device.name} {unit}: fitted to {device.fits[unit].rows} rows "
                                                  "but not validated on held-out architectures; default band")
    if unit is not None and not device.fits and not _residuals(device):
        return DEFAULT_BAND[0], DEFAULT_BAND[1], (f"{device.name} {unit}: not validated against measurements; "
                                                  "default band")
    return DEFAULT_BAND[0], DEFAULT_BAND[1], "default band (profile not calibrated)"
