"""Building ``manifest.json``: what an app needs to load, feed and read one artifact (schema 2.0).

2.0 (issue 17): preprocessing moved from one top-level block into each input (``inputs[i].preprocessing``), with
the source model's name of that input (``inputs[i].source_name``), so a multi-input model's inputs are each
described, in the artifact's own input order.

Everything comes from the typed ``Report`` (the artifact's tensors, preset, device, verification and simulated
latency) plus what only the user knows: preprocessing, class labels, the model's version, author and licence.
Nothing here imports a framework.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeexport import __version__
from edgeexport.errors import DataError, UnsupportedError
from edgeexport.files import sha256_of
from edgeexport.types import Artifact, TensorSpec

if TYPE_CHECKING:
    from edgeexport.bundle.preprocess import PreprocessSpecs
    from edgeexport.report.model import ArtifactReport, Report
    from edgeexport.simulate.estimate import LatencyEstimate
    from edgeexport.verify.stage import Verification

MANIFEST_SCHEMA_VERSION = "2.0"
CHANNEL_ORDERS = ("none", "gray", "rgb", "bgr")
_WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\\\/]")
_DTYPES = {"float32", "float16", "int8", "uint8", "int16", "int32", "int64", "bool"}


@dataclass(frozen=True)
class Preprocessing:
    """How an app turns raw values into model input: ``x = (raw * scale - mean[c]) / std[c]``.

    ``scale`` defaults to 1.0, ``mean`` to ``(0.0,)`` and ``std`` to ``(1.0,)`` (one value for all channels, or
    one per channel in ``channel_order``). ``source`` is ``"user"`` when given, ``"default"`` for the identity,
    so a manifest never claims a preprocessing nobody stated.
    """

    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channel_order: str = "none"
    source: str = "default"

    @property
    def is_identity(self) -> bool:
        return self.scale == 1.0 and all(m == 0.0 for m in self.mean) and all(s == 1.0 for s in self.std)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "identity" if self.is_identity else "affine",
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "channel_order": self.channel_order,
            "source": self.source,
        }


@dataclass(frozen=True)
class ModelInfo:
    """What the user says about the model; ``version`` None means: derive it from the source's sha256."""

    version: str | None = None
    description: str = ""
    author: str = ""
    license: str = ""
    labels: tuple[str, ...] | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


def parse_preprocessing(spec: str | Path | None) -> Preprocessing:
    """``None`` -> identity; ``"scale=0.0625"`` or ``"scale=1/255,mean=0.485:0.456:0.406,std=...,channel_order=rgb"``;
    or a TOML file path with those keys (top level or in a ``[preprocessing]`` table). Bad specs raise DataError."""
    if spec is None or str(spec).strip() in ("", "none", "identity"):
        return Preprocessing()
    path = Path(spec)
    if str(spec).endswith(".toml") or path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise DataError(f"cannot read preprocessing file {path}: {err}") from err
        table = data.get("preprocessing", data)
        if not isinstance(table, dict):
            raise DataError(f"{path}: [preprocessing] must be a table")
        return preprocessing_from_mapping(table, where=str(path))
    pairs: dict[str, Any] = {}
    for part in str(spec).split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise DataError(f"preprocessing item {part.strip()!r} is not KEY=VALUE",
                            hint="e.g. --preprocess scale=0.0625 or scale=1/255,mean=0.5,std=0.5")
        values = value.split(":")
        pairs[key.strip()] = values if len(values) > 1 or key.strip() in ("mean", "std") else value.strip()
    return preprocessing_from_mapping(pairs, where="--preprocess")


