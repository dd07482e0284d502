"""The report of a run that could not finish converting: which stage failed, how, and what the source was.

A converter that crashed (segfault, out of memory) or failed still leaves a report.json saying so, with
``status: "conversion_failed"``, the exit code, and an ``error`` object naming the stage; its artifacts list
holds nothing, because nothing of that run was verified.
"""

from __future__ import annotations

from typing import Any

from edgeexport import __version__
from edgeexport.errors import EdgeExportError
from edgeexport.report.model import SCHEMA_VERSION
from edgeexport.types import SourceModel

FAILED_STATUS = "conversion_failed"


def failure_report(source: SourceModel, err: EdgeExportError, *, stage: str, device: str | None,
                   seconds: float) -> dict[str, Any]:
    """A report.json dict for a run that raised ``err`` during ``stage`` after ``seconds`` (wall clock)."""
    peak = getattr(err, "peak_rss_bytes", None)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "edgeexport", "version": __version__},
        "status": FAILED_STATUS,
        "exit_code": err.exit_code,
        "warn_only": False,
        "total_seconds": round(seconds, 3),
        "device": device,
        "source": {"path": str(source.path), "format": source.format, "sha256": source.sha256},
        "artifacts": [],
        "warnings": [],
        "notes": [],
        "error": {"stage": getattr(err, "stage", stage), "message": err.one_line(), "kind": type(err).__name__,
                  "exit_code": err.exit_code, "peak_rss_bytes": peak},
    }
