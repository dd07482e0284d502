"""Verification against given expected outputs (e.g. the ONNX backend node tests' ``output_*.pb``), without running
the source model: the artifact runs on the given inputs and its outputs are judged against the given values.

Inputs and outputs are in the source model's layout and names, with the sample axis the model declares (one run
of a fixed-shape model is the arrays as they are; see ``edgeexport.runs``); the artifact's recorded permutations
(ONNX NCHW -> NHWC) are applied here, as ``verify_artifact`` does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.catalog.model import Tolerance
from edgeexport.errors import UnsupportedOpError
from edgeexport.types import Artifact, Status
from edgeexport.verify.compare import artifact_feeds, compare_outputs
from edgeexport.verify.stage import (
    Verification,
    _not_verifiable,
    open_artifact,
    preset_tolerance,
    run_artifact,
)


def verify_expected(
    artifact: Artifact,
    inputs: Mapping[str, NDArray[Any]],
    expected: Mapping[str, NDArray[Any]],
    *,
    reference: str = "expected outputs",
    tolerance: Tolerance | None = None,
    precision: str = "auto",
) -> Verification:
    """Run ``artifact`` on ``inputs`` and judge its outputs against ``expected`` (keyed by source output name).

    Tolerance: ``tolerance`` when given, else the artifact's preset's (fp32: absolute error and cosine). Scalars
    are given one value per sample (shape ``(1,)`` for one run). Returns a ``Verification`` whose ``data_origin``
    is ``reference``; ``not_verifiable`` when this platform cannot run the artifact."""
    started = time.perf_counter()
    if tolerance is None:
        tolerance, source = preset_tolerance(artifact.preset)
    else:
        source = "given"
    feeds_in = {k: np.atleast_1d(np.asarray(v)) for k, v in inputs.items()}
    count = 1
    try:
        runner = open_artifact(artifact.path, precision=precision)
    except UnsupportedOpError as err:
        return _not_verifiable(artifact.path, reference, err, tolerance, source, reference, count, "auto", started)
    feeds, input_guesses = artifact_feeds(feeds_in, runner.inputs, artifact.permutations)
    try:
        actual = run_artifact(runner, feeds)
    except UnsupportedOpError as err:
        return _not_verifiable(artifact.path, reference, err, tolerance, source, reference, count,
                               runner.runtime_name, started)
    wanted = {k: np.atleast_1d(np.asarray(v)) for k, v in expected.items()}
    comparisons, output_guesses = compare_outputs(wanted, actual, tolerance, permutations=artifact.permutations)
    status = Status.OK if all(c.passed for c in comparisons) else Status.VERIFICATION_FAILED
    return Verification(status, artifact.path.name, reference, comparisons, tolerance, source, reference, count,
                        runner.runtime_name, input_guesses + output_guesses,
                        seconds=time.perf_counter() - started)
