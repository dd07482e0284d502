"""``edgeexport check``: the CI conformance gate. Converts, verifies and simulates a matrix of models x devices x
presets described in ``edgeexport.toml`` (``[check]``) or ``pyproject.toml`` (``[tool.edgeexport.check]``), and
judges every artifact against budgets.

Config (paths are relative to the config file)::

    [check]
    out = "build/check"                # default
    samples = 64                       # verification samples per artifact
    [check.budgets]                    # defaults for every model; a model's own table overrides key by key
    max_latency_ms = 5.0               # p50 on the device, or a table per device: { pixel-8 = 2.0 }
    max_size_kb = 200                  # artifact size on disk
    max_memory_kb = 1024               # simulated peak memory
    min_accuracy = 0.9                 # artifact accuracy on the labelled data (0..1)
    max_accuracy_drop = 2.0            # points, artifact vs reference
    min_cosine = 0.99                  # tighten the preset's verification tolerance
    min_sqnr_db = 20.0
    [[check.models]]
    path = "sample_models/digits_cnn.keras"
    devices = ["pixel-8", "iphone-15-pro"]
    presets = ["auto"]
    targets = [...]                    # optional target names (default: all, limited to what each device runs)
    calibration = "sample_models/digits.npz"
    data = "sample_models/digits.npz"
    [check.regression]                 # check --baseline: how much worse a metric may get (check_baseline.py)
    latency_pct = 5                    # also size_pct, memory_pct, accuracy_points, sqnr_db, cosine, accelerator_points
    [check.ray]                        # check --ray: what each cell's task reserves
    cpus = 1
    memory_mb = 2048

``check.preset_files = ["recipe.toml"]`` adds preset files, e.g. a recipe written by ``convert --save-preset``.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeexport.catalog.model import Tolerance
from edgeexport.errors import EXIT_OK, EdgeExportError, ProfileError
from edgeexport.types import Status
from edgeexport.verify.junit import TestCase

if TYPE_CHECKING:
    from edgeexport.report.model import ArtifactReport
    from edgeexport.verify.stage import Verification

_BUDGET_KEYS = {"max_latency_ms", "max_size_kb", "max_memory_kb", "min_accuracy", "max_accuracy_drop", "min_cosine",
                "min_sqnr_db"}
_MODEL_KEYS = {"path", "devices", "presets", "targets", "calibration", "data", "budgets"}


@dataclass(frozen=True)
class ModelEntry:
    """One ``[[check.models]]`` table, with paths resolved and budgets merged over the defaults."""

    path: Path
    devices: tuple[str, ...]
    presets: tuple[str, ...]
    targets: tuple[str, ...]  # empty: whatever each device runs
    calibration: Path | None
    data: Path | None
    budgets: Mapping[str, Any]


@dataclass(frozen=True)
class CheckConfig:
    """The whole matrix; ``source`` is the file it came from."""

    source: Path
    out: Path
    samples: int
    models: tuple[ModelEntry, ...]
    regression: Mapping[str, float] = field(default_factory=dict)  # [check.regression], defaults filled in
    cluster: Mapping[str, float] = field(default_factory=dict)  # [check.ray]: cpus and memory_mb per cell
    preset_files: tuple[Path, ...] = ()  # check.preset_files: e.g. a recipe from ``convert --save-preset``


@dataclass(frozen=True)
class CheckResult:
    """Every test case of the matrix and the exit code they add up to (the worst failure's code)."""

    cases: tuple[TestCase, ...]
    exit_code: int
    reports: tuple[Path, ...] = ()
    seconds: float = 0.0
    rows: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    cells: tuple[CellOutcome, ...] = ()

    @property
    def failures(self) -> int:
        return sum(c.failure is not None or c.error is not None for c in self.cases)


def find_config(explicit: Path | None, cwd: Path | None = None) -> Path:
    """``explicit``, else ./edgeexport.toml, else ./pyproject.toml when it has ``[tool.edgeexport.check]``."""
    if explicit is not None:
        if not explicit.is_file():
            raise ProfileError(f"check config not found: {explicit}")
        return explicit
    here = cwd or Path.cwd()
    for candidate in (here / "edgeexport.toml", here / "pyproject.toml"):
        if candidate.is_file() and _check_table(candidate) is not None:
            return candidate
    raise ProfileError("no check configuration found",
                       hint="write [check] in edgeexport.toml or [tool.edgeexport.check] in pyproject.toml, or pass --config")


def _check_table(path: Path) -> dict[str, Any] | None:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ProfileError(f"cannot parse {path}: {err}") from err
    table = data.get("check") if path.name != "pyproject.toml" else data.get("tool", {}).get("edgeexport", {}).get("check")
    return table if isinstance(table, dict) else None


def load_config(path: Path) -> CheckConfig:
    """Parse and validate a check config; any problem is ProfileError (exit 3) naming the field."""
    table = _check_table(path)
    if table is None:
        raise ProfileError(f"{path} has no [check] table")
    base = path.parent
    defaults = _budgets(table.get("budgets", {}), f"{path}: check.budgets")
    models = table.get("models")
    if not isinstance(models, list) or not models:
        raise ProfileError(f"{path}: field 'check.models' must be a non-empty array of tables ([[check.models]])")
    entries = []
    for index, raw in enumerate(models):
        where = f"{path}: check.models[{index}]"
        if not isinstance(raw, dict) or "path" not in raw:
            raise ProfileError(f"{where}: needs a 'path'")
        unknown = set(raw) - _MODEL_KEYS
        if unknown:
            raise ProfileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        entries.append(ModelEntry(
            path=base / str(raw["path"]),
            devices=tuple(_strings(raw.get("devices", ["host"]), f"{where}.devices")),
            presets=tuple(_strings(raw.get("presets", ["auto"]), f"{where}.presets")),
            targets=tuple(_strings(raw["targets"], f"{where}.targets")) if "targets" in raw else (),
            calibration=base / str(raw["calibration"]) if "calibration" in raw else None,
            data=base / str(raw["data"]) if "data" in raw else None,
            budgets={**defaults, **_budgets(raw.get("budgets", {}), f"{where}.budgets")},
        ))
    samples = table.get("samples", 64)
    if not isinstance(samples, int) or samples < 1:
        raise ProfileError(f"{path}: field 'check.samples' must be a positive integer")
    from edgeexport.check_baseline import parse_cluster, parse_thresholds

    preset_files = tuple(base / f for f in _strings(table["preset_files"], f"{path}: check.preset_files")) \
        if "preset_files" in table else ()
    return CheckConfig(path, base / str(table.get("out", "build/check")), samples, tuple(entries),
                       parse_thresholds(table.get("regression", {}), f"{path}: check.regression"),
                       parse_cluster(table.get("ray", {}), f"{path}: check.ray"), preset_files)


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ProfileError(f"{where}: expected a non-empty list of strings")
    return value


def _budgets(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected a table")
    unknown = set(raw) - _BUDGET_KEYS
    if unknown:
        raise ProfileError(f"{where}: unknown budget(s) {', '.join(sorted(unknown))}",
                           hint=f"known: {', '.join(sorted(_BUDGET_KEYS))}")
    for key, value in raw.items():
        numbers = value.values() if isinstance(value, dict) and key == "max_latency_ms" else [value]
        if not all(isinstance(n, int | float) and not isinstance(n, bool) and n >= 0 for n in numbers):
            raise ProfileError(f"{where}.{key}: expected a non-negative number")
    return dict(raw)


@dataclass(frozen=True)
class Cell:
    """One model x device x preset of the matrix; ``index`` is its place in the serial order."""

    index: int
    model: int  # index into CheckConfig.models
    device: str
    preset: str

    def classname(self, config: CheckConfig) -> str:
        return f"{config.models[self.model].path.name}.{self.device}.{self.preset}"

    def out_dir(self, config: CheckConfig) -> Path:
        """Where this cell's artifacts and report go (under ``config.out``)."""
        model = config.models[self.model]
        return config.out / model.path.name.split(".")[0] / self.device / self.preset.replace(":", "-")


@dataclass(frozen=True)
class CellOutcome:
    """What one cell produced: its test cases and table rows, the worst exit code it implies (an error it raised, or
    its artifacts' statuses; 0: none), its
    report path relative to ``config.out`` (None when conversion failed), baseline metrics per target, how many
    artifacts it converted in this run (0 when reused from a baseline) and its wall time in seconds."""

    cell: Cell
    cases: tuple[TestCase, ...]
    rows: tuple[dict[str, Any], ...]
    error_code: int = EXIT_OK
    report: str | None = None
    metrics: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    conversions: int = 0
    seconds: float = 0.0
    reused: bool = False


def cells_of(config: CheckConfig) -> tuple[Cell, ...]:
    """Every cell in the serial order: models, then devices, then presets, as the config lists them."""
    cells: list[Cell] = []
    for m, model in enumerate(config.models):
        for device in model.devices:
            for preset in model.presets:
                cells.append(Cell(len(cells), m, device, preset))
    return tuple(cells)


def run_cell(config: CheckConfig, cell: Cell, progress: Callable[[str], None] | None = None) -> CellOutcome:
    """Convert, verify and simulate one cell; an ``EdgeExportError`` becomes an error case, anything else raises."""
    from edgeexport.api import Budgets, ConvertOptions, VerifyOptions, convert
    from edgeexport.bundle.writer import read_report
    from edgeexport.check_baseline import artifact_metrics
    from edgeexport.txn import verify_committed

    say = progress or (lambda _message: None)
    model = config.models[cell.model]
    device, preset = cell.device, cell.preset
    classname = cell.classname(config)
    out = cell.out_dir(config)
    budgets = model.budgets
    latency = budgets.get("max_latency_ms")
    if isinstance(latency, dict):
        latency = latency.get(device)
    say(f"{classname}: converting")
    begun = time.perf_counter()
    try:
        options = ConvertOptions(
            targets=_targets_for(model.targets, device), preset=preset, device=device, calibration=model.calibration,
            preset_files=config.preset_files,
            verify=VerifyOptions(data=model.data, samples=config.samples, tighten=_tightened(budgets)),
            check_budgets=True,
            budgets=Budgets(max_latency_ms=latency, max_size_bytes=_kib(budgets.get("max_size_kb")),
                            max_memory_bytes=_kib(budgets.get("max_memory_kb"))),
        )
        report = convert(model.path, out, options, progress=lambda message: say(f"{classname}: {message}"))
        verify_committed(out, read_report(out))  # the report on disk describes these very artifacts
    except EdgeExportError as err:
        return error_outcome(config, cell, err, time.perf_counter() - begun)
    cases: list[TestCase] = []
    rows: list[dict[str, Any]] = []
    metrics: dict[str, Mapping[str, float | None]] = {}
    statuses: list[Status] = []
    for entry in report.artifacts:
        artifact_cases, artifact_statuses = _artifact_cases(classname, entry, budgets)
        cases.extend(artifact_cases)
        statuses.extend(artifact_statuses)
        rows.append(_row(model.path.name, device, preset, entry))
        metrics[entry.artifact.target] = artifact_metrics(entry)
    code = Status.worst(statuses).exit_code  # the same Status convert gives each artifact decides the cell
    return CellOutcome(cell, tuple(cases), tuple(rows), code, str((out / "report.json").relative_to(config.out)),
                       metrics, conversions=len(report.artifacts), seconds=time.perf_counter() - begun)


def error_outcome(config: CheckConfig, cell: Cell, err: EdgeExportError, seconds: float) -> CellOutcome:
    """The outcome of a cell that could not be checked: one error case, its exit code (``seconds``: wall time)."""
    return CellOutcome(cell, (TestCase(cell.classname(config), "convert", seconds, error=err.one_line()),),
                       ({"model": config.models[cell.model].path.name, "device": cell.device, "preset": cell.preset,
                         "target": "-", "status": f"error: {err.one_line()}"},), err.exit_code, seconds=seconds)


def gather(config: CheckConfig, outcomes: Sequence[CellOutcome], seconds: float) -> CheckResult:
    """The matrix's result from its cells' outcomes, in the serial order whatever order they finished in."""
    ordered = sorted(outcomes, key=lambda o: o.cell.index)
    cases = tuple(case for o in ordered for case in o.cases)
    codes = [EXIT_OK, *(o.error_code for o in ordered)]
    reports = tuple(config.out / o.report for o in ordered if o.report is not None and not o.reused)
    rows = tuple(row for o in ordered for row in o.rows)
    return CheckResult(cases, max(codes), reports, seconds, rows, tuple(ordered))


def run_check(config: CheckConfig, progress: Callable[[str], None] | None = None) -> CheckResult:
    """Convert, verify and simulate every model x device x preset, one after the other; one test case per check."""
    started = time.perf_counter()
    outcomes = [run_cell(config, cell, progress) for cell in cells_of(config)]
    return gather(config, outcomes, time.perf_counter() - started)


def _targets_for(targets: tuple[str, ...], device: str) -> tuple[str, ...] | None:
    """The config's targets that ``device`` runs (None: let the device and preset decide)."""
    if not targets:
        return None
    from edgeexport.catalog import load_device

    runnable = load_device(device).targets
    return tuple(t for t in targets if t in runnable) or targets


def _kib(value: Any) -> int | None:
    return None if value is None else int(float(value) * 1024)


def _tightened(budgets: Mapping[str, Any]) -> Tolerance | None:
    """The verification limits a model's budgets set (``min_cosine`` ...), replacing the preset's."""
    def limit(key: str) -> float | None:
        return float(budgets[key]) if key in budgets else None

    tolerance = Tolerance(cosine_min=limit("min_cosine"), sqnr_db_min=limit("min_sqnr_db"),
                          accuracy_drop_max=limit("max_accuracy_drop"))
    return None if tolerance == Tolerance() else tolerance


def _artifact_cases(classname: str, entry: ArtifactReport,
                    budgets: Mapping[str, Any]) -> tuple[list[TestCase], list[Status]]:
    """The artifact's test cases and the statuses they stand for; the same ``Status`` that ``convert`` gives the
    artifact decides its JUnit kind and exit code here."""
    artifact = entry.artifact
    prefix = f"{classname}.{artifact.target}"
    cases = [TestCase(prefix, "convert", artifact.conversion_seconds, output=artifact.path.name)]
    statuses = [Status.BUDGET_EXCEEDED] if entry.budget_failures else []
    verification = entry.verification
    if verification is not None:
        statuses.append(verification.status)
        cases.append(_status_case(prefix, "verify", verification.seconds, verification.status,
                                  verification.failure_line() or verification.status.value))
        if "min_accuracy" in budgets:
            accuracy = _artifact_accuracy(verification)
            if accuracy is None:
                cases.append(TestCase(prefix, "accuracy", skipped="no labels in the verification data"))
            else:
                limit = float(budgets["min_accuracy"])
                if accuracy < limit:
                    statuses.append(Status.VERIFICATION_FAILED)
                cases.append(TestCase(prefix, "accuracy", failure=None if accuracy >= limit
                                      else f"accuracy {accuracy:.4f} < budget {limit:g}"))
    failures = "; ".join(entry.budget_failures)
    cases.append(TestCase(prefix, "budgets", failure=failures or None))
    return cases, statuses


def _status_case(classname: str, name: str, seconds: float, status: Status, message: str) -> TestCase:
    """A test case whose JUnit kind is the status's own: failure, error, or a pass."""
    kind = status.junit_kind
    return TestCase(classname, name, seconds, failure=message if kind == "failure" else None,
                    error=message if kind == "error" else None)


def _artifact_accuracy(verification: Verification) -> float | None:
    for output in verification.outputs:
        classifier = output.metrics.classifier if output.metrics is not None else None
        if classifier is not None and classifier.artifact_accuracy is not None:
            return float(classifier.artifact_accuracy)
    return None


def _row(model: str, device: str, preset: str, entry: ArtifactReport) -> dict[str, Any]:
    estimate = entry.estimates[0] if entry.estimates else None
    verification = entry.verification
    return {
        "model": model, "device": device, "preset": preset, "target": entry.artifact.target,
        "artifact": entry.artifact.path.name, "size_bytes": entry.artifact.size_bytes,
        "latency_ms": round(estimate.p50_ms, 3) if estimate else None,
        "verification": verification.headline() if verification is not None else "-",
        "status": ", ".join(s.value for s in (
            verification.status if verification is not None and not verification.passed else None,
            Status.BUDGET_EXCEEDED if entry.budget_failures else None) if s is not None) or Status.OK.value,
        "budget_failures": list(entry.budget_failures),
    }
