"""``edgeexport simulate``: estimated latency, memory and size of an artifact on one or more devices."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeexport.errors import BudgetExceededError


def _kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n < 10 * 2**20 else f"{n / 2**20:,.1f} MiB"


def _render(est: object) -> str:
    from edgeexport.simulate.estimate import LatencyEstimate

    assert isinstance(est, LatencyEstimate)
    lines = [
        f"{est.device}: {est.p50_ms:.3f} ms p50 (band {est.low_ms:.3f}-{est.high_ms:.3f} ms, {est.band_source}), "
        f"{est.throughput_ips:,.1f} inf/s, path {est.path}"
        + (f", {est.threads} thread(s)" if est.threads else "")
        + (" [EXTRAPOLATED]" if est.extrapolated else ""),
        f"  MACs {est.macs / 1e6:,.2f} M | size {_kib(est.size_bytes)} | weights {_kib(est.weights_bytes)} | "
        f"activation arena {_kib(est.arena_bytes)} | peak memory {_kib(est.peak_memory_bytes)}"
        + (f" | energy {est.energy_mj:.3f} mJ" if est.energy_mj is not None else ""),
        "  partitions: " + ", ".join(f"{p.unit} ops {p.first}-{p.last} ({p.ms:.3f} ms)" for p in est.partitions),
        "  other paths: " + ", ".join(f"{name} {ms:.3f} ms" for name, ms in est.alternatives),
        "  time by family: " + ", ".join(f"{f} {ms:.3f}" for f, ms in est.family_ms[:6]),
        "  top ops:",
    ]
    for op in est.top_ops[:5]:
        lines.append(f"    {op.ms:8.3f} ms  {op.op_type:<18} {op.unit:<5} {op.dtype:<5} {op.bound:<7} {op.name[:60]}")
    budget = "ok" if est.budget.ok else "OVER: " + "; ".join(est.budget.messages)
    lines.append(f"  budget: {budget}")
    lines += [f"  warning: {w}" for w in est.warnings]
    return "\n".join(lines)


@click.command("simulate")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--device", "devices", multiple=True, default=("host",), show_default=True,
              help="Device profile name or .toml path; repeat for several devices.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads (default: the device's cores, at most 4).")
@click.option("--compute-units", type=click.Choice(["all", "cpu_and_gpu", "cpu_only", "cpu_and_ne"]), default="all",
              show_default=True, help="Core ML compute units (for .mlpackage artifacts).")
@click.option("--delegate", type=click.Choice(["auto", "cpu", "gpu", "npu"]), default="auto", show_default=True,
              help="LiteRT path for .tflite artifacts; auto takes the fastest.")
@click.option("--json", "as_json", is_flag=True, help="Print the estimates as JSON.")
@click.option("--check-budgets", is_flag=True, help="Exit 6 when the artifact does not fit a device's RAM or flash.")
@click.option("--no-calibrate", is_flag=True,
              help="Do not calibrate an uncalibrated host first (its estimate then comes from a placeholder).")
def command(artifact: Path, devices: tuple[str, ...], threads: int | None, compute_units: str, delegate: str,
            as_json: bool, check_budgets: bool, no_calibrate: bool) -> None:
    """Estimate on-device latency, memory and size of ARTIFACT (.tflite or .mlpackage) per device.

    \b
    Examples:
      edgeexport simulate out/model_int8.tflite --device pixel-7 --device raspberry-pi-4 --threads 4
      edgeexport simulate out/model.mlpackage --device iphone-15-pro --compute-units cpu_and_gpu --json
    """
    from edgeexport.api import SimulateOptions, simulate
    from edgeexport.simulate.graph import read_graph

    graph = read_graph(artifact)  # read once here to name its format and op count, and to fail before any device
    if not no_calibrate and "host" in devices:
        from edgeexport.simulate.hostcal import ensure_host_calibrated

        ensure_host_calibrated("host", lambda line: click.echo(line, err=True))
    options = SimulateOptions(threads=threads, compute_units=compute_units, delegate=delegate)
    estimates = [simulate(artifact, name, options) for name in devices]
    if as_json:
        click.echo(json.dumps({"artifact": str(artifact), "estimates": [e.to_dict() for e in estimates]}, indent=2))
    else:
        click.echo(f"{artifact} ({graph.format}, {len(graph.ops)} ops)")
        for est in estimates:
            click.echo(_render(est))
    over = [e for e in estimates if not e.budget.ok]
    if check_budgets and over:
        raise BudgetExceededError(
            "budget exceeded on " + ", ".join(f"{e.device} ({'; '.join(e.budget.messages)})" for e in over)
        )
