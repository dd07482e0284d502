"""``edgeexport bench``: real latency of a .tflite on this machine with LiteRT."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click


@click.command("bench")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="LiteRT threads (default: this machine's cores, at most 4, as simulate --device host assumes).")
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="Timed runs after warm-up.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(artifact: Path, threads: int | None, runs: int, as_json: bool) -> None:
    """Measure real latency of ARTIFACT (.tflite) here: warm-up, then p50/p90/min and peak memory.

    \b
    Example:
      edgeexport bench out/model_int8.tflite --threads 2 --runs 100
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edgeexport.simulate.bench import bench

    result = bench(artifact, threads=threads, runs=runs)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(
        f"{artifact}: p50 {result.p50_ms:.3f} ms, p90 {result.p90_ms:.3f} ms, min {result.min_ms:.3f} ms "
        f"({result.runs} runs after {result.warmup} warm-up, threads {result.threads}); "
        f"load {result.load_ms:.1f} ms; peak memory +{result.peak_memory_bytes / 2**20:.1f} MiB"
    )