def preprocessing_from_mapping(table: Mapping[str, Any], *, where: str) -> Preprocessing:
    unknown = sorted(set(table) - {"scale", "mean", "std", "channel_order"})
    if unknown:
        raise DataError(f"{where}: unknown preprocessing key(s) {', '.join(unknown)}",
                        hint="keys: scale, mean, std, channel_order")
    scale = _number(table.get("scale", 1.0), "scale", where)
    mean = tuple(_number(v, "mean", where) for v in _as_list(table.get("mean", [0.0])))
    std = tuple(_number(v, "std", where) for v in _as_list(table.get("std", [1.0])))
    if any(s <= 0 for s in std):
        raise DataError(f"{where}: std must be > 0, got {list(std)}")
    order = str(table.get("channel_order", "none")).lower()
    if order not in CHANNEL_ORDERS:
        raise DataError(f"{where}: channel_order {order!r} is not one of {', '.join(CHANNEL_ORDERS)}")
    if len(mean) != len(std) and 1 not in (len(mean), len(std)):
        raise DataError(f"{where}: mean has {len(mean)} values and std {len(std)}; give one or one per channel")
    return Preprocessing(scale, mean, std, order, "user")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _number(value: Any, key: str, where: str) -> float:
    """A finite float from a number or a string such as ``0.0625`` or ``1/255``."""
    try:
        if isinstance(value, str) and "/" in value:
            top, bottom = value.split("/", 1)
            number = float(top) / float(bottom)
        else:
            number = float(value)
    except (TypeError, ValueError, ZeroDivisionError) as err:
        raise DataError(f"{where}: {key} value {value!r} is not a number") from err
    if not math.isfinite(number):
        raise DataError(f"{where}: {key} must be finite, got {value!r}")
    return number


def read_labels(path: Path) -> tuple[str, ...]:
    """Class labels, one per line (blank lines at the end ignored); DataError if unreadable or empty."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read labels file {path}: {err}") from err
    while lines and not lines[-1].strip():
        lines.pop()
    labels = tuple(line.strip() for line in lines)
    if not labels:
        raise DataError(f"labels file {path} is empty")
    return labels


def file_entries(artifact: Path) -> list[dict[str, Any]]:
    """One ``{path, sha256, size_bytes}`` per file of the artifact (a package lists its files, POSIX paths)."""
    if artifact.is_dir():
        files = sorted(p for p in artifact.rglob("*") if p.is_file())
        names = [f"{artifact.name}/{p.relative_to(artifact).as_posix()}" for p in files]
    else:
        files, names = [artifact], [artifact.name]
    return [{"path": name, "sha256": sha256_of(p), "size_bytes": p.stat().st_size}
            for name, p in zip(names, files, strict=True)]


def tensor_entry(spec: TensorSpec, source_layout: str | None = None) -> dict[str, Any]:
    """An artifact tensor as the manifest's tensor: quantization kept, value range dropped. ``source_layout``
    fills a layout the artifact's runtime does not report (Core ML multi-arrays)."""
    if spec.dtype not in _DTYPES:
        raise UnsupportedError(f"tensor {spec.name!r} has dtype {spec.dtype}, which manifest schema "
                               f"{MANIFEST_SCHEMA_VERSION} does not list", hint=f"dtypes: {', '.join(sorted(_DTYPES))}")
    quant = spec.quantization
    return {
        "name": spec.name,
        "shape": [None if d is None else int(d) for d in spec.shape],
        "dtype": spec.dtype,
        "layout": spec.layout or source_layout,
        "quantization": None if quant is None else {"scale": float(quant.scale), "zero_point": int(quant.zero_point)},
    }


def verification_entry(verification: Verification | None) -> dict[str, Any] | None:
    """The verification summary: ``passed`` and the stage's scalar facts (metrics per output stay in
    report.json). Wall times are left out and local paths cut to their file name, so the same conversion gives
    the same manifest on any machine. None when verification did not run."""
    if verification is None:
        return None
    summary: dict[str, Any] = {
        "status": verification.status.value,
        "artifact": _file_name(verification.artifact),
        "reference": _file_name(verification.reference),
        "failure": _file_name(verification.failure_line()) or None,
        "reason": _file_name(verification.reason),
        "runtime": str(verification.runtime),
        "samples": verification.samples,
        "data_origin": _file_name(verification.data_origin),
        "tolerance_source": _file_name(verification.tolerance_source),
    }
    return {"passed": verification.passed, "summary": summary}


