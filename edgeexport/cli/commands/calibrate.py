"""``edgeexport calibrate``: fit this machine's device profile from LiteRT micro-benchmarks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click


@click.command("calibrate")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write the profile (default: the user device dir's host.toml, which replaces the "
                   "shipped placeholder).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="LiteRT threads for the micro-benchmarks (the profile's simulations scale from these).")
@click.option("--json", "as_json", is_flag=True, help="Print the fitted numbers as JSON.")
@click.option("--quiet", is_flag=True, help="No per-case progress on stderr.")
def command(out: Path | None, threads: int, as_json: bool, quiet: bool) -> None:
    """Run the fixed micro-benchmark suite (convs, depthwise convs, fully connected, element-wise, pooling;
    fp32 and int8) and write a device TOML with fitted efficiencies and overheads (about a minute).

    \b
    Example:
      edgeexport calibrate --out my-device.toml
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edgeexport.simulate.calibrate import calibrate

    def progress(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    result = calibrate(out, threads=threads, progress=progress)
    unit = next(u for u in result.profile.units if u.kind == "cpu")
    ratios = sorted(r for _, r in result.ratios)
    if as_json:
        click.echo(json.dumps({
            "profile": str(result.path), "seconds": result.seconds, "peak_gops": dict(unit.peak_gops),
            "memory_bandwidth_gbps": unit.memory_bandwidth_gbps, "op_overhead_us": unit.op_overhead_us,
            "efficiency": dict(unit.efficiency), "invoke_overhead_us": result.invoke_us,
            "ratios": dict(result.ratios),
        }, indent=2))
        return
    click.echo(f"wrote {result.path} in {result.seconds:.0f} s ({len(result.measurements)} measurements)")
    click.echo("  peak GOP/s: " + ", ".join(f"{k} {v:g}" for k, v in sorted(unit.peak_gops.items())))
    click.echo(f"  bandwidth {unit.memory_bandwidth_gbps:g} GB/s, per-op overhead {unit.op_overhead_us:g} us")
    click.echo("  efficiency: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(unit.efficiency.items())))
    mid = ratios[len(ratios) // 2] if ratios else float("nan")
    click.echo(f"  measured/predicted over the suite: median {mid:.2f}, "
               f"10th-90th percentile {ratios[len(ratios) // 10]:.2f}-{ratios[(9 * len(ratios)) // 10]:.2f}")
