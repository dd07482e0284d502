"""Hashes, sizes and byte counts of model files and packages: one definition each, used by every stage.

A "package" is a directory artifact or model (``.mlpackage``, SavedModel). Its hash covers every file in
sorted order, each preceded by its relative path, so renaming a file inside it changes the hash. Standard
library only: the CLI's fast paths import this.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

_BLOCK = 1 << 20  # bytes read at a time: hashing a 1 GB model never holds it in memory


def files_of(path: Path) -> list[Path]:
    """The files of ``path``: itself, or every file under a directory in sorted order."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def sha256_of(path: Path) -> str:
    """SHA-256 (hex) of a file, or of a package (relative path + NUL + bytes of each file, in sorted order)."""
    digest = hashlib.sha256()
    for file in files_of(path):
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(_BLOCK), b""):
                digest.update(block)
    return digest.hexdigest()


def size_of(path: Path) -> int:
    """Bytes on disk of a file, or of every file in a package."""
    return sum(f.stat().st_size for f in files_of(path))


def gzip_size(path: Path) -> int:
    """gzip -9 size of the bytes of a file or of each file of a package, summed: what a download costs."""
    return sum(len(gzip.compress(f.read_bytes(), compresslevel=9, mtime=0)) for f in files_of(path))


def human_bytes(count: int | float | None) -> str:
    """``1536`` -> ``"1.5 KiB"``, ``8 * 2**30`` -> ``"8 GiB"``, ``None`` -> ``"-"`` (binary units)."""
    if count is None:
        return "-"
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            if unit == "B":
                return f"{size:.0f} B"
            text = f"{size:,.1f}"
            return f"{text.removesuffix('.0')} {unit}"
        size /= 1024
    raise AssertionError("unreachable: GiB is the last unit")
