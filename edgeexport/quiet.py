"""Keeping third-party chatter (converter progress bars, C++ log lines) out of edgeexport's own output."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from typing import Any

from edgeexport.errors import EdgeExportError


@contextlib.contextmanager
def captured_output(*, replay: bool = True) -> Iterator[io.StringIO]:
    """Capture what converters and runtimes print, at both levels: Python's sys.stdout/sys.stderr and the
    process's file descriptors 1 and 2 (TensorFlow, LiteRT and absl write there from C++, before any log level
    applies). If the block raises an unexpected exception and ``replay`` is True (the default), everything
    captured is replayed on stderr so the failure stays diagnosable."""
    import sys
    import tempfile

    buffer = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as sink:
        for fd in saved:
            os.dup2(sink.fileno(), fd)
        try:
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield buffer
        except EdgeExportError:
            raise  # a deliberate, explained failure: the converter's chatter would only bury the message
        except BaseException:
            _restore(saved)
            if not replay:
                raise
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace") + buffer.getvalue())
            raise
        finally:
            _restore(saved)
        sink.seek(0)
        buffer.write(sink.read().decode(errors="replace"))


def _restore(saved: dict[int, int]) -> None:
    for fd, copy in list(saved.items()):
        os.dup2(copy, fd)
        os.close(copy)
        del saved[fd]


def import_coremltools() -> Any:
    """Import coremltools once with its chatter captured: on import it warns about untested TensorFlow, torch and
    scikit-learn versions and, off macOS, prints a "Failed to load _MLModelProxy" line per native proxy. None of
    that is about the user's model. Returns the ``coremltools`` module; call it before importing a submodule."""
    import logging
    import sys

    if "coremltools" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # coremltools imports TensorFlow when it is installed
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        with captured_output(replay=False):
            import coremltools  # noqa: F401 - imported for its side effect of loading once, quietly
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    return sys.modules["coremltools"]
