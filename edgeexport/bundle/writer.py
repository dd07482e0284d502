"""Writing app bundles: per artifact, a folder with a copy of the artifact (metadata embedded) and manifest.json.

``out_dir/bundle/<target>/`` when each target has one artifact, ``out_dir/bundle/<target>-<preset>/`` otherwise.
A bundle is staged in a temporary folder and renamed into place, so a failure leaves the old one intact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeexport.bundle.manifest import ModelInfo, Preprocessing, build_manifest
from edgeexport.bundle.preprocess import PreprocessSpecs, parse_preprocess_specs
from edgeexport.errors import ConversionError, DataError
from edgeexport.jsonschemas import validate
from edgeexport.report.jsonfile import write_json

if TYPE_CHECKING:
    from edgeexport.report.model import ArtifactReport, Report

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class BundleResult:
    """One written bundle: its folder, the artifact copy inside it and the manifest as written."""

    directory: Path
    artifact: Path
    manifest_path: Path
    manifest: dict[str, Any]


def read_report(out_dir: Path) -> Report:
    """``out_dir/report.json``, validated, with every artifact's sha256 checked against the file on disk: a
    report is trusted only for the bytes it describes. DataError (exit 3) when missing, invalid or stale."""
    from edgeexport.report.model import load_report

    path = out_dir / "report.json"
    if not path.is_file():
        raise DataError(f"no report.json in {out_dir}", hint="run `edgeexport convert ... --out DIR` first")
    from edgeexport.txn import verify_committed

    report = load_report(path)
    verify_committed(out_dir, report)  # never ship an artifact its report does not describe (exit 3)
    return report


def write_bundles(
    out_dir: Path,
    report: Report | None = None,
    *,
    preprocessing: Preprocessing | PreprocessSpecs | None = None,
    info: ModelInfo | None = None,
    embed: bool = True,
) -> list[BundleResult]:
    """Write one bundle per artifact of ``report`` (default: read ``out_dir/report.json``) under ``out_dir/bundle``.

    ``preprocessing``: one block for a single-input model, or ``PreprocessSpecs`` by input name
    (``bundle.preprocess.parse_preprocess_specs``; UsageError when they do not fit the inputs).
    ``embed`` False copies artifacts unchanged (the manifest then lists everything as not embedded).
    Raises DataError for a missing artifact and ConversionError if a manifest would not match its schema.
    """
    from edgeexport.txn import recover

    if report is None:
        recover(out_dir)  # finish a commit a killed run left half done before trusting the directory
        report = read_report(out_dir)
    if report.failure is not None:
        raise DataError(f"the last convert into {out_dir} failed ({report.failure.message}); "
                        "there is nothing verified to bundle", hint="fix the conversion and rerun convert")
    specs = parse_preprocess_specs(preprocessing)
    info = info or ModelInfo()
    per_target = Counter(entry.artifact.target for entry in report.artifacts)
    results = []
    for entry in report.artifacts:
        folder = entry.artifact.target
        if per_target[folder] > 1:
            folder += "-" + entry.artifact.preset.replace(":", "-").replace("+", "-")
        results.append(_write_one(out_dir, out_dir / "bundle" / folder, report, entry, specs, info, embed))
    return results


def _write_one(out_dir: Path, target_dir: Path, report: Report, entry: ArtifactReport,
               preprocessing: PreprocessSpecs, info: ModelInfo, embed: bool) -> BundleResult:
    # Relative to the report's out_dir, then under the out_dir being bundled: a report made in a staging
    # directory names artifacts where they will be, a report read from disk where they are.
    source = Path(report.relative(entry.artifact.path))
    source = source if source.is_absolute() else out_dir / source
    if not source.exists():
        raise DataError(f"artifact {source} named in report.json is missing")
    from edgeexport.datachecks import check_bundle_labels

    check_bundle_labels(info.labels, str(report.relative(entry.artifact.path)), entry.artifact.outputs)
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=target_dir.parent))
    try:
        copy = staging / source.name
        if source.is_dir():
            shutil.copytree(source, copy)
        else:
            shutil.copyfile(source, copy)
        draft = build_manifest(report, entry, copy, preprocessing=preprocessing, info=info)
        embedded: list[str] = []
        missing: list[tuple[str, str]] = []
        if embed:
            embedded, missing = _embed(copy, draft)
        else:
            missing = [(f"{entry.artifact.target}.metadata", "bundling ran with embedding turned off")]
        manifest = build_manifest(report, entry, copy, preprocessing=preprocessing, info=info,
                                  embedded=embedded, not_embedded=missing)
        errors = validate(manifest)
        if errors:
            raise ConversionError(f"the manifest for {source.name} does not match its schema: {'; '.join(errors[:5])}")
        write_json(staging / MANIFEST_NAME, manifest)
        if target_dir.exists():
            shutil.rmtree(target_dir)
        os.replace(staging, target_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BundleResult(target_dir, target_dir / source.name, target_dir / MANIFEST_NAME, manifest)


def _embed(copy: Path, manifest: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    """Metadata written into the artifact copy by its target, and what could not be (with why)."""
    from edgeexport.targets.base import target_for

    return target_for(copy).embed_metadata(copy, manifest)
