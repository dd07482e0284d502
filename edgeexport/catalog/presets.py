"""Load, validate and compose presets from TOML (stdlib ``tomllib``; no framework imports).

Shipped presets live in ``data/presets/*.toml`` as ``[presets.<name>]`` tables (the layout is documented at the top
of ``data/presets/common.toml``). User presets use the same tables in their own TOML file, or under
``[tool.edgeexport.presets.<name>]`` in a ``pyproject.toml``; they may extend a preset with ``base = "int8"``
(tables merge key by key, overrides append) but may not reuse a shipped name.

A spec joins presets with ``+`` (``"prune-50+int8"``): at most one part may prune and at most one may quantize; the
result targets what all parts target and its tolerance is the loosest combination (see ``combine_tolerances``).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from edgeexport.catalog.model import (
    COREML_PRECISIONS,
    COREML_WEIGHTS,
    LOWRANK_FORMS,
    PRUNING_METHODS,
    TFLITE_MODES,
    LayerOverride,
    Preset,
    Pruning,
    Quantization,
    Tolerance,
)
from edgeexport.errors import ProfileError
from edgeexport.targets.base import target_names

PRESET_DIR = Path(__file__).parent / "data" / "presets"
TARGETS = target_names()
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9:._-]*")
_PRESET_KEYS = {"description", "targets", "quantization", "pruning", "tolerance", "overrides", "base",
                "min_coreml_deployment_target"}
_QUANT_KEYS = {"tflite_mode", "coreml_precision", "coreml_weights", "requires_calibration"}
_PRUNE_KEYS = {"method", "sparsity", "n", "m", "energy", "form"}
_TOL_KEYS = {f.name for f in fields(Tolerance)}
_OVERRIDE_KEYS = {"op_type", "name", "keep"}


@dataclass(frozen=True)
class _Entry:
    """One raw ``[presets.<name>]`` table and the file it came from."""

    name: str
    raw: Mapping[str, Any]
    origin: Path
    builtin: bool


def _fail(origin: Path | str, field: str, problem: str) -> ProfileError:
    return ProfileError(f"preset file {origin}: field '{field}': {problem}")


def _read_toml(path: Path) -> dict[str, Any]:
    return read_toml(path, "preset file")


def _tables_of(path: Path) -> Mapping[str, Any]:
    """The ``presets`` table of a preset file, or ``tool.edgeexport.presets`` of a pyproject.toml."""
    data = _read_toml(path)
    if "presets" in data:
        tables = data["presets"]
        where = "presets"
    else:
        tables = data.get("tool", {}).get("edgeexport", {}).get("presets", {})
        where = "tool.edgeexport.presets"
    if not isinstance(tables, dict):
        raise _fail(path, where, "expected a table of presets")
    return tables


def _registry(extra_files: Sequence[Path]) -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    for path in sorted(PRESET_DIR.glob("*.toml")):
        for name, raw in _tables_of(path).items():
            if name in entries:
                raise _fail(path, f"presets.{name}", f"defined twice (also in {entries[name].origin})")
            entries[name] = _Entry(name, raw, path, builtin=True)
    for path in extra_files:
        for name, raw in _tables_of(Path(path)).items():
            if name in entries:
                kind = "a shipped preset" if entries[name].builtin else f"a preset in {entries[name].origin}"
                raise _fail(path, f"presets.{name}", f"redefines {kind}; pick a new name and use base = {name!r}")
            entries[name] = _Entry(name, raw, Path(path), builtin=False)
    for entry in entries.values():
        if not _NAME_RE.fullmatch(entry.name) or "+" in entry.name:
            raise _fail(entry.origin, f"presets.{entry.name}", "names use lower-case letters, digits and - : . _")
        if not isinstance(entry.raw, dict):
            raise _fail(entry.origin, f"presets.{entry.name}", "expected a table")
    return entries


def _merged(entry: _Entry, entries: Mapping[str, _Entry], seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The raw table with its ``base`` chain merged in (tables key by key; overrides appended)."""
    where = f"presets.{entry.name}"
    if entry.name in seen:
        raise _fail(entry.origin, f"{where}.base", f"cycle through {' -> '.join(seen + (entry.name,))}")
    raw = dict(entry.raw)
    base_name = raw.pop("base", None)
    if base_name is None:
        return raw
    if not isinstance(base_name, str) or base_name not in entries:
        close = difflib.get_close_matches(str(base_name), list(entries), n=3)
        raise _fail(entry.origin, f"{where}.base", f"unknown preset {base_name!r}"
                    + (f" (did you mean {', '.join(close)}?)" if close else ""))
    merged = _merged(entries[base_name], entries, seen + (entry.name,))
    for key, value in raw.items():
        if key in ("quantization", "pruning", "tolerance") and isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        elif key == "overrides" and isinstance(value, list):
            merged[key] = list(merged.get(key, [])) + value
        else:
            merged[key] = value
    return merged


