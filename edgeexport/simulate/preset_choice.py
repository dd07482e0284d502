"""``--preset auto`` by simulation: the candidate presets' latency on the device, as ``simulate`` would place them.

``choose_preset`` (catalog.policy) used to pick from a rule table ("the fastest unit is its int8 TPU"), while
``simulate`` of the artifact it produced could place every op on the CPU. Here each candidate precision of
the target (``CANDIDATES``) is simulated on a graph (the model's own when the caller has one, else
``reference_graph``, a MobileNet-style CNN built in code) through every runtime path of the device, the
path ``simulate`` would take (the fastest) is kept, and the fastest candidate wins unless a more exact one
is within ``EXACT_MARGIN`` of it. The reason names the unit each candidate runs on and its estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgeexport.catalog.model import DeviceProfile
from edgeexport.simulate.graph import Op, OpGraph, Tensor
from edgeexport.simulate.ops import tflite_family, work_of
from edgeexport.targets.base import TFLITE, target_info, target_names

# (preset, compute dtype its artifact has), most exact first, per target
CANDIDATES: dict[str, tuple[tuple[str, str], ...]] = {name: target_info(name).auto_candidates for name in target_names()}
# A more exact preset within this share of the fastest one's latency is picked instead (5 %: below the
# simulator's own band, so the difference is not one the estimate can tell apart)
EXACT_MARGIN = 0.05
_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class Candidate:
    """One preset simulated on the device: the runtime path and main unit ``simulate`` would use, and ms."""

    preset: str
    dtype: str
    path: str
    unit: str
    ms: float


def reference_graph(fmt: str = TFLITE) -> OpGraph:
    """A MobileNetV2-like CNN at 224x224 (stem conv, 7 inverted-residual stages, 1x1 head, pooling, classifier)
    as an fp32 OpGraph, built without any converter (146 M MACs, 2.4 M weights). At 224 the fixed per-invoke
    costs of an NPU do not hide the precision's throughput, as they would on a 128x128 toy (there every
    precision of a Galaxy S24's NPU came within 10 % of each other, while its published ResNets run int8 2-3x
    faster than fp16)."""
    tensors: list[Tensor] = []
    ops: list[Op] = []

    def tensor(shape: tuple[int, ...], constant: bool = False) -> int:
        n = 1
        for d in shape:
            n *= d
        tensors.append(Tensor(len(tensors), f"t{len(tensors)}", shape, "float32", constant, 4 * n))
        return len(tensors) - 1

    def op(op_type: str, src: int, weight_shape: tuple[int, ...] | None, out_shape: tuple[int, ...]) -> int:
        weights = [tensor(weight_shape, True)] if weight_shape else []
        out = tensor(out_shape)
        family = tflite_family(op_type)
        macs, work = work_of(family, op_type, [tensors[src]], [tensors[w] for w in weights], [tensors[out]])
        ops.append(Op(len(ops), f"{op_type.lower()}_{len(ops)}", op_type, family, (src, *weights), (out,), "fp32",
                      macs, work, sum(tensors[w].nbytes for w in weights), tensors[src].nbytes, tensors[out].nbytes))
        return out

    x = tensor((1, 224, 224, 3))
    first = x
    h, c = 112, 32
    x = op("CONV_2D", x, (c, 3, 3, 3), (1, h, h, c))
    for expand, cout, stride in ((1, 16, 1), (6, 24, 2), (6, 32, 2), (6, 64, 2), (6, 96, 1), (6, 160, 2), (6, 320, 1)):
        mid = c * expand
        if expand > 1:
            x = op("CONV_2D", x, (mid, 1, 1, c), (1, h, h, mid))
        h = h // stride
        x = op("DEPTHWISE_CONV_2D", x, (1, 3, 3, mid), (1, h, h, mid))
        x = op("CONV_2D", x, (cout, 1, 1, mid), (1, h, h, cout))
        c = cout
    x = op("CONV_2D", x, (1280, 1, 1, c), (1, h, h, 1280))
    x = op("MEAN", x, None, (1, 1280))
    x = op("FULLY_CONNECTED", x, (1000, 1280), (1, 1000))
    out = op("SOFTMAX", x, None, (1, 1000))
    weight = sum(t.nbytes for t in tensors if t.constant)
    return OpGraph(fmt, None, tuple(tensors), tuple(ops), (first,), (out,), weight, weight, 0.0)


def retyped(graph: OpGraph, dtype: str, fmt: str) -> OpGraph:
    """``graph`` as the artifact of a ``dtype`` preset would be: every op computes in ``dtype`` (fp16 models
    keep fp32 compute on a CPU, as the simulator's placement decides), weights and activations scaled to its
    element size."""
    scale = _BYTES.get(dtype, 4) / 4
    tensors = tuple(replace(t, nbytes=int(t.nbytes * scale)) for t in graph.tensors)
    ops = tuple(replace(o, dtype=dtype if dtype != "fp16" else o.dtype, weight_bytes=int(o.weight_bytes * scale),
                        read_bytes=int(o.read_bytes * scale), write_bytes=int(o.write_bytes * scale)) for o in graph.ops)
    weight = int(graph.weight_bytes * scale)
    return replace(graph, format=fmt, tensors=tensors, ops=ops, weight_bytes=weight,
                   size_bytes=int(graph.size_bytes * scale))


def simulate_candidates(device: DeviceProfile, target: str, graph: OpGraph | None = None) -> list[Candidate]:
    """Every candidate preset of ``target`` simulated on ``device`` (see the module docstring), in
    CANDIDATES order; presets the device cannot run at all are left out."""
    from edgeexport.simulate.estimate import apply_calibration, main_unit, memory_model
    from edgeexport.simulate.placement import available_paths, place

    fmt = target_info(target).graph_format
    base = graph if graph is not None else reference_graph(fmt)
    device = apply_calibration(device)
    out = []
    for preset, dtype in CANDIDATES.get(target, ()):
        g = retyped(base, dtype, fmt)
        memory = memory_model(g, device)
        placements = [place(g, device, path, memory=memory) for path in available_paths(g, device)]
        if not placements:
            continue
        best = min(placements, key=lambda p: p.total_ms)
        out.append(Candidate(preset, dtype, best.path, main_unit(best) or "cpu", best.total_ms))
    return out


def pick(candidates: list[Candidate]) -> Candidate:
    """The fastest candidate, or the most exact one within EXACT_MARGIN of it (candidates are most exact first)."""
    fastest = min(c.ms for c in candidates)
    return next(c for c in candidates if c.ms <= fastest * (1.0 + EXACT_MARGIN))


def reason(device: DeviceProfile, chosen: Candidate, candidates: list[Candidate], on_reference: bool) -> str:
    """One sentence: what was simulated, each candidate's unit and estimate, and the pick."""
    kinds = {u.name: u.kind for u in device.units}
    names = {"ane": "Neural Engine"}
    listed = ", ".join(f"{c.preset} {c.ms:.2f} ms on the {names.get(kinds.get(c.unit, ''), kinds.get(c.unit, c.unit).upper())}"
                       f" ({c.path} path)"
                       for c in candidates)
    graph = "a reference MobileNet-style CNN" if on_reference else "this model's graph"
    return (f"simulated on {device.name} with {graph}: {listed}; {chosen.preset} is the fastest"
            + ("" if chosen.ms == min(c.ms for c in candidates) else f" within {EXACT_MARGIN:.0%} and more exact"))
