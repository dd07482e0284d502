"""Roofline time of one op on one compute unit, and the CPU thread-scaling model.

    t_op = max(ops / (peak[dtype] x efficiency[family] x threads_speedup / cores x occupancy),
               DRAM bytes / bandwidth)  + op_overhead

``occupancy`` (GPUs with ``occupancy_elements``) is the share of the unit's lanes the op's output elements fill.
An op without MACs on a unit with ``vector_gbps`` (a compiled accelerator's vector path) also takes at least
its activation bytes / ``vector_gbps``.

DRAM bytes (``MemoryModel``): an op's activations when they do not fit in the cache, and its weights unless
the whole model's weights fit in the cache. Cache-resident traffic is folded into the fitted efficiencies.

``peak_gops`` in a profile is the whole unit, reached (at the profile's efficiencies) when all its cores run;
a CPU run with ``threads`` threads gets ``peak x speedup(threads) / speedup(cores)`` where
``speedup(t) = 1 / (s + (1 - s) / t)`` is Amdahl's law with a serial fraction ``s`` (``CPU_SERIAL_FRACTION``),
so 4 threads give about 2.9x one thread rather than 4x. (The published efficiencies in the profiles compare
an all-core benchmark with the all-core peak, which is what this keeps.) The 2.93x measured for
4 threads on a Raspberry Pi 4 (int8, DEVICES.md section 3.6 item 5) fixes ``s`` at about 0.12. Memory bandwidth
is shared by all threads and does not scale. Accelerators (GPU, NPU, ANE) ignore ``threads``.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeexport.catalog.model import ComputeUnit
from edgeexport.simulate.graph import Op
from edgeexport.simulate.hostterms import HostTerms, streams_weights, weight_seconds

# Serial fraction of Amdahl's law for multi-threaded CPU kernels; from 2.93x at 4 threads (RPi 4 int8,
# DEVICES.md 3.6 item 5): 1 / (s + (1 - s) / 4) = 2.93 gives s = 0.122.
CPU_SERIAL_FRACTION = 0.12

# Throughput of a precision a unit has no peak for, as a fraction of its slowest listed peak (reference
# kernels without SIMD). U: an assumption; such runs are flagged in the estimate's warnings.
SOFT_FLOAT_FACTOR = 0.25

# Precision a unit falls back to when it lacks the op's: GPUs and the ANE run float as fp16, integer ops on a
# float-only unit are dequantized to its float type.
_FALLBACK = {"fp32": ("fp32", "fp16"), "fp16": ("fp16", "fp32"), "int8": ("int8", "fp16", "fp32"),
             "int16": ("int16", "int8", "fp16", "fp32")}

# LiteRT's fused activation functions cost one extra element-wise pass when a unit cannot fuse them; the
# per-op work already counts one op per output element for them.


# Bytes of on-chip cache a working set may occupy and still not touch DRAM, when the profile does not say
# (U: a phone SoC's shared L2/L3 or system cache is 2-8 MB; 2 MiB keeps the estimate conservative).
DEFAULT_CACHE_BYTES = 2 * 2**20

# The Edge TPU keeps up to about 8 MB of parameters on chip; bigger models stream the rest over the host link
# (S: DEVICES.md section 4.3, Inception v4 41 MB int8 at 85-102 ms despite 4 TOPS).
TPU_PARAMETER_CACHE_BYTES = 8 * 10**6


@dataclass(frozen=True)
class MemoryModel:
    """Which bytes go to DRAM at the unit's ``memory_bandwidth_gbps``: an op's activations when they exceed
    ``cache_bytes`` (read + written), and its weights unless the whole model's weights fit in the cache
    (``weights_resident``: then they stay cached across runs)."""

    cache_bytes: int = DEFAULT_CACHE_BYTES
    weights_resident: bool = False
    resident_kinds: frozenset[str] = frozenset()  # unit kinds that keep this model's weights on chip
    resident_units: frozenset[str] = frozenset()  # unit names whose on_chip_bytes hold this model's weights
    spill_units: frozenset[str] = frozenset()  # unit names whose on_chip_bytes the weights overflow
    # (unit name, share of the weights streamed per run) for spill units: the on-chip memory keeps what fits
    # (the Edge TPU compiler caches as many parameters as fit), the rest streams every run
    spill_shares: tuple[tuple[str, float], ...] = ()
    # Share of a non-resident model's weight bytes that comes from DRAM each run (1.0: all of it). A cache
    # with an adaptive (not strict LRU) replacement policy keeps about cache / weights of a cyclic working
    # set, so a model a little over the cache streams only the excess (``streamed_share``).
    weight_stream_share: float = 1.0
    # a calibrated host CPU's cache, bandwidth and threading terms (simulate.hostterms); None: plain roofline.
    # With them ``weights_resident`` means "within the private cache" and other weights add their read time.
    host: HostTerms | None = None


def streamed_share(weight_bytes: int, weight_cache_bytes: int) -> float:
    """Share of ``weight_bytes`` read from DRAM per run when ``weight_cache_bytes`` of them stay cached:
    ``1 - cache / weights`` (0 when they all fit)."""
    if weight_bytes <= weight_cache_bytes or weight_bytes <= 0:
        return 0.0
    return 1.0 - weight_cache_bytes / weight_bytes


@dataclass(frozen=True)
class OpTime:
    """Time of one op on one unit in seconds, and which bound decided it (``compute`` or ``memory``)."""

    seconds: float
    compute_s: float
    memory_s: float
    overhead_s: float
    dtype: str
    bound: str


def cpu_speedup(threads: int, serial_fraction: float | None = None) -> float:
    """Amdahl speed-up of ``threads`` CPU threads over one (1.0 for one thread); ``serial_fraction``
    defaults to ``CPU_SERIAL_FRACTION``."""
    t = max(int(threads), 1)
    s = CPU_SERIAL_FRACTION if serial_fraction is None else min(max(float(serial_fraction), 0.0), 1.0)
    return 1.0 / (s + (1.0 - s) / t)


def thread_fraction(unit: ComputeUnit, threads: int | None) -> float:
    """Share of the unit's peak a run with ``threads`` threads gets: ``speedup(threads) / speedup(cores)``,
    with the unit's fitted serial fraction when it has one."""
    s = unit.serial_fraction
    return cpu_speedup(effective_threads(unit, threads), s) / cpu_speedup(max(int(unit.cores), 1), s)


