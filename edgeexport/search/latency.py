"""Where the precision search places its candidates on the device, and what each one costs there (issue 13).

A TFLite preset that computes in a dtype the device's NPU/DSP/TPU runs natively (int8 on a Pixel 8's TPU, a
Galaxy S24's Hexagon HTP) is quantized to run on that unit, so the search places every candidate on the ``npu``
path the way LiteRT's delegate partitions it (``placement.PARTITIONERS`` "delegate": every op the unit supports
stays on it): a layer kept in float that the unit cannot run splits the graph into partitions, and each crossing
costs a copy of the tensors plus a synchronisation. Elsewhere (a Raspberry Pi 5, an int8 preset on a device
whose accelerators run only float, Core ML, which picks its compute units itself) each candidate gets the
fastest path ``simulate`` would report; so does ``--preset auto``, whose choice of precision ranked the fastest
placements (``simulate/preset_choice.py``), so the two stay consistent. Each candidate also records the fastest path's latency, so the report
says when the CPU would beat the accelerator on a graph this small.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeexport.catalog.model import DeviceProfile, Preset
from edgeexport.targets.base import target_info

if TYPE_CHECKING:
    from edgeexport.simulate.graph import OpGraph
    from edgeexport.simulate.placement import Partition

# TFLite modes and the dtype their quantized ops compute in (the unit must list it to take the npu path)
_COMPUTE_DTYPE = {"int8": "int8", "int8-io": "int8", "int16x8": "int16"}
_NPU_KINDS = ("npu", "dsp", "tpu")


@dataclass(frozen=True)
class Deployment:
    """The runtime path candidates are placed on (``"auto"``: the fastest of each), the partitioner
    (``placement.PARTITIONERS``) and why, in one sentence for the report."""

    path: str
    partitioner: str
    why: str


@dataclass(frozen=True)
class Placed:
    """One candidate on the device: ``p50_ms`` on the deployment path (ms), the path, how many partitions run
    on an accelerator (``accelerator_partitions``) and on the CPU, what the float ops run on (``"fp32 on
    cpu"``, ``"fp16 on npu"``; empty when no op is float) and the fastest path's latency (``fastest_ms``)."""

    p50_ms: float
    path: str
    accelerator_partitions: int
    cpu_partitions: int
    float_on: str
    fastest_path: str
    fastest_ms: float


def deployment(device: DeviceProfile | None, target: str, preset: Preset, *, auto: bool = False) -> Deployment:
    """Where ``preset``'s candidates run on ``device`` (see the module docstring). ``auto``: the preset was
    chosen by ``--preset auto``, which ranks precisions by their fastest placement (simulate/preset_choice.py),
    so its candidates are ranked the same way."""
    if device is None:
        return Deployment("auto", "cost", "no --device: candidates are not simulated")
    if auto:
        return Deployment("auto", "cost", "--preset auto chose by the fastest placement (as simulate does): each "
                          "candidate on its fastest placement")
    if not target_info(target).has_delegates:
        return Deployment("auto", "cost", f"{target} picks its compute units itself: each candidate on the "
                          "fastest placement")
    from edgeexport.catalog.policy import usable_units

    dtype = _COMPUTE_DTYPE.get(preset.quantization.tflite_mode or "")
    units = [u for u in usable_units(device, target) if u.kind in _NPU_KINDS and dtype and dtype in u.dtypes]
    if units:
        unit = units[0]
        return Deployment("npu", "delegate", f"{preset.name} computes in {dtype}, which {device.name}'s "
                          f"{unit.kind.upper()} ({unit.runtime or unit.name}) runs: candidates are placed as that "
                          "delegate partitions them (a float layer it cannot run splits the graph; each crossing "
                          "costs a copy)")
    return Deployment("auto", "cost", f"{device.name} has no NPU/DSP/TPU that runs {preset.name}: each candidate on "
                      "the fastest placement")


def place_candidate(artifact: Path, device: DeviceProfile, where: Deployment) -> Placed:
    """Simulate ``artifact`` on ``device`` as ``where`` says, and on its fastest path."""
    from edgeexport.simulate import simulate
    from edgeexport.simulate.graph import read_graph

    graph = read_graph(artifact)
    fastest = simulate(artifact, device, graph=graph)
    estimate = fastest if where.path == "auto" else simulate(artifact, device, graph=graph, delegate=where.path,
                                                             partitioner=where.partitioner)
    parts = estimate.partitions
    accelerated = sum(1 for p in parts if p.kind not in ("cpu", "mcu"))
    float_on = _float_units(graph, estimate.partitions, device)
    return Placed(float(estimate.p50_ms), estimate.path, accelerated, len(parts) - accelerated, float_on,
                  fastest.path, float(fastest.p50_ms))


def _float_units(graph: OpGraph, partitions: tuple[Partition, ...], device: DeviceProfile) -> str:
    """Which unit kinds run the graph's float compute ops, and in which precision (e.g. ``"fp32 on cpu"``)."""
    kinds = {u.name: u for u in device.units}
    seen: Counter[str] = Counter()
    for part in partitions:
        unit = kinds.get(part.unit)
        for op in graph.ops[part.first:part.last + 1]:
            if op.dtype not in ("fp32", "fp16") or op.family in ("elementwise", "reshape") or not op.macs:
                continue
            kind = unit.kind if unit is not None else "cpu"
            runs = "fp32" if kind in ("cpu", "mcu") else "fp16" if unit is not None and "fp16" in unit.dtypes else "fp32"
            seen[f"{runs} on {kind}"] += 1
    return ", ".join(name for name, _ in seen.most_common())
