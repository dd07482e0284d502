"""``report.html``: one self-contained page (inline CSS and SVG, no script, no network) from a typed ``Report``.

It renders what exists: the artifact table always; size and latency charts, the per-op-family breakdown, the
per-output error metrics and the per-layer error curve only when the report holds those results.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeexport.report.charts import bar_chart, line_chart, stacked_bar_chart
from edgeexport.report.jsonfile import write_text

if TYPE_CHECKING:
    from edgeexport.report.model import ArtifactReport, Report
    from edgeexport.simulate.estimate import LatencyEstimate
    from edgeexport.verify.layers import LayerError
    from edgeexport.verify.localize import Localization
    from edgeexport.verify.metrics import OutputMetrics
    from edgeexport.verify.stage import Verification

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;max-width:1150px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14px;margin:16px 0 6px} .meta{color:#555;margin:0 0 12px}
table{border-collapse:collapse;font-size:13px;margin:6px 0} th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f4f6f8} td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1e7e34;font-weight:600} .bad{color:#c0392b;font-weight:600} .none{color:#888}
.charts{display:flex;flex-wrap:wrap;gap:18px} .note{color:#666;font-size:12px}
ul{margin:4px 0;padding-left:20px;font-size:13px}
"""
# The per-layer curve plots score_db, else max_abs, when finite for every layer (not for an all-zero layer);
# failing both, the first of these that is finite for the first layer (the points then skip the others).
_LAYER_FALLBACK = ("cosine", "sqnr_db", "channel_sqnr_db", "max_abs", "score_db")


def write_html(path: Path, report: Report) -> Path:
    """Write the page for ``report`` to ``path`` atomically (temporary file + rename)."""
    return write_text(path, render_html(report))


