"""The report of a run that could not finish converting: which stage failed, how, and what the source was.

A converter that crashed (segfault, out of memory) or failed still leaves a report.json saying so, with
``status: "conversion_failed"``, the exit code, and an ``error`` object naming the stage; its artifacts list
holds nothing, because nothing of that run was verified.
"""

from __future__ import annotations

from edgeexport.errors import EdgeExportError
from edgeexport.report.model import Failure, Report
from edgeexport.types import SourceModel, Status

FAILED_STATUS = Status.CONVERSION_FAILED.value


def failure_report(source: SourceModel, err: EdgeExportError, *, stage: str, device: str | None,
                   seconds: float) -> Report:
    """The report of a run that raised ``err`` during ``stage`` after ``seconds`` (wall clock)."""
    peak = getattr(err, "peak_rss_bytes", None)
    failure = Failure(stage=str(getattr(err, "stage", stage)), message=err.one_line(), kind=type(err).__name__,
                      exit_code=err.exit_code, peak_rss_bytes=peak if isinstance(peak, int) else None)
    return Report(source=source, summary=None, artifacts=(), device=device, total_seconds=seconds, failure=failure)
