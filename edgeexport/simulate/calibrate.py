"""Fit this machine's device profile (``host``) from the micro-benchmark suite and write it as TOML.

Model fitted (the simulator's own roofline, see ``cost.py``), per single-op case i of family f in dtype d:

    t_i - invoke = max(ops_i / (P_d x e_f), bytes_i / BW) + overhead

1. ``overhead`` (per op) and ``invoke`` (per run, Python + interpreter entry, not part of the profile) from
   two chains of 1 and 16 tiny adds: overhead = (t16 - t1) / 15.
2. ``BW`` (DRAM) = weight bytes / time of the ``stream`` case, a 64 MB dense layer that cannot stay cached.
   The other cases are cache resident (``MemoryModel``: no DRAM traffic), so the compute term explains them.
3. ``e_{f,d}`` = geometric mean over the family's cases of ops / (P_d x time) (least squares in log space).
   P_fp32 is the theoretical peak (cores x clock x FLOP/cycle from /proc/cpuinfo), raised if an efficiency
   would exceed 1; P_int8 = P_fp32 x the int8/fp32 throughput ratio of the conv cases. The TOML keeps the
   fp32 efficiencies (the catalog format has one per family); the per-dtype ones go to the residuals file
   and ``estimate.apply_calibration`` puts them back when the profile is simulated.
The private cache size (sysfs) and the ratios measured / predicted over the suite are saved next to the TOML (``<name>.residuals.json``); their
10th-90th percentiles are the uncertainty band ``simulate`` reports for this profile.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeexport.catalog.model import ComputeUnit, DeviceProfile
from edgeexport.errors import OutputPathError
from edgeexport.simulate.cost import (
    DEFAULT_CACHE_BYTES,
    MemoryModel,
    cpu_speedup,
    op_time,
    streamed_share,
)
from edgeexport.simulate.estimate import residuals_path
from edgeexport.simulate.hostterms import HostTerms, fit_host_terms
from edgeexport.simulate.microbench import SUITE, Case, build
from edgeexport.simulate.tflite_reader import read_tflite
from edgeexport.targets.base import TFLITE

# Op types whose kernels differ from the rest of their family: they get their own ``OP_TYPE@dtype``
# efficiency (cost.efficiency looks it up first) instead of sharing the family's.
OWN_KERNELS = frozenset({"TRANSPOSE_CONV", "TILE", "RESIZE_BILINEAR", "TRANSPOSE", "BATCH_MATMUL", "SOFTMAX",
                         "GELU", "TANH", "LOGISTIC", "MUL", "MAX_POOL_2D", "AVERAGE_POOL_2D"})

# Cases with fewer operations than this are all per-op overhead: they check the overhead and thread-sync
# terms (their ratios are in the residuals) but would make an efficiency estimate pure noise.
MIN_FIT_OPS = 20_000

# suite families that measure the memory system, not an op family's efficiency
NOT_EFFICIENCY = ("chain", "stream", "cache", "handoff")

# families the suite does not measure borrow the efficiency of a close relative
BORROW = {"matmul": "conv", "attention": "conv", "recurrent": "fc", "norm": "elementwise", "resize": "pool",
          "gather": "concat", "reshape": "pad"}


@dataclass(frozen=True)
class Measurement:
    """One suite case measured: p50 time in ms over the timed runs, and its single op's work."""

    case: str
    family: str
    dtype: str
    ms: float
    ops: int
    bytes: int
    op_count: int
    op_type: str = ""
    threads: int = 1


@dataclass(frozen=True)
class CalibrationResult:
    """The fitted profile, where it was written, the measurements and the per-case ratio measured/predicted."""

    profile: DeviceProfile
    path: Path
    measurements: tuple[Measurement, ...]
    ratios: tuple[tuple[str, float], ...]
    invoke_us: float
    seconds: float


