"""``--import MODULE``: import the user's modules that register custom Keras layers, before a model loads.

A ``.keras`` file names its custom layers by their registered name (``package>ClassName``); Keras can build them
only once the module that defines them has run ``keras.saving.register_keras_serializable``. Importing it does
not turn safe mode off: Lambda layers (code stored in the file) stay refused, and the imported module is
code the user chose to run. The modules are recorded in the report (``source.imports``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

from edgeexport.errors import BadInputError

_done: set[str] = set()


def import_modules(names: Iterable[str]) -> tuple[str, ...]:
    """Import each module name (the current directory is searched too, as ``python -m`` would); the names.

    BadInputError (exit 3) for a module that is not found or fails on import, with the module's first line.
    """
    imported = []
    for name in names:
        if not name.replace(".", "").replace("_", "").isalnum():
            raise BadInputError(f"--import {name}: not a module name", hint="give a dotted module name, e.g. mylayers")
        if name not in _done:
            added = os.getcwd() not in sys.path
            if added:
                sys.path.append(os.getcwd())
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as err:
                raise BadInputError(f"--import {name}: module not found ({err})",
                                    hint="run from the folder that holds it, or add it to PYTHONPATH") from err
            except Exception as err:  # a user module failing to import is bad input, whatever it raised
                line = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise BadInputError(f"--import {name} failed: {type(err).__name__}: {line}") from err
            _done.add(name)
        imported.append(name)
    return tuple(imported)


def custom_class_hint(text: str) -> str | None:
    """A hint for Keras's "Could not locate class" error: name the layer and ``--import``; None otherwise."""
    marker = "Could not locate class '"
    if marker not in text:
        return None
    layer = text.split(marker, 1)[1].split("'", 1)[0]
    return (f"the model uses a custom layer {layer}: pass --import MODULE, the module that defines it with "
            "@keras.saving.register_keras_serializable")
