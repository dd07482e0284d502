"""--preset auto picks what the simulator runs fastest, and says where (issue 12 item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeexport.catalog import choose_preset, load_device
from edgeexport.simulate import simulate
from edgeexport.simulate.estimate import main_unit
from edgeexport.simulate.placement import place
from edgeexport.simulate.preset_choice import (
    EXACT_MARGIN,
    Candidate,
    pick,
    reference_graph,
    retyped,
    simulate_candidates,
)


@pytest.mark.parametrize("name", ["pixel-8", "raspberry-pi-5"])
def test_auto_pick_agrees_with_the_simulation_of_its_artifact(name: str) -> None:
    device = load_device(name)
    preset, why = choose_preset(device, "tflite")
    candidates = simulate_candidates(device, "tflite")
    chosen = pick(candidates)
    assert preset.name == chosen.preset
    # simulate() of the chosen preset's graph prints the estimate and the unit the reason names
    graph = retyped(reference_graph(), chosen.dtype, "tflite")
    est = simulate(Path("reference.tflite"), device, graph=graph)
    assert est.p50_ms == pytest.approx(chosen.ms, rel=1e-9)
    assert est.path == chosen.path
    unit_kind = {u.name: u.kind for u in device.units}[chosen.unit]
    assert f"{chosen.preset} {chosen.ms:.2f} ms on the {unit_kind.upper()}" in why
    # nothing simulated faster by more than the margin was passed over
    assert all(chosen.ms <= c.ms * (1 + EXACT_MARGIN) + 1e-12 for c in candidates)


def test_pixel_8_int8_runs_where_the_simulator_places_it() -> None:
    # the old rule said "the fastest unit is its int8 TPU" while every simulation ran int8 on the CPU
    device = load_device("pixel-8")
    _, why = choose_preset(device, "tflite")
    int8 = next(c for c in simulate_candidates(device, "tflite") if c.preset == "int8")
    g = retyped(reference_graph(), "int8", "tflite")
    placement = place(g, device, int8.path)
    assert main_unit(placement) == int8.unit
    assert "fastest unit" not in why


def test_pick_prefers_the_more_exact_within_margin() -> None:
    fast = [Candidate("fp32", "fp32", "cpu", "cpu", 1.03), Candidate("int8", "int8", "cpu", "cpu", 1.0)]
    assert pick(fast).preset == "fp32"
    slow = [Candidate("fp32", "fp32", "cpu", "cpu", 2.0), Candidate("int8", "int8", "cpu", "cpu", 1.0)]
    assert pick(slow).preset == "int8"


def test_reference_graph_is_costed_and_retyping_shrinks_bytes() -> None:
    g = reference_graph()
    assert 2e7 < g.macs < 2e8 and all(op.ops > 0 for op in g.ops)
    q = retyped(g, "int8", "tflite")
    assert q.weight_bytes * 4 == pytest.approx(g.weight_bytes, rel=1e-3)
    assert {op.dtype for op in q.ops} == {"int8"} and q.macs == g.macs
