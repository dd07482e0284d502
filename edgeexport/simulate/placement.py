"""Which unit runs which op, per runtime path, and what crossing between units costs.

Runtime paths:
  LiteRT (.tflite): ``cpu`` (XNNPACK on the CPU, or TFLite Micro on an MCU), ``gpu`` (GPU delegate: float ops
  in fp16, int8 models dequantized to fp16, unsupported families fall back to the CPU), ``npu`` (NNAPI/QNN/
  Core ML delegate on the NPU/DSP/TPU/ANE: int8 ops, or fp16 when the unit lists fp16).
  Core ML (.mlpackage): ``compute_units`` ``all`` (ANE, then GPU, then CPU), ``cpu_and_gpu``, ``cpu_only``,
  ``cpu_and_ne``; the GPU and ANE compute in fp16.

An Edge TPU runs only the prefix of the graph up to the first op it lacks (the rest falls back to the CPU,
``PREFIX_ONLY``); a GPU delegate links an element-wise op or activation into the kernel that produced its input
(``FUSING``: no launch, no memory trip). Each contiguous run of ops on one unit is a partition. Entering or leaving an accelerator partition costs a
copy of the crossing tensors at the slower unit's bandwidth plus a synchronisation: the unit's fitted
``partition_us`` when it has one, else ``SYNC_US[kind]``. Every unit that runs any op adds its fixed
``invoke_us`` once per inference (a compiled accelerator's graph launch; fitted, see ``simulate/fit.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeexport.catalog.model import ComputeUnit, DeviceProfile
from edgeexport.errors import ProfileError
from edgeexport.simulate.cost import MemoryModel, OpTime, op_time, unit_dtype
from edgeexport.simulate.graph import OpGraph
from edgeexport.targets.base import COREML, target_of_runtime_path

# Per-crossing synchronisation in microseconds (buffer hand-over, fence, cache maintenance), on top of the
# copy of the crossing tensors. The delegates' fixed floors (DEVICES.md section 4.3: 1.6 ms for the smallest
# MobileNet on the Pixel 3 GPU, 2-3 ms on NNAPI) are carried by the profiles' per-op overheads, so this only
# adds the hand-over itself. U: an estimate, not measured here.
SYNC_US: dict[str, float] = {"gpu": 50.0, "npu": 80.0, "dsp": 80.0, "tpu": 80.0, "ane": 50.0, "cpu": 0.0, "mcu": 0.0}

ACCELERATORS = ("gpu", "npu", "dsp", "tpu", "ane")
# units whose compiler maps a graph only up to the first op it cannot run; every op after it runs on the CPU
# (S: Coral's Edge TPU compiler, coral.ai/docs/edgetpu/models-intro "the compiler ... first unsupported op").
PREFIX_ONLY = frozenset({"tpu"})
# ... except a TPU whose runtime is NNAPI (Pixel 7/8's Tensor TPU): NNAPI partitions a graph like for any of its
# accelerators, so a float layer in the middle splits the graph into two TPU partitions instead of ending it.
PARTITIONING_RUNTIMES = frozenset({"nnapi"})
# ``place(partitioner=...)``: "cost" moves an accelerator partition back to the CPU when its crossings cost more
# than it saves (the fastest deployment of the artifact; what ``simulate`` and ``--preset auto`` rank);
# "delegate" keeps every op the unit supports on it, as LiteRT's delegates claim ops by support, not by cost
# (their only knobs are max_delegated_partitions / min_nodes_per_partition, S: tensorflow/tensorflow
# tensorflow/lite/tools/delegates/README.md): the latency when the app runs the artifact with that delegate.
PARTITIONERS = ("cost", "delegate")
# units that link element-wise ops and activations into the preceding kernel, and the families they link
FUSING = frozenset({"gpu"})
LINKABLE = frozenset({"elementwise", "activation"})
# names LiteRT's GPU delegate goes by in the profiles' ``litert_delegates`` (Android OpenCL/GL, iOS Metal)
GPU_DELEGATES = frozenset({"gpu", "metal", "opencl", "opengl", "webgpu"})
# LiteRT's delegate that reaches the ANE is named like the Core ML target (a delegate name, not a target)
ANE_DELEGATES = frozenset({COREML})
COREML_COMPUTE_UNITS = ("all", "cpu_and_gpu", "cpu_only", "cpu_and_ne")


@dataclass(frozen=True)
class Partition:
    """A contiguous run of ops on one unit: ops ``first``..``last`` (inclusive), its time in ms including the
    crossing cost into it (``boundary_ms``)."""

    unit: str
    kind: str
    first: int
    last: int
    op_count: int
    ms: float
    boundary_ms: float


@dataclass(frozen=True)
class Placement:
    """The unit and timing of every op of a graph on one runtime path."""

    path: str
    units: tuple[str, ...]
    times: tuple[OpTime, ...]
    partitions: tuple[Partition, ...]
    boundary_ms: float
    invoke_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return sum(t.seconds for t in self.times) * 1e3 + self.boundary_ms + self.invoke_ms


def _cpu(device: DeviceProfile) -> ComputeUnit:
    unit = device.unit("cpu") or device.unit("mcu")
    if unit is None:
        unit = device.units[0] if device.units else None
    if unit is None:
        raise ProfileError(f"device profile {device.name} has no compute unit")
    return unit


def available_paths(graph: OpGraph, device: DeviceProfile, compute_units: str = "all") -> list[str]:
    """Runtime paths this artifact can take on ``device`` (see the module docstring)."""
    if graph.format == "mlpackage":
        if compute_units not in COREML_COMPUTE_UNITS:
            raise ProfileError(f"unknown Core ML compute units {compute_units!r}", hint=f"one of {', '.join(COREML_COMPUTE_UNITS)}")
        return [f"coreml-{compute_units}"]
    paths = ["cpu"]
    delegates = {d.lower() for d in device.litert_delegates}
    units = [u for u in device.units if usable(u, graph.target)]
    if any(u.kind == "gpu" for u in units) and (not delegates or delegates & GPU_DELEGATES):
        paths.append("gpu")
    if any(u.kind in ("npu", "dsp", "tpu") for u in units) or (
        any(u.kind == "ane" for u in units) and (not delegates or delegates & ANE_DELEGATES)
    ):
        paths.append("npu")
    return paths


def _preference(path: str, device: DeviceProfile) -> list[ComputeUnit]:
    cpu = _cpu(device)
    order: list[str]
    if path == "cpu":
        return [cpu]
    if path == "gpu":
        order = ["gpu"]
    elif path == "npu":
        order = ["npu", "dsp", "tpu", "ane"]
    elif path == "coreml-all":
        order = ["ane", "gpu"]
    elif path == "coreml-cpu_and_gpu":
        order = ["gpu"]
    elif path == "coreml-cpu_and_ne":
        order = ["ane"]
    else:
        order = []
    target = target_of_runtime_path(path)
    units = [u for kind in order for u in device.units if u.kind == kind and usable(u, target)]
    return units + [cpu]


def usable(unit: ComputeUnit, target: str) -> bool:
    """True when the runtime of ``target`` (``tflite``/``coreml``) can use ``unit`` (all units when the
    profile does not restrict it)."""
    targets: frozenset[str] = getattr(unit, "targets", frozenset())
    return not targets or target in targets


def _supports(unit: ComputeUnit, family: str, dtype: str, path: str) -> str | None:
    """The precision ``unit`` runs the op in on ``path``, or None when the op falls back."""
    if unit.op_families and family not in unit.op_families:
        return None
    if unit.kind in ("cpu", "mcu"):
        return unit_dtype(unit, dtype) or "fp32"
    if unit.kind == "gpu" or unit.kind == "ane":
        # LiteRT's GPU delegate and Core ML's GPU/ANE compute float in fp16, and dequantize int8 models
        return "fp16" if "fp16" in unit.dtypes else unit_dtype(unit, "fp32")
    # NPU/DSP/TPU: quantized ops natively; float only when the unit lists fp16 (e.g. Hexagon HTP)
    if dtype in ("int8", "int16") and dtype in unit.dtypes:
        return dtype
    if dtype in ("fp32", "fp16") and "fp16" in unit.dtypes:
        return "fp16"
    return None


def place(graph: OpGraph, device: DeviceProfile, path: str, *, threads: int | None = None,
          memory: MemoryModel | None = None, partitioner: str = "cost") -> Placement:
    """Assign each op of ``graph`` to a unit on ``path`` and time it (see the module docstring and PARTITIONERS)."""
    if partitioner not in PARTITIONERS:
        raise ValueError(f"unknown partitioner {partitioner!r}: one of {', '.join(PARTITIONERS)}")
    prefs = _preference(path, device)
    cpu = prefs[-1]
    assigned: list[ComputeUnit] = []
    times: list[OpTime] = []
    prefix_only = prefs[0].kind in PREFIX_ONLY and prefs[0].runtime not in PARTITIONING_RUNTIMES
    started = False
    for op in graph.ops:
        for unit in prefs:
            dtype = _supports(unit, op.family, op.dtype, path)
            if dtype is not None:
                break
        else:
            unit, dtype = cpu, unit_dtype(cpu, op.dtype) or "fp32"
        if prefix_only and started and unit.name == cpu.name:
            prefs = [cpu]  # the Edge TPU compiler maps ops only up to the first one it cannot run
        started = started or unit.kind in ACCELERATORS
        assigned.append(unit)
        times.append(op_time(op, unit, threads=threads, dtype=dtype, memory=memory))
    if not graph.ops:
        return Placement(path, (), (), (), 0.0)
    times = _fuse_linked(graph, assigned, times)
    if partitioner == "cost":
        assigned, times = _merge_small_islands(graph, assigned, times, cpu, threads, memory)
    partitions, boundary = _partitions(graph, assigned, times)
    used = {u.name: u for u in assigned}
    invoke_ms = sum(float(u.invoke_us) for u in used.values()) * 1e-3
    return Placement(path, tuple(u.name for u in assigned), tuple(times), tuple(partitions), boundary, invoke_ms)


def _fuse_linked(graph: OpGraph, assigned: list[ComputeUnit], times: list[OpTime]) -> list[OpTime]:
    """GPU delegates link an element-wise op or activation into the kernel that produced its input (LiteRT's
    GPU delegate merges such "linkable" ops): it costs its arithmetic only, no launch and no trip to memory."""
    out = list(times)
    for i in range(1, len(graph.ops)):
        op, unit = graph.ops[i], assigned[i]
        if unit.kind not in FUSING or op.family not in LINKABLE or assigned[i - 1].name != unit.name:
            continue
        if not set(op.inputs) & set(graph.ops[i - 1].outputs):
            continue
        t = out[i]
        out[i] = OpTime(t.compute_s, t.compute_s, 0.0, 0.0, t.dtype, "compute")
    return out


def _crossing_ms(bytes_: int, a: ComputeUnit, b: ComputeUnit) -> float:
    accel = a if a.kind in ACCELERATORS else b
    bandwidth = min(float(a.memory_bandwidth_gbps), float(b.memory_bandwidth_gbps)) * 1e9
    sync_us = accel.partition_us if accel.partition_us is not None else SYNC_US.get(accel.kind, 0.0)
    return (bytes_ / max(bandwidth, 1.0)) * 1e3 + float(sync_us) * 1e-3


def _partitions(graph: OpGraph, assigned: list[ComputeUnit], times: list[OpTime]) -> tuple[list[Partition], float]:
    parts: list[Partition] = []
    total_boundary = 0.0
    start = 0
    for i in range(1, len(assigned) + 1):
        if i < len(assigned) and assigned[i].name == assigned[start].name:
            continue
        unit = assigned[start]
        boundary = 0.0
        if unit.kind in ACCELERATORS:
            first_in = {t for op in graph.ops[start:i] for t in op.inputs if not graph.tensors[t].constant}
            produced = {t for op in graph.ops[start:i] for t in op.outputs}
            consumed_later = {t for op in graph.ops[i:] for t in op.inputs} | set(graph.outputs)
            crossing_in = sum(graph.tensors[t].nbytes for t in first_in - produced)
            crossing_out = sum(graph.tensors[t].nbytes for t in produced & consumed_later)
            host = next((u for u in assigned if u.kind not in ACCELERATORS), unit)
            boundary = _crossing_ms(crossing_in, host, unit) + _crossing_ms(crossing_out, unit, host)
        ms = sum(t.seconds for t in times[start:i]) * 1e3 + boundary
        parts.append(Partition(unit.name, unit.kind, start, i - 1, i - start, ms, boundary))
        total_boundary += boundary
        start = i
    return parts, total_boundary


def _merge_small_islands(
    graph: OpGraph, assigned: list[ComputeUnit], times: list[OpTime], cpu: ComputeUnit, threads: int | None,
    memory: MemoryModel | None,
) -> tuple[list[ComputeUnit], list[OpTime]]:
    """Move an accelerator partition back to the CPU when its crossings cost more than it saves, as the
    delegates' partitioners do (they drop partitions below a minimum size)."""
    parts, _ = _partitions(graph, assigned, times)
    assigned = list(assigned)
    times = list(times)
    for part in parts:
        if part.kind not in ACCELERATORS or part.op_count == len(graph.ops):
            continue
        on_cpu = [op_time(graph.ops[k], cpu, threads=threads, memory=memory) for k in range(part.first, part.last + 1)]
        if sum(t.seconds for t in on_cpu) * 1e3 <= part.ms:
            for offset, k in enumerate(range(part.first, part.last + 1)):
                assigned[k] = cpu
                times[k] = on_cpu[offset]
    return assigned, times
