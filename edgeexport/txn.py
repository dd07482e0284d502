"""Output directories as transactions: a run writes into a staging folder inside ``--out`` and commits it whole.

A convert writes its artifacts, report.json, report.html and bundles into ``OUT/.edgeexport-stage-<pid>-<rand>/``.
``commit`` then writes a journal (``OUT/.edgeexport-journal.json``, atomically) naming every entry, renames each
entry into ``OUT`` (the older copy goes to the stage's trash first, so a directory such as an ``.mlpackage`` can be
replaced), and removes the journal and the stage. A run that is interrupted before the journal exists leaves ``OUT``
as the last commit left it and removes its stage; one killed after it (SIGKILL, power loss) is rolled forward by the
next run or ``bundle`` (``recover``), because every entry was complete before the journal was written.

An advisory lock (flock on ``OUT`` itself) keeps two runs from committing into one directory at once. Readers that
trust a report (``bundle``, ``check``) call ``verify_committed`` so an artifact whose sha256 does not match its
report is refused (exit 3) instead of shipped as verified.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from edgeexport.errors import DataError, OutputPathError
from edgeexport.interrupt import deferred_signals, on_interrupt
from edgeexport.testhooks import hook

if TYPE_CHECKING:
    from edgeexport.report.model import Report

STAGE_PREFIX = ".edgeexport-stage-"
JOURNAL = ".edgeexport-journal.json"
_TRASH = ".trash"


class OutputTransaction:
    """Stage a run's outputs in ``out_dir`` and commit them together; use as a context manager.

    Leaving the ``with`` block without ``commit()`` (an error, Ctrl-C, SIGTERM) removes the stage and leaves
    ``out_dir`` untouched. ``remove`` names entries of ``out_dir`` that the commit deletes (e.g. a stale
    report.html when the new run wrote none).
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.stage = out_dir
        self.committed = False
        self._lock: int | None = None
        self._guard = on_interrupt(self._abort)

    def __enter__(self) -> Self:
        self._lock = acquire_lock(self.out_dir)
        try:
            recover(self.out_dir, locked=True)
            self.stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=self.out_dir))
        except BaseException:
            self._release()
            raise
        self._guard.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._guard.__exit__(None, None, None)
            self._abort()
        finally:
            self._release()

    def commit(self, remove: tuple[str, ...] = ()) -> None:
        """Move every entry of the stage into ``out_dir`` as one unit (signals wait until it is done)."""
        entries = sorted(p.name for p in self.stage.iterdir() if not p.name.startswith("."))
        # report.json goes last so a reader that ignores the journal sees the old report until the artifacts moved.
        entries.sort(key=lambda name: name == "report.json")
        with deferred_signals():
            write_journal(self.out_dir, {"stage": self.stage.name, "entries": entries, "remove": list(remove)})
            hook("commit")
            _apply(self.out_dir, self.stage, entries, remove)
            self.committed = True

    def _abort(self) -> None:
        if not self.committed and self.stage != self.out_dir:
            shutil.rmtree(self.stage, ignore_errors=True)

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def acquire_lock(out_dir: Path) -> int:
    """An exclusive advisory lock on the directory itself (no lock file left behind); its descriptor.

    OutputPathError (exit 3) if another run holds it.
    """
    try:
        handle = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        raise OutputPathError(f"cannot open output directory {out_dir}: {err.strerror or err}") from err
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
            return handle  # a file system without flock (some network mounts): go on unlocked, as before
        os.close(handle)
        if err.errno in (errno.EAGAIN, errno.EACCES):
            raise OutputPathError(f"output directory {out_dir} is in use by another edgeexport run",
                                  hint="wait for it to finish or choose another --out") from err
        raise OutputPathError(f"cannot lock output directory {out_dir}: {err.strerror or err}") from err
    return handle


def write_journal(out_dir: Path, data: dict[str, Any]) -> None:
    """Write the journal atomically and durably: once it exists, every entry it names is complete in the stage."""
    handle, temporary = tempfile.mkstemp(prefix=f"{JOURNAL}.", dir=out_dir)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, out_dir / JOURNAL)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _apply(out_dir: Path, stage: Path, entries: list[str], remove: list[str] | tuple[str, ...]) -> None:
    trash = stage / _TRASH
    trash.mkdir(exist_ok=True)
    for name in [*remove, *entries]:
        final = out_dir / name
        if name in entries and not (stage / name).exists():
            continue  # moved in already by the commit this one finishes
        if not (final.exists() or final.is_symlink()):
            continue
        if (trash / name).exists():
            _delete(final)
        else:
            os.replace(final, trash / name)
    for name in entries:
        if (stage / name).exists():
            os.replace(stage / name, out_dir / name)
    (out_dir / JOURNAL).unlink(missing_ok=True)
    shutil.rmtree(stage, ignore_errors=True)


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def recover(out_dir: Path, *, locked: bool = False) -> list[str]:
    """Finish a commit that a killed run left half done, and remove stages no run owns; returns what it did."""
    if not out_dir.is_dir():
        return []
    lock = None if locked else acquire_lock(out_dir)
    done: list[str] = []
    try:
        journal = out_dir / JOURNAL
        if journal.exists():
            try:
                data = json.loads(journal.read_text(encoding="utf-8"))
                stage = out_dir / str(data["stage"])
                entries = [str(e) for e in data["entries"]]
                remove = [str(e) for e in data.get("remove", [])]
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise DataError(f"{journal} is unreadable ({err}); the last commit into {out_dir} did not finish",
                                hint="delete the journal and rerun convert") from err
            if any(not Path(name).name == name for name in [*entries, *remove]) or "/" in stage.name:
                raise DataError(f"{journal} names paths outside {out_dir}")
            if stage.is_dir():
                _apply(out_dir, stage, entries, remove)
                done.append(f"finished the interrupted commit of {stage.name}")
            journal.unlink(missing_ok=True)
        for stale in out_dir.glob(f"{STAGE_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
            done.append(f"removed the stage {stale.name} of an interrupted run")
    finally:
        if lock is not None:
            os.close(lock)
    return done


@contextmanager
def transaction(out_dir: Path) -> Iterator[OutputTransaction]:
    """``with transaction(out) as txn: ... write into txn.stage ...; txn.commit()``."""
    with OutputTransaction(out_dir) as txn:
        yield txn


def verify_committed(out_dir: Path, report: Report) -> None:
    """Refuse (DataError, exit 3) an artifact that is missing or whose sha256 is not the one ``report`` records."""
    from edgeexport.files import sha256_of

    for entry in report.artifacts:
        path = entry.artifact.path
        path = path if path.is_absolute() else out_dir / path
        if not path.exists():
            raise DataError(f"artifact {path} named in report.json is missing")
        expected = entry.artifact.sha256
        actual = sha256_of(path)
        if actual != expected:
            raise DataError(
                f"{path.name} does not match report.json (sha256 {actual[:12]}, report says {expected[:12]}): "
                "the report describes another artifact",
                hint=f"rerun `edgeexport convert ... --out {out_dir}`",
            )


def relocated(report: Report, stage: Path, out_dir: Path) -> Report:
    """``report`` with its artifact paths and ``out_dir`` moved from the stage to where the commit put them."""
    def move(path: Path) -> Path:
        try:
            return out_dir / path.relative_to(stage)
        except ValueError:
            return path

    entries = tuple(
        dataclasses.replace(entry, artifact=dataclasses.replace(entry.artifact, path=move(entry.artifact.path)))
        for entry in report.artifacts)
    return dataclasses.replace(report, artifacts=entries, out_dir=out_dir)
