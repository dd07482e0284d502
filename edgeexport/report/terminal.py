"""The human summary of a report, for the terminal (rich). Rendering only: no stage runs here."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from edgeexport.files import human_bytes
from edgeexport.report.model import Report
from edgeexport.types import ModelSummary, PruneReport

_STATUS_STYLE = {"ok": "green", "verification_failed": "red", "budget_exceeded": "yellow", "not_verifiable": "yellow"}


def render_summary(summary: ModelSummary, console: Console, *, title: str) -> None:
    """Inputs, outputs, parameters, MACs and the op histogram of a model."""
    console.print(f"[bold]{title}[/bold]")
    io = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in ("", "name", "shape", "dtype", "layout"):
        io.add_column(column)
    for kind, specs in (("input", summary.inputs), ("output", summary.outputs)):
        for spec in specs:
            dims = "x".join("N" if d is None else str(d) for d in spec.shape)
            io.add_row(kind, spec.name, dims, spec.dtype, spec.layout or "-")
    console.print(io)
    console.print(f"parameters {summary.params:,}   MACs {summary.macs:,} ({summary.macs / 1e6:.2f} M)")
    ops = ", ".join(f"{name} x{count}" for name, count in sorted(summary.ops, key=lambda kv: (-kv[1], kv[0])))
    console.print(f"ops ({summary.op_count}): {ops}")


def render_report(report: Report, console: Console) -> None:
    """The artifact table and the verdict of a ``convert`` report."""
    size = (f", {report.summary.params:,} params, {report.summary.macs / 1e6:.2f} M MACs"
            if report.summary is not None else "")
    console.print(f"[bold]{report.source.path.name}[/bold] ({report.source.format}{size})"
                  + (f" for [bold]{report.device}[/bold]" if report.device else ""))
    table = Table(show_header=True, header_style="bold")
    table.add_column("artifact", no_wrap=True)
    for column in ("target", "size", "gzip", "convert s", "check", "est. latency"):
        table.add_column(column, justify="right" if column in ("size", "gzip", "convert s") else "left")
    for entry in report.artifacts:
        artifact = entry.artifact
        table.add_row(
            artifact.path.name,
            artifact.target,
            human_bytes(artifact.size_bytes),
            human_bytes(artifact.gzip_bytes),
            f"{artifact.conversion_seconds:.1f}",
            _check_cell(entry.verification, artifact.smoke_check),
            _latency_cell(entry.estimates),
        )
    console.print(table)
    for entry in report.artifacts:
        if entry.preset_reason:
            console.print(f"{entry.artifact.target}: preset {entry.artifact.preset}: {entry.preset_reason}")
        if entry.pruning and entry.pruning.method == "lowrank":
            console.print(f"{entry.artifact.path.name}: {_lowrank_line(entry.pruning)}")
        elif entry.pruning:
            p = entry.pruning
            console.print(
                f"{entry.artifact.path.name}: pruning {p.method} reached {p.achieved_sparsity:.1%} sparsity "
                f"(target {p.target_sparsity:.0%}), params {p.params_before:,} -> {p.params_after:,}"
            )
        for estimate in entry.estimates:
            if getattr(estimate, "extrapolated", False):
                console.print(f"[yellow]{entry.artifact.path.name} on {estimate.device}: {estimate.extrapolation}[/yellow]")
        for failure in entry.budget_failures:
            console.print(f"[yellow]{entry.artifact.path.name}: over budget: {failure}[/yellow]")
        for line in entry.search.lines() if entry.search is not None else ():
            console.print(line, markup=False, highlight=False)
    for entry in report.artifacts:
        verification = entry.verification
        failure = verification.failure_line() if verification is not None else ""
        if failure and verification is not None and not verification.passed:
            console.print(f"[red]{entry.artifact.path.name}: {failure}[/red]")
        localization = verification.localization if verification is not None else None
        if localization is not None:
            # A passing artifact's curve is information, not a diagnosis: its three worst layers are enough here.
            passed = verification is not None and verification.passed
            for line in localization.lines(top=3) if passed else localization.lines():
                console.print(f"  {line}", markup=False, highlight=False)
        for warning in getattr(entry.verification, "warnings", ()) or ():
            console.print(f"{entry.artifact.path.name}: warning: {warning}", style="yellow", markup=False)
    for note in report.notes:
        console.print(f"[dim]note: {note}[/dim]")
    for warning in report.warnings:
        console.print(f"[yellow]warning: {warning}[/yellow]")
    style = _STATUS_STYLE.get(report.status, "red")
    suffix = " (--warn-only: exit 0)" if report.warn_only and not report.status.passed else ""
    if report.out_dir is not None:
        console.print(f"report: {report.out_dir / 'report.json'}")
    console.print(f"[{style}]status: {report.status}[/{style}]{suffix} in {report.total_seconds:.1f} s")


def _check_cell(verification: Any, smoke: str) -> str:
    if verification is None:
        return "ran once" if smoke else "-"
    headline = getattr(verification, "headline", None)
    text = headline() if callable(headline) else ("pass" if verification.passed else "FAIL")
    if verification.passed:
        return f"[green]{text}[/green]"
    return f"[yellow]{text}[/yellow]" if verification.status.junit_kind == "error" else f"[red]{text}[/red]"


def _latency_cell(estimates: tuple[Any, ...]) -> str:
    cells = []
    for estimate in estimates:
        marker = " (extrapolated)" if getattr(estimate, "extrapolated", False) else ""
        cells.append(f"{estimate.p50_ms:.2f} ms on {estimate.device}{marker}")
    return ", ".join(cells) or "-"


def _lowrank_line(p: PruneReport) -> str:
    """Low-rank factorization in one line: per-layer ranks, parameters and MACs before -> after, distillation."""
    ranks = ", ".join(f"{r.name} {r.rank}/{r.full_rank}" for r in p.ranks if r.rank > 0)
    macs = (f", MACs {p.macs_before:,} -> {p.macs_after:,}" if p.macs_before and p.macs_after is not None else "")
    tuned = (f"; distilled {p.finetune_epochs} epochs (output MSE {p.finetune_mse_before:.2e} -> "
             f"{p.finetune_mse_after:.2e})" if p.finetune_epochs and p.finetune_mse_before is not None
             and p.finetune_mse_after is not None else "")
    return (f"low-rank kept {1 - p.achieved_sparsity:.0%} of the factorized layers' parameters (ranks {ranks}), "
            f"params {p.params_before:,} -> {p.params_after:,}{macs}{tuned}")
