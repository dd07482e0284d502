"""Typed reports built in code for renderer and manifest tests (no conversion, no framework import)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeexport.catalog.model import Tolerance
from edgeexport.report.model import ArtifactReport, Report
from edgeexport.simulate.estimate import BudgetStatus, LatencyEstimate
from edgeexport.types import Artifact, ModelSummary, QuantParams, SourceModel, Status, TensorSpec
from edgeexport.verify.stage import Verification

SOURCE_SHA = "ab" * 32


def estimate(**changes: Any) -> LatencyEstimate:
    fields = dict(artifact="m.tflite", format="tflite", device="pixel-8", path="npu", threads=None, compute_units="",
                  p50_ms=0.052, low_ms=0.036, high_ms=0.073, throughput_ips=1e4, energy_mj=None, macs=1000,
                  peak_memory_bytes=1, arena_bytes=1, weights_bytes=1, size_bytes=1, sparsity=0.0, top_ops=(),
                  family_ms=(("conv", 0.02),), partitions=(), alternatives=(),
                  budget=BudgetStatus(True, 1, 2, 1, None), band_source="test")
    fields.update(changes)
    return LatencyEstimate(**fields)


def typed_report(artifact_path: str, *, verification: Verification | None | str = "default",
            estimates: tuple[LatencyEstimate, ...] | None = None, summary: ModelSummary | None = None,
            **artifact: Any) -> tuple[Report, ArtifactReport]:
    """A typed report with one artifact (``artifact`` overrides Artifact fields) and that artifact's entry."""
    fields: dict[str, Any] = dict(
        path=Path(artifact_path), target="tflite", preset="int8", device="pixel-8", sha256="cd" * 32, size_bytes=8,
        gzip_bytes=8, source_sha256=SOURCE_SHA, conversion_seconds=1.0,
        inputs=(TensorSpec("image", (1, 8, 8, 1), "int8", "NHWC", QuantParams(0.0039, -128)),),
        outputs=(TensorSpec("probs", (None, 10), "float32"),))
    fields.update(artifact)
    if verification == "default":
        verification = Verification(Status.OK, "/home/me/out/m.tflite", "/m/digits_cnn.keras", (), Tolerance(),
                                    "preset int8", "/home/me/data/digits.npz [test]", 64, "litert", seconds=0.12)
    entry = ArtifactReport(Artifact(**fields), verification=verification if not isinstance(verification, str) else None,
                           estimates=(estimate(),) if estimates is None else estimates)
    source = SourceModel(Path("/m/digits_cnn.keras"), "keras", SOURCE_SHA)
    return Report(source, summary, (entry,), device="pixel-8"), entry
