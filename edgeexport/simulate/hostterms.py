"""Cost terms of a calibrated host CPU (LiteRT + XNNPACK) beyond the plain roofline, measured by ``calibrate``.

The single-op suite runs every case with its weights hot in the core's private cache; a real network cycles
through all its weights on every run, and runs many ops back to back on a thread pool. What the idle
host_fit rows (benchmarks/RESULTS.md) showed the plain roofline gets wrong on this CPU, and what replaces it:

1. **Weights behind the private cache.** A model whose weights exceed the per-core cache (``private_cache_bytes``,
   L2 from sysfs) reads each op's packed weights from the shared cache at ``cache_bandwidth_gbps`` (measured:
   a 4 MB fp32 GEMV, ``cache`` suite family), and the part the shared cache cannot keep from DRAM at the
   unit's ``memory_bandwidth_gbps``. An XNNPACK GEMM with several row tiles loads a weight panel before it
   multiplies with it, so this traffic adds to the compute time instead of hiding under it (the roofline's
   ``max``); a GEMV (fewer than ``STREAMING_ROWS`` rows) multiplies as it reads and keeps the ``max``.
2. **Bandwidth with more threads.** Two cores pull more bytes per second than one, but not twice as many:
   ``bandwidth_scaling`` is measured / one-thread bandwidth of the DRAM and cache cases at each thread count.
3. **Ops the thread pool does not split.** Kernels outside the XNNPACK delegate (TFLite's builtin int8
   average pool and softmax, TILE, ...) run on one thread whatever ``threads`` is: ``single_thread_ops`` lists
   the ``OP_TYPE@dtype`` whose suite case did not speed up. Ops with less work than ``split_min_ops`` stay on
   one thread and pay no hand-off (the chain of tiny adds is as fast at two threads as at one).

A host profile calibrated before these terms existed has none of them in its residuals and keeps the plain
roofline (``from_residuals`` returns None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

# A suite case that takes at least this long on one thread shows whether its kernel runs multi-threaded; a
# shorter one is dominated by the fixed hand-off and says nothing about the kernel (us).
SCALING_PROBE_US = 20.0
# Two-thread time / one-thread time at or above which a long case counts as not split (a split kernel
# reaches 0.5-0.6 here, see the residuals' measurements).
NOT_SPLIT_RATIO = 0.9
# Work (operations) under which XNNPACK runs an op inline on the calling thread (its parallel range is a
# single tile): the largest chain add (128 elements) does not slow down with threads. U: the true cutoff
# depends on the kernel's tile; 4096 elements is XNNPACK's smallest element-wise tile order of magnitude.
DEFAULT_SPLIT_MIN_OPS = 4096


@dataclass(frozen=True)
class HostTerms:
    """Calibrated cache, bandwidth and threading terms of a host CPU (see the module docstring).

    ``private_cache_bytes``: per-core cache in bytes; ``cache_bandwidth_gbps``: shared-cache read rate (GB/s)
    at one thread; ``bandwidth_scaling``: (threads, factor) pairs, factor = bandwidth at that many threads /
    bandwidth at one; ``split_min_ops``: operations below which an op stays on one thread;
    ``single_thread_ops``: ``OP_TYPE@dtype`` keys that never run multi-threaded."""

    private_cache_bytes: int
    cache_bandwidth_gbps: float
    bandwidth_scaling: tuple[tuple[int, float], ...] = ()
    cache_scaling: tuple[tuple[int, float], ...] = ()
    split_min_ops: int = DEFAULT_SPLIT_MIN_OPS
    single_thread_ops: frozenset[str] = frozenset()

    def bandwidth_factor(self, threads: int, *, cache: bool = False) -> float:
        """DRAM (or, with ``cache``, shared-cache) bandwidth at ``threads`` threads over one-thread bandwidth
        (1.0 for one thread or unmeasured counts; the nearest measured count below otherwise)."""
        known = dict(self.cache_scaling if cache else self.bandwidth_scaling)
        below = [t for t in known if t <= threads]
        return float(known[max(below)]) if below and threads > 1 else 1.0

    def splits(self, op_type: str, dtype: str, ops: int) -> bool:
        """True when an op of this type, precision and work runs on every thread of the pool."""
        return ops >= self.split_min_ops and f"{op_type}@{dtype}" not in self.single_thread_ops

    def to_json(self) -> dict[str, object]:
        """The residuals-file form (``from_residuals`` reads it back)."""
        return {"private_cache_bytes": self.private_cache_bytes, "cache_bandwidth_gbps": self.cache_bandwidth_gbps,
                "bandwidth_scaling": {str(t): f for t, f in self.bandwidth_scaling},
                "cache_scaling": {str(t): f for t, f in self.cache_scaling},
                "split_min_ops": self.split_min_ops, "single_thread_ops": sorted(self.single_thread_ops)}


def from_residuals(data: Mapping[str, object] | None) -> HostTerms | None:
    """The terms saved under ``host_terms`` in a calibration's residuals file, or None (older calibration)."""
    raw = data.get("host_terms") if data else None
    if not isinstance(raw, dict):
        return None
    try:
        scaling = raw.get("bandwidth_scaling") or {}
        cache_scaling = raw.get("cache_scaling") or {}
        return HostTerms(
            private_cache_bytes=int(raw["private_cache_bytes"]),
            cache_bandwidth_gbps=float(raw["cache_bandwidth_gbps"]),
            bandwidth_scaling=tuple(sorted((int(t), float(f)) for t, f in dict(scaling).items())),
            cache_scaling=tuple(sorted((int(t), float(f)) for t, f in dict(cache_scaling).items())),
            split_min_ops=int(raw.get("split_min_ops", DEFAULT_SPLIT_MIN_OPS)),
            single_thread_ops=frozenset(str(k) for k in raw.get("single_thread_ops") or ()),
        )
    except (KeyError, TypeError, ValueError):
        return None


