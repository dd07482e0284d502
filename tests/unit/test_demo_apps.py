"""The demo apps' bundled assets exist and validate, and their sources read only manifest fields the schema has.

Android and Apple SDKs are not available here, so instead of building the apps we check their contract: each
``schema: <pointer>`` comment in the Kotlin/Swift sources opens a block whose JSON key reads (org.json
``getX("key")``/``isNull("key")``, Swift ``CodingKeys``) must be properties of that schema object.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from edgeexport.files import sha256_of as artifact_sha256
from edgeexport.jsonschemas import load_schema, validate

ROOT = Path(__file__).resolve().parents[2]
ANDROID_ASSETS = ROOT / "android_demo" / "app" / "src" / "main" / "assets"
IOS_RESOURCES = ROOT / "ios_demo" / "DigitsDemo.swiftpm" / "Sources" / "DigitsDemo" / "Resources"
KOTLIN = sorted((ROOT / "android_demo" / "app" / "src" / "main" / "java").rglob("*.kt"))
SWIFT = sorted((ROOT / "ios_demo").rglob("*.swift"))

MARKER = re.compile(r"//\s*schema:\s*(#\S*)")
KOTLIN_READ = re.compile(r"\b(?:get|opt)(?:String|Double|Int|Long|Boolean|JSONObject|JSONArray)?\(\s*\"([^\"]+)\"\s*\)"
                         r"|\bisNull\(\s*\"([^\"]+)\"\s*\)|\bhas\(\s*\"([^\"]+)\"\s*\)")
SWIFT_KEYS = re.compile(r"enum\s+CodingKeys\s*:\s*String\s*,\s*CodingKey\s*\{(.*?)\}", re.S)
SWIFT_CASE = re.compile(r"case\s+([^\n]+)")


def schema_blocks(source: str) -> list[tuple[str, str]]:
    """``(pointer, text)`` for each ``// schema: <pointer>`` comment up to the next one."""
    marks = list(MARKER.finditer(source))
    return [(m.group(1), source[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(source)])
            for i, m in enumerate(marks)]


def kotlin_keys(block: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in KOTLIN_READ.finditer(block)}


def swift_keys(block: str) -> set[str]:
    keys: set[str] = set()
    for body in SWIFT_KEYS.findall(block):
        for line in SWIFT_CASE.findall(body):
            for item in line.split(","):
                name, _, raw = item.partition("=")
                keys.add(raw.strip().strip('"') if raw else name.strip())
    return keys


def object_properties(pointer: str) -> set[str]:
    node = load_schema()
    for part in pointer.removeprefix("#/").split("/") if pointer != "#" else ():
        node = node[part]
    assert "object" in ([node["type"]] if isinstance(node["type"], str) else node["type"]), pointer
    return set(node["properties"])


@pytest.mark.parametrize("assets", [ANDROID_ASSETS, IOS_RESOURCES], ids=["android", "ios"])
def test_bundled_assets_exist_and_validate(assets: Path) -> None:
    manifest = json.loads((assets / "manifest.json").read_text())
    assert validate(manifest) == []
    artifact = assets / manifest["artifact"]["path"]
    assert artifact.exists()
    assert artifact_sha256(artifact) == manifest["artifact"]["sha256"]
    for entry in manifest["artifact"]["files"]:
        assert hashlib.sha256((assets / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    assert [t["preprocessing"]["scale"] for t in manifest["inputs"]] == [0.0625] and manifest["labels"] == [str(d) for d in range(10)]
    assert manifest["verification"] is not None and manifest["verification"]["passed"] is True
    assert manifest["simulated_latency"] and manifest["simulated_latency"][0]["device"] == manifest["device"]
    # Tens of KB: fine to commit with the app.
    assert 5_000 < manifest["artifact"]["size_bytes"] < 100_000

    sample = json.loads((assets / "sample_input.json").read_text())
    assert validate(sample, definition="sample_input") == []
    tensor = next(t for t in manifest["inputs"] if t["name"] == sample["input"])
    count = 1
    for dim in tensor["shape"]:
        count *= dim or 1
    assert len(sample["raw"]) == count == 64
    # Raw 0..16 intensities: the manifest's scale=1/16 brings them to the [0, 1] the model was trained on.
    assert 0 <= min(sample["raw"]) and max(sample["raw"]) == 16


def test_android_assets_match_ios_sample() -> None:
    assert (ANDROID_ASSETS / "sample_input.json").read_text() == (IOS_RESOURCES / "sample_input.json").read_text()


@pytest.mark.parametrize(("files", "reader"), [(KOTLIN, kotlin_keys), (SWIFT, swift_keys)], ids=["kotlin", "swift"])
def test_sources_read_only_schema_fields(files: list[Path], reader: Any) -> None:
    assert files, "demo sources are missing"
    checked: dict[str, set[str]] = {}
    for path in files:
        for pointer, block in schema_blocks(path.read_text()):
            keys = reader(block)
            unknown = keys - object_properties(pointer)
            assert not unknown, f"{path.name}: {pointer} has no properties {sorted(unknown)}"
            checked.setdefault(pointer, set()).update(keys)
    # The apps must read what they need: tensors, preprocessing, labels, the simulated latency and the sample.
    assert {"inputs", "outputs", "labels", "simulated_latency", "artifact"} <= checked["#"]
    # Manifest 2.x: each input carries its own preprocessing.
    assert {"preprocessing"} <= checked["#/$defs/input"]
    assert {"scale", "mean", "std"} <= checked["#/$defs/preprocessing"]
    assert {"name", "shape", "dtype", "layout"} <= checked["#/$defs/tensor"]
    assert {"p50_ms", "device"} <= checked["#/$defs/latency"]
    assert {"raw", "input", "label"} <= checked["#/$defs/sample_input"]


def test_key_extractors_see_keys_outside_the_schema() -> None:
    """The check above would pass vacuously if the regexes found nothing; make sure a wrong key is caught."""
    kotlin = '// schema: #/$defs/preprocessing\nval s = o.getDouble("scale"); val g = o.optString("gamma")\n'
    swift = ('// schema: #/$defs/latency\nstruct L: Decodable {\n enum CodingKeys: String, CodingKey {\n'
             '  case device\n  case p50Ms = "p50_ms", p90 = "p90_ms"\n }\n}\n')
    (pointer, block), = schema_blocks(kotlin)
    assert kotlin_keys(block) - object_properties(pointer) == {"gamma"}
    (pointer, block), = schema_blocks(swift)
    assert swift_keys(block) == {"device", "p50_ms", "p90_ms"}
    assert swift_keys(block) - object_properties(pointer) == {"p90_ms"}


def test_readmes_give_build_steps() -> None:
    for readme in (ROOT / "android_demo" / "README.md", ROOT / "ios_demo" / "README.md"):
        text = readme.read_text()
        assert "## Build and run" in text and "demo_assets" in text