def render_html(report: Report) -> str:
    """The page for ``report``; stages that did not run leave their sections out."""
    name = report.source.path.name
    artifacts = report.artifacts
    body = [f"<h1>edgeexport report: {escape(name)}</h1>", _meta(report), "<h2>Artifacts</h2>",
            _summary_table(report)]
    body += _chart_section(artifacts)
    body += _family_section(artifacts)
    body += _error_section(report)
    body += _notes(report)
    title = escape(f"edgeexport report: {name}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f'<body>{"".join(body)}</body></html>\n')


def _meta(report: Report) -> str:
    status = report.status.value
    facts = [f"format {report.source.format}"]
    if report.summary is not None:
        facts.append(f"{report.summary.params:,} parameters")
        if report.summary.macs:
            facts.append(f"{report.summary.macs / 1e6:,.2f} M MACs")
    if report.device:
        facts.append(f"device {report.device}")
    facts.append(f"edgeexport {report.tool_version}, report schema {report.schema_version}")
    css = "ok" if status == "ok" else "bad"
    return (f'<p class="meta">{escape(" | ".join(facts))} | status <span class="{css}" id="status">'
            f"{escape(status)}</span></p>")


def _estimates(entry: ArtifactReport) -> list[LatencyEstimate]:
    """The estimates worth showing: on a named device, with a finite p50."""
    return [e for e in entry.estimates if e.device and _is_number(e.p50_ms)]


def _label(entry: ArtifactReport) -> str:
    return f"{entry.artifact.target} {entry.artifact.preset}"


def _summary_table(report: Report) -> str:
    devices = sorted({e.device for a in report.artifacts for e in _estimates(a)})
    head = ["artifact", "target", "preset", "size", "gzip size", "verification"] + [f"est. latency {d}" for d in devices]
    rows = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for entry in report.artifacts:
        artifact = entry.artifact
        by_device = {e.device: e for e in _estimates(entry)}
        cells = [f"<td>{escape(report.relative(artifact.path))}</td>", f"<td>{escape(artifact.target)}</td>",
                 f"<td>{escape(artifact.preset)}</td>",
                 _bytes_cell(artifact.size_bytes), _bytes_cell(artifact.gzip_bytes),
                 _verification_cell(entry.verification)]
        for device in devices:
            estimate = by_device.get(device)
            extrapolated = " (extrapolated)" if estimate and estimate.extrapolated else ""
            cells.append(f'<td class="num">{estimate.p50_ms:.3f} ms{extrapolated}</td>' if estimate
                         else '<td class="none">-</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return '<table id="artifacts">' + "".join(rows) + "</table>"


def _bytes_cell(value: int) -> str:
    return f'<td class="num" data-bytes="{value}">{value / 1024:,.1f} KiB</td>'


def _verification_cell(verification: Verification | None) -> str:
    if verification is None:
        return '<td class="none">not run</td>'
    passed = verification.passed
    status = "pass" if passed else verification.status.value.replace("_", " ")
    detail = verification.failure_line() or verification.reason
    extra = f" ({escape(detail)})" if detail else ""
    css = "ok" if passed else "bad"
    return f'<td class="{css}">{escape(status)}{extra}</td>'


def _chart_section(artifacts: Sequence[ArtifactReport]) -> list[str]:
    charts = []
    if artifacts:
        charts.append(bar_chart("Size (KiB)", [(_label(a), 0.0) for a in artifacts], unit="KiB",
                                series=("on disk", "gzip -9"),
                                values=[[a.artifact.size_bytes / 1024, a.artifact.gzip_bytes / 1024] for a in artifacts]))
    bars = [(f"{_label(a)} @ {e.device}", float(e.p50_ms)) for a in artifacts for e in _estimates(a)]
    if bars:
        charts.append(bar_chart("Estimated latency p50 (ms, simulated)", bars, unit="ms"))
    if not charts:
        return []
    return ["<h2>Size and latency</h2>", '<div class="charts">' + "".join(charts) + "</div>"]


def _family_section(artifacts: Sequence[ArtifactReport]) -> list[str]:
    rows = []
    for entry in artifacts:
        for estimate in _estimates(entry):
            pairs = [(str(k), float(v)) for k, v in dict(estimate.family_ms).items() if _is_number(v)]
            if pairs:
                rows.append((f"{_label(entry)} @ {estimate.device}", sorted(pairs, key=lambda p: -p[1])))
    if not rows:
        return []
    return ["<h2>Latency by op family (simulated)</h2>", stacked_bar_chart("Time per op family (ms, summed over the ops of each family)", rows, width=1000)]


def _error_section(report: Report) -> list[str]:
    out: list[str] = []
    compared: list[tuple[str, dict[str, float]]] = []
    for entry in report.artifacts:
        verification = entry.verification
        if verification is None:
            continue
        outputs = {c.name: _metric_values(c.metrics) for c in verification.outputs if c.metrics is not None}
        outputs = {name: metrics for name, metrics in outputs.items() if metrics}
        layers = _layer_curve(verification.localization)
        compared += [(f"{_label(entry)} {name}", metrics) for name, metrics in outputs.items()]
        if not outputs and not layers:
            continue
        origin, samples = verification.data_origin, verification.samples
        where = f"{samples} samples from {origin}" if origin and samples else ""
        block = [f"<h3>{escape(report.relative(entry.artifact.path))}</h3>"
                 f'<p class="note">{escape(where)}</p>']
        if outputs:
            block.append(_metrics_table(outputs))
        if layers:
            points, metric = layers
            positive = [v for _, v in points if v > 0]
            log_y = metric != "score_db" and bool(positive) and max(positive) / min(positive) > 100
            label = "SQNR dB, worse of tensor and channel" if metric == "score_db" else metric
            block.append(line_chart(f"Per-layer error ({label}, reference layer order)", points, y_label=label,
                                    width=540, log_y=log_y))
            block.append(_localization_note(verification.localization))
        out.append("<div>" + "".join(block) + "</div>")
    charts = _comparison_charts(compared)
    if not out and not charts:
        return []
    return ["<h2>Numerical error against the reference</h2>",
            '<div class="charts">' + "".join(charts) + "</div>" if charts else "",
            '<div class="charts">' + "".join(out) + "</div>"]


def _comparison_charts(compared: Sequence[tuple[str, Mapping[str, float]]]) -> list[str]:
    """Error per artifact output, side by side: absolute errors (output units) and SQNR (dB)."""
    charts = []
    absolute = [m for m in ("max_abs", "rmse", "mean_abs") if any(m in metrics for _, metrics in compared)]
    rows = [(label, metrics) for label, metrics in compared if any(m in metrics for m in absolute)]
    if rows:
        charts.append(bar_chart("Absolute error (output units)", [(label, 0.0) for label, _ in rows], series=absolute,
                                values=[[metrics.get(m, math.nan) for m in absolute] for _, metrics in rows]))
    sqnr = [(label, metrics["sqnr_db"]) for label, metrics in compared if "sqnr_db" in metrics]
    if sqnr:
        charts.append(bar_chart("SQNR (dB, higher is closer)", sqnr, unit="dB"))
    return charts


def _metric_values(metrics: OutputMetrics) -> dict[str, float]:
    """Every finite number of ``metrics`` by field name, nested classifier metrics included (field order)."""
    values: dict[str, float] = {}

    def walk(obj: Any) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                walk(value)
            elif _is_number(value):
                values[f.name] = float(value)

    walk(metrics)
    return values


def _metrics_table(outputs: Mapping[str, dict[str, float]]) -> str:
    """One row per metric, one column per output (metric lists are long, outputs few)."""
    keys = list(dict.fromkeys(k for metrics in outputs.values() for k in metrics))
    if not keys:
        return ""
    rows = ["<tr><th>metric</th>" + "".join(f"<th>{escape(name)}</th>" for name in outputs) + "</tr>"]
    for key in keys:
        cells = "".join(f'<td class="num">{metrics[key]:.4g}</td>' if key in metrics else '<td class="none">-</td>'
                        for metrics in outputs.values())
        rows.append(f"<tr><td>{escape(key)}</td>{cells}</tr>")
    return '<table class="metrics">' + "".join(rows) + "</table>"


def _layer_curve(localization: Localization | None) -> tuple[list[tuple[str, float]], str] | None:
    """The per-layer points and their metric: the score verify.localize ranks layers by (the worse of tensor and
    channel SQNR) when it is finite for every layer, else the first metric that is."""
    if localization is None or not localization.layers:
        return None
    layers = localization.layers

    def value(layer: LayerError, metric: str) -> float:
        return float(getattr(layer, metric))

    metric = next((m for m in ("score_db", "max_abs") if all(_is_number(value(e, m)) for e in layers)), None)
    metric = metric or next((m for m in _LAYER_FALLBACK if _is_number(value(layers[0], m))), None)
    if metric is None:
        return None
    points = [(e.layer or str(i), value(e, metric)) for i, e in enumerate(layers) if _is_number(value(e, metric))]
    return (points, metric) if points else None


def _localization_note(localization: Localization | None) -> str:
    """The localization verdict under its curve: first layer over tolerance, largest drop, the suggestion."""
    if localization is None:
        return ""
    facts = [f"first layer over tolerance: {localization.first_over or 'none'}" + localization.drop_phrase()]
    if localization.suggestion:
        facts.append(f"suggestion: {localization.suggestion}")
    return f'<p class="note">{escape("; ".join(facts))}</p>'


def _notes(report: Report) -> list[str]:
    out = []
    for title, key in (("Warnings", "warnings"), ("Notes", "notes")):
        items = list(report.warnings if key == "warnings" else report.notes)
        if key == "warnings":
            for entry in report.artifacts:
                path = report.relative(entry.artifact.path)
                items += [f"{path}: {w}" for w in entry.artifact.warnings]
                if entry.verification is not None:  # what weakens the check (a constant reference output, ...)
                    items += [f"{path}: {w}" for w in entry.verification.warnings]
        if items:
            out += [f"<h2>{title}</h2><ul>", *(f"<li>{escape(i)}</li>" for i in items), "</ul>"]
    out.append('<p class="note">Latencies marked simulated are estimates from device profiles, not measurements. '
               "Generated by edgeexport; this page loads nothing from the network.</p>")
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
