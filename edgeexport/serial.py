"""Stage results to JSON-ready values and back: ``plain`` writes, ``structure`` reads into the same types.

``structure(cls, data)`` rebuilds a frozen dataclass from what ``plain`` made of it, guided by the class's
type hints: nested dataclasses, ``X | None``, ``tuple[X, ...]``, fixed tuples, lists, dicts, frozensets,
``Path``, ``StrEnum`` values and ``Literal``s. Keys that are not fields (computed values a ``to_dict`` adds,
such as ``passed``) are ignored; a missing field takes its default. Non-finite floats: ``plain`` writes NaN as
``None`` and infinities as ``"inf"``/``"-inf"`` (JSON has neither), and ``structure`` reads them back.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class StructureError(ValueError):
    """``data`` does not fit the type it is read into; the message names the field path."""


def plain(value: Any) -> Any:
    """Dataclasses, tuples, paths, enums and numpy scalars as JSON-ready values (see the module docstring)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        items = sorted(value) if isinstance(value, frozenset | set) else value
        return [plain(v) for v in items]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def structure(cls: type[T], data: Any, where: str = "") -> T:
    """An instance of dataclass ``cls`` rebuilt from ``data`` (a dict made by ``plain``)."""
    result: T = _read(cls, data, where or cls.__name__)
    return result


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _read(tp: Any, data: Any, where: str) -> Any:
    if tp is Any:
        return data
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        errors = []
        for candidate in candidates:
            try:
                return _read(candidate, data, where)
            except StructureError as err:
                errors.append(str(err))
        raise StructureError(errors[0] if len(errors) == 1 else f"{where}: {data!r} fits none of {tp}")
    if origin is typing.Literal:
        if data not in args:
            raise StructureError(f"{where}: expected one of {args}, got {data!r}")
        return data
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _read_dataclass(tp, data, where)
    if origin in (tuple, list, frozenset, set):
        return _read_sequence(tp, origin, args, data, where)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(data, dict):
            raise StructureError(f"{where}: expected an object, got {type(data).__name__}")
        key_type, value_type = args if args else (Any, Any)
        return {_read(key_type, k, where): _read(value_type, v, f"{where}.{k}") for k, v in data.items()}
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(data)
        except ValueError as err:
            raise StructureError(f"{where}: {data!r} is not a {tp.__name__}") from err
    return _read_scalar(tp, data, where)


def _read_dataclass(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise StructureError(f"{where}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in data:
            values[f.name] = _read(hints[f.name], data[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise StructureError(f"{where}: missing field {f.name!r}")
    return cls(**values)


def _read_sequence(tp: Any, origin: Any, args: tuple[Any, ...], data: Any, where: str) -> Any:
    if isinstance(data, dict) and origin is tuple and args and typing.get_origin(args[0]) is tuple:
        data = [list(pair) for pair in data.items()]  # pairs written as an object (``{"conv": 1.5}``)
    if not isinstance(data, list):
        raise StructureError(f"{where}: expected an array, got {type(data).__name__}")
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(data):
            raise StructureError(f"{where}: expected {len(args)} items, got {len(data)}")
        return tuple(_read(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=True)))
    item_type = args[0] if args else Any
    items = [_read(item_type, v, f"{where}[{i}]") for i, v in enumerate(data)]
    return origin(items)


def _read_scalar(tp: Any, data: Any, where: str) -> Any:
    if tp is float:
        if data is None:
            return math.nan
        if data in ("inf", "-inf"):
            return math.inf if data == "inf" else -math.inf
        if isinstance(data, int | float) and not isinstance(data, bool):
            return float(data)
    elif tp is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
    elif tp is bool:
        if isinstance(data, bool):
            return data
    elif tp is str:
        if isinstance(data, str):
            return data
    elif tp is Path:
        if isinstance(data, str):
            return Path(data)
    elif tp is type(None):
        if data is None:
            return None
    else:
        raise StructureError(f"{where}: cannot read values of type {tp}")
    raise StructureError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {data!r}")
