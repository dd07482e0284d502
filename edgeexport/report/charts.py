"""Inline SVG charts drawn with plain string building: no JavaScript, no network, no plotting library.

Every function returns one ``<svg>`` element as text, with all labels escaped. Sizes are CSS pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#3867d6", "#20bf6b", "#f7b731", "#eb3b5a", "#8854d0", "#0fb9b1", "#fa8231", "#4b6584", "#a5b1c2",
           "#2d98da")
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 1e-3:
        return f"{value:.4f}"
    return f"{value:.2e}"


def bar_chart(title: str, bars: Sequence[tuple[str, float]], *, unit: str = "", width: int = 560,
              series: Sequence[str] = (), values: Sequence[Sequence[float]] = ()) -> str:
    """Horizontal bars, one row per ``(label, value)``; with ``series`` and ``values`` (one list per row,
    one value per series) each row is a group of bars, one per series, with a legend."""
    rows = [(label, [value]) for label, value in bars] if not series else list(zip([b[0] for b in bars], values))
    names = list(series) or [title]
    label_w, bar_h, gap = 190, 16, 8
    group_h = bar_h * len(names) + gap
    legend_h = 20 if series else 0
    height = 28 + legend_h + group_h * len(rows) + 8
    peak = max([v for _, vs in rows for v in vs if v is not None and math.isfinite(v)] or [1.0]) or 1.0
    plot_w = width - label_w - 90
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}" {FONT}>',
             f'<text x="0" y="16" font-weight="600" font-size="13">{escape(title)}</text>']
    if series:
        x = 0
        for index, name in enumerate(names):
            parts.append(f'<rect x="{x}" y="26" width="10" height="10" fill="{PALETTE[index % len(PALETTE)]}"/>'
                         f'<text x="{x + 14}" y="35">{escape(name)}</text>')
            x += 24 + 7 * len(name)
    y = 28 + legend_h
    for label, row_values in rows:
        parts.append(f'<text x="{label_w - 6}" y="{y + group_h / 2 + 2:.1f}" text-anchor="end">{escape(_clip(label))}</text>')
        for index, value in enumerate(row_values):
            top = y + index * bar_h
            if value is None or not math.isfinite(value):
                parts.append(f'<text x="{label_w + 4}" y="{top + 12}" fill="#888">n/a</text>')
                continue
            length = max(1.0, plot_w * value / peak)
            color = PALETTE[index % len(PALETTE)]
            parts.append(f'<rect x="{label_w}" y="{top + 1}" width="{length:.1f}" height="{bar_h - 2}" fill="{color}">'
                         f'<title>{escape(label)} {escape(names[index])}: {_fmt(value)} {escape(unit)}</title></rect>')
            parts.append(f'<text x="{label_w + length + 4:.1f}" y="{top + 12}">{_fmt(value)} {escape(unit)}</text>')
        y += group_h
    parts.append("</svg>")
    return "".join(parts)


def stacked_bar_chart(title: str, rows: Sequence[tuple[str, Sequence[tuple[str, float]]]], *, unit: str = "ms",
                      width: int = 560) -> str:
    """One horizontal bar per row split into ``(part, value)`` segments; parts share colours across rows."""
    parts_order: list[str] = []
    for _, segments in rows:
        for name, _ in segments:
            if name not in parts_order:
                parts_order.append(name)
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(parts_order)}
    label_w, bar_h = 190, 20
    legend_rows = math.ceil(len(parts_order) / 5)
    height = 30 + 18 * legend_rows + (bar_h + 8) * len(rows) + 8
    totals = [sum(v for _, v in segments if math.isfinite(v)) for _, segments in rows]
    peak = max(totals or [1.0]) or 1.0
    plot_w = width - label_w - 80
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{escape(title)}" {FONT}>',
           f'<text x="0" y="16" font-weight="600" font-size="13">{escape(title)}</text>']
    for index, name in enumerate(parts_order):
        lx, ly = (index % 5) * (width // 5), 26 + 18 * (index // 5)
        out.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{colors[name]}"/>'
                   f'<text x="{lx + 14}" y="{ly + 9}">{escape(_clip(name, 16))}</text>')
    y = 30 + 18 * legend_rows
    for (label, segments), total in zip(rows, totals, strict=True):
        out.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(_clip(label))}</text>')
        x = float(label_w)
        for name, value in segments:
            if not math.isfinite(value) or value <= 0:
                continue
            length = plot_w * value / peak
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{length:.2f}" height="{bar_h}" fill="{colors[name]}">'
                       f'<title>{escape(label)} {escape(name)}: {_fmt(value)} {escape(unit)}</title></rect>')
            x += length
        out.append(f'<text x="{x + 4:.1f}" y="{y + 14}">{_fmt(total)} {escape(unit)}</text>')
        y += bar_h + 8
    out.append("</svg>")
    return "".join(out)


def line_chart(title: str, points: Sequence[tuple[str, float]], *, y_label: str = "", width: int = 560,
               height: int = 220, log_y: bool = False) -> str:
    """A polyline over ``(x label, y)`` points in order (e.g. error after each layer); ``log_y`` for errors
    spanning decades (non-positive values are then drawn at the bottom)."""
    left, right, top, bottom = 60, 40, 28, 60
    ys = [v for _, v in points if math.isfinite(v)]
    transform = (lambda v: math.log10(v) if v > 0 else math.nan) if log_y else (lambda v: v)
    scaled = [transform(v) for v in ys]
    finite = [v for v in scaled if math.isfinite(v)] or [0.0]
    low, high = min(finite), max(finite)
    if high == low:
        high = low + 1.0
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(points) - 1)
    coords = []
    for index, (_, value) in enumerate(points):
        t = transform(value) if math.isfinite(value) else math.nan
        t = low if not math.isfinite(t) else t
        coords.append((left + index * step, top + plot_h * (1 - (t - low) / (high - low))))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{escape(title)}" {FONT}>',
           f'<text x="0" y="16" font-weight="600" font-size="13">{escape(title)}</text>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#999"/>',
           f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>']
    for value, tick_y in ((high, float(top)), (low, float(top + plot_h))):
        shown = 10 ** value if log_y else value
        out.append(f'<text x="{left - 4}" y="{tick_y + 4:.1f}" text-anchor="end">{_fmt(shown)}</text>')
    if y_label:
        out.append(f'<text x="{left + 4}" y="{top - 4}" fill="#555">{escape(y_label)}</text>')
    out.append('<polyline fill="none" stroke="#3867d6" stroke-width="2" points="'
               + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')
    label_every = max(1, math.ceil(len(points) / 12))
    for index, ((label, value), (x, y)) in enumerate(zip(points, coords, strict=True)):
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#3867d6"><title>{escape(label)}: {_fmt(value)}'
                   f'</title></circle>')
        if index % label_every == 0:
            out.append(f'<text x="{x:.1f}" y="{top + plot_h + 12}" transform="rotate(35 {x:.1f} {top + plot_h + 12})" '
                       f'font-size="10">{escape(_clip(label, 18))}</text>')
    out.append("</svg>")
    return "".join(out)


def _clip(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
