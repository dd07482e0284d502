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
@click.option("--measurements", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="Fit to measured latencies instead: a CSV (device,unit,threads,model,input,options,preset,ms) "
                   "or the log LiteRT's benchmark_model printed.")
@click.option("--base", "base", default=None, metavar="NAME|FILE.toml",
              help="With --measurements: the profile whose free parameters are fitted (default: host).")
@click.option("--no-validate", is_flag=True,
              help="With --measurements: skip the leave-one-architecture-out validation.")
def command(out: Path | None, threads: int, as_json: bool, quiet: bool, measurements: Path | None,
            base: str | None, no_validate: bool) -> None:
    """Run the fixed micro-benchmark suite (convs, depthwise convs, fully connected, element-wise, pooling;
    fp32 and int8) and write a device TOML with fitted efficiencies and overheads (about a minute).

    \b
    Example:
      edgeexport calibrate --out my-device.toml
      edgeexport calibrate --measurements phone.csv --base pixel-8 --out my-phone.toml
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if measurements is not None:
        _from_measurements(measurements, base or "host", out, as_json, quiet, not no_validate)
        return
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


def _from_measurements(measurements: Path, base_name: str, out: Path | None, as_json: bool, quiet: bool,
                       validate: bool) -> None:
    from edgeexport.catalog.devices import load_device, user_device_dir
    from edgeexport.simulate.fit_profile import fit_profile, write_profile
    from edgeexport.simulate.measurements import read_measurements

    def progress(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    base = load_device(base_name)
    rows = read_measurements(measurements)
    name = out.stem if out is not None and out.stem.replace("-", "").replace(".", "").isalnum() and out.stem.islower() else base.name
    result = fit_profile(base, rows, name=name, validate=validate, origin=measurements.name, progress=progress)
    target = out if out is not None else user_device_dir() / f"{name}.toml"
    write_profile(result.profile, target, header=f"Fitted by `edgeexport calibrate --measurements {measurements.name} "
                                                 f"--base {base_name}`; base profile: {base.path}")
    if as_json:
        click.echo(json.dumps({
            "profile": str(target),
            "units": {u: {"rows": n, "parameters": f.parameters, "residuals_pct": f.residuals_pct, "rms_log": f.rms_log}
                      for u, (f, n) in result.fits.items()},
            "validation": {u: cv.stats() for u, cv in result.validation.items()},
            "skipped": list(result.skipped),
        }, indent=2))
        return
    click.echo(f"wrote {target}")
    for unit, (fit, n) in result.fits.items():
        click.echo(f"  {unit}: fitted to {n} rows, rms log residual {fit.rms_log:.3f}; "
                   + ", ".join(f"{k} {v:.4g}" for k, v in fit.parameters.items()))
        cv = result.validation.get(unit)
        if cv is not None:
            st = cv.stats()
            click.echo(f"    leave-one-architecture-out: {st['rows']:.0f} rows, median error {st['median_abs_pct']:.1f} %, "
                       f"{st['within_25_pct']:.0f} % within 25 % (k x MACs baseline: {st['baseline_median_abs_pct']:.1f} %)")
    for line in result.skipped:
        click.echo(f"  skipped: {line}", err=True)
