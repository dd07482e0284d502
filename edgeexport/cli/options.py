"""Click options shared by several commands, defined once as decorators, and their parsing helpers.

Defaults can come from ``[tool.edgeexport.<command>]`` in ./pyproject.toml or ``[<command>]`` in
./edgeexport.toml, through click's ``default_map``: the same code path as flags, so a config value and a
flag behave identically (a flag wins).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edgeexport.errors import ProfileError

F = TypeVar("F", bound=Callable[..., Any])


def config_defaults(command: str, cwd: Path | None = None) -> dict[str, Any]:
    """Defaults for ``command`` from ./edgeexport.toml (``[command]``) or ./pyproject.toml (``[tool.edgeexport.command]``)."""
    here = cwd or Path.cwd()
    for path, keys in ((here / "edgeexport.toml", (command,)), (here / "pyproject.toml", ("tool", "edgeexport", command))):
        if not path.is_file():
            continue
        try:
            data: Any = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ProfileError(f"cannot parse {path.name}: {err}") from err
        for key in keys:
            data = data.get(key, {}) if isinstance(data, dict) else {}
        if data:
            return {str(k).replace("-", "_"): v for k, v in data.items()}
    return {}


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout instead of a summary.")(func)


def device_option(func: F) -> F:
    return click.option(
        "--device", "-d", default=None, metavar="NAME|FILE.toml",
        help="Device profile: a shipped name (see `edgeexport devices`) or a path to your own profile TOML.",
    )(func)


def unsafe_option(func: F) -> F:
    return click.option(
        "--unsafe-deserialization", is_flag=True,
        help="Turn Keras safe mode off to load Lambda layers (runs Python code stored in the file: trust it first).",
    )(func)


def import_option(func: F) -> F:
    return click.option(
        "--import", "imports", multiple=True, metavar="MODULE",
        help="Import MODULE first (repeatable): the module that registers your custom Keras layers. Safe mode stays on.",
    )(func)


def input_shape_option(func: F) -> F:
    return click.option(
        "--input-shape", "input_shapes", multiple=True, metavar="NAME=D0,D1,...",
        help="Fix an input's shape, e.g. --input-shape image=1,224,224,3 (repeatable).",
    )(func)


def warn_only_option(func: F) -> F:
    return click.option(
        "--warn-only", is_flag=True, help="Report failed checks but exit 0 (checks fail the command by default)."
    )(func)


def parse_input_shapes(values: tuple[str, ...]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``("image=1,8,8,1",)`` -> ``(("image", (1, 8, 8, 1)),)``; a malformed value is a usage error (exit 2)."""
    parsed = []
    for value in values:
        name, sep, dims = value.partition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or any(d <= 0 for d in shape):
            raise click.BadParameter(f"'{value}' is not NAME=D0,D1,... with positive integers", param_hint="--input-shape")
        parsed.append((name, shape))
    return tuple(parsed)


def project_preset_files(cwd: Path | None = None) -> tuple[Path, ...]:
    """Preset files the project in the working directory declares: ./edgeexport.toml when it has ``[presets]``,
    and ./pyproject.toml's ``[tool.edgeexport.presets]`` / ``preset_files``."""
    from edgeexport.catalog import presets_from_pyproject

    here = cwd or Path.cwd()
    files: list[Path] = []
    local = here / "edgeexport.toml"
    if local.is_file():
        try:
            if "presets" in tomllib.loads(local.read_text()):
                files.append(local)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ProfileError(f"cannot parse {local.name}: {err}") from err
    files.extend(presets_from_pyproject(here / "pyproject.toml"))
    return tuple(files)
