"""The report: every stage's result, a schema version and a status that maps to the exit code.

``Report.to_dict`` is what ``report.json`` holds (schema ``schemas/report.schema.json``); ``load_report`` reads
it back, validated with jsonschema, into an equal ``Report``, so renderers, the bundler and ``check`` work on
typed objects whether the report was just made or read from disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeexport import __version__
from edgeexport.errors import EXIT_OK, BadInputError
from edgeexport.serial import StructureError, plain, structure
from edgeexport.types import Artifact, LoadOptions, ModelSummary, PruneReport, SourceModel, Status

if TYPE_CHECKING:
    from edgeexport.search.report import SearchReport
    from edgeexport.simulate.estimate import LatencyEstimate
    from edgeexport.verify.stage import Verification

SCHEMA_VERSION = "2.0"


@dataclass(frozen=True)
class ArtifactReport:
    """One produced artifact with why its preset was chosen and what the later stages said of it.

    ``estimates`` are simulated runs on the device; ``budget_failures`` lists the budgets they broke when budgets
    are enforced (``--check-budgets``), one sentence each.
    """

    artifact: Artifact
    preset_reason: str = ""
    pruning: PruneReport | None = None
    verification: Verification | None = None
    estimates: tuple[LatencyEstimate, ...] = ()
    budget_failures: tuple[str, ...] = ()
    # The precision search behind this artifact's preset (an object with to_dict() and lines()), issue 13.
    search: SearchReport | None = None

    @property
    def status(self) -> Status:
        """The verification's status when it did not pass, else ``BUDGET_EXCEEDED`` or ``OK``."""
        if self.verification is not None and not self.verification.passed:
            return self.verification.status
        if self.budget_failures:
            return Status.BUDGET_EXCEEDED
        return Status.OK


@dataclass(frozen=True)
class Failure:
    """Why a run ended before it had artifacts to report: the stage that failed, its one-line message, the
    error's class and exit code, and the peak resident memory of a converter child that was killed (bytes)."""

    stage: str
    message: str
    kind: str
    exit_code: int
    peak_rss_bytes: int | None = None


