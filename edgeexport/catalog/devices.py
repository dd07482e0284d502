"""Load and validate device profiles from TOML (stdlib ``tomllib``; no framework imports).

File layout (one device per file, ``data/devices/<name>.toml``)::

    name = "pixel-8"                      # must equal the file stem when looked up by name
    display_name = "Google Pixel 8"
    class = "phone"                       # phone | tablet | sbc | mcu | host
    os = "android"                        # android | ios | linux | none
    os_version = "14"
    targets = ["tflite"]                  # tflite, coreml
    android_api = 34                      # Android only
    litert_delegates = ["xnnpack", "gpu", "nnapi"]
    coreml_deployment_target = "iOS18"    # Apple only, with coreml_spec_version
    ram = "8 GiB"                         # memory for a model: "320 KiB", "8 GiB" or bytes
    flash = "1 MiB"                       # optional: storage limit for weights (microcontrollers)

    [sources]                             # a source for every number above, keyed by field
    ram = "Q: https://..."

    [units.cpu]                           # one table per compute unit; the key is the unit's name
    kind = "cpu"                          # cpu | gpu | npu | dsp | ane | tpu | mcu
    detail = "1x X3 @2.91 + 3x A715 @2.37"  # free text, optional
    cores = 4
    clock_ghz = 2.37
    peak_gops = { fp32 = 206.9, fp16 = 413.8, int8 = 827.5 }   # GOP/s, 1 MAC = 2 ops
    memory_bandwidth_gbps = 68.3
    op_overhead_us = 5.0
    dtypes = ["fp32", "fp16", "int8"]
    op_families = "all"                   # or a list of OP_FAMILIES
    efficiency = { default = 0.4, conv = 0.5, depthwise = 0.25 }
    runtime = "xnnpack"
    targets = ["tflite"]                  # optional: targets whose runtime uses this unit (default: all)
    power_w = 5.0                         # optional
    serial_fraction = 0.3                 # optional, CPUs: fitted Amdahl serial fraction (calibrate)
    thread_sync_us = 2.0                  # optional, CPUs: per-op thread-pool hand-off when threads > 1

    [units.cpu.sources]                   # keys relative to the unit; a parent key covers its children
    peak_gops = "D: 1 x 2.91 GHz x 32 + 3 x 2.37 GHz x 16 FLOP/cycle"
    efficiency.conv = "D: ..."

Fitted profiles add, per unit, ``invoke_us``, ``partition_us``, ``serial_fraction``, ``on_chip_bytes``,
``occupancy_elements`` (GPUs: output elements a kernel needs to fill the unit), ``vector_gbps`` (compiled
accelerators: the rate at which ops without MACs move their activations) and
``family@dtype`` efficiency keys (e.g. ``conv@int8``), and device-level ``[fit.<unit>]`` (rows, source,
parameters, residuals_pct) and ``[validation.<unit>]`` tables (see ``model.FitRecord`` / ``model.Validation``).

    [evidence]                            # optional: what the numbers were fitted/validated on
    covered = ["conv@fp32", "conv@int8"]  # op family @ compute dtype; graphs outside it are extrapolated
    basis = "M: edgeexport calibrate, 44 LiteRT micro-benchmarks"

Source strings start with a tag from /work/shared/DEVICES.md (``Q:``, ``Q→:``, ``D:``, ``S:``, ``U:``, combined
like ``U/Q:``), ``M:`` for numbers measured on the device by ``edgeexport calibrate``, ``F:`` for numbers fitted
to published measurements by ``edgeexport calibrate --measurements``, or are exactly
``PLACEHOLDER_SOURCE`` (the shipped ``host`` profile before calibration).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeexport.catalog.model import UNIT_KINDS, ComputeUnit, DeviceProfile, Evidence, FitRecord, Validation
from edgeexport.errors import ProfileError
from edgeexport.targets.base import target_names

DATA_DIR = Path(__file__).parent / "data"
DEVICE_DIR = DATA_DIR / "devices"

DEVICE_CLASSES = ("phone", "tablet", "sbc", "mcu", "host")
TARGETS = target_names()
OSES = ("android", "ios", "linux", "none")
DTYPES = ("fp32", "fp16", "int8", "int16")
OP_FAMILIES = (
    "conv", "depthwise", "fc", "matmul", "elementwise", "activation", "pool", "reduce", "softmax", "norm",
    "reshape", "concat", "pad", "resize", "recurrent", "gather", "attention",
)
PLACEHOLDER_SOURCE = "placeholder until edgeexport calibrate"
_TAG = r"(?:Q→|Q->|[QDSUMPF])"
_SOURCE_RE = re.compile(rf"^{_TAG}(?:\s*/\s*{_TAG})*:\s*\S")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)\s*$")
_SIZE_UNITS = {"B": 1, "KB": 10**3, "KiB": 2**10, "MB": 10**6, "MiB": 2**20, "GB": 10**9, "GiB": 2**30}

_DEVICE_KEYS = {
    "name", "display_name", "class", "os", "os_version", "targets", "android_api", "litert_delegates",
    "coreml_deployment_target", "coreml_spec_version", "ram", "flash", "soc", "notes", "units", "sources",
    "fit", "validation",
}
_DEVICE_KEYS |= {"evidence"}
_EVIDENCE_KEYS = {"covered", "basis"}
_THREAD_KEYS = {"serial_fraction", "thread_sync_us"}
_UNIT_KEYS = {
    "kind", "detail", "cores", "clock_ghz", "peak_gops", "memory_bandwidth_gbps", "op_overhead_us", "dtypes",
    "op_families", "efficiency", "runtime", "targets", "power_w", "sources",
    "invoke_us", "partition_us", "serial_fraction", "on_chip_bytes", "occupancy_elements", "vector_gbps",
}
_UNIT_KEYS |= _THREAD_KEYS


class _Reader:
    """Reads one profile file, collecting the dotted path of every number so each can be checked for a source."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.numbers: list[str] = []
        self.fields: set[str] = set()

    def fail(self, field: str, problem: str) -> ProfileError:
        return ProfileError(f"device profile {self.path}: field '{field}': {problem}")

    def get(self, table: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> Any:
        dotted = f"{where}.{key}" if where else key
        if key not in table:
            if required:
                raise self.fail(dotted, "missing")
            return None
        self.fields.add(dotted)
        return table[key]

    def text(self, table: Mapping[str, Any], key: str, where: str = "", *, required: bool = True,
             choices: tuple[str, ...] | None = None) -> str | None:
        value = self.get(table, key, where, required=required)
        dotted = f"{where}.{key}" if where else key
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(dotted, f"expected a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(dotted, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def number(self, table: Mapping[str, Any], key: str, where: str = "", *, required: bool = True,
               integer: bool = False, positive: bool = True, at_most: float | None = None) -> float | None:
        value = self.get(table, key, where, required=required)
        dotted = f"{where}.{key}" if where else key
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(dotted, f"expected a number, got {value!r}")
        if integer and not isinstance(value, int):
            raise self.fail(dotted, f"expected an integer, got {value!r}")
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise self.fail(dotted, f"expected a {'positive' if positive else 'non-negative'} number, got {value!r}")
        if at_most is not None and value > at_most:
            raise self.fail(dotted, f"expected at most {at_most}, got {value!r}")
        self.numbers.append(dotted)
        return value

    def size(self, table: Mapping[str, Any], key: str, *, required: bool = True) -> int | None:
        value = self.get(table, key, "", required=required)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            self.numbers.append(key)
            return value
        match = _SIZE_RE.match(value) if isinstance(value, str) else None
        if match is None or float(match.group(1)) <= 0:
            raise self.fail(key, f"expected a positive size like '8 GiB' or '320 KiB' (or bytes), got {value!r}")
        self.numbers.append(key)
        return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])

    def names(self, table: Mapping[str, Any], key: str, where: str = "", *, choices: tuple[str, ...] | None = None,
              required: bool = True, allow_all: bool = False) -> tuple[str, ...]:
        value = self.get(table, key, where, required=required)
        dotted = f"{where}.{key}" if where else key
        if value is None:
            return ()
        if allow_all and value == "all" and choices is not None:
            return choices
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(dotted, f"expected a list of strings, got {value!r}")
        if choices is not None:
            bad = [v for v in value if v not in choices]
            if bad:
                raise self.fail(dotted, f"unknown name(s) {', '.join(bad)}; known: {', '.join(choices)}")
        return tuple(value)

    def table(self, table: Mapping[str, Any], key: str, where: str = "", *, required: bool = True) -> dict[str, Any]:
        value = self.get(table, key, where, required=required)
        dotted = f"{where}.{key}" if where else key
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(dotted, f"expected a table, got {value!r}")
        return value

    def unknown_keys(self, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
        extra = sorted(set(table) - allowed)
        if extra:
            dotted = f"{where}.{extra[0]}" if where else extra[0]
            close = difflib.get_close_matches(extra[0], sorted(allowed), n=1)
            raise self.fail(dotted, "unknown key" + (f" (did you mean '{close[0]}'?)" if close else ""))


def _flatten_sources(reader: _Reader, table: Mapping[str, Any], prefix: str, out: dict[str, str]) -> None:
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            _flatten_sources(reader, value, dotted, out)
        elif isinstance(value, str) and (value == PLACEHOLDER_SOURCE or _SOURCE_RE.match(value)):
            out[dotted] = value
        else:
            raise reader.fail(
                f"sources.{dotted}" if not dotted.startswith("units.") else dotted,
                f"a source must start with a tag (Q:, Q→:, D:, S:, U:, M:) or be {PLACEHOLDER_SOURCE!r}; "
                f"got {value!r}",
            )


def _read_unit(reader: _Reader, name: str, raw: Any, device_targets: frozenset[str],
               sources: dict[str, str]) -> ComputeUnit:
    where = f"units.{name}"
    if not isinstance(raw, dict):
        raise reader.fail(where, "expected a table")
    reader.unknown_keys(raw, _UNIT_KEYS, where)
    kind = reader.text(raw, "kind", where, choices=UNIT_KINDS)
    cores = reader.number(raw, "cores", where, integer=True)
    clock = reader.number(raw, "clock_ghz", where)
    dtypes = reader.names(raw, "dtypes", where, choices=DTYPES)
    if not dtypes:
        raise reader.fail(f"{where}.dtypes", "must list at least one dtype")
    peak_raw = reader.table(raw, "peak_gops", where)
    for dtype in peak_raw:
        if dtype not in DTYPES:
            raise reader.fail(f"{where}.peak_gops.{dtype}", f"unknown dtype; known: {', '.join(DTYPES)}")
    peak = {d: float(reader.number(peak_raw, d, f"{where}.peak_gops") or 0) for d in peak_raw}
    for dtype in dtypes:
        if dtype not in peak:
            raise reader.fail(f"{where}.peak_gops.{dtype}", f"missing (the unit lists dtype {dtype})")
    bandwidth = reader.number(raw, "memory_bandwidth_gbps", where)
    overhead = reader.number(raw, "op_overhead_us", where, positive=False)
    families = reader.names(raw, "op_families", where, choices=OP_FAMILIES, allow_all=True)
    eff_raw = reader.table(raw, "efficiency", where)
    if "default" not in eff_raw:
        raise reader.fail(f"{where}.efficiency.default", "missing (every unit needs a default efficiency)")
    for key in eff_raw:
        family, _, dtype = key.partition("@")
        if (family != "default" and family not in OP_FAMILIES) or (dtype and dtype not in DTYPES):
            raise reader.fail(f"{where}.efficiency.{key}",
                              f"unknown op family (or family@dtype); known: {', '.join(OP_FAMILIES)}; dtypes {', '.join(DTYPES)}")
    efficiency = {f: float(reader.number(eff_raw, f, f"{where}.efficiency", at_most=1.0) or 0) for f in eff_raw}
    runtime = reader.text(raw, "runtime", where) or ""
    reader.text(raw, "detail", where, required=False)
    targets = frozenset(reader.names(raw, "targets", where, choices=TARGETS, required=False))
    if targets - device_targets:
        raise reader.fail(f"{where}.targets", f"{sorted(targets - device_targets)} not in the device's targets")
    power = reader.number(raw, "power_w", where, required=False)
    invoke = reader.number(raw, "invoke_us", where, required=False, positive=False)
    partition = reader.number(raw, "partition_us", where, required=False, positive=False)
    serial = reader.number(raw, "serial_fraction", where, required=False, positive=False, at_most=1.0)
    sync = reader.number(raw, "thread_sync_us", where, required=False, positive=False)
    on_chip = reader.number(raw, "on_chip_bytes", where, required=False, integer=True, positive=False)
    occupancy = reader.number(raw, "occupancy_elements", where, required=False)
    vector = reader.number(raw, "vector_gbps", where, required=False)
    _flatten_sources(reader, reader.table(raw, "sources", where, required=False), where, sources)
    return ComputeUnit(
        name=name, kind=str(kind), cores=int(cores or 0), clock_ghz=float(clock or 0), peak_gops=peak,
        memory_bandwidth_gbps=float(bandwidth or 0), op_overhead_us=float(overhead or 0), dtypes=frozenset(dtypes),
        op_families=frozenset(families), efficiency=efficiency, runtime=runtime,
        power_w=None if power is None else float(power), targets=targets,
        invoke_us=float(invoke or 0.0), partition_us=None if partition is None else float(partition),
        serial_fraction=None if serial is None else float(serial), thread_sync_us=float(sync or 0.0),
        on_chip_bytes=None if on_chip is None else int(on_chip),
        occupancy_elements=None if occupancy is None else float(occupancy),
        vector_gbps=None if vector is None else float(vector),
    )


def _read_evidence(reader: _Reader, raw: Mapping[str, Any]) -> Evidence | None:
    """The optional ``[evidence]`` table: ``covered = ["conv@fp32", ...]`` and a ``basis`` sentence."""
    table = reader.table(raw, "evidence", required=False)
    if not table:
        return None
    reader.unknown_keys(table, _EVIDENCE_KEYS, "evidence")
    pairs = reader.names(table, "covered", "evidence")
    for pair in pairs:
        family, _, dtype = pair.partition("@")
        if family not in OP_FAMILIES or dtype not in DTYPES:
            raise reader.fail("evidence.covered", f"{pair!r} is not 'family@dtype' (families: "
                              f"{', '.join(OP_FAMILIES)}; dtypes: {', '.join(DTYPES)})")
    return Evidence(frozenset(pairs), reader.text(table, "basis", "evidence", required=False) or "")


def parse_device(path: Path) -> DeviceProfile:
    """Read and validate one profile file; raises ``ProfileError`` naming the file and the dotted field."""
    from edgeexport.catalog.presets import read_toml

    raw = read_toml(path, "device profile")
    reader = _Reader(path)
    reader.unknown_keys(raw, _DEVICE_KEYS, "")
    name = str(reader.text(raw, "name"))
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", name):
        raise reader.fail("name", f"{name!r} must be lower-case letters, digits, '-' and '.'")
    targets = frozenset(reader.names(raw, "targets", choices=TARGETS))
    os_name = reader.text(raw, "os", choices=OSES)
    api = reader.number(raw, "android_api", integer=True, required=os_name == "android")
    spec = reader.number(raw, "coreml_spec_version", integer=True, required="coreml" in targets)
    deployment = reader.text(raw, "coreml_deployment_target", required="coreml" in targets)
    if deployment is not None and not re.fullmatch(r"(iOS|macOS)\d+", deployment):
        raise reader.fail("coreml_deployment_target", f"expected e.g. 'iOS17', got {deployment!r}")
    sources: dict[str, str] = {}
    device_sources = reader.table(raw, "sources", required=False)
    _flatten_sources(reader, device_sources, "", sources)
    units_raw = reader.table(raw, "units")
    if not units_raw:
        raise reader.fail("units", "a device needs at least one compute unit")
    units = tuple(_read_unit(reader, unit, body, targets, sources) for unit, body in units_raw.items())
    display_name = str(reader.text(raw, "display_name"))
    device_class = str(reader.text(raw, "class", choices=DEVICE_CLASSES))
    ram = int(reader.size(raw, "ram") or 0)
    flash = reader.size(raw, "flash", required=False)
    os_version = str(reader.text(raw, "os_version"))
    delegates = reader.names(raw, "litert_delegates", required=False)
    reader.text(raw, "soc", required=False)
    reader.text(raw, "notes", required=False)
    unit_names = {u.name for u in units}
    fits = {k: _read_fit(reader, k, v, unit_names) for k, v in reader.table(raw, "fit", required=False).items()}
    validation = {k: _read_validation(reader, k, v, unit_names)
                  for k, v in reader.table(raw, "validation", required=False).items()}
    return DeviceProfile(
        name=name, display_name=display_name, device_class=device_class, units=units, ram_bytes=ram,
        flash_bytes=flash, os=str(os_name), os_version=os_version, targets=targets,
        android_api=None if api is None else int(api), litert_delegates=delegates,
        coreml_deployment_target=deployment, coreml_spec_version=None if spec is None else int(spec),
        sources=_resolve_sources(reader, sources), path=path, fits=fits, validation=validation,
        evidence=_read_evidence(reader, raw),
    )


# [fit.<unit>] and [validation.<unit>] describe their own provenance (``source`` / ``method``), so their numbers
# need no entry under [sources].
_FIT_KEYS = {"rows", "source", "parameters", "residuals_pct"}
_VALIDATION_KEYS = {"rows", "architectures", "median_abs_pct", "within_10_pct", "within_25_pct", "ratio_p10",
                    "ratio_p90", "baseline_median_abs_pct", "method"}


def _plain_number(reader: _Reader, table: Mapping[str, Any], key: str, where: str) -> float:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise reader.fail(f"{where}.{key}", f"expected a non-negative number, got {value!r}")
    return float(value)


def _read_fit(reader: _Reader, unit: str, raw: Any, units: set[str]) -> FitRecord:
    where = f"fit.{unit}"
    if unit not in units or not isinstance(raw, dict):
        raise reader.fail(where, "expected a table named after one of the device's units")
    reader.unknown_keys(raw, _FIT_KEYS, where)
    source = reader.text(raw, "source", where)
    params = reader.names(raw, "parameters", where, required=False)
    residuals = reader.table(raw, "residuals_pct", where, required=False)
    bad = [k for k, v in residuals.items() if isinstance(v, bool) or not isinstance(v, int | float)]
    if bad:
        raise reader.fail(f"{where}.residuals_pct.{bad[0]}", "expected a number")
    return FitRecord(int(_plain_number(reader, raw, "rows", where)), str(source), params,
                     {k: float(v) for k, v in residuals.items()})


def _read_validation(reader: _Reader, unit: str, raw: Any, units: set[str]) -> Validation:
    where = f"validation.{unit}"
    if unit not in units or not isinstance(raw, dict):
        raise reader.fail(where, "expected a table named after one of the device's units")
    reader.unknown_keys(raw, _VALIDATION_KEYS, where)
    method = str(reader.text(raw, "method", where))
    num = {k: _plain_number(reader, raw, k, where) for k in _VALIDATION_KEYS - {"method"}}
    return Validation(rows=int(num["rows"]), architectures=int(num["architectures"]),
                      median_abs_pct=num["median_abs_pct"], within_10_pct=num["within_10_pct"],
                      within_25_pct=num["within_25_pct"], ratio_p10=num["ratio_p10"], ratio_p90=num["ratio_p90"],
                      baseline_median_abs_pct=num["baseline_median_abs_pct"], method=method)


def _resolve_sources(reader: _Reader, given: dict[str, str]) -> dict[str, str]:
    """Every number gets the most specific source whose key is its path or a parent of it."""
    resolved = dict(given)
    for number in reader.numbers:
        parts = number.split(".")
        for cut in range(len(parts), 0, -1):
            key = ".".join(parts[:cut])
            if key in given:
                resolved[number] = given[key]
                break
        else:
            where = "[units." + parts[1] + ".sources]" if parts[0] == "units" else "[sources]"
            raise reader.fail(number, f"no source for this number (add one under {where})")
    known = set(reader.fields) | set(reader.numbers)
    for key in given:
        if key not in known:
            raise reader.fail(key if key.startswith("units.") else f"sources.{key}",
                              "source given for a field that does not exist")
    return resolved


def user_device_dir() -> Path:
    """Where user and calibrated profiles live: ``$EDGEEXPORT_DEVICE_DIR``, else
    ``$XDG_CONFIG_HOME/edgeexport/devices`` (default ``~/.config/edgeexport/devices``). A file there named like a
    shipped profile (e.g. ``host.toml`` written by ``edgeexport calibrate``) replaces the shipped one."""
    explicit = os.environ.get("EDGEEXPORT_DEVICE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgeexport" / "devices"


def _device_files() -> dict[str, Path]:
    files = {p.stem: p for p in sorted(DEVICE_DIR.glob("*.toml"))}
    user = user_device_dir()
    if user.is_dir():
        files.update({p.stem: p for p in sorted(user.glob("*.toml"))})
    return files


def load_device(name_or_path: str | Path) -> DeviceProfile:
    """A profile by shipped/user name (``"pixel-8"``) or by path to a ``.toml`` file.

    Raises ``ProfileError`` (exit 3) for an unknown name (listing close matches) or a malformed file."""
    text = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or text.endswith(".toml") or os.sep in text
    if looks_like_path:
        return parse_device(Path(text))
    files = _device_files()
    if text not in files:
        close = difflib.get_close_matches(text, list(files), n=4, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else "run `edgeexport devices` for the list"
        raise ProfileError(f"unknown device {text!r}", hint=hint)
    profile = parse_device(files[text])
    if profile.name != text:
        raise ProfileError(f"device profile {files[text]}: field 'name': {profile.name!r} must match the file name")
    return profile


_CLASS_ORDER = {c: i for i, c in enumerate(("phone", "tablet", "sbc", "mcu", "host"))}


def list_devices() -> list[DeviceProfile]:
    """Every shipped profile (user profiles replace shipped ones of the same name), phones first."""
    profiles = [load_device(name) for name in _device_files()]
    return sorted(profiles, key=lambda p: (_CLASS_ORDER.get(p.device_class, 9), p.os, p.name))


def is_placeholder(profile: DeviceProfile) -> bool:
    """True when any number of the profile still carries the placeholder source (``host`` before calibration)."""
    return any(v == PLACEHOLDER_SOURCE for v in profile.sources.values())