class Timed(Protocol):
    """What the fits below read of a suite measurement (``calibrate.Measurement``)."""

    @property
    def case(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def ms(self) -> float: ...
    @property
    def ops(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def op_count(self) -> int: ...
    @property
    def op_type(self) -> str: ...
    @property
    def threads(self) -> int: ...


def single_thread_kernels(measurements: Sequence[Timed], threads: int, invoke_us: float) -> frozenset[str]:
    """``OP_TYPE@dtype`` whose suite cases long enough to tell (SCALING_PROBE_US at ``threads``) all take at
    least NOT_SPLIT_RATIO of that time at more threads: kernels the thread pool does not split."""
    base = {(m.case, m.dtype): m for m in measurements if m.threads == threads}
    ratios: dict[str, list[float]] = {}
    for m in measurements:
        one = base.get((m.case, m.dtype))
        if m.threads <= threads or one is None or m.family in ("chain", "stream", "cache", "handoff"):
            continue
        t1 = one.ms * 1e3 - invoke_us
        if t1 >= SCALING_PROBE_US:
            ratios.setdefault(f"{m.op_type}@{m.dtype}", []).append((m.ms * 1e3 - invoke_us) / t1)
    # every long case of the kernel must fail to speed up: one slow block on a shared machine is not a kernel
    return frozenset(k for k, v in ratios.items() if min(v) >= NOT_SPLIT_RATIO)


def bandwidth_scaling(measurements: Sequence[Timed], threads: int, family: str = "stream") -> tuple[tuple[int, float], ...]:
    """(threads, time at ``threads`` / time at that many) of the ``family`` cases (bandwidth-bound: the
    inverse ratio of times is the ratio of bandwidths), geometric mean over cases, never below 1."""
    base = {(m.case, m.dtype): m.ms for m in measurements if m.threads == threads and m.family == family}
    ratios: dict[int, list[float]] = {}
    for m in measurements:
        if m.family == family and m.threads > threads and (m.case, m.dtype) in base:
            ratios.setdefault(m.threads, []).append(math.log(base[(m.case, m.dtype)] / m.ms))
    # never below 1, never above the thread count (a slow one-thread block would claim more)
    return tuple((t, round(min(float(t), max(1.0, math.exp(sum(v) / len(v)))), 4)) for t, v in sorted(ratios.items()))


def cache_bandwidth(measurements: Sequence[Timed], threads: int, invoke_us: float, overhead_us: float,
                    compute_us: Mapping[str, float]) -> float | None:
    """GB/s of the ``cache`` family cases (a GEMV whose weights live in the shared cache): weight bytes /
    (time - invoke - op overhead), median over the cases; None without such a case. ``compute_us`` is
    unused by the GEMV (kept for callers that pass it)."""
    rates = []
    for m in measurements:
        if m.family == "cache" and m.threads == threads:
            # a GEMV reads every weight once and multiplies as it reads: its time is the read time
            net = m.ms * 1e3 - invoke_us - overhead_us * m.op_count
            rates.append(m.bytes / max(net, 0.05) / 1e3)
    if not rates:
        return None
    rates.sort()
    return float(rates[len(rates) // 2])


def weight_seconds(weight_bytes: float, stream_share: float, terms: HostTerms, dram_gbps: float,
                   threads: int) -> float:
    """Seconds to read one op's ``weight_bytes`` when the model's weights exceed the private cache: the
    ``stream_share`` from DRAM at ``dram_gbps``, the rest from the shared cache, each scaled by its
    bandwidth factor at ``threads``."""
    cached = weight_bytes * (1.0 - stream_share) / (
        max(terms.cache_bandwidth_gbps, 1e-3) * 1e9 * terms.bandwidth_factor(threads, cache=True))
    streamed = weight_bytes * stream_share / (max(dram_gbps, 1e-3) * 1e9 * terms.bandwidth_factor(threads))
    return cached + streamed


# Rows of the GEMM an op multiplies each weight with (MACs / weights) below which it streams its weights as
# it computes (one pass, prefetched: read and multiply overlap); with more rows a weight panel is loaded
# once before the row tiles use it, and the load adds to the compute. 8 is about one GEMM row tile (MR)
# of XNNPACK's x86/Arm micro-kernels. U: not measured by the suite.
STREAMING_ROWS = 8


def streams_weights(macs: int, weight_bytes: int, dtype: str) -> bool:
    """True when an op reuses each weight fewer than STREAMING_ROWS times (a GEMV: fully connected at batch
    1, a conv on a 1x1 map): its weight reads overlap its arithmetic."""
    size = {"int8": 1, "fp16": 2}.get(dtype, 4)
    weights = weight_bytes / size
    return weights > 0 and macs / weights < STREAMING_ROWS


# Per-core cache when sysfs does not say (U: 512 KiB is a common L2 per core on recent x86 and Arm cores).
DEFAULT_PRIVATE_CACHE_BYTES = 512 * 2**10


def private_cache_bytes(cpu: int = 0) -> int:
    """Bytes of the largest data cache only ``cpu`` uses (its L2 on most parts), from sysfs;
    DEFAULT_PRIVATE_CACHE_BYTES when unknown."""
    from pathlib import Path

    best = 0
    for index in sorted(Path(f"/sys/devices/system/cpu/cpu{cpu}/cache").glob("index*")):
        try:
            text = (index / "size").read_text(encoding="ascii").strip()
            kind = (index / "type").read_text(encoding="ascii").strip()
            shared = (index / "shared_cpu_list").read_text(encoding="ascii").strip()
        except OSError:
            continue
        if kind == "Instruction" or not text or shared != str(cpu):
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
        best = max(best, int(text.rstrip("KMG")) * scale)
    return best or DEFAULT_PRIVATE_CACHE_BYTES


if TYPE_CHECKING:
    from edgeexport.catalog.model import ComputeUnit
    from edgeexport.simulate.graph import OpGraph


def fit_host_terms(measurements: Sequence[Timed], unit: ComputeUnit, threads: int, invoke_us: float,
                   cache: tuple[int, int], graphs: Mapping[str, OpGraph]) -> tuple[ComputeUnit, HostTerms]:
    """The host terms from the suite (see the module docstring), and ``unit`` with its DRAM bandwidth solved
    again under them: the stream case's time is the cached share of its weights at the shared-cache rate plus
    the streamed share at DRAM rate. ``graphs`` holds the ``stream``/``cache`` cases' graphs (unused: a GEMV's
    time is its read time); ``cache`` is ``calibrate.cache_bytes()``."""
    from dataclasses import replace

    from edgeexport.simulate.cost import streamed_share

    compute: dict[str, float] = {}  # GEMVs: reading is the whole time (see cache_bandwidth)
    overhead = float(unit.op_overhead_us)
    dram = float(unit.memory_bandwidth_gbps)
    measured_bw = cache_bandwidth(measurements, threads, invoke_us, overhead, compute)
    # no cache case: every weight byte of the stream case at one rate (cached ones as slow as DRAM)
    cache_bw = measured_bw if measured_bw is not None else _one_rate(measurements, threads, invoke_us, overhead,
                                                                     compute) or dram
    rates = []
    for m in measurements:
        if m.family == "stream" and m.threads == threads:
            share = streamed_share(m.bytes, cache[1])
            # a GEMV multiplies as it reads: its whole time is reading (no compute taken off)
            net_us = m.ms * 1e3 - invoke_us - overhead * m.op_count - m.bytes * (1.0 - share) / (cache_bw * 1e3)
            if share > 0:
                rates.append(m.bytes * share / max(net_us, 0.05) / 1e3)
    if rates and measured_bw is not None:
        rates.sort()
        dram = rates[len(rates) // 2]
    elif measured_bw is None:
        dram = cache_bw
    terms = HostTerms(private_cache_bytes=private_cache_bytes(), cache_bandwidth_gbps=round(cache_bw, 2),
                      bandwidth_scaling=bandwidth_scaling(measurements, threads, "stream"),
                      cache_scaling=bandwidth_scaling(measurements, threads, "cache"),
                      single_thread_ops=single_thread_kernels(measurements, threads, invoke_us))
    return replace(unit, memory_bandwidth_gbps=round(dram, 2)), terms


def _one_rate(measurements: Sequence[Timed], threads: int, invoke_us: float, overhead_us: float,
              compute_us: Mapping[str, float]) -> float | None:
    """GB/s of the stream cases with all their weight bytes counted at one rate (median), None without any."""
    rates = sorted(m.bytes / max(m.ms * 1e3 - invoke_us - overhead_us * m.op_count, 0.05)
                   / 1e3 for m in measurements if m.family == "stream" and m.threads == threads)
    return rates[len(rates) // 2] if rates else None


def handoff_us(measurements: Sequence[Timed], threads: int, serial_fraction: float) -> float | None:
    """Per-op thread hand-off (us) from the ``handoff`` chains of 1 and N split ops timed at ``threads`` and
    at more threads T: ``(t_T(N) - t_T(1)) - a (t_1(N) - t_1(1))``, over N - 1, with ``a = s + (1 - s) / T``
    the Amdahl factor of the split work; None without both chains at both counts (never below 0)."""
    found = []
    for dtype in sorted({m.dtype for m in measurements if m.family == "handoff"}):
        times = {(m.op_count, m.threads): m.ms * 1e3 for m in measurements if m.family == "handoff" and m.dtype == dtype}
        counts = sorted({n for n, _ in times})
        many = sorted({t for _, t in times if t > threads})
        if len(counts) < 2 or not many:
            continue
        lo, hi, t_many = counts[0], counts[-1], many[0]
        if not all(k in times for k in ((lo, threads), (hi, threads), (lo, t_many), (hi, t_many))):
            continue
        a = serial_fraction + (1.0 - serial_fraction) / t_many
        extra = (times[(hi, t_many)] - times[(lo, t_many)]) - a * (times[(hi, threads)] - times[(lo, threads)])
        found.append(extra / (hi - lo))
    # the mean over the dtypes' chains (the pool's hand-off does not depend on the kernel's precision)
    return max(sum(found) / len(found), 0.0) if found else None
