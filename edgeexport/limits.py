"""Resource limits checked before anything big is read, and disk-full errors named as such.

* ``check_keras_archive``: a ``.keras`` file is a zip; its central directory declares every member's size. A
  member that declares more than ``MAX_COMPRESSION_RATIO`` times its compressed size (real float weights
  compress about 1.1x; a 90 %-sparse layer about 10x), or members that together declare more than
  ``max_archive_bytes()`` (default: the memory this machine has available), is refused before Keras reads it:
  a 2 MB file declaring 2 GiB of weights used to take 29 s and 4.9 GB of memory to fail.
* ``check_external_lengths``: each ONNX tensor stored as external data declares an offset and a length; both
  must lie inside the side file, and the length must match the tensor's shape and type (a declared 1e12 used
  to end in a bare MemoryError).
* ``disk_full``: ENOSPC and EDQUOT, wherever they surface (an ``OSError``, or TensorFlow's and the converters'
  messages), become ``OutputPathError`` (exit 3) naming the path.

``EDGEEXPORT_MAX_COMPRESSION_RATIO`` and ``EDGEEXPORT_MAX_ARCHIVE_BYTES`` override the two archive limits.
"""

from __future__ import annotations

import errno
import os
import re
import zipfile
from pathlib import Path
from typing import Any

from edgeexport.errors import BadInputError, ModelFormatError, OutputPathError

MAX_COMPRESSION_RATIO = float(os.environ.get("EDGEEXPORT_MAX_COMPRESSION_RATIO", "200"))
_RATIO_FLOOR_BYTES = 16 * 2**20  # small members (configs, tiny layers) may compress as they like
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_PATH_IN_TEXT = re.compile(r"/[^\s;:'\"]+")
_STAGED = ".edgeexport-stage-"
_DISK_FULL_TEXT = re.compile(r"No space left on device|Disk quota exceeded", re.IGNORECASE)


def max_archive_bytes() -> int:
    """The most uncompressed bytes an archive may declare: ``EDGEEXPORT_MAX_ARCHIVE_BYTES`` or MemAvailable."""
    override = os.environ.get("EDGEEXPORT_MAX_ARCHIVE_BYTES")
    if override:
        return int(float(override))
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 64 * 2**30


def check_keras_archive(path: Path) -> None:
    """Refuse a ``.keras`` zip whose members declare implausible sizes, reading only its central directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ModelFormatError(f"{path.name} is not a readable .keras archive: {err}") from err
    total = 0
    limit = max_archive_bytes()
    for member in members:
        total += member.file_size
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > _RATIO_FLOOR_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise BadInputError(
                f"{path.name}: member {member.filename} declares {_size(member.file_size)} from "
                f"{_size(member.compress_size)} compressed ({ratio:,.0f}x, limit {MAX_COMPRESSION_RATIO:g}x); "
                "refusing to unpack a likely zip bomb",
                hint="set EDGEEXPORT_MAX_COMPRESSION_RATIO if the file is trusted")
    if total > limit:
        raise BadInputError(
            f"{path.name} declares {_size(total)} uncompressed, more than the {_size(limit)} this machine can hold",
            hint="set EDGEEXPORT_MAX_ARCHIVE_BYTES if the file is trusted and the memory is there")


def check_external_lengths(model: Any, model_path: Path) -> None:
    """Every external tensor's declared offset + length inside its side file, and its length = its shape x type."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    from edgeexport.sources.onnx_checks import iter_tensors

    base = model_path.resolve().parent
    for tensor in iter_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        side = base / entries.get("location", "")
        try:
            offset = int(entries.get("offset", "0"))
            length = int(entries["length"]) if "length" in entries else None
        except ValueError as err:
            raise ModelFormatError(f"{model_path.name}: tensor {tensor.name} has a non-numeric external offset or "
                                   f"length ({err})") from err
        available = side.stat().st_size if side.is_file() else 0
        try:
            itemsize = tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        except (KeyError, TypeError, ValueError):
            itemsize = 0
        count = 1
        for dim in tensor.dims:
            count *= int(dim)
        expected = count * itemsize if itemsize else None
        wanted = length if length is not None else expected
        where = f"{model_path.name}: tensor {tensor.name} declares"
        if offset < 0 or (length is not None and length < 0):
            raise ModelFormatError(f"{where} a negative external offset or length")
        if wanted is not None and offset + wanted > available:
            raise ModelFormatError(
                f"{where} {wanted:,} bytes at offset {offset:,} of {side.name}, which holds {available:,} bytes "
                "(corrupt or truncated?)")
        if length is not None and expected is not None and length != expected:
            raise ModelFormatError(f"{where} an external length of {length:,} bytes, but its shape "
                                   f"{list(tensor.dims)} needs {expected:,}")


def disk_full(err: BaseException, path: Path | None = None) -> OutputPathError | None:
    """An OutputPathError (exit 3) if ``err`` or its causes mean the disk or quota is full; else None."""
    seen: BaseException | None = err
    while seen is not None:
        number = getattr(seen, "errno", None)
        text = str(seen)
        if number in _DISK_FULL or _DISK_FULL_TEXT.search(text):
            name = str(getattr(seen, "filename", None) or _path_in(text) or path or "")
            if _STAGED in name:  # a file in the staging folder: the output directory is what the user knows
                name = f"the output directory {name.split('/' + _STAGED)[0]}"
            reason = "disk quota exceeded" if number == errno.EDQUOT or "quota" in text.lower() else \
                "no space left on device"
            where = f" writing {name}" if name else ""
            return OutputPathError(f"{reason}{where}", hint="free some space or choose another --out")
        seen = seen.__cause__ or seen.__context__
    return None


def _path_in(text: str) -> str | None:
    """The file a message names (TensorFlow puts it in the text): a staged file first, else one whose folder exists."""
    candidates: list[str] = _PATH_IN_TEXT.findall(text)
    staged = [c for c in candidates if _STAGED in c]
    real = [c for c in candidates if os.path.isdir(os.path.dirname(c)) and os.path.dirname(c) != "/"]
    found = staged or real
    return found[0] if found else None


def _size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count} B"
