"""`edgeexport devices`: list device profiles; `edgeexport devices show NAME`: every field with its source.

Imports only the catalog (stdlib + TOML), never a framework, so it answers instantly.
"""

from __future__ import annotations

import json
from typing import Any

import click

from edgeexport.catalog import (
    DeviceProfile,
    choose_preset,
    is_placeholder,
    list_devices,
    load_device,
)
from edgeexport.errors import EdgeExportError


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def _peak(device: DeviceProfile, dtype: str) -> float | None:
    values = [u.peak_gops[dtype] for u in device.units if dtype in u.peak_gops]
    return max(values) if values else None


def _gops(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def _defaults(device: DeviceProfile) -> dict[str, str]:
    out = {}
    for target in sorted(device.targets):
        try:
            out[target] = choose_preset(device, target)[0].name
        except EdgeExportError as err:  # a device profile that no preset fits is shown, not fatal
            out[target] = f"({err.message})"
    return out


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _device_dict(device: DeviceProfile) -> dict[str, Any]:
    return {
        "name": device.name, "display_name": device.display_name, "class": device.device_class,
        "os": device.os, "os_version": device.os_version, "targets": sorted(device.targets),
        "android_api": device.android_api, "litert_delegates": list(device.litert_delegates),
        "coreml_deployment_target": device.coreml_deployment_target,
        "coreml_spec_version": device.coreml_spec_version, "ram_bytes": device.ram_bytes,
        "flash_bytes": device.flash_bytes, "default_presets": _defaults(device),
        "calibrated": not is_placeholder(device), "path": str(device.path) if device.path else None,
        "units": [
            {
                "name": u.name, "kind": u.kind, "cores": u.cores, "clock_ghz": u.clock_ghz,
                "peak_gops": dict(u.peak_gops), "memory_bandwidth_gbps": u.memory_bandwidth_gbps,
                "op_overhead_us": u.op_overhead_us, "dtypes": sorted(u.dtypes),
                "op_families": sorted(u.op_families), "efficiency": dict(u.efficiency), "runtime": u.runtime,
                "power_w": u.power_w, "targets": sorted(u.targets), "invoke_us": u.invoke_us,
                "partition_us": u.partition_us, "serial_fraction": u.serial_fraction,
                "on_chip_bytes": u.on_chip_bytes,
            }
            for u in device.units
        ],
        "sources": dict(device.sources),
        "fit": {k: {"rows": f.rows, "source": f.source, "parameters": list(f.parameters),
                    "residuals_pct": dict(f.residuals_pct)} for k, f in device.fits.items()},
        "validation": {k: vars(v) for k, v in device.validation.items()},
        "evidence": None if device.evidence is None else {"covered": sorted(device.evidence.covered),
                                                          "basis": device.evidence.basis},
    }


@click.group(name="devices", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    """List device profiles: compute units, peak int8/fp16 GOP/s, RAM and the preset `--preset auto` picks."""
    if ctx.invoked_subcommand is not None:
        return
    devices = list_devices()
    if as_json:
        click.echo(json.dumps([_device_dict(d) for d in devices], indent=2))
        return
    rows = []
    for d in devices:
        defaults = ", ".join(f"{t}: {p}" for t, p in _defaults(d).items())
        name = d.name + ("*" if is_placeholder(d) else "")
        rows.append([name, d.device_class, ",".join(u.name for u in d.units), _gops(_peak(d, "int8")),
                     _gops(_peak(d, "fp16")), _size(d.ram_bytes), defaults])
    click.echo(_table(rows, ["name", "class", "units", "int8 GOP/s", "fp16 GOP/s", "RAM", "auto preset"]))
    if any(is_placeholder(d) for d in devices):
        click.echo("\n* placeholder numbers until `edgeexport calibrate` measures this machine")
    click.echo("Peak GOP/s: best unit, 1 MAC = 2 ops. `edgeexport devices show NAME` lists every source.")


def _show_lines(device: DeviceProfile) -> list[tuple[str, str, str]]:
    src = device.sources
    rows: list[tuple[str, str, str]] = [
        ("name", device.name, ""), ("display_name", device.display_name, ""),
        ("class", device.device_class, ""), ("os", f"{device.os} {device.os_version}", src.get("os_version", "")),
        ("targets", ", ".join(sorted(device.targets)), ""),
    ]
    if device.android_api is not None:
        rows.append(("android_api", str(device.android_api), src.get("android_api", "")))
    if device.litert_delegates:
        rows.append(("litert_delegates", ", ".join(device.litert_delegates), ""))
    if device.coreml_deployment_target:
        rows.append(("coreml_deployment_target", device.coreml_deployment_target,
                     src.get("coreml_deployment_target", "")))
        rows.append(("coreml_spec_version", str(device.coreml_spec_version), src.get("coreml_spec_version", "")))
    rows.append(("ram", _size(device.ram_bytes), src.get("ram", "")))
    if device.flash_bytes is not None:
        rows.append(("flash", _size(device.flash_bytes), src.get("flash", "")))
    for target, preset in _defaults(device).items():
        rows.append((f"auto preset ({target})", preset, "edgeexport.catalog.choose_preset"))
    for u in device.units:
        p = f"units.{u.name}"
        rows.append((p, f"{u.kind}, runtime {u.runtime}" + (f", targets {', '.join(sorted(u.targets))}"
                                                                 if u.targets else ""), ""))
        rows.append((f"{p}.cores", str(u.cores), src.get(f"{p}.cores", "")))
        rows.append((f"{p}.clock_ghz", f"{u.clock_ghz:g}", src.get(f"{p}.clock_ghz", "")))
        for dtype, value in u.peak_gops.items():
            rows.append((f"{p}.peak_gops.{dtype}", f"{value:g}", src.get(f"{p}.peak_gops.{dtype}", "")))
        rows.append((f"{p}.memory_bandwidth_gbps", f"{u.memory_bandwidth_gbps:g}",
                     src.get(f"{p}.memory_bandwidth_gbps", "")))
        rows.append((f"{p}.op_overhead_us", f"{u.op_overhead_us:g}", src.get(f"{p}.op_overhead_us", "")))
        for family, value in u.efficiency.items():
            rows.append((f"{p}.efficiency.{family}", f"{value:g}", src.get(f"{p}.efficiency.{family}", "")))
        if u.power_w is not None:
            rows.append((f"{p}.power_w", f"{u.power_w:g}", src.get(f"{p}.power_w", "")))
        for name in ("invoke_us", "partition_us", "serial_fraction", "on_chip_bytes"):
            value = getattr(u, name)
            if value is not None and (value or name != "invoke_us"):
                rows.append((f"{p}.{name}", f"{value:g}", src.get(f"{p}.{name}", "")))
        rows.append((f"{p}.dtypes", ", ".join(sorted(u.dtypes)), ""))
        rows.append((f"{p}.op_families", ", ".join(sorted(u.op_families)), ""))
        fit = device.fits.get(u.name)
        if fit is not None:
            rows.append((f"fit.{u.name}", f"{fit.rows} rows, {len(fit.parameters)} parameters", fit.source))
        check = device.validation.get(u.name)
        if check is not None:
            rows.append((f"validation.{u.name}",
                         (f"{check.rows} rows: median error {check.median_abs_pct:.1f} %, "
                          f"{check.within_10_pct:.0f} % within 10 %, {check.within_25_pct:.0f} % within 25 %"),
                         f"{check.method}; k x MACs baseline median {check.baseline_median_abs_pct:.1f} %"))
        elif u.kind != "mcu" or fit is None:
            rows.append((f"validation.{u.name}", "not validated against measurements", ""))
    return rows


@command.command(name="show")
@click.argument("name", required=False)
@click.option("--device", "device_path", type=click.Path(dir_okay=False), default=None,
              help="Path to a device profile .toml (instead of NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(name: str | None, device_path: str | None, as_json: bool) -> None:
    """Show every field of one profile with the source of each number (NAME or --device path/to/profile.toml)."""
    if (name is None) == (device_path is None):
        raise click.UsageError("give a device NAME or --device PATH (one of them)")
    device = load_device(device_path if device_path is not None else str(name))
    if as_json:
        click.echo(json.dumps(_device_dict(device), indent=2))
        return
    rows = _show_lines(device)
    width = max(len(r[0]) for r in rows)
    value_width = min(40, max(len(r[1]) for r in rows))
    click.echo(f"{device.display_name} ({device.path})")
    for field, value, source in rows:
        line = f"{field.ljust(width)}  {value.ljust(value_width)}"
        click.echo(f"{line}  {source}".rstrip() if source else line.rstrip())
    click.echo(_evidence_line(device))


def _evidence_line(device: DeviceProfile) -> str:
    """What the profile was fitted on; simulate flags graphs outside it as extrapolated."""
    if device.evidence is None:
        return "evidence: not recorded (simulate cannot tell which graphs this profile extrapolates to)"
    pairs = ", ".join(sorted(device.evidence.covered))
    return f"evidence: {device.evidence.basis or 'unstated'}; covers {pairs}"
