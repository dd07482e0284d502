"""report.html: written by convert, its artifact table matches report.json, text is escaped, and it renders
in headless Chromium (skipped only when Chromium is not installed)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from edgeexport.report.html import render_html
from edgeexport.report.screenshot import find_chromium, png_stats, screenshot


class TableReader(HTMLParser):
    """Rows of the table with id="artifacts" as lists of cell texts, plus every tag and URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tags: set[str] = set()
        self.urls: list[str] = []
        self._in_table = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag == "table" and ("id", "artifacts") in attrs:
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests import support

    root = Path(__file__).resolve().parents[2] / "sample_models"
    out = tmp_path_factory.mktemp("html") / "digits"
    support.convert(root / "digits_cnn.keras", out, targets=("tflite",), preset="fp16", device="pixel-8",
                       verify_data=root / "digits.npz")
    return out


def _read(html: str) -> TableReader:
    reader = TableReader()
    reader.feed(html)
    return reader


def test_table_rows_match_report_json(converted: Path) -> None:
    report = json.loads((converted / "report.json").read_text())
    reader = _read((converted / "report.html").read_text())
    header, *rows = reader.rows
    assert header[:6] == ["artifact", "target", "preset", "size", "gzip size", "verification"]
    assert len(rows) == len(report["artifacts"]) == 1
    for row, artifact in zip(rows, report["artifacts"], strict=True):
        assert row[:3] == [artifact["path"], artifact["target"], artifact["preset"]]
        assert row[3] == f"{artifact['size_bytes'] / 1024:,.1f} KiB"
        assert row[4] == f"{artifact['gzip_bytes'] / 1024:,.1f} KiB"
        verification = artifact["verification"]
        assert row[5].startswith(("pass" if verification["passed"] else "verification failed") if verification else "not run")
        devices = sorted({e["device"] for e in artifact["estimates"]})
        assert header[6:] == [f"est. latency {d}" for d in devices]
        for cell, device in zip(row[6:], devices, strict=True):
            p50 = next(e["p50_ms"] for e in artifact["estimates"] if e["device"] == device)
            assert cell == f"{p50:.3f} ms"
    # Self-contained: no scripts, no external resources.
    assert "script" not in reader.tags and reader.urls == [] and "http://" not in (converted / "report.html").read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")


def _rich_report() -> dict[str, Any]:
    evil = '<script>alert("x")</script>'
    estimate = {"device": "pixel-8", "p50_ms": 0.5, "low_ms": 0.4, "high_ms": 0.7, "path": "cpu",
                "family_ms": {"conv": 0.3, evil: 0.1}}
    verification = {"status": "fail", "passed": False, "failure": f"{evil}: cosine 0.9 < 0.999", "samples": 8,
                    "data_origin": "seeded", "outputs": [{"name": evil, "metrics": {"max_abs": 0.5, "sqnr_db": 12.0,
                                                          "error_hist": {"edges": [0, 0.1, 0.2], "counts": [5, 3]}}}],
                    "localization": {"layers": [{"layer": f"l{i}", "max_abs": 10.0 ** -i, "cosine": 1.0}
                                                for i in range(5)]}}
    artifact = {"path": f"{evil}.tflite", "target": "tflite", "preset": "int8", "size_bytes": 2048, "gzip_bytes": 1024,
                "verification": verification, "estimates": [estimate], "warnings": [evil]}
    return {"status": "verification_failed", "source": {"path": f"/m/{evil}.keras", "format": "keras"},
            "artifacts": [artifact, {"path": "b.tflite", "target": "tflite", "preset": "fp32"}], "warnings": [evil]}


def test_everything_is_escaped_and_missing_keys_are_tolerated() -> None:
    html = render_html(_rich_report())
    reader = _read(html)
    assert "script" not in reader.tags and "<script>" not in html and "&lt;script&gt;" in html
    assert [row[0] for row in reader.rows[1:]] == ['<script>alert("x")</script>.tflite', "b.tflite"]
    assert reader.rows[2][3:6] == ["-", "-", "not run"]
    assert reader.rows[1][5].startswith("fail (")
    # Every optional section rendered: family breakdown, metrics table, histogram, per-layer curve (log scale).
    for title in ("Time per op family", "Numerical error", "error_hist", "Per-layer error (max_abs",
                  "SQNR (dB"):
        assert title in html
    assert render_html({}).count("<tr>") == 1  # an empty report still renders the table header


def test_real_layer_localization_is_drawn(converted: Path) -> None:
    from edgeexport.sources import load, open_source
    from edgeexport.verify.localize import localize_tflite

    root = Path(__file__).resolve().parents[2] / "sample_models"
    report = json.loads((converted / "report.json").read_text())
    artifact = report["artifacts"][0]
    found = localize_tflite(converted / artifact["path"], load(open_source(root / "digits_cnn.keras")),
                            data=root / "digits.npz", samples=16)
    artifact["verification"]["localization"] = found.to_dict()
    html = render_html(report)
    names = [layer.layer for layer in found.layers]
    assert len(names) >= 4 and "conv1" in names
    # The per-layer report is plotted as SQNR (the worse of tensor and per-channel SQNR), not as max_abs.
    assert "Per-layer error (SQNR dB, worse of tensor and channel, reference layer order)" in html
    # One point per layer, in order, each with its value in the tooltip.
    points = re.findall(r"<circle [^>]*><title>([^:<]+): ", html)
    assert points == names
    assert f"first layer over tolerance: {found.first_over or 'none'}" in html


@pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(converted: Path, tmp_path: Path) -> None:
    png = screenshot(converted / "report.html", tmp_path / "report.png", width=1200, height=1600)
    assert png.stat().st_size > 20_000
    stats = png_stats(png)
    assert (stats.width, stats.height) == (1200, 1600)
    # A blank or single-colour page would have one colour; text, table lines and bars give many.
    assert stats.colors > 50 and stats.dominant_share < 0.98
