"""Markdown summaries for CI job pages (GitHub's step summary, GitLab's MR notes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeexport.files import human_bytes


def check_summary(rows: Sequence[dict[str, Any]], *, exit_code: int, failures: int, cases: int, seconds: float) -> str:
    """A heading with the verdict and one table row per model x device x preset x target."""
    verdict = "passed" if exit_code == 0 else f"failed (exit {exit_code})"
    lines = [
        f"## edgeexport check: {verdict}",
        "",
        f"{cases} checks, {failures} failed, in {seconds:.1f} s.",
        "",
        "| model | device | preset | target | size | est. latency | verification | status |",
        "|---|---|---|---|---:|---:|---|---|",
    ]
    for row in rows:
        latency = f"{row['latency_ms']:.2f} ms" if row.get("latency_ms") is not None else "-"
        status = row.get("status", "")
        if row.get("budget_failures"):
            status += ": " + "; ".join(row["budget_failures"])
        lines.append(
            f"| {_cell(row['model'])} | {_cell(row['device'])} | {_cell(row['preset'])} | {row.get('target', '-')} | "
            f"{human_bytes(row.get('size_bytes'))} | {latency} | {_cell(str(row.get('verification', '-')))} | "
            f"{_cell(status)} |"
        )
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
