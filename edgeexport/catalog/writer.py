"""Write a ``DeviceProfile`` back to the TOML layout ``parse_device`` reads (for ``edgeexport calibrate``).

``tomllib`` only reads, so this is a small writer for the few value types a profile holds. Free-text fields that
the typed profile does not keep (``soc``, ``detail``, ``notes``) are not written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from edgeexport.catalog.model import DeviceProfile


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Iterable):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def _key(key: str) -> str:
    """A dotted key with every part that is not a bare TOML key quoted (``efficiency.conv@int8``)."""
    return ".".join(p if p.replace("_", "").replace("-", "").isalnum() else json.dumps(p) for p in key.split("."))


def _inline(mapping: Mapping[str, float]) -> str:
    return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in mapping.items()) + " }"


def _leaf_sources(sources: Mapping[str, str], prefix: str) -> list[tuple[str, str]]:
    """Sources under ``prefix`` relative to it, without keys that are parents of other keys (TOML forbids a key
    being both a string and a table)."""
    keys = [k for k in sources if (k.startswith(prefix + ".") if prefix else not k.startswith("units."))]
    rel = {k[len(prefix) + 1:] if prefix else k: sources[k] for k in keys}
    return [(k, v) for k, v in rel.items() if not any(other.startswith(k + ".") for other in rel)]


def device_to_toml(profile: DeviceProfile, *, header: str = "") -> str:
    """The profile as TOML text; ``parse_device`` of the result gives back an equal profile (except ``path``).
    ``header`` is written as ``#`` comment lines at the top."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"name = {_value(profile.name)}", f"display_name = {_value(profile.display_name)}",
              f"class = {_value(profile.device_class)}", f"os = {_value(profile.os)}",
              f"os_version = {_value(profile.os_version)}"]
    if profile.android_api is not None:
        lines.append(f"android_api = {profile.android_api}")
    if profile.litert_delegates:
        lines.append(f"litert_delegates = {_value(profile.litert_delegates)}")
    if profile.coreml_deployment_target is not None:
        lines.append(f"coreml_deployment_target = {_value(profile.coreml_deployment_target)}")
    if profile.coreml_spec_version is not None:
        lines.append(f"coreml_spec_version = {profile.coreml_spec_version}")
    lines.append(f"targets = {_value(sorted(profile.targets))}")
    lines.append(f"ram = {profile.ram_bytes}")
    if profile.flash_bytes is not None:
        lines.append(f"flash = {profile.flash_bytes}")
    device_sources = _leaf_sources(profile.sources, "")
    if device_sources:
        lines += ["", "[sources]"] + [f"{_key(k)} = {_value(v)}" for k, v in device_sources]
    for unit in profile.units:
        lines += ["", f"[units.{unit.name}]", f"kind = {_value(unit.kind)}", f"cores = {unit.cores}",
                  f"clock_ghz = {_value(float(unit.clock_ghz))}", f"peak_gops = {_inline(unit.peak_gops)}",
                  f"memory_bandwidth_gbps = {_value(float(unit.memory_bandwidth_gbps))}",
                  f"op_overhead_us = {_value(float(unit.op_overhead_us))}",
                  f"dtypes = {_value(sorted(unit.dtypes))}", f"op_families = {_value(sorted(unit.op_families))}",
                  f"efficiency = {_inline(unit.efficiency)}", f"runtime = {_value(unit.runtime)}"]
        if unit.targets:
            lines.append(f"targets = {_value(sorted(unit.targets))}")
        if unit.power_w is not None:
            lines.append(f"power_w = {_value(float(unit.power_w))}")
        if unit.invoke_us:
            lines.append(f"invoke_us = {_value(float(unit.invoke_us))}")
        for name in ("partition_us", "serial_fraction"):
            if getattr(unit, name) is not None:
                lines.append(f"{name} = {_value(float(getattr(unit, name)))}")
        if unit.on_chip_bytes is not None:
            lines.append(f"on_chip_bytes = {int(unit.on_chip_bytes)}")
        if unit.occupancy_elements is not None:
            lines.append(f"occupancy_elements = {_value(float(unit.occupancy_elements))}")
        if unit.vector_gbps is not None:
            lines.append(f"vector_gbps = {_value(float(unit.vector_gbps))}")
        unit_sources = _leaf_sources(profile.sources, f"units.{unit.name}")
        if unit_sources:
            lines += ["", f"[units.{unit.name}.sources]"] + [f"{_key(k)} = {_value(v)}" for k, v in unit_sources]
    for name, fit in profile.fits.items():
        lines += ["", f"[fit.{name}]", f"rows = {fit.rows}", f"source = {_value(fit.source)}"]
        if fit.parameters:
            lines.append(f"parameters = {_value(list(fit.parameters))}")
        if fit.residuals_pct:
            lines += ["", f"[fit.{name}.residuals_pct]"]
            lines += [f"{json.dumps(k)} = {_value(round(float(v), 2))}" for k, v in fit.residuals_pct.items()]
    for name, val in profile.validation.items():
        lines += ["", f"[validation.{name}]", f"method = {_value(val.method)}"]
        for field in ("rows", "architectures"):
            lines.append(f"{field} = {int(getattr(val, field))}")
        for field in ("median_abs_pct", "within_10_pct", "within_25_pct", "ratio_p10", "ratio_p90",
                      "baseline_median_abs_pct"):
            lines.append(f"{field} = {_value(round(float(getattr(val, field)), 4))}")
    return "\n".join(lines) + "\n"