def _check_keys(origin: Path, where: str, table: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _fail(origin, where, "expected a table")
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            raise _fail(origin, f"{where}.{key}", "unknown key" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return table


def _choice(origin: Path, where: str, table: Mapping[str, Any], key: str, choices: Sequence[str]) -> str | None:
    value = table.get(key)
    if value is not None and value not in choices:
        raise _fail(origin, f"{where}.{key}", f"{value!r} is not one of {', '.join(choices)}")
    return value


def _number(origin: Path, where: str, table: Mapping[str, Any], key: str, *, low: float = 0.0,
            high: float | None = None) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    out_of_range = not isinstance(value, bool) and isinstance(value, int | float) and (
        value < low or (high is not None and value > high))
    if isinstance(value, bool) or not isinstance(value, int | float) or out_of_range:
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise _fail(origin, f"{where}.{key}", f"expected a number {bound}, got {value!r}")
    return float(value)


def _build(entry: _Entry, entries: Mapping[str, _Entry]) -> tuple[Preset, bool]:
    """A single (non-composite) preset, and whether it quantizes (has a quantization table of its own)."""
    raw = _merged(entry, entries)
    origin, where = entry.origin, f"presets.{entry.name}"
    _check_keys(origin, where, raw, _PRESET_KEYS)
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise _fail(origin, f"{where}.description", "missing (a one-line description is required)")
    targets_raw = raw.get("targets")
    if not isinstance(targets_raw, list) or not targets_raw or any(t not in TARGETS for t in targets_raw):
        raise _fail(origin, f"{where}.targets", f"expected a non-empty list from {', '.join(TARGETS)}, "
                    f"got {targets_raw!r}")
    targets = frozenset(targets_raw)

    quantizes = "quantization" in raw
    q = _check_keys(origin, f"{where}.quantization", raw.get("quantization", {}), _QUANT_KEYS)
    calib = q.get("requires_calibration", False)
    if not isinstance(calib, bool):
        raise _fail(origin, f"{where}.quantization.requires_calibration", f"expected true/false, got {calib!r}")
    quant = Quantization(
        tflite_mode=_choice(origin, f"{where}.quantization", q, "tflite_mode", TFLITE_MODES),
        coreml_precision=_choice(origin, f"{where}.quantization", q, "coreml_precision", COREML_PRECISIONS),
        coreml_weights=_choice(origin, f"{where}.quantization", q, "coreml_weights", COREML_WEIGHTS),
        requires_calibration=calib,
    )
    if not quantizes:
        # A pruning-only preset keeps float32 on every target it names.
        quant = Quantization(tflite_mode="fp32" if "tflite" in targets else None,
                             coreml_precision="fp32" if "coreml" in targets else None)
    if "tflite" in targets and quant.tflite_mode is None:
        raise _fail(origin, f"{where}.quantization.tflite_mode", "missing although targets include tflite")
    if "coreml" in targets and quant.coreml_precision is None:
        raise _fail(origin, f"{where}.quantization.coreml_precision", "missing although targets include coreml")

    pruning = None
    if "pruning" in raw:
        p = _check_keys(origin, f"{where}.pruning", raw["pruning"], _PRUNE_KEYS)
        method = _choice(origin, f"{where}.pruning", p, "method", PRUNING_METHODS)
        if method is None:
            raise _fail(origin, f"{where}.pruning.method", f"missing (one of {', '.join(PRUNING_METHODS)})")
        n, m = p.get("n"), p.get("m")
        if method == "n:m":
            if not (isinstance(n, int) and isinstance(m, int) and 0 < n < m):
                raise _fail(origin, f"{where}.pruning.n", f"n:m pruning needs integers 0 < n < m, got n={n!r} m={m!r}")
            sparsity = 1.0 - n / m
        elif method == "lowrank" and "energy" in p:
            energy = _number(origin, f"{where}.pruning", p, "energy", high=1.0)
            if not energy or "sparsity" in p:
                raise _fail(origin, f"{where}.pruning.energy", "lowrank takes energy in (0, 1] or sparsity, not both")
            sparsity = 0.0
        else:
            value = _number(origin, f"{where}.pruning", p, "sparsity", high=0.99)
            if value is None or value <= 0:
                raise _fail(origin, f"{where}.pruning.sparsity", "missing or zero (a fraction in (0, 0.99])")
            sparsity = value
        if method != "lowrank" and ("energy" in p or "form" in p):
            raise _fail(origin, f"{where}.pruning", "energy and form apply to method = \"lowrank\" only")
        pruning = Pruning(method=method, sparsity=sparsity, n=n if method == "n:m" else None,
                          m=m if method == "n:m" else None,
                          energy=float(p["energy"]) if method == "lowrank" and "energy" in p else None,
                          form=_choice(origin, f"{where}.pruning", p, "form", LOWRANK_FORMS))

    t = _check_keys(origin, f"{where}.tolerance", raw.get("tolerance"), _TOL_KEYS) if "tolerance" in raw else None
    if t is None or not t:
        raise _fail(origin, f"{where}.tolerance", "missing (every preset needs at least one tolerance metric)")
    tw = f"{where}.tolerance"
    tolerance = Tolerance(
        max_abs=_number(origin, tw, t, "max_abs"), mean_abs=_number(origin, tw, t, "mean_abs"),
        cosine_min=_number(origin, tw, t, "cosine_min", low=-1.0, high=1.0),
        sqnr_db_min=_number(origin, tw, t, "sqnr_db_min", low=-1000.0),
        top1_agreement_min=_number(origin, tw, t, "top1_agreement_min", high=1.0),
        accuracy_drop_max=_number(origin, tw, t, "accuracy_drop_max", high=100.0),
    )

    overrides_raw = raw.get("overrides", [])
    if not isinstance(overrides_raw, list):
        raise _fail(origin, f"{where}.overrides", "expected an array of tables ([[presets.<name>.overrides]])")
    overrides = []
    for i, o in enumerate(overrides_raw):
        ow = f"{where}.overrides[{i}]"
        _check_keys(origin, ow, o, _OVERRIDE_KEYS)
        keep = _choice(origin, ow, o, "keep", ("fp32", "fp16"))
        if keep is None:
            raise _fail(origin, f"{ow}.keep", "missing ('fp32' or 'fp16')")
        if not o.get("op_type") and not o.get("name"):
            raise _fail(origin, ow, "needs op_type or name (a glob over layer names)")
        overrides.append(LayerOverride(keep=keep, op_type=o.get("op_type"), name=o.get("name")))

    min_target = raw.get("min_coreml_deployment_target")
    if min_target is not None and (not isinstance(min_target, str) or not re.fullmatch(r"iOS\d+", min_target)):
        raise _fail(origin, f"{where}.min_coreml_deployment_target", f"expected e.g. 'iOS17', got {min_target!r}")
    preset = Preset(
        name=entry.name, description=" ".join(description.split()), targets=targets, quantization=quant,
        tolerance=tolerance, pruning=pruning, overrides=tuple(overrides), parts=(entry.name,),
        source="builtin" if entry.builtin else str(origin), min_coreml_deployment_target=min_target,
    )
    return preset, quantizes


def _loosest_min(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else min(v for v in values if v is not None)


def _loosest_max(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else max(v for v in values if v is not None)


def combine_tolerances(tolerances: Sequence[Tolerance]) -> Tolerance:
    """The tolerance of a composite preset. A metric is checked only if every part checks it (pruning parts do not
    check cosine/SQNR, since pruning changes the function); limits take the loosest value; accuracy drops and
    top-1 disagreements add up (errors of independent steps accumulate)."""
    drops = [t.accuracy_drop_max for t in tolerances]
    tops = [t.top1_agreement_min for t in tolerances]
    return Tolerance(
        max_abs=_loosest_max([t.max_abs for t in tolerances]),
        mean_abs=_loosest_max([t.mean_abs for t in tolerances]),
        cosine_min=_loosest_min([t.cosine_min for t in tolerances]),
        sqnr_db_min=_loosest_min([t.sqnr_db_min for t in tolerances]),
        top1_agreement_min=None if any(v is None for v in tops)
        else round(max(0.0, 1.0 - sum(1.0 - float(v) for v in tops if v is not None)), 6),
        accuracy_drop_max=None if any(v is None for v in drops) else round(sum(float(v) for v in drops if v), 6),
    )


def _unknown(name: str, entries: Mapping[str, _Entry]) -> ProfileError:
    close = difflib.get_close_matches(name, list(entries), n=4, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else "run `edgeexport presets` for the list"
    return ProfileError(f"unknown preset {name!r}", hint=hint)


def load_preset(spec: str, *, extra_files: Sequence[Path] = ()) -> Preset:
    """A preset by name (``"fp16"``), a composition (``"prune-50+int8"``) or a user preset from ``extra_files``
    (preset TOML files or pyproject.toml files). Raises ``ProfileError`` (exit 3) for unknown names, bad files
    or an invalid combination (two quantizations, two prunings, no common target)."""
    entries = _registry(extra_files)
    names = [part.strip() for part in spec.split("+")]
    if not spec.strip() or any(not n for n in names):
        raise ProfileError(f"bad preset spec {spec!r}", hint="join preset names with '+', e.g. prune-50+int8")
    if len(set(names)) != len(names):
        raise ProfileError(f"preset spec {spec!r} names a preset twice")
    built = []
    for name in names:
        if name not in entries:
            raise _unknown(name, entries)
        built.append(_build(entries[name], entries))
    if len(built) == 1:
        return built[0][0]
    pruners = [p.name for p, _ in built if p.pruning is not None]
    quantizers = [p.name for p, q in built if q]
    if len(pruners) > 1:
        raise ProfileError(f"preset spec {spec!r} prunes or factorizes twice ({', '.join(pruners)})",
                           hint="keep one pruning or low-rank preset")
    if len(quantizers) > 1:
        raise ProfileError(f"preset spec {spec!r} quantizes twice ({', '.join(quantizers)})",
                           hint="keep one quantization preset")
    presets = [p for p, _ in built]
    targets = frozenset.intersection(*(p.targets for p in presets))
    if not targets:
        raise ProfileError(f"preset spec {spec!r} has no target in common: "
                           + "; ".join(f"{p.name}: {', '.join(sorted(p.targets))}" for p in presets))
    quant_source = next((p for p, q in built if q), None)
    quant = quant_source.quantization if quant_source else presets[0].quantization
    quant = replace(quant, tflite_mode=quant.tflite_mode if "tflite" in targets else None,
                    coreml_precision=quant.coreml_precision if "coreml" in targets else None,
                    coreml_weights=quant.coreml_weights if "coreml" in targets else None)
    mins = [p.min_coreml_deployment_target for p in presets if p.min_coreml_deployment_target]
    return Preset(
        name="+".join(names),
        description="; ".join(p.description for p in presets),
        targets=targets,
        quantization=quant,
        tolerance=combine_tolerances([p.tolerance for p in presets]),
        pruning=next((p.pruning for p in presets if p.pruning is not None), None),
        overrides=tuple(o for p in presets for o in p.overrides),
        parts=tuple(names),
        source=", ".join(sorted({p.source for p in presets})),
        min_coreml_deployment_target=max(mins, key=lambda s: int(s[3:])) if mins else None,
    )


def list_presets(*, extra_files: Sequence[Path] = ()) -> list[Preset]:
    """Every shipped preset, then user presets from ``extra_files``, in file order."""
    entries = _registry(extra_files)
    presets = [_build(entry, entries)[0] for entry in entries.values()]

    def group(preset: Preset) -> int:
        # Both-target quantization first, then TFLite-only, Core ML-only, pruning; user presets last.
        if preset.source != "builtin":
            return 4
        if preset.pruning is not None:
            return 3
        return 0 if len(preset.targets) == 2 else (1 if "tflite" in preset.targets else 2)

    return sorted(presets, key=group)


def presets_from_pyproject(path: Path) -> list[Path]:
    """The preset files a project declares: the pyproject itself when it has ``[tool.edgeexport.presets]``, plus
    every file listed in ``[tool.edgeexport] preset_files = [...]`` (relative to the pyproject). Pass the result as
    ``extra_files``. A missing pyproject gives ``[]``."""
    if not path.is_file():
        return []
    tool = _read_toml(path).get("tool", {}).get("edgeexport", {})
    if not isinstance(tool, dict):
        raise _fail(path, "tool.edgeexport", "expected a table")
    files: list[Path] = [path] if "presets" in tool else []
    listed = tool.get("preset_files", [])
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise _fail(path, "tool.edgeexport.preset_files", f"expected a list of paths, got {listed!r}")
    for rel in listed:
        candidate = (path.parent / rel).resolve()
        if not candidate.is_file():
            raise _fail(path, "tool.edgeexport.preset_files", f"{rel!r} does not exist")
        files.append(candidate)
    return files


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parse a catalog TOML file; ProfileError (exit 3) saying which ``what`` (e.g. "device profile") is missing,
    unreadable or not valid TOML."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(f"{what} {path} cannot be read: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{what} {path} is not valid TOML: {err}") from None



def file_safe_name(name: str) -> str:
    """A preset name as it appears in artifact file names: ':' (as in prune-2:4) is '-' on every OS."""
    return name.replace(":", "-")


def preset_by_file_name(name: str, *, extra_files: Sequence[Path] = ()) -> Preset | None:
    """The preset called ``name``, or whose file-safe name is ``name`` (each part of a ``+`` composition
    matched on its own); None when nothing matches."""
    try:
        return load_preset(name, extra_files=extra_files)
    except ProfileError:
        pass
    by_safe = {file_safe_name(p.name): p.name for p in list_presets(extra_files=extra_files)}
    parts = [by_safe.get(part) for part in name.split("+")]
    if any(part is None for part in parts):
        return None
    try:
        return load_preset("+".join(str(part) for part in parts), extra_files=extra_files)
    except ProfileError:
        return None
