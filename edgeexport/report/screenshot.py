"""Screenshots of report.html with headless Chromium, and a tiny PNG reader to check they show something.

Chromium is optional (Debian: ``apt-get install -y chromium``); ``find_chromium()`` returns None without it.
The flags keep it off the network and away from the user's profile.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from edgeexport.errors import UnsupportedError

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The first Chromium-like browser found: ``/usr/bin/chromium``, then on PATH; None when absent."""
    for candidate in CANDIDATES:
        found = candidate if Path(candidate).is_file() else shutil.which(candidate)
        if found:
            return found
    return None


def screenshot(html: Path, png: Path, *, width: int = 1200, height: int = 1600, timeout_s: float = 90.0) -> Path:
    """Render ``html`` (a local file) into ``png`` at ``width`` x ``height`` CSS pixels.

    Raises UnsupportedError when no Chromium is installed or it wrote no image (its stderr tail is given).
    """
    browser = find_chromium()
    if browser is None:
        raise UnsupportedError("no Chromium found for the screenshot", hint="apt-get install -y chromium")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeexport-chromium-") as profile:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png.resolve()}",
                   f"--window-size={width},{height}", html.resolve().as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if not png.is_file():
        tail = " ".join(done.stderr.split()[-40:])
        raise UnsupportedError(f"Chromium wrote no screenshot (exit {done.returncode}): {tail}")
    return png


@dataclass(frozen=True)
class PngStats:
    """Size in pixels, how many distinct colours were seen, and the share of the commonest one (0..1)."""

    width: int
    height: int
    colors: int
    dominant_share: float


def png_stats(png: Path) -> PngStats:
    """Decode an 8-bit RGB/RGBA/grey PNG (non-interlaced, as Chromium writes) and count its colours."""
    data = png.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{png} is not a PNG")
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color_type)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"{png}: only 8-bit non-interlaced grey/RGB/RGBA PNGs are supported")
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    previous = bytearray(stride)
    counts: dict[bytes, int] = {}
    for row in range(height):
        start = row * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1:start + 1 + stride]), previous, channels)
        # Every 4th pixel is enough to count colours and keeps this fast on a 1200 x 1600 image.
        for x in range(0, stride, channels * 4):
            key = bytes(line[x:x + channels])
            counts[key] = counts.get(key, 0) + 1
        previous = line
    total = sum(counts.values())
    return PngStats(width, height, len(counts), max(counts.values()) / total if total else 1.0)


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> bytearray:
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
        elif kind == 4:
            corner = previous[i - bpp] if i >= bpp else 0
            estimate = left + up - corner
            pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
            best = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
            line[i] = (line[i] + best) & 0xFF
    return line
