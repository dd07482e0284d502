"""``check --evidence DIR`` and ``edgeexport evidence verify DIR``: what a check run read and wrote, hashed.

``DIR/evidence.json`` lists every input (config, models, calibration and verification data) and every output
(artifacts, per-cell reports, check.json, JUnit, Markdown) with its sha256 and size, the edgeexport version, the
versions of the packages it converts and runs with, and the platform. ``DIR/check.json`` is a copy of the
run's result. Paths are relative to DIR, so DIR and the output directory can be moved together. ``verify``
re-hashes every listed file and reports each one that changed or is missing.

Not signed: sigstore's model-signing 1.1.1 installs but does not import (it imports ``OpenSSL`` without
declaring pyOpenSSL), so signing is left out rather than shipped untested.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeexport import __version__
from edgeexport.errors import BadInputError
from edgeexport.report.jsonfile import write_json

MANIFEST = "evidence.json"
SCHEMA = "edgeexport-evidence/1"
DEPENDENCIES = ("tensorflow", "keras", "tf_keras", "ai-edge-litert", "coremltools", "onnx", "onnxruntime",
                "onnx2tf", "numpy", "scikit-learn", "protobuf", "flatbuffers", "click", "rich", "ray")


@dataclass(frozen=True)
class Problem:
    """A listed file that no longer matches: ``changed`` (other bytes) or ``missing``."""

    path: str
    kind: str
    expected: str
    found: str | None

    def line(self) -> str:
        if self.kind == "missing":
            return f"{self.path}: missing (expected sha256 {self.expected[:16]}…)"
        return f"{self.path}: changed (sha256 {self.expected[:16]}… is now {(self.found or '')[:16]}…)"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _expand(path: Path) -> list[Path]:
    """A file, or every file under a directory (an .mlpackage, a SavedModel), in sorted order."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path] if path.is_file() else []


def versions() -> dict[str, str | None]:
    """Installed versions of the packages edgeexport converts, runs and schedules with (None: not installed)."""
    found: dict[str, str | None] = {}
    for name in DEPENDENCIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def platform_info() -> dict[str, Any]:
    return {"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
            "platform": platform.platform(), "python": sys.version.split()[0],
            "implementation": platform.python_implementation(), "cpus": os.cpu_count()}


def _artifacts_of(report: Path) -> list[Path]:
    """The artifacts a per-cell report.json lists (paths relative to its directory)."""
    try:
        data = json.loads(report.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return [report.parent / str(a["path"]) for a in data.get("artifacts", []) if a.get("path")]


def write_evidence(directory: Path, *, config_path: Path, models: Iterable[tuple[str, Path]], out: Path,
                   reports: Iterable[Path], outputs: Iterable[tuple[str, Path]], check_json: Path,
                   reused: Iterable[dict[str, Any]] = ()) -> Path:
    """Write ``directory/evidence.json`` (and a copy of ``check_json``) listing every input and output.

    ``models`` are (role, path) inputs (``model``, ``calibration``, ``data``); ``reports`` the per-cell
    report.json files (their artifacts and report.html are added); ``outputs`` (role, path) the run's own
    files (JUnit, Markdown). ``reused`` are the cell records reused from a baseline: listed by fingerprint,
    their files were not produced by this run."""
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / "check.json"
    if copy.resolve() != check_json.resolve():
        shutil.copyfile(check_json, copy)
    entries: list[tuple[str, Path]] = [("config", config_path), *models]
    for report in reports:
        entries.extend(("artifact", a) for a in _artifacts_of(report))
        entries.append(("report", report))
        if (report.parent / "report.html").is_file():
            entries.append(("report", report.parent / "report.html"))
    entries.extend(outputs)
    entries.append(("report", copy))
    files: dict[Path, dict[str, Any]] = {}
    for role, path in entries:
        for file in _expand(path):
            resolved = file.resolve()
            if resolved in files:  # one file in several roles (calibration and verification data)
                if role not in files[resolved]["roles"]:
                    files[resolved]["roles"].append(role)
                continue
            files[resolved] = {"path": os.path.relpath(resolved, directory.resolve()), "roles": [role],
                               "sha256": _sha256(file), "size_bytes": file.stat().st_size}
    manifest = {
        "schema": SCHEMA,
        "created_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": {"name": "edgeexport", "version": __version__},
        "command": sys.argv,
        "dependencies": versions(),
        "platform": platform_info(),
        "out": os.path.relpath(out.resolve(), directory.resolve()),
        "reused_cells": [{"id": r["id"], "fingerprint": r["fingerprint"]} for r in reused],
        "files": list(files.values()),
    }
    return write_json(directory / MANIFEST, manifest)


def read_manifest(directory: Path) -> dict[str, Any]:
    """``directory/evidence.json``; BadInputError (exit 3) when it is missing or not a manifest."""
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise BadInputError(f"no {MANIFEST} in {directory}", hint="write one with `edgeexport check --evidence DIR`") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInputError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("files"), list):
        raise BadInputError(f"{path} is not an edgeexport evidence manifest ({SCHEMA})")
    return data


def verify_evidence(directory: Path) -> tuple[int, list[Problem]]:
    """Re-hash every file the manifest lists: (files checked, problems found)."""
    manifest = read_manifest(directory)
    problems: list[Problem] = []
    for entry in manifest["files"]:
        path = directory / str(entry["path"])
        if not path.is_file():
            problems.append(Problem(str(entry["path"]), "missing", str(entry["sha256"]), None))
            continue
        found = _sha256(path)
        if found != entry["sha256"]:
            problems.append(Problem(str(entry["path"]), "changed", str(entry["sha256"]), found))
    return len(manifest["files"]), problems
