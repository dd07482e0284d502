"""What an estimate does not know: ops without a work model, and work outside the profile's evidence.

A profile's ``evidence`` (``catalog.model.Evidence``) lists the op family x compute dtype pairs its numbers
were fitted or validated on. An estimate whose graph spends more than ``EXTRAPOLATION_SHARE`` of its
simulated time in pairs outside that list is *extrapolated*: it says which pairs and how much time they
carry, and its band widens (``widen_band``). Ops with no work model (``ops.not_costed``) are listed by type
("3 ops not costed: CUSTOM:Foo x2, WHERE") instead of being silently priced.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from edgeexport.catalog.model import DeviceProfile
from edgeexport.simulate.graph import Op
from edgeexport.simulate.ops import not_costed

# Share of the simulated time in uncovered family@dtype pairs above which an estimate is extrapolated:
# below it the uncovered ops cannot move the total by more than the band already allows.
EXTRAPOLATION_SHARE = 0.05

# How far an uncovered share u widens the band: low / (1 + K u), high x (1 + K u). U: no measurement says
# how wrong an unfitted kernel family is; K = 2 turns a graph that is all extrapolation into a band about
# 3x wider on each side, the size of the misses seen for unfitted units (benchmarks/RESULTS.md).
WIDEN_PER_SHARE = 2.0


@dataclass(frozen=True)
class Coverage:
    """How much of an estimate the profile's evidence covers.

    ``uncovered`` maps ``family@dtype`` to its share (0..1) of the simulated time; ``share`` is their sum;
    ``extrapolated`` is True when ``share`` exceeds EXTRAPOLATION_SHARE; ``reason`` is one sentence (empty
    when not extrapolated); ``recorded`` is False when the profile has no evidence table at all.
    """

    share: float
    uncovered: tuple[tuple[str, float], ...]
    extrapolated: bool
    reason: str
    recorded: bool


def coverage(device: DeviceProfile, ops: Sequence[Op], seconds: Sequence[float], dtypes: Sequence[str]) -> Coverage:
    """Compare the time each op got (``seconds``, in the precision it ran in, ``dtypes``) with the
    profile's evidence. Ops without arithmetic (views) never count as extrapolation."""
    evidence = device.evidence
    if evidence is None:
        return Coverage(0.0, (), False, "", False)
    total = sum(seconds) or 1.0
    outside: dict[str, float] = defaultdict(float)
    for op, s, dtype in zip(ops, seconds, dtypes, strict=True):
        if op.ops == 0 and op.macs == 0:
            continue
        if not evidence.covers(op.family, dtype):
            outside[f"{op.family}@{dtype}"] += s / total
    pairs = tuple(sorted(outside.items(), key=lambda kv: -kv[1]))
    share = sum(v for _, v in pairs)
    if share <= EXTRAPOLATION_SHARE:
        return Coverage(share, pairs, False, "", True)
    listed = ", ".join(f"{pair} {100 * v:.0f} %" for pair, v in pairs[:4])
    basis = f" ({evidence.basis})" if evidence.basis else ""
    reason = (f"extrapolated: {100 * share:.0f} % of the time is in op families/dtypes the profile was never "
              f"fitted on{basis}: {listed}")
    return Coverage(share, pairs, True, reason, True)


def widen_band(low: float, high: float, share: float) -> tuple[float, float]:
    """The band multipliers widened for an uncovered time share ``share`` (see WIDEN_PER_SHARE)."""
    factor = 1.0 + WIDEN_PER_SHARE * max(share, 0.0)
    return low / factor, high * factor


def uncosted_ops(ops: Sequence[Op]) -> tuple[str, ...]:
    """Op types (with a count when repeated) that have no work model, in first-seen order."""
    counts = Counter(op.op_type for op in ops if not_costed(op.family, op.op_type, op.macs))
    return tuple(f"{name} x{n}" if n > 1 else name for name, n in counts.items())


def uncosted_warning(names: tuple[str, ...], ops: Sequence[Op]) -> str | None:
    """``"3 ops not costed: X, Y x2"`` (their time is only the per-op overhead plus a one-operation-per-
    element guess), or None when every op has a work model."""
    if not names:
        return None
    count = sum(1 for op in ops if not_costed(op.family, op.op_type, op.macs))
    return (f"{count} op{'s' if count != 1 else ''} not costed: {', '.join(names)} (no work model: timed as "
            "per-op overhead plus one operation per output element, a guess)")
