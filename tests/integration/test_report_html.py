"""report.html: written by convert, its artifact table matches report.json, text is escaped, and it renders
in headless Chromium (skipped only when Chromium is not installed)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edgeexport.report.html import render_html
from edgeexport.report.model import Report, load_report
from edgeexport.types import SourceModel, Status
from edgeexport.verify.compare import Check, OutputComparison
from edgeexport.verify.layers import LayerError
from edgeexport.verify.localize import Localization
from edgeexport.verify.metrics import OutputMetrics
from tests.helpers.reports import estimate, typed_report
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


def _rich_report() -> Report:
    """A failing verification with per-output metrics and a per-layer curve, and markup in every string."""
    evil = '<script>alert("x")</script>'
    metrics = OutputMetrics(samples=8, max_abs=0.5, mean_abs=0.1, max_rel=1.0, rmse=0.2, cosine=0.9,
                            cosine_worst=0.8, sqnr_db=12.0)
    output = OutputComparison(evil, evil, "name", metrics, (Check(evil, "cosine", "cos", "min", 0.999, 0.9, False),))
    # A channel without signal has SQNR -inf, so the curve falls back to max_abs (10^0 .. 10^-4: log scale).
    layers = tuple(LayerError(f"l{i}", "Dense", f"t{i}", (), (4,), 1.0, 40.0, -math.inf, 10.0 ** -i) for i in range(5))
    localization = Localization(layers, None, None, "", (), 8, 0.999, 30.0)
    report, entry = typed_report(f"{evil}.tflite", estimates=(estimate(family_ms=(("conv", 0.3), (evil, 0.1))),),
                                 warnings=(evil,))
    assert entry.verification is not None
    verification = replace(entry.verification, status=Status.VERIFICATION_FAILED, outputs=(output,),
                           data_origin="seeded", samples=8, localization=localization)
    _, plain_entry = typed_report("b.tflite", verification=None, estimates=(), preset="fp32")
    source = replace(report.source, path=Path(f"/m/{evil}.keras"))
    return replace(report, source=source, warnings=(evil,),
                   artifacts=(replace(entry, verification=verification), plain_entry))


def test_everything_is_escaped_and_absent_stages_are_left_out() -> None:
    html = render_html(_rich_report())
    reader = _read(html)
    assert "script" not in reader.tags and "<script>" not in html and "&lt;script&gt;" in html
    assert [row[0] for row in reader.rows[1:]] == ['<script>alert("x")</script>.tflite', "b.tflite"]
    assert reader.rows[2][5:] == ["not run", "-"]
    assert reader.rows[1][5].startswith("verification failed (")
    # Every optional section rendered: family breakdown, metrics table, per-layer curve (log scale), SQNR bars.
    for title in ("Time per op family", "Numerical error", "Per-layer error (max_abs", "SQNR (dB"):
        assert title in html
    empty = Report(SourceModel(Path("m.keras"), "keras", ""), None, ())
    assert render_html(empty).count("<tr>") == 1  # a report without artifacts still renders the table header


def test_real_layer_localization_is_drawn(converted: Path) -> None:
    from edgeexport.sources import load, open_source
    from edgeexport.verify.localize import localize_tflite

    root = Path(__file__).resolve().parents[2] / "sample_models"
    report = load_report(converted / "report.json")
    entry = report.artifacts[0]
    assert entry.verification is not None
    found = localize_tflite(entry.artifact.path, load(open_source(root / "digits_cnn.keras")),
                            data=root / "digits.npz", samples=16)
    localized = replace(entry, verification=replace(entry.verification, localization=found))
    html = render_html(replace(report, artifacts=(localized,)))
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
