"""Small formatting helpers shared by the renderers."""

from __future__ import annotations


def human_bytes(count: int | float | None) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    if count is None:
        return "-"
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
