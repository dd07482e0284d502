"""``report.html``: one self-contained page (inline CSS and SVG, no script, no network) from a report.json dict.

It renders what exists: the artifact table always; size and latency charts, the per-op-family breakdown, error
distributions and the per-layer error curve only when the report holds those results. The verification
result's layout belongs to the verify stage, so it is read defensively: per-output metrics are the numeric
fields of ``outputs`` / ``per_output`` entries, histograms are ``{edges|bins, counts}`` mappings, and the layer
curve is a list of ``{name, <error>}`` under ``localization`` / ``layers``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeexport.report.charts import bar_chart, histogram, line_chart, stacked_bar_chart
from edgeexport.report.jsonfile import write_text

if TYPE_CHECKING:
    from edgeexport.report.model import Report

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
_LAYER_KEYS = ("localization", "localize", "layers", "per_layer", "layer_errors")
_OUTPUT_KEYS = ("outputs", "per_output", "metrics")
_ERROR_KEYS = ("error", "max_abs", "max_abs_error", "rel_error", "relative_error", "mean_abs", "mean_abs_error",
               "mse", "rmse", "max_error")


def write_html(path: Path, report: Report) -> Path:
    """Write the page for ``report`` to ``path`` atomically (temporary file + rename)."""
    return write_text(path, render_html(report.to_dict()))


def render_html(report: Mapping[str, Any]) -> str:
    """The page for ``report`` (report.json as a dict, schema 1.x); tolerant of missing stage results."""
    artifacts = [a for a in report.get("artifacts") or [] if isinstance(a, Mapping)]
    source = report.get("source") or {}
    name = Path(str(source.get("path", "model"))).name
    body = [f"<h1>edgeexport report: {escape(name)}</h1>", _meta(report), "<h2>Artifacts</h2>",
            _summary_table(artifacts)]
    body += _chart_section(artifacts)
    body += _family_section(artifacts)
    body += _error_section(artifacts)
    body += _notes(report)
    title = escape(f"edgeexport report: {name}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f'<body>{"".join(body)}</body></html>\n')


def _meta(report: Mapping[str, Any]) -> str:
    source = report.get("source") or {}
    summary = source.get("summary") or {}
    status = str(report.get("status", "unknown"))
    facts = [f"format {source.get('format', '?')}"]
    if isinstance(summary.get("params"), int):
        facts.append(f"{summary['params']:,} parameters")
    if isinstance(summary.get("macs"), int) and summary["macs"]:
        facts.append(f"{summary['macs'] / 1e6:,.2f} M MACs")
    if report.get("device"):
        facts.append(f"device {report['device']}")
    tool = report.get("tool") or {}
    facts.append(f"edgeexport {tool.get('version', '?')}, report schema {report.get('schema_version', '?')}")
    css = "ok" if status == "ok" else "bad"
    return (f'<p class="meta">{escape(" | ".join(facts))} | status <span class="{css}" id="status">'
            f"{escape(status)}</span></p>")


def _devices(artifacts: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({str(e["device"]) for a in artifacts for e in _estimates(a)})


def _estimates(artifact: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [e for e in artifact.get("estimates") or []
            if isinstance(e, Mapping) and e.get("device") and _is_number(e.get("p50_ms"))]


def _label(artifact: Mapping[str, Any]) -> str:
    return f"{artifact.get('target', '?')} {artifact.get('preset', '?')}"


def _summary_table(artifacts: Sequence[Mapping[str, Any]]) -> str:
    devices = _devices(artifacts)
    head = ["artifact", "target", "preset", "size", "gzip size", "verification"] + [f"est. latency {d}" for d in devices]
    rows = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for artifact in artifacts:
        by_device = {str(e["device"]): e for e in _estimates(artifact)}
        cells = [f"<td>{escape(str(artifact.get('path', '')))}</td>", f"<td>{escape(str(artifact.get('target', '')))}</td>",
                 f"<td>{escape(str(artifact.get('preset', '')))}</td>",
                 _bytes_cell(artifact.get("size_bytes")), _bytes_cell(artifact.get("gzip_bytes")),
                 _verification_cell(artifact.get("verification"))]
        for device in devices:
            estimate = by_device.get(device)
            extrapolated = " (extrapolated)" if estimate and estimate.get("extrapolated") else ""
            cells.append(f'<td class="num">{estimate["p50_ms"]:.3f} ms{extrapolated}</td>' if estimate
                         else '<td class="none">-</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return '<table id="artifacts">' + "".join(rows) + "</table>"


def _bytes_cell(value: Any) -> str:
    if not isinstance(value, int):
        return '<td class="none">-</td>'
    return f'<td class="num" data-bytes="{value}">{value / 1024:,.1f} KiB</td>'


def _verification_cell(verification: Any) -> str:
    if not isinstance(verification, Mapping):
        return '<td class="none">not run</td>'
    passed = verification.get("passed")
    status = "pass" if passed else str(verification.get("status") or "unknown").replace("_", " ")
    detail = verification.get("failure") or verification.get("reason") or verification.get("headline")
    extra = f" ({escape(str(detail))})" if isinstance(detail, str) and detail else ""
    css = "ok" if passed else ("bad" if passed is False else "none")
    return f'<td class="{css}">{escape(status)}{extra}</td>'


def _chart_section(artifacts: Sequence[Mapping[str, Any]]) -> list[str]:
    sized = [a for a in artifacts if isinstance(a.get("size_bytes"), int)]
    charts = []
    if sized:
        charts.append(bar_chart("Size (KiB)", [(_label(a), 0.0) for a in sized], unit="KiB",
                                series=("on disk", "gzip -9"),
                                values=[[a["size_bytes"] / 1024, _kib_or_nan(a.get("gzip_bytes"))] for a in sized]))
    bars = [(f"{_label(a)} @ {e['device']}", float(e["p50_ms"])) for a in artifacts for e in _estimates(a)]
    if bars:
        charts.append(bar_chart("Estimated latency p50 (ms, simulated)", bars, unit="ms"))
    if not charts:
        return []
    return ["<h2>Size and latency</h2>", '<div class="charts">' + "".join(charts) + "</div>"]


def _kib_or_nan(value: Any) -> float:
    return value / 1024 if isinstance(value, int) else math.nan


def _family_section(artifacts: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = []
    for artifact in artifacts:
        for estimate in _estimates(artifact):
            families = estimate.get("family_ms")
            if isinstance(families, Mapping):
                pairs = [(str(k), float(v)) for k, v in families.items() if _is_number(v)]
            elif isinstance(families, list):
                pairs = [(str(p[0]), float(p[1])) for p in families if isinstance(p, list | tuple) and len(p) == 2
                         and _is_number(p[1])]
            else:
                pairs = []
            if pairs:
                rows.append((f"{_label(artifact)} @ {estimate['device']}", sorted(pairs, key=lambda p: -p[1])))
    if not rows:
        return []
    return ["<h2>Latency by op family (simulated)</h2>", stacked_bar_chart("Time per op family (ms, summed over the ops of each family)", rows, width=1000)]


def _error_section(artifacts: Sequence[Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    compared: list[tuple[str, dict[str, float]]] = []
    for artifact in artifacts:
        verification = artifact.get("verification")
        if not isinstance(verification, Mapping):
            continue
        outputs = _output_metrics(verification)
        layers = _layer_curve(verification)
        compared += [(f"{_label(artifact)} {name}", metrics) for name, (metrics, _) in outputs.items()]
        if not outputs and not layers:
            continue
        origin = verification.get("data_origin")
        samples = verification.get("samples")
        # strip(" ()") on the parenthesized form used to eat the origin's own ")" too: "(seed 0"
        where = f"{samples} samples from {origin}" if origin and samples else ""
        block = [f"<h3>{escape(str(artifact.get('path', _label(artifact))))}</h3>"
                 f'<p class="note">{escape(where)}</p>']
        if outputs:
            block.append(_metrics_table(outputs))
            charts = [histogram(f"{name}: {key}", *hist) for name, (_, hists) in outputs.items()
                      for key, hist in hists.items()]
            if charts:
                block.append('<div class="charts">' + "".join(charts) + "</div>")
        if layers:
            points, metric = layers
            positive = [v for _, v in points if v > 0]
            log_y = metric != "score_db" and bool(positive) and max(positive) / min(positive) > 100
            label = "SQNR dB, worse of tensor and channel" if metric == "score_db" else metric
            block.append(line_chart(f"Per-layer error ({label}, reference layer order)", points, y_label=label,
                                    width=540, log_y=log_y))
            block.append(_localization_note(verification.get("localization")))
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


def _output_metrics(verification: Mapping[str, Any]
                    ) -> dict[str, tuple[dict[str, float], dict[str, tuple[list[float], list[float]]]]]:
    """Per output name: its scalar metrics (nested keys flattened to their last part) and its histograms."""
    entries: list[tuple[str, Mapping[str, Any]]] = []
    for key in _OUTPUT_KEYS:
        found = verification.get(key)
        if isinstance(found, list):
            entries += [(str(e.get("name") or e.get("output") or i), e) for i, e in enumerate(found) if isinstance(e, Mapping)]
        elif isinstance(found, Mapping):
            entries += [(str(k), v) for k, v in found.items() if isinstance(v, Mapping)]
        if entries:
            break
    result = {}
    for name, entry in entries:
        found_metrics = entry.get("metrics")
        scope: Mapping[str, Any] = found_metrics if isinstance(found_metrics, Mapping) else entry
        metrics = {k.rsplit(".", 1)[-1]: float(v) for k, v in _flatten(scope) if _is_number(v)}
        hists = {}
        for key, value in [*entry.items(), *scope.items()]:
            if isinstance(value, Mapping) and isinstance(value.get("counts"), list):
                edges = value.get("edges", value.get("bins"))
                counts = value["counts"]
                if isinstance(edges, list) and len(edges) == len(counts) + 1 and all(map(_is_number, [*edges, *counts])):
                    hists[str(key)] = ([float(e) for e in edges], [float(c) for c in counts])
        if metrics or hists:
            result[name] = (metrics, hists)
    return result


def _flatten(entry: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for key, value in entry.items():
        if isinstance(value, Mapping) and "counts" not in value:
            pairs += _flatten(value, f"{prefix}{key}.")
        elif not isinstance(value, Mapping | list):
            pairs.append((f"{prefix}{key}", value))
    return pairs


def _metrics_table(outputs: Mapping[str, tuple[dict[str, float], Any]]) -> str:
    """One row per metric, one column per output (metric lists are long, outputs few)."""
    keys = list(dict.fromkeys(k for metrics, _ in outputs.values() for k in metrics))
    if not keys:
        return ""
    rows = ["<tr><th>metric</th>" + "".join(f"<th>{escape(name)}</th>" for name in outputs) + "</tr>"]
    for key in keys:
        cells = "".join(f'<td class="num">{metrics[key]:.4g}</td>' if key in metrics else '<td class="none">-</td>'
                        for metrics, _ in outputs.values())
        rows.append(f"<tr><td>{escape(key)}</td>{cells}</tr>")
    return '<table class="metrics">' + "".join(rows) + "</table>"


def _layer_curve(verification: Mapping[str, Any]) -> tuple[list[tuple[str, float]], str] | None:
    for key in _LAYER_KEYS:
        found = verification.get(key)
        if isinstance(found, Mapping):
            found = next((found[k] for k in ("layers", "points", "per_layer", "curve") if isinstance(found.get(k), list)),
                         None)
        if not isinstance(found, list) or not found:
            continue
        rows = [r for r in found if isinstance(r, Mapping)]
        # The per-layer report (verify.localize) ranks layers by the worse of tensor and channel SQNR: plot that.
        metric = "score_db" if rows and all(_is_number(r.get("score_db")) for r in rows) else None
        metric = metric or next((k for k in _ERROR_KEYS if rows and all(_is_number(r.get(k)) for r in rows)), None)
        if metric is None and rows:
            metric = next((k for k, v in rows[0].items() if _is_number(v) and k not in ("index", "step")), None)
        if metric is None:
            continue
        points = [(str(r.get("name") or r.get("layer") or r.get("op") or i), float(r[metric]))
                  for i, r in enumerate(rows) if _is_number(r.get(metric))]
        if points:
            return points, metric
    return None


def _localization_note(localization: Any) -> str:
    """The localization verdict under its curve: first layer over tolerance, largest drop, the suggestion."""
    if not isinstance(localization, Mapping):
        return ""
    facts = [f"first layer over tolerance: {localization.get('first_over') or 'none'}"]
    if localization.get("largest_drop"):
        facts.append(f"largest SQNR drop at {localization['largest_drop']}")
    if localization.get("suggestion"):
        facts.append(f"suggestion: {localization['suggestion']}")
    return f'<p class="note">{escape("; ".join(facts))}</p>'


def _notes(report: Mapping[str, Any]) -> list[str]:
    out = []
    for title, key in (("Warnings", "warnings"), ("Notes", "notes")):
        items = [str(i) for i in report.get(key) or []]
        for artifact in report.get("artifacts") or []:
            if key == "warnings" and isinstance(artifact, Mapping):
                items += [f"{artifact.get('path')}: {w}" for w in artifact.get("warnings") or []]
                verification = artifact.get("verification")
                if isinstance(verification, Mapping):  # what weakens the check (a constant reference output, ...)
                    items += [f"{artifact.get('path')}: {w}" for w in verification.get("warnings") or []]
        if items:
            out += [f"<h2>{title}</h2><ul>", *(f"<li>{escape(i)}</li>" for i in items), "</ul>"]
    out.append('<p class="note">Latencies marked simulated are estimates from device profiles, not measurements. '
               "Generated by edgeexport; this page loads nothing from the network.</p>")
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
