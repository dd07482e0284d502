"""Preprocessing per input, by name (``--preprocess NAME:KEY=VALUE,...``; issue 17 item 7).

A spec is one of:

- ``scale=0.0625`` (or a TOML file): unnamed. It applies to a single-input model; on a model with several inputs
  it is a usage error (exit 2) that lists the input names, because guessing which input it describes (or applying
  it to all of them, as before) silently feeds wrong values to the others.
- ``image:scale=1/255,mean=0.5`` (or ``image:prep.toml``): the input named ``image``. Names are the source model's
  input names; an artifact's decorated names (TFLite's ``serve_image:0``) and its own names are accepted too.
- ``*:scale=1/255``: every input, stated on purpose.

A TOML file may also hold one table per input: ``[preprocessing.image]``, ``[preprocessing.mask]``. Inputs no spec
names get the identity (``source: default``), so the manifest never claims a preprocessing nobody stated.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeexport.bundle.manifest import Preprocessing, parse_preprocessing, preprocessing_from_mapping
from edgeexport.errors import DataError, UsageError

EVERY_INPUT = "*"
# NAME: before the first "=" (a mean list "mean=0.1:0.2" has its colons after it).
_NAMED = re.compile(r"^(?P<name>[^=:]+):(?P<spec>.+)$", re.S)


def plain_name(name: str) -> str:
    """An endpoint tensor name without the exporter's decorations (``serve_image:0`` -> ``image``)."""
    return name.split(":")[0].removeprefix("serve_").removeprefix("serving_default_")


@dataclass(frozen=True)
class PreprocessSpecs:
    """What the user stated: ``unnamed`` (one block, no name), ``every`` (``*:``), ``by_name`` (name -> block)."""

    unnamed: Preprocessing | None = None
    every: Preprocessing | None = None
    by_name: Mapping[str, Preprocessing] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.unnamed is None and self.every is None and not self.by_name

    def check_names(self, input_names: Sequence[str]) -> None:
        """UsageError (exit 2) when the specs cannot be applied to a model with these inputs (source order)."""
        self.for_inputs(input_names)

    def for_inputs(self, input_names: Sequence[str], source_names: Sequence[str] = ()) -> list[Preprocessing]:
        """One Preprocessing per input of ``input_names`` (an artifact's or the source's, in its order). A named
        spec matches an input by its name or its plain name (``serve_x:0`` -> ``x``), never by position;
        ``source_names`` only adds the source's names to an error message. UsageError for an unnamed spec on
        several inputs or a name no input has."""
        shown = ", ".join(dict.fromkeys([*source_names, *(plain_name(n) for n in input_names)]))
        if self.unnamed is not None and len(input_names) > 1:
            raise UsageError(f"--preprocess without an input name, but the model has {len(input_names)} inputs "
                             f"({shown})",
                             hint="name each input: --preprocess NAME:scale=...  (repeat it), or *:scale=... "
                                  "for every input")
        aliases = [{name, plain_name(name)} for name in input_names]
        unknown = [name for name in self.by_name if not any(name in names for names in aliases)]
        if unknown:
            raise UsageError(f"--preprocess names input(s) {', '.join(unknown)}, which the model does not have "
                             f"(its inputs: {shown})")
        result = []
        for names in aliases:
            named = [pre for name, pre in self.by_name.items() if name in names]
            result.append(named[0] if named else self.unnamed or self.every or Preprocessing())
        return result


def parse_preprocess_specs(specs: str | Path | Sequence[str | Path] | Preprocessing | PreprocessSpecs | None
                           ) -> PreprocessSpecs:
    """Parse the ``--preprocess`` values (repeatable). A ``Preprocessing`` is taken as the unnamed spec.
    Bad values raise DataError (exit 3; a bad number or key) or UsageError (exit 2; a name given twice,
    two unnamed specs)."""
    if isinstance(specs, PreprocessSpecs):
        return specs
    if isinstance(specs, Preprocessing):
        return PreprocessSpecs(unnamed=specs)
    if specs is None:
        return PreprocessSpecs()
    items = [specs] if isinstance(specs, str | Path) else list(specs)
    unnamed: Preprocessing | None = None
    every: Preprocessing | None = None
    by_name: dict[str, Preprocessing] = {}
    for item in items:
        for name, pre in _parse_one(item):
            if name is None:
                if unnamed is not None:
                    raise UsageError("--preprocess is given twice without an input name",
                                     hint="name each input: --preprocess NAME:scale=...")
                unnamed = pre
            elif name == EVERY_INPUT:
                every = pre
            elif name in by_name:
                raise UsageError(f"--preprocess names input {name!r} twice")
            else:
                by_name[name] = pre
    return PreprocessSpecs(unnamed, every, by_name)


def _parse_one(item: str | Path) -> list[tuple[str | None, Preprocessing]]:
    text = str(item).strip()
    if isinstance(item, str) and not Path(text).is_file():
        match = _NAMED.match(text)
        if match and match.group("name").strip():
            return [(match.group("name").strip(), parse_preprocessing(match.group("spec").strip()))]
    path = Path(text)
    if (text.endswith(".toml") or path.is_file()) and _per_input_table(path) is not None:
        return [(name, preprocessing_from_mapping(table, where=f"{path} [preprocessing.{name}]"))
                for name, table in (_per_input_table(path) or {}).items()]
    return [(None, parse_preprocessing(item))]


def _per_input_table(path: Path) -> dict[str, Mapping[str, Any]] | None:
    """``[preprocessing.NAME]`` tables of a TOML file, None when it has the single-block form."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise DataError(f"cannot read preprocessing file {path}: {err}") from err
    table = data.get("preprocessing", data)
    if isinstance(table, dict) and table and all(isinstance(value, dict) for value in table.values()):
        return {str(name): value for name, value in table.items()}
    return None
