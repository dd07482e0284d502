"""``check --baseline``: what each cell measured, the inputs it came from, and the regressions against an older run.

A cell's record in ``check.json`` (``cells``) holds a fingerprint of every input it depends on (the model's
bytes, the data files, the device and preset catalogs, the cell's own config and the tool version), its test
cases and rows, and per target the metrics a later run is compared on. A cell whose fingerprint equals the
baseline's is reused from the record and not converted again.

Thresholds (``[check.regression]``; defaults below): a metric regresses when it gets worse by more than its limit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeexport.errors import BadInputError, ProfileError
from edgeexport.verify.junit import TestCase

if TYPE_CHECKING:
    from edgeexport.check import Cell, CellOutcome, CheckConfig, CheckResult

# metric -> (threshold key, default limit, how it is judged): "pct" worse when higher by more than limit %,
# "drop" worse when lower by more than limit (in the metric's own unit: points, dB, cosine, share points).
METRICS: dict[str, tuple[str, float, str]] = {
    "size_bytes": ("size_pct", 2.0, "pct"),
    "latency_ms": ("latency_pct", 5.0, "pct"),
    "peak_memory_bytes": ("memory_pct", 10.0, "pct"),
    "accuracy_points": ("accuracy_points", 0.5, "drop"),
    "sqnr_db": ("sqnr_db", 3.0, "drop"),
    "cosine": ("cosine", 0.001, "drop"),
    "accelerator_ops_pct": ("accelerator_points", 5.0, "drop"),
}
DEFAULT_THRESHOLDS = {key: default for key, default, _ in METRICS.values()}
_NOT_ACCELERATORS = {"cpu", "mcu"}
_CLUSTER_DEFAULTS = {"cpus": 1.0, "memory_mb": 2048.0}


def parse_thresholds(raw: Any, where: str) -> dict[str, float]:
    """``[check.regression]`` over the defaults; an unknown key or a negative number is ProfileError (exit 3)."""
    return _numbers(raw, where, DEFAULT_THRESHOLDS)


def parse_cluster(raw: Any, where: str) -> dict[str, float]:
    """``[check.ray]``: CPUs (default 1) and memory in MB (default 2048) Ray reserves for each cell."""
    return _numbers(raw, where, _CLUSTER_DEFAULTS)


def _numbers(raw: Any, where: str, defaults: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected a table")
    unknown = set(raw) - set(defaults)
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}",
                           hint=f"known: {', '.join(sorted(defaults))}")
    for key, value in raw.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ProfileError(f"{where}.{key}: expected a non-negative number")
    return {**defaults, **{k: float(v) for k, v in raw.items()}}


def artifact_metrics(entry: Any) -> dict[str, float | None]:
    """The compared metrics of one ``ArtifactReport``: size (B), p50 latency on the device (ms), peak memory (B),
    artifact accuracy (points, 0..100), the worst output's SQNR (dB) and cosine, and the share of ops the
    simulator placed on an accelerator (percent). None where the artifact has no such number."""
    estimate = entry.estimates[0].to_dict() if entry.estimates else {}
    verification = entry.verification.to_dict() if entry.verification is not None else {}
    outputs = [o.get("metrics") or {} for o in verification.get("outputs", [])]
    accuracy = next((m["classifier"]["artifact_accuracy"] for m in outputs
                     if (m.get("classifier") or {}).get("artifact_accuracy") is not None), None)
    sqnr = [m["sqnr_db"] for m in outputs if m.get("sqnr_db") is not None]
    cosine = [m["cosine"] for m in outputs if m.get("cosine") is not None]
    partitions = estimate.get("partitions") or []
    ops = sum(int(p["op_count"]) for p in partitions)
    on_accelerator = sum(int(p["op_count"]) for p in partitions if p["kind"] not in _NOT_ACCELERATORS)
    return {
        "size_bytes": float(entry.artifact.size_bytes),
        "latency_ms": estimate.get("p50_ms"),
        "peak_memory_bytes": estimate.get("peak_memory_bytes"),
        "accuracy_points": None if accuracy is None else 100.0 * float(accuracy),
        "sqnr_db": min(sqnr) if sqnr else None,
        "cosine": min(cosine) if cosine else None,
        "accelerator_ops_pct": 100.0 * on_accelerator / ops if ops else None,
    }


def hash_path(path: Path, cache: dict[Path, str] | None = None) -> str:
    """sha256 of a file, or of a directory's files (relative names and bytes, in sorted order)."""
    if cache is not None and path in cache:
        return cache[path]
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode() + b"\0")
            digest.update(file.read_bytes())
    elif path.is_file():
        digest.update(path.read_bytes())
    else:
        digest.update(b"missing:" + str(path).encode())
    value = digest.hexdigest()
    if cache is not None:
        cache[path] = value
    return value


