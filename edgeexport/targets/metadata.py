"""Putting what each format can carry into the bundled artifact itself.

Core ML: the model description holds author, licence, a short description, a version string, a description per
input and output, and a free-form user-defined string map (we put the class labels there: our programs are not
Core ML classifiers, so the classifier fields do not apply). TFLite: the model's ``metadata`` list holds named
byte buffers; the standard ``TFLITE_METADATA`` buffer (normalization, associated label files) needs the
tflite-support metadata writers, which are not installed, so we write our own named buffer instead and say so.

Both functions edit a copy that the caller owns and return ``(embedded, not_embedded)``: what went in, and
``(what, why)`` pairs for what did not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeexport.errors import ConversionError

TFLITE_METADATA_NAME = "edgeexport.manifest"
# These are the manifest fields a runtime-only consumer needs; hashes cannot be embedded (they would change
# the bytes they describe).
# (Manifest 2.0 keeps each input's preprocessing inside its input entry.)
_EMBEDDED_FIELDS = ("model", "target", "preset", "inputs", "outputs", "labels")

Pairs = tuple[list[str], list[tuple[str, str]]]


def embed_coreml(package: Path, manifest: Mapping[str, Any]) -> Pairs:
    """Write model metadata into the ``.mlpackage`` at ``package`` (in place) and keep it byte-deterministic."""
    from edgeexport.quiet import import_coremltools

    import_coremltools()
    from coremltools.proto import Model_pb2

    from edgeexport.targets.coreml import make_deterministic

    specs = sorted(package.rglob("*.mlmodel"))
    if not specs:
        raise ConversionError(f"{package.name} has no model.mlmodel to write metadata into")
    spec = Model_pb2.Model()
    spec.ParseFromString(specs[0].read_bytes())
    model = manifest["model"]
    meta = spec.description.metadata
    embedded = []
    fields = {"author": model["author"], "license": model["license"],
              "shortDescription": model["description"] or _default_description(manifest),
              "versionString": model["version"]}
    for field_name, value in fields.items():
        if value:
            setattr(meta, field_name, value)
            embedded.append(f"coreml.metadata.{field_name}")
    user = meta.userDefined
    user["com.edgeexport.preset"] = manifest["preset"]
    # Per input name, as in the manifest's inputs (schema 2.0).
    user["com.edgeexport.preprocessing"] = json.dumps({t["name"]: t["preprocessing"] for t in manifest["inputs"]},
                                                      sort_keys=True)
    user["com.edgeexport.source_sha256"] = model["source_sha256"]
    embedded += ["coreml.userDefined.preset", "coreml.userDefined.preprocessing", "coreml.userDefined.source_sha256"]
    if manifest.get("labels"):
        user["com.edgeexport.labels"] = json.dumps(manifest["labels"])
        embedded.append("coreml.userDefined.labels")
    tensors = {t["name"]: t for t in [*manifest["inputs"], *manifest["outputs"]]}
    for feature in [*spec.description.input, *spec.description.output]:
        tensor = tensors.get(feature.name)
        if tensor is not None:
            feature.shortDescription = _tensor_text(tensor, manifest)
    embedded.append("coreml.feature_descriptions")
    specs[0].write_bytes(spec.SerializeToString(deterministic=True))
    make_deterministic(package)
    return embedded, []


def _default_description(manifest: Mapping[str, Any]) -> str:
    return f"{manifest['model']['name']} converted by edgeexport with preset {manifest['preset']}"


def _tensor_text(tensor: Mapping[str, Any], manifest: Mapping[str, Any]) -> str:
    dims = "x".join("?" if d is None else str(d) for d in tensor["shape"])
    text = f"{tensor['dtype']}[{dims}]" + (f" {tensor['layout']}" if tensor.get("layout") else "")
    if "preprocessing" in tensor:
        pre = tensor["preprocessing"]
        if pre["kind"] != "identity":
            text += f"; x = (raw * {pre['scale']:g} - mean) / std, mean {pre['mean']}, std {pre['std']}"
    elif manifest.get("labels"):
        text += f"; scores for {len(manifest['labels'])} classes (labels in user-defined metadata)"
    return text


def embed_tflite(model_file: Path, manifest: Mapping[str, Any]) -> Pairs:
    """Add a ``edgeexport.manifest`` metadata buffer (JSON) to the ``.tflite`` at ``model_file`` (in place)."""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    why_standard = ("the standard TFLITE_METADATA flatbuffer (input normalization, label files) is written by "
                    "tflite-support's metadata writers, which are not installed; the manifest carries these")
    content = model_file.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    if any((getattr(b, "offset", 0) or 0) > 1 for b in model.buffers or []):
        # Weights stored after the flatbuffer (models over 2 GB) would be lost by re-packing it.
        return [], [("tflite.metadata", "the model keeps its weights outside the flatbuffer; re-packing would drop them"),
                    ("tflite.TFLITE_METADATA", why_standard)]
    payload = {key: manifest[key] for key in _EMBEDDED_FIELDS}
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(payload, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers = [*(model.buffers or []), buffer]
    entry = schema.MetadataT()
    entry.name = TFLITE_METADATA_NAME.encode()
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != entry.name] + [entry]
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    model_file.write_bytes(bytes(builder.Output()))
    return [f"tflite.metadata.{TFLITE_METADATA_NAME}"], [("tflite.TFLITE_METADATA", why_standard)]


def read_tflite_metadata(model_file: Path, name: str = TFLITE_METADATA_NAME) -> bytes | None:
    """The bytes of the named metadata buffer of a ``.tflite``, None when it has none."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(model_file.read_bytes(), 0)
    for entry in model.metadata or []:
        if entry.name == name.encode():
            data = model.buffers[entry.buffer].data
            return b"" if data is None else bytes(bytearray(data))
    return None