def _file_name(value: str) -> str:
    """A local path cut to its file name; any other text unchanged."""
    if value.startswith("/") or _WINDOWS_PATH.match(value):
        return re.split(r"[\\/]", value)[-1]
    return value


def latency_entries(estimates: Sequence[LatencyEstimate]) -> list[dict[str, Any]]:
    """Simulated latency per device; estimates without a device or a finite p50 are skipped."""
    return [{"device": e.device, "p50_ms": float(e.p50_ms), "low_ms": _finite_or_none(e.low_ms),
             "high_ms": _finite_or_none(e.high_ms), "unit": e.path}
            for e in estimates if e.device and math.isfinite(e.p50_ms)]


def _finite_or_none(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def build_manifest(
    report: Report,
    entry: ArtifactReport,
    bundled: Path,
    *,
    preprocessing: Preprocessing | PreprocessSpecs,
    info: ModelInfo,
    embedded: Sequence[str] = (),
    not_embedded: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The manifest for ``entry``, one artifact of ``report``, whose bundled copy is ``bundled`` (hashed here,
    after any metadata was embedded into it). ``preprocessing``: a single block (a single-input model) or the
    ``--preprocess`` specs by input name (``bundle.preprocess``); UsageError when they do not fit the inputs."""
    from edgeexport.bundle.preprocess import parse_preprocess_specs, plain_name

    source, artifact = report.source, entry.artifact
    source_inputs = [t.name for t in report.summary.inputs] if report.summary is not None else []
    per_input = parse_preprocess_specs(preprocessing).for_inputs([t.name for t in artifact.inputs], source_inputs)
    name = source.path.name.split(".")[0] or "model"
    files = file_entries(bundled)
    return {
        "schema": "edgeexport.manifest",
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "generator": {"name": "edgeexport", "version": __version__},
        "model": {
            "name": name,
            "version": info.version or (source.sha256[:12] if source.sha256 else "0"),
            "description": info.description,
            "author": info.author,
            "license": info.license,
            "source_format": source.format,
            "source_sha256": source.sha256,
        },
        "target": artifact.target,
        "preset": artifact.preset,
        "device": artifact.device or report.device,
        "artifact": {
            "path": bundled.name,
            "format": bundled.suffix.removeprefix("."),
            "size_bytes": sum(f["size_bytes"] for f in files),
            "sha256": sha256_of(bundled),
            "files": files,
        },
        "inputs": [{**tensor_entry(t, _source_layout(report, artifact, t, "inputs")),
                    "source_name": _source_name(t.name, source_inputs, plain_name),
                    "preprocessing": pre.to_dict()} for t, pre in zip(artifact.inputs, per_input, strict=True)],
        "outputs": [tensor_entry(t, _source_layout(report, artifact, t, "outputs")) for t in artifact.outputs],
        "labels": list(info.labels) if info.labels is not None else None,
        "verification": verification_entry(entry.verification),
        "simulated_latency": latency_entries(entry.estimates),
        "embedded": list(embedded),
        "not_embedded": [{"what": what, "why": why} for what, why in not_embedded],
    }


def _source_name(name: str, source_inputs: Sequence[str], plain: Callable[[str], str]) -> str | None:
    """The source model's input this artifact input is (same name, or same once decorations are cut), else None."""
    for candidate in source_inputs:
        if candidate == name or plain(candidate) == plain(name):
            return candidate
    return None


def _source_layout(report: Report, artifact: Artifact, tensor: TensorSpec, kind: str) -> str | None:
    """The source model's layout for a same-named, same-rank tensor the artifact did not permute; else None."""
    if any(p.tensor == tensor.name for p in artifact.permutations) or report.summary is None:
        return None
    specs = report.summary.inputs if kind == "inputs" else report.summary.outputs
    for spec in specs:
        if spec.name == tensor.name and len(spec.shape) == len(tensor.shape):
            return spec.layout or None
    return None
