"""The terminal wording of the per-layer report (issue 13): the listed layers are the top ones by error (lowest
SQNR first), and the layer where the error grows most is named with its drop, and flagged when it is not listed."""

from __future__ import annotations

import math

from edgeexport.verify.layers import LayerError, judge_layers
from edgeexport.verify.localize import Localization


def _error(layer: str, sqnr: float) -> LayerError:
    return LayerError(layer, "Conv2D", layer, (), (1, 8), 0.999, sqnr, sqnr + 1.0, 0.1)


def _localization(curve: list[tuple[str, float]], drop_at: str, drop_db: float) -> Localization:
    layers = tuple(judge_layers([_error(n, v) for n, v in curve], 0.98, 15.0))
    return Localization(layers, None, drop_at, "", (), 16, 0.98, 15.0, "test split", drop_db)


def test_the_list_is_the_top_layers_by_error_and_the_largest_drop_is_explained() -> None:
    # conv2 adds most error (45 -> 30 dB) but later layers accumulate more: fc1 is the lowest SQNR
    found = _localization([("conv1", 45.0), ("conv2", 30.0), ("conv3", 28.0), ("fc1", 25.0), ("probs", 26.0)],
                          "conv2", 15.0)
    lines = found.lines(top=3)
    assert "top 3 by error (lowest SQNR first; all 5 in report.json):" in lines[0]
    assert [line.split()[0] for line in lines[1:4]] == ["fc1", "probs", "conv3"]
    assert lines[4] == ("first layer over tolerance: none; error grows most at conv2 (SQNR -15.0 dB from the layer "
                        "before it; not among the layers listed)")
    shown = found.lines(top=5)
    conv2 = next(line for line in shown if line.split()[0] == "conv2")
    assert conv2.endswith("<-- largest drop") and "not among" not in shown[-1]
    assert found.to_dict()["worst"] == ["fc1", "probs", "conv3", "conv2", "conv1"]
    assert math.isclose(found.to_dict()["largest_drop_db"], 15.0)
