"""A searched precision recipe as a preset TOML: a shipped base preset plus per-layer overrides by name.

The same text is what the pipeline builds the final artifact from and what ``--save-preset`` writes, so
``--preset NAME --preset-file FILE`` rebuilds the artifact byte for byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeexport.catalog.model import Preset


@dataclass(frozen=True)
class Recipe:
    """``base`` preset name, layers kept in float (``keep`` is ``"fp32"`` or ``"fp16"``), and the tolerance
    limits that encode the budget (accuracy drop in points, SQNR in dB; None: the base's own limit)."""

    name: str
    base: str
    layers: tuple[str, ...]
    keep: str
    description: str
    accuracy_drop_max: float | None = None
    sqnr_db_min: float | None = None


def recipe_name(base: str, device: str | None, target: str | None = None) -> str:
    """``int8-pixel-8-mixed``: a preset name that cannot clash with a shipped one. ``target`` is added for base
    presets that serve both targets (``fp16-tflite-host-mixed``), so one file can hold both recipes."""
    raw = f"{base}-{target + '-' if target else ''}{device or 'any'}-mixed".lower()
    return re.sub(r"[^a-z0-9:._-]+", "-", raw).strip("-")


def recipe_toml(recipe: Recipe) -> str:
    """The ``[presets.NAME]`` table (with its tolerance and overrides) for ``recipe``, as TOML text."""
    key = json.dumps(recipe.name)
    lines = [f"[presets.{key}]", f"base = {json.dumps(recipe.base)}",
             f"description = {json.dumps(recipe.description)}"]
    limits = [(k, v) for k, v in (("accuracy_drop_max", recipe.accuracy_drop_max),
                                  ("sqnr_db_min", recipe.sqnr_db_min)) if v is not None]
    if limits:
        lines += ["", f"[presets.{key}.tolerance]"] + [f"{k} = {float(v)!r}" for k, v in limits]
    for layer in recipe.layers:
        lines += ["", f"[[presets.{key}.overrides]]", f"name = {json.dumps(layer)}",
                  f"keep = {json.dumps(recipe.keep)}"]
    return "\n".join(lines) + "\n"


def write_recipes(path: Path, recipes: Sequence[Recipe], *, header: str) -> None:
    """Write every recipe (one per target) into one preset file; ``header`` becomes ``#`` comment lines."""
    text = "".join(f"# {line}\n" for line in header.splitlines())
    text += "\n".join(recipe_toml(r) for r in recipes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def load_recipe(recipe: Recipe, directory: Path, extra_files: Sequence[Path] = ()) -> Preset:
    """The Preset that ``recipe`` describes, read back through the normal preset loader (``directory`` holds
    the temporary TOML), so the search builds exactly what a rebuild from the saved file builds."""
    from edgeexport.catalog import load_preset

    path = directory / f"{recipe.name.replace(':', '-')}.preset.toml"
    path.write_text(recipe_toml(recipe))
    return load_preset(recipe.name, extra_files=(*extra_files, path))