def cpu_facts() -> dict[str, object]:
    """Cores, clock (GHz), model name and FP32 FLOP/cycle/core of this CPU, from /proc/cpuinfo."""
    model, mhz, flags = platform.processor() or "unknown CPU", 0.0, set[str]()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model in ("", "unknown CPU", platform.processor()):
                model = value.strip()
            elif key == "cpu MHz" and not mhz:
                mhz = float(value)
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    # two 256-bit FMA pipes (AVX2/FMA; AVX-512 on many parts is double-pumped) = 32 FP32 FLOP/cycle
    flop_cycle = 32 if "fma" in flags else (16 if "avx" in flags else 8)
    return {"cores": os.cpu_count() or 1, "ghz": (mhz or 2000.0) / 1000.0, "model": model,
            "flop_cycle": flop_cycle, "vnni": "avx512_vnni" in flags or "avx_vnni" in flags}


def _time_ms(data: bytes, threads: int, runs: int, min_seconds: float) -> float:
    from edgeexport.simulate.bench import bench

    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as handle:
        handle.write(data)
        path = Path(handle.name)
    try:
        # the lowest p50 of three short blocks: on a shared machine a neighbour's burst inflates a block,
        # rarely all three
        return min(bench(path, threads=threads, runs=max(runs // 3, 5), warmup=3, min_seconds=min_seconds / 3).p50_ms
                   for _ in range(3))
    finally:
        path.unlink(missing_ok=True)


_BUILT: dict[tuple[str, str], bytes] = {}


def _quiet_build(case: Case, dtype: str) -> bytes:
    """Build a case once per process, with the converter's progress prints kept off stdout."""
    import contextlib
    import io

    key = (case.name, dtype)
    if key not in _BUILT:
        with contextlib.redirect_stdout(io.StringIO()):
            _BUILT[key] = build(case, dtype)
    return _BUILT[key]


def measure(threads: int = 1, runs: int = 30, min_seconds: float = 0.15,
            progress: Callable[[str], None] | None = None, *, scaling_threads: int = 1) -> list[Measurement]:
    """Build and time every suite case in fp32 and int8 with ``threads`` threads, and again with
    ``scaling_threads`` threads when that is more (the rows ``fit_thread_scaling`` reads)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    out: list[Measurement] = []
    counts = (threads,) if scaling_threads <= threads else (threads, scaling_threads)
    for case in SUITE:
        for dtype in ("fp32",) if case.family in ("stream", "cache") else ("fp32", "int8"):
            data = _quiet_build(case, dtype)
            graph = read_tflite(data)
            # the op with arithmetic, not a bigger RESHAPE view around it (UpSampling2D in fp32)
            main = max(graph.ops, key=lambda o: (o.ops > 0, o.ops + o.bytes_moved))
            # an op type split in several ops (UpSampling2D's two TILEs) is measured as their sum
            same = [o for o in graph.ops if o.op_type == main.op_type]
            work = sum(o.ops for o in same)
            moved = sum(o.read_bytes + o.write_bytes + o.weight_bytes for o in same)
            for count in counts:
                # DRAM bandwidth is what neighbours contend for most: more blocks, keep the best
                ms = min(_time_ms(data, count, runs, min_seconds) for _ in range(3 if case.family in ("stream", "cache") else 1))
                out.append(Measurement(case.name, case.family, dtype, ms, work, moved, len(graph.ops),
                                       main.op_type, count))
                if progress is not None:
                    progress(f"{case.name:<28} {dtype:<5} {count}T {ms * 1e3:9.1f} us")
    return out


def fit(measurements: list[Measurement], facts: dict[str, object], threads: int) -> tuple[ComputeUnit, float]:
    """Fit the CPU unit (see the module docstring); returns the unit and the per-invoke overhead in us.

    The unit's ``efficiency`` holds plain family keys (fp32) and ``family@dtype`` keys for every measured
    (family, dtype); the TOML keeps the plain keys and the residuals file the rest (see ``apply_calibration``).
    """
    cores = int(facts["cores"])  # type: ignore[call-overload]
    ghz = float(facts["ghz"])  # type: ignore[arg-type]
    per_core = ghz * int(facts["flop_cycle"])  # type: ignore[call-overload]
    scaling_rows = measurements
    measurements = [m for m in measurements if m.threads == threads]
    chains = {m.op_count: m.ms * 1e3 for m in measurements if m.family == "chain" and m.dtype == "fp32"}
    overhead_us = max((chains.get(16, 0.0) - chains.get(1, 0.0)) / 15.0, 0.02)
    invoke_us = max(chains.get(1, 0.0) - overhead_us, 0.0)
    serial, sync_us = fit_thread_scaling(scaling_rows, threads, invoke_us, overhead_us)
    from edgeexport.simulate.hostterms import handoff_us

    # the hand-off between back-to-back split ops, not the intercept of single-op runs (simulate.hostterms)
    measured_sync = handoff_us(scaling_rows, threads, serial)
    sync_us = sync_us if measured_sync is None else measured_sync
    cases = [m for m in measurements if m.family not in NOT_EFFICIENCY]

    def net_s(m: Measurement) -> float:
        return max(m.ms * 1e3 - invoke_us - overhead_us * m.op_count, 0.05) * 1e-6

    streams = [m for m in measurements if m.family == "stream"]
    if streams:
        # only the weights the cache cannot keep are streamed (cost.streamed_share)
        weight_cache = int(facts.get("weight_cache_bytes", 0))  # type: ignore[call-overload]
        bw = statistics.median(m.bytes * (streamed_share(m.bytes, weight_cache) if weight_cache else 1.0) / net_s(m)
                               for m in streams) / 1e9
    else:  # no DRAM case: the upper envelope of achieved bytes/s, so that no case is memory-bound
        bw = max(m.bytes / net_s(m) for m in cases) / 1e9
    # throughput the theoretical peak offers to `threads` threads (cost.thread_fraction)
    avail = per_core * cores * cpu_speedup(min(threads, cores), serial) / cpu_speedup(cores, serial)
    logs: dict[tuple[str, str], list[float]] = {}
    own: dict[tuple[str, str], list[float]] = {}
    for m in cases:
        if m.ops >= MIN_FIT_OPS:
            value = math.log(m.ops / (avail * 1e9 * net_s(m)))
            (own if m.op_type in OWN_KERNELS else logs).setdefault(
                (m.op_type if m.op_type in OWN_KERNELS else m.family, m.dtype), []).append(value)
            if m.op_type in OWN_KERNELS:
                own.setdefault((f"*{m.family}", m.dtype), []).append(value)
    for (key, dtype), values in own.items():
        if key.startswith("*") and (key[1:], dtype) not in logs:
            logs[(key[1:], dtype)] = values  # a family measured only through its own kernels
    eff = {key: math.exp(statistics.fmean(v)) for key, v in logs.items()}
    eff.update({key: math.exp(statistics.fmean(v)) for key, v in own.items() if not key[0].startswith("*")})
    # the fp32 peak stays theoretical unless an efficiency would exceed 1; the int8 peak is set so that conv
    # keeps one efficiency for both dtypes (conv dominates CNN time)
    scale = max(1.0, max((v for (f, d), v in eff.items() if d == "fp32"), default=1.0))
    int8_factor = eff.get(("conv", "int8"), 2.0 * eff.get(("conv", "fp32"), 0.5)) / eff.get(("conv", "fp32"), 0.5)
    peak_fp32 = per_core * cores * scale
    peak_int8 = peak_fp32 * int8_factor
    int8_scale = max(1.0, max((v / (scale * int8_factor) for (f, d), v in eff.items() if d == "int8"), default=1.0))
    peak_int8 *= int8_scale
    table: dict[str, float] = {}
    for (family, dtype), value in eff.items():
        divisor = scale if dtype == "fp32" else scale * int8_factor * int8_scale
        table[f"{family}@{dtype}"] = min(value / divisor, 1.0)
        if dtype == "fp32" and family not in OWN_KERNELS:
            table[family] = table[f"{family}@{dtype}"]
    for family, donor in BORROW.items():
        table.setdefault(family, table.get(donor, 0.5))
    compute = [table[f] for f in ("conv", "depthwise", "fc") if f in table]
    table["default"] = math.exp(statistics.fmean(math.log(v) for v in compute)) if compute else 0.5
    unit = ComputeUnit(
        name="cpu", kind="cpu", cores=cores, clock_ghz=round(ghz, 3),
        peak_gops={"fp32": round(peak_fp32, 2), "fp16": round(peak_fp32, 2), "int8": round(peak_int8, 2)},
        memory_bandwidth_gbps=round(bw, 2), op_overhead_us=round(overhead_us, 3),
        dtypes=frozenset({"fp32", "fp16", "int8"}), op_families=frozenset(),
        efficiency={k: round(max(v, 1e-4), 5) for k, v in sorted(table.items())}, runtime="xnnpack",
        serial_fraction=round(serial, 4), thread_sync_us=round(sync_us, 3),
    )
    return unit, invoke_us


def fit_thread_scaling(measurements: list[Measurement], threads: int, invoke_us: float,
                       overhead_us: float) -> tuple[float, float]:
    """Amdahl serial fraction and per-op thread-pool cost (us) from cases measured at ``threads`` and at
    more threads T: ``t_T - invoke - n x overhead = n x sync + a x (t_1 - invoke - n x overhead)``
    with ``a = s + (1 - s) / T``, solved by least squares on relative error (sync >= 0, 1/T <= a <= 1). Without multi-thread rows: (CPU_SERIAL_FRACTION, 0)."""
    from edgeexport.simulate.cost import CPU_SERIAL_FRACTION
    from edgeexport.simulate.hostterms import DEFAULT_SPLIT_MIN_OPS, single_thread_kernels

    # only ops the pool splits tell how splitting scales (simulate.hostterms): not the kernels that run on
    # one thread, not the ops too small to split, not the bandwidth cases
    alone = single_thread_kernels(measurements, threads, invoke_us)
    base = {(m.case, m.dtype): m for m in measurements if m.threads == threads and m.family not in NOT_EFFICIENCY
            and m.ops >= DEFAULT_SPLIT_MIN_OPS and f"{m.op_type}@{m.dtype}" not in alone}
    pairs = [(base[(m.case, m.dtype)], m) for m in measurements if m.threads > threads and (m.case, m.dtype) in base]
    if len(pairs) < 4:
        return CPU_SERIAL_FRACTION, 0.0
    t_many = pairs[0][1].threads
    rows, rhs = [], []
    for one, many in pairs:
        x = max(one.ms * 1e3 - invoke_us - overhead_us * one.op_count, 0.0)
        y = max(many.ms * 1e3 - invoke_us - overhead_us * many.op_count, 0.0)
        weight = 1.0 / max(many.ms * 1e3, 1e-3)
        rows.append([one.op_count * weight, x * weight])
        rhs.append(y * weight)
    (sync, a), *_ = np.linalg.lstsq(np.asarray(rows), np.asarray(rhs), rcond=None)
    a = min(max(float(a), 1.0 / t_many), 1.0)
    if sync < 0:  # refit the slope alone with the bound active
        sync = 0.0
        cols = np.asarray(rows)[:, 1:]
        (a,), *_ = np.linalg.lstsq(cols, np.asarray(rhs), rcond=None)
        a = min(max(float(a), 1.0 / t_many), 1.0)
    serial = (a - 1.0 / t_many) / (1.0 - 1.0 / t_many)
    return float(serial), float(max(sync, 0.0))


def cache_bytes() -> tuple[int, int]:
    """Bytes of cache for activations and for a model's weights on CPU 0, from sysfs (DEFAULT_CACHE_BYTES
    when unknown).

    Activations (just written by the previous op) stay in the largest cache. Weights are judged against the
    private cache or a quarter of a shared one, whichever is larger, because neighbours and the activations
    share it: measured here, an MLP with 2.1 MB of fp32 weights ran at cache speed while ResNet50 int8 (24 MB
    of weights, under the shared 32 MB L3) ran at the DRAM-streaming rate."""
    largest = private = 0
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            text = (index / "size").read_text(encoding="ascii").strip()
            kind = (index / "type").read_text(encoding="ascii").strip()
            shared = (index / "shared_cpu_list").read_text(encoding="ascii").strip()
        except OSError:
            continue
        if kind == "Instruction" or not text:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
        size = int(text.rstrip("KMG")) * scale
        largest = max(largest, size)
        if shared in ("0", ""):
            private = max(private, size)
    largest = largest or DEFAULT_CACHE_BYTES
    return largest, max(private, largest // 4)


def predicted_ms(data: bytes, unit: ComputeUnit, threads: int, cache: tuple[int, int],
                 host: HostTerms | None = None) -> float:
    graph = read_tflite(data)
    limit = host.private_cache_bytes if host is not None else cache[1]
    memory = MemoryModel(cache_bytes=cache[0], weights_resident=graph.weight_bytes <= limit,
                         weight_stream_share=streamed_share(graph.weight_bytes, cache[1]), host=host)
    return sum(op_time(op, unit, threads=threads, memory=memory).seconds for op in graph.ops) * 1e3


def calibrate(out: Path | None = None, *, threads: int = 1, runs: int = 30, min_seconds: float = 0.15,
              progress: Callable[[str], None] | None = None,
              measured: list[Measurement] | None = None) -> CalibrationResult:
    """Measure the suite with ``threads`` LiteRT threads, fit the ``host`` CPU unit, write the TOML to ``out``
    (default: ``<user device dir>/host.toml``, which replaces the shipped placeholder) and the residuals next
    to it. Takes about a minute here. ``measured``: fit these suite measurements (a residuals file's
    ``measurements``) instead of timing the suite. Raises OutputPathError when ``out`` cannot be written."""
    from edgeexport.catalog.devices import user_device_dir

    started = time.perf_counter()
    out = Path(out) if out is not None else user_device_dir() / "host.toml"
    facts = cpu_facts()
    from edgeexport.simulate.bench import default_threads

    measurements = measured if measured is not None else measure(threads, runs, min_seconds, progress,
                                                                  scaling_threads=default_threads())
    cache = cache_bytes()
    facts["weight_cache_bytes"] = cache[1]
    unit, invoke_us = fit(measurements, facts, threads)
    from edgeexport.simulate.fit import refine_suite_fit  # the fitter `calibrate --measurements` uses too

    cases = [(read_tflite(_quiet_build(next(c for c in SUITE if c.name == m.case), m.dtype)), m.ms, f"{m.case}/{m.dtype}")
             for m in measurements if m.family not in NOT_EFFICIENCY and m.threads == threads]
    unit = refine_suite_fit(unit, cases, threads, cache, invoke_us)
    graphs = {m.case: read_tflite(_quiet_build(next(c for c in SUITE if c.name == m.case), m.dtype))
              for m in measurements if m.family in ("stream", "cache")}
    unit, host = fit_host_terms(measurements, unit, threads, invoke_us, cache, graphs)
    ratios: list[tuple[str, float]] = []
    for m in measurements:
        if m.family in NOT_EFFICIENCY:
            continue
        case = next(c for c in SUITE if c.name == m.case)
        pred = predicted_ms(_quiet_build(case, m.dtype), unit, m.threads, cache, host) + invoke_us * 1e-3
        ratios.append((f"{m.case}/{m.dtype}" + (f"/{m.threads}T" if m.threads != threads else ""), m.ms / pred))
    name = out.stem if out.stem.replace("-", "").replace(".", "").isalnum() and out.stem.islower() else "host"
    text = profile_toml(name, unit, facts, threads, len(measurements), covered=covered_pairs(measurements))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        values = sorted(r for _, r in ratios)
        residuals_path(out).write_text(json.dumps({
            "n": len(values), "ratio_p10": float(np.percentile(values, 10)), "ratio_p50": float(np.percentile(values, 50)),
            "ratio_p90": float(np.percentile(values, 90)), "invoke_overhead_us": invoke_us, "threads": threads,
            "ratios": dict(ratios), "note": "measured / predicted per single-op case of the calibration suite",
            "efficiency_by_dtype": {k: v for k, v in unit.efficiency.items() if "@" in k},
            "cache_bytes": cache[0], "weight_cache_bytes": cache[1], "host_terms": host.to_json(),
            "measurements": [asdict(m) for m in measurements],
        }, indent=2), encoding="utf-8")
    except OSError as err:
        raise OutputPathError(f"cannot write the calibrated profile to {out}: {err.strerror or err}") from err
    from edgeexport.catalog.devices import parse_device

    profile = parse_device(out)
    return CalibrationResult(profile, out, tuple(measurements), tuple(ratios), invoke_us, time.perf_counter() - started)


def covered_pairs(measurements: list[Measurement]) -> list[str]:
    """The ``family@dtype`` pairs the suite measured (the profile's evidence), sorted."""
    return sorted({f"{m.family}@{m.dtype}" for m in measurements if m.family not in NOT_EFFICIENCY})


def _mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def profile_toml(name: str, unit: ComputeUnit, facts: dict[str, object], threads: int, cases: int,
                 covered: list[str] | None = None) -> str:
    """The ``host`` profile in the catalog's TOML format, every number with an ``M:``/``D:`` source;
    ``covered`` (``family@dtype`` pairs) becomes its ``[evidence]`` table."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    measured = f"M: edgeexport calibrate, {cases} LiteRT micro-benchmarks, {threads} thread(s), {stamp}"
    eff = ", ".join(f"{k} = {v}" for k, v in unit.efficiency.items() if "@" not in k)
    peak = ", ".join(f"{k} = {v}" for k, v in sorted(unit.peak_gops.items()))
    return f'''# Written by `edgeexport calibrate` on {stamp}; re-run it to refresh. Residuals: {name}.residuals.json
name = "{name}"
display_name = {json.dumps(f"This machine ({facts['model']}, calibrated)")}
class = "host"
os = "linux"
os_version = {json.dumps(platform.release())}
targets = {json.dumps([TFLITE])}
litert_delegates = ["xnnpack"]
ram = {_mem_available()}

[sources]
ram = "M: MemAvailable in /proc/meminfo at calibration time"

[units.cpu]
kind = "cpu"
detail = {json.dumps(f"{facts['model']}, {unit.cores} cores; calibrated with {threads} LiteRT thread(s)")}
cores = {unit.cores}
clock_ghz = {unit.clock_ghz}
peak_gops = {{ {peak} }}
memory_bandwidth_gbps = {unit.memory_bandwidth_gbps}
op_overhead_us = {unit.op_overhead_us}
dtypes = ["fp16", "fp32", "int8"]
op_families = "all"
efficiency = {{ {eff} }}
runtime = "xnnpack"
serial_fraction = {unit.serial_fraction if unit.serial_fraction is not None else 0.12}
thread_sync_us = {unit.thread_sync_us}

[units.cpu.sources]
cores = "M: os.cpu_count()"
clock_ghz = "M: cpu MHz in /proc/cpuinfo"
peak_gops.fp32 = "D: cores x clock x {facts["flop_cycle"]} FP32 FLOP/cycle (from the CPU flags), raised if a fitted efficiency exceeded 1"
peak_gops.fp16 = "D: same as fp32 (XNNPACK on x86 computes fp16 models in fp32)"
peak_gops.int8 = "{measured}: fp32 peak x the int8/fp32 throughput ratio of the conv cases"
memory_bandwidth_gbps = "{measured}: DRAM streaming, the weight bytes the caches cannot keep / their share of the time of a 64 MB fp32 dense layer"
op_overhead_us = "{measured}: (chain of 16 adds - chain of 1) / 15"
efficiency = "{measured}: geometric mean of achieved/peak per family (fp32); per-dtype values in {name}.residuals.json"
serial_fraction = "{measured}: least squares over the suite timed at 1 and at all cores (Amdahl)"
thread_sync_us = "{measured}: per-op cost of the thread pool when more than one thread runs, from chains of 1 and 16 back-to-back 1x1 convs"
''' + (_evidence_toml(covered, measured) if covered else "")


def _evidence_toml(covered: list[str], measured: str) -> str:
    return f"""
[evidence]
covered = {json.dumps(covered)}
basis = {json.dumps(measured)}
"""