def thread_sync_s(unit: ComputeUnit, threads: int | None) -> float:
    """Seconds per op of handing work to the thread pool: the unit's ``thread_sync_us`` when more than one
    CPU thread runs, else 0."""
    if unit.kind not in ("cpu", "mcu") or effective_threads(unit, threads) <= 1:
        return 0.0
    return float(unit.thread_sync_us) * 1e-6


def effective_threads(unit: ComputeUnit, threads: int | None) -> int:
    """Threads a CPU run uses: the request capped at the unit's cores; default all cores up to 4 (the
    LiteRT benchmark_model convention, DEVICES.md section 2.1)."""
    cores = max(int(unit.cores), 1)
    if threads is None:
        return min(cores, 4)
    return max(1, min(int(threads), cores))


def unit_dtype(unit: ComputeUnit, dtype: str, *, prefer_fp16: bool = False) -> str | None:
    """The precision ``unit`` runs an op of ``dtype`` in, or None when it cannot run it at all."""
    order = _FALLBACK.get(dtype, (dtype, "fp32"))
    if prefer_fp16 and dtype in ("fp32", "fp16") and "fp16" in unit.dtypes:
        return "fp16"
    for candidate in order:
        if candidate in unit.dtypes and candidate in unit.peak_gops:
            return candidate
    return None


def efficiency(unit: ComputeUnit, family: str, dtype: str, op_type: str = "") -> float:
    """Fraction of peak reached by ``family`` in ``dtype``: an ``OP_TYPE@dtype`` key (calibrate writes them
    for kernels unlike the rest of their family, e.g. TRANSPOSE_CONV) wins over ``family@dtype``, then the plain
    family key, then ``default@dtype``, then ``default``."""
    eff = unit.efficiency
    value = eff.get(f"{op_type}@{dtype}") if op_type else None
    if value is None:
        value = eff.get(f"{family}@{dtype}", eff.get(family, eff.get(f"default@{dtype}")))
    if value is None:
        value = unit.efficiency_for(family)
    return min(max(float(value), 1e-4), 1.0)


