"""Real latency and memory of a ``.tflite`` on this machine with the LiteRT interpreter."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import BadInputError, ModelFormatError, UnsupportedError


@dataclass(frozen=True)
class BenchResult:
    """Measured latency of ``runs`` timed invocations after ``warmup`` untimed ones, in milliseconds.

    ``peak_memory_bytes`` is the growth of the process's peak resident set (VmHWM, reset before loading)
    over its resident set before loading: interpreter, arena, packed weights. ``load_ms`` covers creating
    the interpreter and allocating tensors.
    """

    artifact: str
    threads: int | None
    runs: int
    warmup: int
    p50_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    load_ms: float
    peak_memory_bytes: int
    samples_ms: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("samples_ms")
        return data


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def random_inputs(runner: Any, seed: int = 0) -> list[NDArray[Any]]:
    """Inputs in the model's own dtypes and static shapes (dynamic dims set to 1), seeded."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in runner.inputs:
        shape = tuple(1 if d is None else d for d in spec.shape)
        dtype = np.dtype(spec.dtype)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            low, high = max(info.min, -128), min(info.max, 127)
            arrays.append(rng.integers(low, high + 1, size=shape).astype(dtype))
        elif dtype == np.bool_:
            arrays.append(rng.integers(0, 2, size=shape).astype(bool))
        else:
            arrays.append(rng.random(shape, dtype=np.float32).astype(dtype))
    return arrays


# Most threads a default run uses: LiteRT's benchmark_model convention, and what ``simulate`` assumes
# for a CPU unit (cost.effective_threads).
MAX_DEFAULT_THREADS = 4


def default_threads() -> int:
    """Threads ``bench`` uses when none are asked for: this machine's cores, at most 4, the same count
    ``simulate --device host`` assumes (its calibrated profile records ``os.cpu_count()`` cores)."""
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_THREADS))


def bench(path: Path, threads: int | None = None, runs: int = 50, *, warmup: int | None = None,
          min_seconds: float = 0.0) -> BenchResult:
    """Time ``runs`` invocations of the ``.tflite`` at ``path`` with ``threads`` LiteRT threads (default
    ``default_threads()``, recorded in the result).

    ``warmup`` untimed runs first (default: ``max(3, runs // 10)``). ``min_seconds`` keeps timing past
    ``runs`` until that much wall time was spent (steadier medians on a noisy machine). Raises
    ModelFormatError for a missing or corrupt file, BadInputError for ``runs < 1``.
    """
    from edgeexport.runtimes.tflite import TfliteRunner

    path = Path(path)
    if runs < 1:
        raise BadInputError(f"--runs must be at least 1, got {runs}")
    if path.is_dir() and path.suffix.lower() == ".mlpackage":
        raise UnsupportedError(f"bench runs TFLite artifacts with LiteRT; {path.name} is a Core ML package, and "
                               "timing Core ML needs macOS (Core ML does not run on this platform)",
                               hint="bench the .tflite artifact, or use `edgeexport simulate` for a Core ML estimate")
    if not path.exists():
        raise ModelFormatError(f"artifact not found: {path}", hint="bench takes a .tflite file")
    if not path.is_file():
        raise ModelFormatError(f"{path} is a directory, not a .tflite file", hint="bench takes a .tflite file")
    threads = default_threads() if threads is None else threads
    warm = max(3, runs // 10) if warmup is None else max(0, warmup)
    rss_before = _status_kib("VmRSS") or 0
    can_reset = _reset_peak_rss()
    start = time.perf_counter()
    runner = TfliteRunner(path, threads=threads)
    load_ms = (time.perf_counter() - start) * 1e3
    runner.set_inputs(random_inputs(runner))
    for _ in range(warm):
        runner.invoke()
    samples: list[float] = []
    began = time.perf_counter()
    while len(samples) < runs or (time.perf_counter() - began) < min_seconds:
        t0 = time.perf_counter()
        runner.invoke()
        samples.append((time.perf_counter() - t0) * 1e3)
        if len(samples) >= 100 * runs:
            break
    peak_kib = (_status_kib("VmHWM") if can_reset else _status_kib("VmRSS")) or rss_before
    arr = np.asarray(samples)
    return BenchResult(
        artifact=str(path),
        threads=threads,
        runs=len(samples),
        warmup=warm,
        p50_ms=float(np.percentile(arr, 50)),
        p90_ms=float(np.percentile(arr, 90)),
        min_ms=float(arr.min()),
        mean_ms=float(arr.mean()),
        load_ms=load_ms,
        peak_memory_bytes=max(0, (peak_kib - rss_before) * 1024),
        samples_ms=tuple(float(s) for s in samples),
    )
