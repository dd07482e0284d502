"""App bundles: the artifact with its metadata embedded where the format allows, and a ``manifest.json``
validated against ``edgeexport/schemas/manifest.schema.json``.

    >>> from pathlib import Path
    >>> from edgeexport.bundle import write_bundles, parse_preprocessing
    >>> write_bundles(Path("build/digits"), preprocessing=parse_preprocessing("scale=0.0625"))  # doctest: +SKIP
"""

from __future__ import annotations

from edgeexport.bundle.manifest import (
           ModelInfo,
           Preprocessing,
           build_manifest,
           parse_preprocessing,
           read_labels,
)
from edgeexport.bundle.preprocess import PreprocessSpecs, parse_preprocess_specs
from edgeexport.bundle.writer import BundleResult, read_report, write_bundles
from edgeexport.jsonschemas import load_schema, validate

__all__ = ["BundleResult", "ModelInfo", "PreprocessSpecs", "Preprocessing", "build_manifest", "load_schema",
           "parse_preprocess_specs", "parse_preprocessing", "read_labels", "read_report", "validate", "write_bundles"]