def fingerprint(config: CheckConfig, cell: Cell, cache: dict[Path, str] | None = None) -> str:
    """sha256 of everything the cell's result depends on: source, data and catalog bytes, preset, device, the
    cell's config (budgets, targets, samples) and the edgeexport version."""
    from edgeexport import __version__

    model = config.models[cell.model]
    catalog = Path(__file__).parent / "catalog" / "data"
    device = Path(cell.device)
    inputs = {
        "tool": __version__,
        "source": hash_path(model.path, cache),
        "calibration": hash_path(model.calibration, cache) if model.calibration else None,
        "data": hash_path(model.data, cache) if model.data else None,
        "catalog": hash_path(catalog, cache),
        "device": cell.device,
        "device_file": hash_path(device, cache) if cell.device.endswith(".toml") else None,
        "preset": cell.preset,
        "targets": list(model.targets),
        "budgets": dict(model.budgets),
        "samples": config.samples,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def cell_record(config: CheckConfig, outcome: CellOutcome, print_: str) -> dict[str, Any]:
    """The JSON record of one cell in ``check.json``: enough to compare against it and to reuse it."""
    return {
        "id": outcome.cell.classname(config),
        "fingerprint": print_,
        "error_code": outcome.error_code,
        "report": outcome.report,
        "reused": outcome.reused,
        "conversions": outcome.conversions,
        "seconds": round(outcome.seconds, 3),
        "metrics": {target: dict(values) for target, values in outcome.metrics.items()},
        "cases": [asdict(case) for case in outcome.cases],
        "rows": list(outcome.rows),
    }


def reuse(record: Mapping[str, Any], cell: Cell) -> CellOutcome:
    """A cell's outcome rebuilt from its baseline record; nothing is converted (``conversions`` 0)."""
    from edgeexport.check import CellOutcome

    cases = tuple(TestCase(**case) for case in record["cases"])
    return CellOutcome(cell, cases, tuple(record["rows"]), int(record["error_code"]), record.get("report"),
                       {t: dict(v) for t, v in record["metrics"].items()}, conversions=0, reused=True)


def load_baseline(path: Path) -> dict[str, dict[str, Any]]:
    """Cell records by id from a check JSON, or from every ``*.json`` of a directory (later files, in name order,
    win). A missing or unreadable baseline is BadInputError (exit 3)."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise BadInputError(f"baseline not found: {path}" if not path.exists() else f"no *.json in baseline {path}")
    cells: dict[str, dict[str, Any]] = {}
    for file in files:
        try:
            data = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BadInputError(f"cannot read baseline {file}: {err}") from err
        records = data.get("cells") if isinstance(data, dict) else None
        if not isinstance(records, list):
            if path.is_dir():
                continue  # another kind of JSON next to the check results
            raise BadInputError(f"{file} is not an edgeexport check result (no 'cells')",
                                hint="write one with `edgeexport check --update-baseline PATH`")
        cells.update({str(r["id"]): r for r in records if isinstance(r, dict) and "id" in r})
    return cells


@dataclass(frozen=True)
class Regression:
    """One metric of one artifact that got worse than the threshold allows; ``delta`` is new - old."""

    cell: str
    target: str
    metric: str
    old: float
    new: float
    limit: float
    kind: str  # "pct" or "drop"

    @property
    def delta(self) -> float:
        return self.new - self.old

    def line(self) -> str:
        if self.kind == "pct":
            change = f"{100 * self.delta / self.old:+.1f}% > {self.limit:g}%" if self.old else f"{self.delta:+.6g}"
        else:
            change = f"{self.delta:+.4g} < -{self.limit:g}"
        return f"{self.metric} {self.old:.6g} -> {self.new:.6g} ({change})"


def compare(config: CheckConfig, result: CheckResult, baseline: Mapping[str, Mapping[str, Any]]
            ) -> tuple[list[Regression], list[TestCase]]:
    """Regressions of every cell and target against the baseline, and one ``regression`` test case per compared
    artifact (failed when any metric regressed). Cells or targets the baseline lacks are not compared."""
    limits = {**DEFAULT_THRESHOLDS, **config.regression}
    found: list[Regression] = []
    cases: list[TestCase] = []
    for outcome in result.cells:
        name = outcome.cell.classname(config)
        old_cell = baseline.get(name)
        if old_cell is None:
            continue
        for target, new_metrics in outcome.metrics.items():
            old_metrics = (old_cell.get("metrics") or {}).get(target)
            if old_metrics is None:
                continue
            mine = list(_regressions(name, target, old_metrics, new_metrics, limits))
            found.extend(mine)
            cases.append(TestCase(f"{name}.{target}", "regression",
                                  failure="; ".join(r.line() for r in mine) or None))
    return found, cases


def _regressions(cell: str, target: str, old: Mapping[str, Any], new: Mapping[str, Any],
                 limits: Mapping[str, float]) -> list[Regression]:
    out: list[Regression] = []
    for metric, (key, _default, kind) in METRICS.items():
        before, after = old.get(metric), new.get(metric)
        if before is None or after is None:
            continue
        limit = limits[key]
        worse = (after - before > limit * abs(before) / 100.0) if kind == "pct" else (before - after > limit)
        if worse:
            out.append(Regression(cell, target, metric, float(before), float(after), limit, kind))
    return out


def regression_markdown(regressions: Sequence[Regression]) -> str:
    """A Markdown table of old, new and delta per regressed cell and metric (empty text when none)."""
    if not regressions:
        return ""
    lines = ["", f"### Regressed against the baseline ({len(regressions)})", "",
             "| cell | target | metric | old | new | delta | limit |", "|---|---|---|---:|---:|---:|---:|"]
    for r in regressions:
        delta = f"{100 * r.delta / r.old:+.1f}%" if r.kind == "pct" and r.old else f"{r.delta:+.4g}"
        limit = f"+{r.limit:g}%" if r.kind == "pct" else f"-{r.limit:g}"
        lines.append(f"| {r.cell} | {r.target} | {r.metric} | {r.old:.6g} | {r.new:.6g} | {delta} | {limit} |")
    return "\n".join(lines) + "\n"