def op_time(op: Op, unit: ComputeUnit, *, threads: int | None = None, dtype: str | None = None,
            memory: MemoryModel | None = None) -> OpTime:
    """Roofline time of ``op`` on ``unit``; ``dtype`` overrides the precision (see ``unit_dtype``); ``memory``
    says which bytes reach DRAM (default: ``MemoryModel()``)."""
    memory = memory or MemoryModel()
    run_dtype = dtype or unit_dtype(unit, op.dtype) or "fp32"
    if run_dtype in unit.peak_gops:
        peak = float(unit.peak_gops[run_dtype]) * 1e9
    else:
        # e.g. float ops on an integer-only microcontroller profile: TFLite Micro's reference float kernels
        peak = min((float(v) for v in unit.peak_gops.values()), default=1.0) * 1e9 * SOFT_FLOAT_FACTOR
    if unit.kind in ("cpu", "mcu"):
        peak = peak * thread_fraction(unit, threads)
    eff = efficiency(unit, op.family, run_dtype, op.op_type)
    work = op.ops
    compute_s = work / (peak * eff * occupancy(unit, op)) if work else 0.0
    scale = _bytes_scale(op.dtype, run_dtype)
    bandwidth = max(float(unit.memory_bandwidth_gbps), 1e-3) * 1e9
    activations = (op.read_bytes + op.write_bytes) * scale
    if unit.name in memory.spill_units:
        resident = False
    else:
        resident = memory.weights_resident or unit.kind in memory.resident_kinds or unit.name in memory.resident_units
    # a unit with its own on-chip memory (an NPU's TCM, the Edge TPU's SRAM) keeps activations that fit in it
    limit = memory.cache_bytes if unit.on_chip_bytes is None else unit.on_chip_bytes
    share = (dict(memory.spill_shares).get(unit.name, 1.0) if unit.name in memory.spill_units
             else memory.weight_stream_share)
    # weights are stored in the precision the unit computes in (a GPU delegate converts fp32 weights to fp16)
    dram = (activations if activations > limit else 0.0) + (0 if resident else op.weight_bytes * share * scale)
    memory_s = dram / bandwidth
    if unit.vector_gbps is not None and not op.macs:
        # a compiled accelerator's matrix unit does the MACs; an op without any (ADD, MUL, CONCATENATION, PAD,
        # pooling) streams every activation byte through the narrower vector path instead: on the Coral Dev
        # Board DenseNet-121 (62 MUL + 58 CONCATENATION moving 41 MB of int8 activations) takes 25 ms where its
        # 2.8 GMAC in 120 conv layers take about 8, while MobileNet (no such op but its final MEAN) takes 2.4
        # (DEVICES.md 5.12; fitted 3-4 GB/s, benchmarks/RESULTS.md issue 12)
        memory_s = max(memory_s, activations / (max(float(unit.vector_gbps), 1e-3) * 1e9))
    overhead_s = float(unit.op_overhead_us) * 1e-6 + (thread_sync_s(unit, threads) if work else 0.0)
    if memory.host is not None and unit.kind == "cpu":
        return _host_op_time(op, unit, threads, memory, memory.host, compute_s, activations, limit, run_dtype)
    bound = "compute" if compute_s >= memory_s else "memory"
    return OpTime(max(compute_s, memory_s) + overhead_s, compute_s, memory_s, overhead_s, run_dtype, bound)


def occupancy(unit: ComputeUnit, op: Op) -> float:
    """Share of the unit's lanes a kernel keeps busy: ``E / (E + N)`` for E output elements and
    N = ``unit.occupancy_elements`` (1.0 when the unit has no occupancy limit). A GPU runs one work item per
    output element (LiteRT's GPU delegate: one per 4-channel slice of an output pixel) and hides memory
    latency only with many work items in flight, so a conv with few output elements (DenseNet's 32-channel
    3x3 convs at 7x7) leaves most lanes idle however many MACs each work item does. The smooth saturation
    (half the lanes busy at E = N, not a hard ``min(1, E / N)``) keeps the fitted N identifiable."""
    if unit.occupancy_elements is None or op.write_bytes <= 0:
        return 1.0
    elements = max(op.write_bytes / _SIZE.get(op.dtype, 4), 1.0)
    return elements / (elements + max(float(unit.occupancy_elements), 1.0))


_SIZE = {"fp32": 4, "fp16": 2, "int8": 1, "int16": 2}


def _bytes_scale(stored: str, run: str) -> float:
    """Activation bytes grow or shrink when a unit computes in another precision than stored."""
    size = {"fp32": 4, "fp16": 2, "int8": 1, "int16": 2}
    return size.get(run, 4) / size.get(stored, 4)


def _host_op_time(op: Op, unit: ComputeUnit, threads: int | None, memory: MemoryModel, host: HostTerms,
                  compute_s: float, activations: float, limit: int, run_dtype: str) -> OpTime:
    """``op_time`` on a calibrated host CPU (see ``simulate.hostterms``): unsplit ops get one thread and no
    hand-off, weights beyond the private cache add their read time, bandwidth scales as measured."""
    n = effective_threads(unit, threads)
    split = n > 1 and host.splits(op.op_type, run_dtype, op.ops)
    if n > 1 and not split:
        compute_s *= thread_fraction(unit, n) / thread_fraction(unit, 1)
    dram_gbps = max(float(unit.memory_bandwidth_gbps), 1e-3)
    act_s = (activations if activations > limit else 0.0) / (dram_gbps * 1e9 * host.bandwidth_factor(n))
    weights_s = 0.0 if memory.weights_resident else weight_seconds(op.weight_bytes, memory.weight_stream_share,
                                                                    host, dram_gbps, n)
    overhead_s = float(unit.op_overhead_us) * 1e-6 + (thread_sync_s(unit, n) if split else 0.0)
    memory_s = act_s + weights_s
    bound = "compute" if compute_s >= memory_s else "memory"
    if streams_weights(op.macs, op.weight_bytes, run_dtype):  # a GEMV reads and multiplies at once
        return OpTime(max(compute_s, memory_s) + overhead_s, compute_s, memory_s, overhead_s, run_dtype, bound)
    return OpTime(max(compute_s, act_s) + weights_s + overhead_s, compute_s, memory_s, overhead_s, run_dtype, bound)