@dataclass(frozen=True)
class Report:
    """Everything ``convert`` did; ``status`` is the worst of its artifacts' ``Status``."""

    source: SourceModel
    summary: ModelSummary | None  # None when the run failed before the model was loaded
    artifacts: tuple[ArtifactReport, ...]
    device: str | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    out_dir: Path | None = None
    warn_only: bool = False
    total_seconds: float = 0.0
    schema_version: str = SCHEMA_VERSION
    tool_version: str = field(default=__version__)
    failure: Failure | None = None

    @property
    def status(self) -> Status:
        """``CONVERSION_FAILED`` for a run that failed, else the worst artifact status (highest exit code)."""
        if self.failure is not None:
            return Status.CONVERSION_FAILED
        return Status.worst(a.status for a in self.artifacts)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.warn_only else self.status.exit_code

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (schema ``SCHEMA_VERSION``); paths are relative to ``out_dir`` where possible."""
        return {
            "schema_version": self.schema_version,
            "tool": {"name": "edgeexport", "version": self.tool_version},
            "status": self.status.value,
            "exit_code": self.exit_code,
            "warn_only": self.warn_only,
            "total_seconds": self.total_seconds,
            "device": self.device,
            "source": {
                "path": str(self.source.path),
                "format": self.source.format,
                "sha256": self.source.sha256,
                "options": plain(self.source.options),
                **({"summary": plain(self.summary)} if self.summary is not None else {}),
            },
            "artifacts": [self._artifact_dict(a) for a in self.artifacts],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            **({"error": plain(self.failure)} if self.failure is not None else {}),
        }

    def _artifact_dict(self, entry: ArtifactReport) -> dict[str, Any]:
        data: dict[str, Any] = plain(entry.artifact)
        data["path"] = self._relative(entry.artifact.path)
        data["status"] = entry.status.value
        data["preset_reason"] = entry.preset_reason
        data["pruning"] = plain(entry.pruning) if entry.pruning else None
        data["verification"] = entry.verification.to_dict() if entry.verification else None
        data["estimates"] = [e.to_dict() for e in entry.estimates]
        data["budget_failures"] = list(entry.budget_failures)
        if entry.search is not None:
            data["search"] = entry.search.to_dict()
        return data

    def relative(self, path: Path) -> str:
        """``path`` as report.json names it: relative to ``out_dir`` where it is under it."""
        return self._relative(path)

    def _relative(self, path: Path) -> str:
        if self.out_dir is not None:
            try:
                return str(path.relative_to(self.out_dir))
            except ValueError:
                pass
        return str(path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], out_dir: Path | None = None) -> Report:
        """The ``Report`` whose ``to_dict()`` is ``data``; artifact paths are resolved against ``out_dir``.
        Raises BadInputError (exit 3) for data that does not validate against the report schema."""
        from edgeexport.search.report import SearchReport
        from edgeexport.simulate.estimate import LatencyEstimate
        from edgeexport.verify.stage import Verification

        validate_report(data)
        try:
            source_data = data["source"]
            source = SourceModel(Path(source_data["path"]), source_data["format"], source_data["sha256"],
                                 structure(LoadOptions, source_data.get("options", {}), "source.options"))
            artifacts = []
            for index, entry in enumerate(data["artifacts"]):
                where = f"artifacts[{index}]"
                fields_only = {k: v for k, v in entry.items() if k not in _ARTIFACT_EXTRAS}
                fields_only["path"] = str(out_dir / entry["path"]) if out_dir is not None else entry["path"]
                verification = entry.get("verification")
                artifacts.append(ArtifactReport(
                    artifact=structure(Artifact, fields_only, where),
                    preset_reason=entry.get("preset_reason", ""),
                    pruning=structure(PruneReport, entry["pruning"], f"{where}.pruning") if entry.get("pruning") else None,
                    verification=None if verification is None
                    else structure(Verification, verification, f"{where}.verification"),
                    estimates=tuple(structure(LatencyEstimate, e, f"{where}.estimates[{i}]")
                                    for i, e in enumerate(entry.get("estimates", []))),
                    budget_failures=tuple(entry.get("budget_failures", [])),
                    search=structure(SearchReport, entry["search"], f"{where}.search") if entry.get("search") else None,
                ))
            return cls(
                source=source,
                summary=structure(ModelSummary, source_data["summary"], "source.summary")
                if "summary" in source_data else None,
                artifacts=tuple(artifacts),
                device=data.get("device"),
                warnings=tuple(data.get("warnings", [])),
                notes=tuple(data.get("notes", [])),
                out_dir=out_dir,
                warn_only=bool(data.get("warn_only", False)),
                total_seconds=float(data.get("total_seconds", 0.0)),
                schema_version=data["schema_version"],
                tool_version=data["tool"]["version"],
                failure=structure(Failure, data["error"], "error") if data.get("error") else None,
            )
        except (StructureError, KeyError, TypeError) as err:
            raise BadInputError(f"report does not match schema {SCHEMA_VERSION}: {err}") from err


# Keys of a report's artifact entry that are not Artifact fields: computed (status) or other stages' results.
_ARTIFACT_EXTRAS = frozenset({"status", "preset_reason", "pruning", "verification", "estimates", "budget_failures",
                              "search"})


def validate_report(data: Any) -> None:
    """Raise BadInputError (exit 3) naming the first place where ``data`` breaks the report schema."""
    from edgeexport.jsonschemas import REPORT_SCHEMA, validate

    errors = validate(data, REPORT_SCHEMA)
    if errors:
        raise BadInputError(f"report does not match schema {SCHEMA_VERSION}: {errors[0]}"
                            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))


def load_report(path: Path) -> Report:
    """Read ``report.json`` at ``path`` into a ``Report`` (artifact paths relative to its directory).
    Missing, unreadable or invalid: BadInputError (exit 3)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise BadInputError(f"no report at {path}") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInputError(f"cannot read report {path}: {err}") from err
    if not isinstance(data, dict):
        raise BadInputError(f"report {path} is not a JSON object")
    return Report.from_dict(data, out_dir=path.parent)
