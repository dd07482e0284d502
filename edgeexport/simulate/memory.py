"""Peak activation memory from tensor lifetimes, with a greedy-by-size arena planner like LiteRT's.

LiteRT (``ArenaPlanner`` with ``SimpleMemoryArena``) and TFLite Micro (``GreedyMemoryPlanner``) place the
activation tensors in one arena: biggest tensor first, each at the lowest offset that does not overlap any
already-placed tensor whose lifetime overlaps its own. The arena size is the peak activation memory. Offsets
are aligned to 64 bytes (LiteRT's ``kDefaultTensorAlignment``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgeexport.simulate.graph import OpGraph

ALIGNMENT = 64


@dataclass(frozen=True)
class Buffer:
    """One activation tensor to place: ``size`` bytes alive from op ``first`` to op ``last`` inclusive."""

    tensor: int
    size: int
    first: int
    last: int


@dataclass(frozen=True)
class ArenaPlan:
    """Result of the planner: arena ``peak_bytes``, ``naive_bytes`` (sum of all activations, no reuse) and
    ``offsets`` as ``(tensor index, offset)`` pairs."""

    peak_bytes: int
    naive_bytes: int
    offsets: tuple[tuple[int, int], ...]


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def lifetimes(graph: OpGraph) -> list[Buffer]:
    """Lifetimes of the graph's activation tensors in op-index units; inputs live from before op 0
    (index -1), outputs until after the last op."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    end = len(graph.ops)
    for i in graph.inputs:
        first[i] = -1
        last[i] = -1
    for op in graph.ops:
        for t in op.outputs:
            first.setdefault(t, op.index)
            last[t] = max(last.get(t, op.index), op.index)
        for t in op.inputs:
            if graph.tensors[t].constant:
                continue
            first.setdefault(t, op.index)
            last[t] = max(last.get(t, op.index), op.index)
    for t in graph.outputs:
        first.setdefault(t, end)
        last[t] = end
    return [
        Buffer(t, graph.tensors[t].nbytes, first[t], last[t])
        for t in first
        if not graph.tensors[t].constant and graph.tensors[t].nbytes > 0
    ]


def plan_arena(buffers: Sequence[Buffer]) -> ArenaPlan:
    """Greedy by size: place the largest buffer first at the lowest offset free over its whole lifetime."""
    placed: list[tuple[int, int, Buffer]] = []  # (offset, end, buffer)
    offsets: list[tuple[int, int]] = []
    peak = 0
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.tensor)):
        size = _align(buf.size)
        live = sorted(
            (off, stop) for off, stop, other in placed if not (other.last < buf.first or buf.last < other.first)
        )
        offset = 0
        for off, stop in live:
            if offset + size <= off:
                break
            offset = max(offset, stop)
        placed.append((offset, offset + size, buf))
        offsets.append((buf.tensor, offset))
        peak = max(peak, offset + size)
    return ArenaPlan(peak, sum(_align(b.size) for b in buffers), tuple(sorted(offsets)))


def peak_activation_bytes(graph: OpGraph) -> ArenaPlan:
    """Plan the arena of ``graph`` (see the module docstring)."""
    return plan_arena(lifetimes(graph))
