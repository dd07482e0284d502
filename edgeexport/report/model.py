"""The report: every stage's result, a schema version and a status that maps to the exit code.

Stage results from other packages (verification, latency estimates) are carried as objects with a
``to_dict()`` method and a ``passed`` flag, so this module imports none of them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgeexport import __version__
from edgeexport.errors import (
    EXIT_BUDGET_EXCEEDED,
    EXIT_OK,
    EXIT_UNSUPPORTED,
    EXIT_VERIFICATION_FAILED,
)
from edgeexport.sources.base import PruneReport
from edgeexport.types import Artifact, ModelSummary, SourceModel

SCHEMA_VERSION = "1.0"
STATUS_EXIT_CODES = {
    "ok": EXIT_OK,
    "not_verifiable": EXIT_UNSUPPORTED,
    "verification_failed": EXIT_VERIFICATION_FAILED,
    "budget_exceeded": EXIT_BUDGET_EXCEEDED,
}


class StageResult(Protocol):
    """What a verification or simulation result offers the report."""

    @property
    def passed(self) -> bool: ...

    @property
    def status(self) -> str: ...

    def failure_line(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ArtifactReport:
    """One produced artifact with why its preset was chosen and what the later stages said of it.

    ``estimates`` are simulated runs on the device (objects with ``to_dict()``); ``budget_failures`` lists the
    budgets they broke when budgets are enforced (``--check-budgets``), one sentence each.
    """

    artifact: Artifact
    preset_reason: str = ""
    pruning: PruneReport | None = None
    verification: StageResult | None = None
    estimates: tuple[Any, ...] = ()
    budget_failures: tuple[str, ...] = ()
    # The precision search behind this artifact's preset (an object with to_dict() and lines()), issue 13.
    search: Any = None

    @property
    def status(self) -> str:
        """``"ok"``, ``"verification_failed"``, ``"budget_exceeded"`` or ``"not_verifiable"`` (ran nowhere here)."""
        if self.verification is not None and not self.verification.passed:
            if self.verification.status == "not_verifiable":
                return "not_verifiable"
            return "verification_failed"
        if self.budget_failures:
            return "budget_exceeded"
        return "ok"


@dataclass(frozen=True)
class Report:
    """Everything ``convert`` did. ``status`` is ``"ok"``, ``"verification_failed"`` or ``"budget_exceeded"``."""

    source: SourceModel
    summary: ModelSummary
    artifacts: tuple[ArtifactReport, ...]
    device: str | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    out_dir: Path | None = None
    warn_only: bool = False
    total_seconds: float = 0.0
    schema_version: str = SCHEMA_VERSION
    tool_version: str = field(default=__version__)

    @property
    def status(self) -> str:
        """The worst artifact status (the one with the highest exit code)."""
        statuses = [a.status for a in self.artifacts] or ["ok"]
        return max(statuses, key=lambda status: STATUS_EXIT_CODES[status])

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.warn_only else STATUS_EXIT_CODES[self.status]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (schema ``SCHEMA_VERSION``); paths are relative to ``out_dir`` where possible."""
        return {
            "schema_version": self.schema_version,
            "tool": {"name": "edgeexport", "version": self.tool_version},
            "status": self.status,
            "exit_code": self.exit_code,
            "warn_only": self.warn_only,
            "total_seconds": round(self.total_seconds, 3),
            "device": self.device,
            "source": {
                "path": str(self.source.path),
                "format": self.source.format,
                "sha256": self.source.sha256,
                "summary": plain(self.summary),
            },
            "artifacts": [self._artifact_dict(a) for a in self.artifacts],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }

    def _artifact_dict(self, entry: ArtifactReport) -> dict[str, Any]:
        data = plain(entry.artifact)
        data["path"] = self._relative(entry.artifact.path)
        data["status"] = entry.status
        data["preset_reason"] = entry.preset_reason
        data["pruning"] = plain(entry.pruning) if entry.pruning else None
        data["verification"] = entry.verification.to_dict() if entry.verification else None
        data["estimates"] = [e.to_dict() for e in entry.estimates]
        data["budget_failures"] = list(entry.budget_failures)
        if entry.search is not None:
            data["search"] = entry.search.to_dict()
        return data

    def _relative(self, path: Path) -> str:
        if self.out_dir is not None:
            try:
                return str(path.relative_to(self.out_dir))
            except ValueError:
                pass
        return str(path)


def plain(value: Any) -> Any:
    """Dataclasses, tuples, paths and numpy scalars turned into JSON-ready values (NaN/inf become None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        items = sorted(value) if isinstance(value, frozenset | set) else value
        return [plain(v) for v in items]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
