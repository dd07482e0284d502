"""``edgeexport calibrate --measurements``: measurement rows + a base profile -> a fitted profile TOML.

Every fitted number is written into the profile with an ``F:`` source naming the rows it was fitted to, the
per-row residuals go to ``[fit.<unit>]`` and the leave-one-architecture-out result to ``[validation.<unit>]``
(``fit.leave_one_architecture_out``), which ``simulate`` turns into its uncertainty band.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edgeexport.catalog.model import DeviceProfile, FitRecord, Validation
from edgeexport.errors import DataError, OutputPathError
from edgeexport.simulate.fit import CrossValidation, Sample, UnitFit, fit_device, leave_one_architecture_out
from edgeexport.simulate.graph import OpGraph, read_graph
from edgeexport.simulate.measurements import Row
from edgeexport.simulate.zoo import ModelSpec, artifact_for, parse_options

_GRAPHS: dict[str, OpGraph] = {}


def _graph(path: Path) -> OpGraph:
    key = str(path)
    if key not in _GRAPHS:
        _GRAPHS[key] = read_graph(path)
    return _GRAPHS[key]


def row_label(row: Row) -> str:
    opts = f"({row.options})" if row.options else ""
    where = row.path + (f" {row.threads}T" if row.threads else "")
    model = Path(row.model).name if row.is_artifact else f"{row.model}{opts}@{row.size}"
    m = re.search(r"DEVICES\.md (\d+\.\d+)", row.source)
    return f"{model} {row.preset} {where}" + (f" [{m.group(1)}]" if m else "") + (
        f" [{row.note.split(';')[0]}]" if row.note else "")


def spec_of(row: Row) -> ModelSpec:
    if row.size is None:
        raise DataError(f"row {row_label(row)}: an architecture row needs an input size")
    return ModelSpec(row.model, row.size, row.preset, parse_options(row.options), row.target)


def samples_for(rows: Sequence[Row], *, build: bool = True, cache: Path | None = None,
                progress: Callable[[str], None] | None = None) -> tuple[list[Sample], list[str]]:
    """Samples of the rows whose artifact exists or could be built; and one line per skipped row."""
    samples: list[Sample] = []
    skipped: list[str] = []
    for row in rows:
        try:
            if row.is_artifact:
                path: Path | None = Path(row.model)
                arch = Path(row.model).name.split(".")[0]
            else:
                spec = spec_of(row)
                if progress is not None and build:
                    progress(f"artifact {spec.key}")
                path = artifact_for(spec, cache, build=build)
                arch = row.model
            if path is None or not path.exists():
                skipped.append(f"{row_label(row)}: artifact not built")
                continue
            samples.append(Sample(_graph(path), row.path, row.threads, row.ms, row_label(row), arch, row.preset))
        except DataError as err:
            skipped.append(f"{row_label(row)}: {err.message if hasattr(err, 'message') else err}")
    return samples, skipped


def _short_sources(rows: Sequence[Row]) -> str:
    found = []
    for row in rows:
        m = re.search(r"DEVICES\.md \d+\.\d+", row.source)
        text = m.group(0) if m else row.source[:60]
        if text not in found:
            found.append(text)
    return ", ".join(found)


@dataclass(frozen=True)
class FittedProfile:
    """The fitted profile, per unit its fit / row count / cross-validation, and rows that were skipped."""

    profile: DeviceProfile
    fits: dict[str, tuple[UnitFit, int]]
    validation: dict[str, CrossValidation]
    skipped: tuple[str, ...]


def fit_profile(base: DeviceProfile, rows: Sequence[Row], *, name: str | None = None, validate: bool = True,
                build: bool = True, origin: str = "", progress: Callable[[str], None] | None = None) -> FittedProfile:
    """Fit ``base`` to ``rows`` (those for other devices are ignored) and attach sources, fit records and,
    with ``validate``, leave-one-architecture-out validation of every unit with two or more architectures."""
    mine = [r for r in rows if not r.device or r.device == base.name]
    if not mine:
        raise DataError(f"no measurement rows for {base.name}", hint="the CSV's device column must match --base")
    samples, skipped = samples_for(mine, build=build, progress=progress)
    if not samples:
        raise DataError(f"none of the {len(mine)} rows for {base.name} has an artifact")
    fitted, fits = fit_device(base, samples, progress)
    validation: dict[str, CrossValidation] = {}
    if validate:
        from edgeexport.simulate.fit import target_unit

        for unit_name in fits:
            unit_samples = [s for s in samples if target_unit(base, s.path).name == unit_name]
            if len({s.arch for s in unit_samples}) >= 2:
                others = replace(fitted, units=tuple(u if u.name != unit_name else base_u
                                                     for u, base_u in zip(fitted.units, base.units, strict=True)))
                validation[unit_name] = leave_one_architecture_out(base, unit_name, unit_samples, prefit_cpu=others)
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    sources = dict(fitted.sources)
    records: dict[str, FitRecord] = {}
    for unit_name, (unit_fit, n) in fits.items():
        text = (f"F: fitted to {n} rows of {_short_sources(mine)} (edgeexport calibrate --measurements"
                f"{' ' + origin if origin else ''}, {stamp})")
        for param in unit_fit.parameters:
            if param.startswith("peak_gops."):
                old = base.unit(unit_fit.unit.kind)
                was = old.peak_gops.get(param.split(".", 1)[1], 0.0) if old is not None else 0.0
                _set_source(sources, f"units.{unit_name}.{param}",
                            f"F: raised from {was:g} because the efficiency fitted to {n} rows of "
                            f"{_short_sources(mine)} reached its bound of 1 (the base peak was too low)")
            else:
                _set_source(sources, f"units.{unit_name}.{param}", text)
        for key in unit_fit.unit.efficiency:  # family@dtype keys that follow a fitted default@dtype
            sources.setdefault(f"units.{unit_name}.efficiency.{key}", text)
        records[unit_name] = FitRecord(n, text[3:], tuple(unit_fit.parameters),
                                       {k: round(v, 2) for k, v in unit_fit.residuals_pct.items()})
    checks = {}
    for unit_name, cv in validation.items():
        st = cv.stats()
        checks[unit_name] = Validation(
            rows=int(st["rows"]), architectures=int(st["architectures"]), median_abs_pct=st["median_abs_pct"],
            within_10_pct=st["within_10_pct"], within_25_pct=st["within_25_pct"], ratio_p10=st["ratio_p10"],
            ratio_p90=st["ratio_p90"], baseline_median_abs_pct=st["baseline_median_abs_pct"],
            method=f"leave-one-architecture-out over {int(st['architectures'])} architectures "
                   f"(fit without one, predict its rows), {stamp}",
        )
    profile = replace(fitted, name=name or base.name, sources=sources, fits=records, validation=checks)
    return FittedProfile(profile, fits, validation, tuple(skipped))


def _set_source(sources: dict[str, str], key: str, text: str) -> None:
    """Give ``key`` its own source. ``DeviceProfile.sources`` already resolves every number to its source, so
    a parent key that covered it (``units.tpu.efficiency``) is dropped by the writer in favour of the leaves."""
    sources[key] = text


def write_profile(profile: DeviceProfile, out: Path, header: str) -> Path:
    """Write ``profile`` as TOML (see ``catalog.writer``) and check that it reads back."""
    from edgeexport.catalog.devices import parse_device
    from edgeexport.catalog.writer import device_to_toml

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(device_to_toml(profile, header=header), encoding="utf-8")
    except OSError as err:
        raise OutputPathError(f"cannot write the fitted profile to {out}: {err.strerror or err}") from err
    parse_device(out)
    return out
