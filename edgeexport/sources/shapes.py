"""``--input-shape`` applied to the shapes a model declares, the same way for every source format.

A fixed dimension stays fixed wherever it is; an override may only fill in dynamic ones (the batch included: an
override's batch is the artifact's batch). Errors: a name that matches no input is a usage error (exit 2, naming
the inputs that exist); a rank or a size that contradicts the model's fixed shape is bad input (exit 3).
"""

from __future__ import annotations

from collections.abc import Mapping

from edgeexport.errors import BadInputError, UsageError
from edgeexport.types import LoadOptions

Shape = tuple[int | None, ...]


def apply_input_shapes(declared: Mapping[str, Shape], options: LoadOptions, model: str) -> dict[str, Shape]:
    """``declared`` (input name -> shape, None for a dynamic dimension, in model order) with the overrides of
    ``options`` applied; ``model`` names the model in messages."""
    unknown = [name for name, _ in options.input_shapes if name not in declared]
    if unknown:
        raise UsageError(f"--input-shape names no input of {model}: {', '.join(unknown)}",
                         hint="its inputs: " + ", ".join(f"{n} {_dims(s)}" for n, s in declared.items()))
    shapes: dict[str, Shape] = {}
    for name, shape in declared.items():
        override = options.shape_for(name)
        if override is not None:
            if len(override) != len(shape):
                raise BadInputError(f"--input-shape for '{name}' has {len(override)} dimensions; "
                                    f"the input of {model} has {len(shape)} ({_dims(shape)})")
            if any(d is not None and d != o for d, o in zip(shape, override, strict=True)):
                raise BadInputError(f"--input-shape {name}={','.join(map(str, override))} contradicts the fixed shape "
                                    f"{_dims(shape)} of {model}",
                                    hint="only dynamic dimensions (shown as ?) can be set")
            shape = tuple(override)
        shapes[name] = shape
    return shapes


def _dims(shape: Shape) -> str:
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"
