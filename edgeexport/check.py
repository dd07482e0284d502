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
    targets = ["tflite", "coreml"]     # optional: default both, limited to what each device runs
    calibration = "sample_models/digits.npz"
    data = "sample_models/digits.npz"

``check.preset_files = ["recipe.toml"]`` adds preset files, e.g. a recipe written by ``convert --save-preset``.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeexport.errors import (
    EXIT_BUDGET_EXCEEDED,
    EXIT_OK,
    EXIT_VERIFICATION_FAILED,
    EdgeExportError,
    ProfileError,
)
from edgeexport.verify.junit import TestCase

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
    # Preset TOML files (e.g. a recipe from ``convert --save-preset``), from ``check.preset_files``; issue 13.
    preset_files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    """Every test case of the matrix and the exit code they add up to (the worst failure's code)."""

    cases: tuple[TestCase, ...]
    exit_code: int
    reports: tuple[Path, ...] = ()
    seconds: float = 0.0
    rows: tuple[dict[str, Any], ...] = field(default_factory=tuple)

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
    preset_files = tuple(base / f for f in _strings(table["preset_files"], f"{path}: check.preset_files")) \
        if "preset_files" in table else ()
    return CheckConfig(path, base / str(table.get("out", "build/check")), samples, tuple(entries), preset_files)


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


def run_check(config: CheckConfig, progress: Callable[[str], None] | None = None) -> CheckResult:
    """Convert, verify and simulate every model x device x preset; one test case per check."""
    from edgeexport.api import convert
    from edgeexport.pipeline import Budgets

    say = progress or (lambda _message: None)
    started = time.perf_counter()
    cases: list[TestCase] = []
    codes = [EXIT_OK]
    reports: list[Path] = []
    rows: list[dict[str, Any]] = []
    for model in config.models:
        for device in model.devices:
            for preset in model.presets:
                classname = f"{model.path.name}.{device}.{preset}"
                out = config.out / model.path.name.split(".")[0] / device / preset.replace(":", "-")
                budgets = model.budgets
                latency = budgets.get("max_latency_ms")
                if isinstance(latency, dict):
                    latency = latency.get(device)
                say(f"{classname}: converting")
                begun = time.perf_counter()
                try:
                    report = convert(
                        model.path, out, targets=_targets_for(model.targets, device), preset=preset, device=device,
                        calibration=model.calibration, verify_data=model.data, verify_samples=config.samples,
                        check_budgets=True,
                        budgets=Budgets(max_latency_ms=latency,
                                        max_size_bytes=_kib(budgets.get("max_size_kb")),
                                        max_memory_bytes=_kib(budgets.get("max_memory_kb"))),
                        tolerance_overrides=_tolerance_overrides(budgets), preset_files=config.preset_files,
                        progress=lambda message, c=classname: say(f"{c}: {message}"),
                    )
                except EdgeExportError as err:
                    cases.append(TestCase(classname, "convert", time.perf_counter() - begun, error=err.one_line()))
                    codes.append(err.exit_code)
                    rows.append({"model": model.path.name, "device": device, "preset": preset, "target": "-",
                                 "status": f"error: {err.one_line()}"})
                    continue
                reports.append(out / "report.json")
                for entry in report.artifacts:
                    cases.extend(_artifact_cases(classname, entry, budgets))
                    rows.append(_row(model.path.name, device, preset, entry))
    codes.append(exit_code_of(tuple(cases)))
    return CheckResult(tuple(cases), max(codes), tuple(reports), time.perf_counter() - started, tuple(rows))


def _targets_for(targets: tuple[str, ...], device: str) -> tuple[str, ...] | None:
    """The config's targets that ``device`` runs (None: let the device and preset decide)."""
    if not targets:
        return None
    from edgeexport.catalog import load_device

    runnable = load_device(device).targets
    return tuple(t for t in targets if t in runnable) or targets


def _kib(value: Any) -> int | None:
    return None if value is None else int(float(value) * 1024)


def _tolerance_overrides(budgets: Mapping[str, Any]) -> tuple[tuple[str, float], ...]:
    mapping = {"min_cosine": "cosine_min", "min_sqnr_db": "sqnr_db_min", "max_accuracy_drop": "accuracy_drop_max"}
    return tuple((field_name, float(budgets[key])) for key, field_name in mapping.items() if key in budgets)


def _artifact_cases(classname: str, entry: Any, budgets: Mapping[str, Any]) -> list[TestCase]:
    artifact = entry.artifact
    prefix = f"{classname}.{artifact.target}"
    cases = [TestCase(prefix, "convert", artifact.conversion_seconds, output=artifact.path.name)]
    verification = entry.verification
    if verification is not None:
        failure = None if verification.passed else (verification.failure_line() or verification.status)
        cases.append(TestCase(prefix, "verify", verification.seconds, failure=failure))
        if "min_accuracy" in budgets:
            accuracy = _artifact_accuracy(verification)
            if accuracy is None:
                cases.append(TestCase(prefix, "accuracy", skipped="no labels in the verification data"))
            else:
                limit = float(budgets["min_accuracy"])
                cases.append(TestCase(prefix, "accuracy", failure=None if accuracy >= limit
                                      else f"accuracy {accuracy:.4f} < budget {limit:g}"))
    failures = "; ".join(entry.budget_failures)
    cases.append(TestCase(prefix, "budgets", failure=failures or None))
    return cases


def _artifact_accuracy(verification: Any) -> float | None:
    for output in verification.to_dict().get("outputs", []):
        classifier = (output.get("metrics") or {}).get("classifier") or {}
        if classifier.get("artifact_accuracy") is not None:
            return float(classifier["artifact_accuracy"])
    return None


def _row(model: str, device: str, preset: str, entry: Any) -> dict[str, Any]:
    estimate = entry.estimates[0] if entry.estimates else None
    verification = entry.verification
    return {
        "model": model, "device": device, "preset": preset, "target": entry.artifact.target,
        "artifact": entry.artifact.path.name, "size_bytes": entry.artifact.size_bytes,
        "latency_ms": round(estimate.p50_ms, 3) if estimate else None,
        "verification": verification.headline() if verification is not None else "-",
        "status": ", ".join(s for s in (
            "verification_failed" if verification is not None and not verification.passed else "",
            "budget_exceeded" if entry.budget_failures else "") if s) or "ok",
        "budget_failures": list(entry.budget_failures),
    }


def exit_code_of(cases: tuple[TestCase, ...]) -> int:
    """The code a list of cases alone implies: 6 for a failed budget, 5 for a failed verification or accuracy."""
    codes = [EXIT_OK]
    for case in cases:
        if case.failure and case.name == "budgets":
            codes.append(EXIT_BUDGET_EXCEEDED)
        elif case.failure:
            codes.append(EXIT_VERIFICATION_FAILED)
    return max(codes)
