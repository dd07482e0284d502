"""Give memory back to the operating system between stages (issue 17, bounded memory).

TensorFlow's graphs (a traced function, a frozen GraphDef, an exported SavedModel's objects) are Python object
cycles: they are freed by the cycle collector, not when the last name goes away, and glibc keeps freed heap in
its arenas instead of returning it. So after loading a large model the parent still holds gigabytes it no longer
uses while the converter child runs; ``release_memory`` collects the cycles and asks glibc to trim (a no-op
where ``malloc_trim`` does not exist).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_memory() -> None:
    """Collect garbage (all generations) and return the freed heap to the system where glibc allows it."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


# A source model whose file holds at least this many bytes is dropped from the parent while the converter child
# runs, and opened again for verification: ResNet152V2's 240 MB of weights (and the Keras objects around them,
# about 340 MiB resident) would otherwise sit idle next to the child's own copies. Below it, opening the file again
# costs more time than the memory is worth.
RELEASE_MIN_BYTES = 64 * 2**20


def should_release(model_bytes: int, isolated: bool) -> bool:
    """Whether a run drops its reference model during conversions: only when the converter runs in another
    process (in-process, the converter itself needs the graph the model built) and the model is large."""
    return isolated and model_bytes >= RELEASE_MIN_BYTES
