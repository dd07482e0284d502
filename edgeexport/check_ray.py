"""``check --ray [ADDRESS]``: the matrix's cells as Ray tasks, on a local cluster or an existing one.

Each cell is one task that reserves ``[check.ray] cpus`` (default 1) and ``memory_mb`` (default 2048) and may be
retried once when its worker dies (Ray's ``max_retries``); after that it is reported as an error case (exit 4).
Inputs travel through the object store: the driver puts every model and data file once, and a worker that does
not see the same bytes at the same path (another machine) unpacks them into a local cache. Outputs are written
in place when the worker sees the driver's output directory (a local cluster, or a shared file system), else
into a worker-local directory that is sent back as a tar and unpacked under the driver's output directory.
``ray`` is imported only inside functions: it is an optional extra (``edgeexport[ray]``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import secrets
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from edgeexport.check import Cell, CellOutcome, CheckConfig, run_cell
from edgeexport.check_baseline import hash_path
from edgeexport.check_parallel import RETRIES, CellProgress, died_outcome, maybe_crash, remove_partial
from edgeexport.errors import MissingExtraError

Shipped = Mapping[str, tuple[str, bool, Any]]  # original path -> (sha256, is a directory, ObjectRef of its tar)


def import_ray() -> Any:
    """The ``ray`` module, or MissingExtraError (exit 2) naming the extra to install."""
    try:
        import ray
    except ImportError as err:
        raise MissingExtraError("--ray needs Ray, which is not installed",
                                hint="pip install 'edgeexport[ray]'") from err
    return ray


def run_ray(config: CheckConfig, cells: Sequence[Cell], address: str, jobs: int, progress: CellProgress,
            *, transfer: str = "auto") -> list[CellOutcome]:
    """Run ``cells`` as Ray tasks. ``address``: ``"local"`` starts a local cluster with ``jobs`` CPUs, ``"auto"``
    joins the one of ``RAY_ADDRESS`` (or the one running here), anything else is a cluster address.
    ``transfer="object-store"`` sends outputs back through the object store even when the path is shared."""
    # Ray's driver threads print worker deaths on stdout, which belongs to --json: send them to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        return _run_ray(import_ray(), config, cells, address, jobs, progress, transfer)


def _run_ray(ray: Any, config: CheckConfig, cells: Sequence[Cell], address: str, jobs: int, progress: CellProgress,
             transfer: str) -> list[CellOutcome]:
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address == "local":
            ray.init(num_cpus=jobs, **options)
        else:
            ray.init(address=address, **options)
    config.out.mkdir(parents=True, exist_ok=True)
    marker = config.out / f".edgeexport-ray-{secrets.token_hex(8)}"
    marker.touch()
    refs: dict[Any, Cell] = {}
    outcomes: dict[int, CellOutcome] = {}
    try:
        shipped = _ship_inputs(ray, config)
        task = ray.remote(_ray_cell).options(
            num_cpus=config.cluster.get("cpus", 1.0), memory=int(config.cluster.get("memory_mb", 2048.0) * 2**20),
            max_retries=RETRIES, retry_exceptions=False)
        for cell in cells:
            refs[task.remote(config, cell, shipped, marker.name, transfer)] = cell
            progress.started(cell.classname(config))
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1, timeout=1.0)
            for ref in ready:
                cell = refs[ref]
                outcome = _collect(ray, config, cell, ref)
                outcomes[cell.index] = outcome
                progress.finished(cell.classname(config), outcome)
    except BaseException:
        for ref, cell in refs.items():
            if cell.index not in outcomes:
                ray.cancel(ref, force=True)
        remove_partial(config, [cell for cell in refs.values() if cell.index not in outcomes])
        raise
    finally:
        marker.unlink(missing_ok=True)
        if started_here:
            ray.shutdown()
    return [outcomes[cell.index] for cell in cells]


def _collect(ray: Any, config: CheckConfig, cell: Cell, ref: Any) -> CellOutcome:
    """One finished task's outcome; its outputs unpacked when they came back as a tar."""
    try:
        outcome, packed = ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        raise RuntimeError(f"cell {cell.classname(config)} raised in its Ray task:\n{err}") from err
    except ray.exceptions.RayError as err:  # the worker or its node died on every try
        remove_partial(config, [cell])
        died = died_outcome(config, cell, None, RETRIES + 1)
        message = f"Ray worker died on all {RETRIES + 1} tries: {type(err).__name__}"
        return dataclasses.replace(died, cases=(dataclasses.replace(died.cases[0], error=message),),
                                   rows=({**died.rows[0], "status": f"error: {message}"},))
    if packed is not None:
        out = cell.out_dir(config)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(packed)) as archive:
            archive.extractall(out, filter="data")
    result: CellOutcome = outcome
    return result


def pack(path: Path) -> bytes:
    """A tar of a file or a directory's contents, members in sorted order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                archive.add(file, arcname=str(file.relative_to(path)), recursive=False)
        else:
            archive.add(path, arcname=path.name)
    return buffer.getvalue()


def _ship_inputs(ray: Any, config: CheckConfig) -> dict[str, tuple[str, bool, Any]]:
    """Every model, calibration and data path of the config put once into the object store."""
    shipped: dict[str, tuple[str, bool, Any]] = {}
    cache: dict[Path, str] = {}
    for model in config.models:
        for path in (model.path, model.calibration, model.data):
            if path is not None and str(path) not in shipped and path.exists():
                shipped[str(path)] = (hash_path(path, cache), path.is_dir(), ray.put(pack(path)))
    return shipped


def _localize(config: CheckConfig, shipped: Shipped, force: bool) -> CheckConfig:
    """The config with each input path replaced by a local copy unpacked from the object store wherever this
    worker does not see the same bytes at the same path (always when ``force``)."""
    import ray

    cache_root = Path(tempfile.gettempdir()) / "edgeexport-ray-inputs"
    hashes: dict[Path, str] = {}

    def local(path: Path | None) -> Path | None:
        if path is None or str(path) not in shipped:
            return path
        digest, is_dir, ref = shipped[str(path)]
        if not force and path.exists() and hash_path(path, hashes) == digest:
            return path
        target = cache_root / digest / path.name
        if not target.exists():
            # Unpack beside the cache entry and rename: two workers on one node may unpack the same input.
            cache_root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache_root))
            packed = cast(bytes, ray.get(ref))
            with tarfile.open(fileobj=io.BytesIO(packed)) as archive:
                archive.extractall(staging / path.name if is_dir else staging, filter="data")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                (staging / path.name).rename(target)
            except OSError:
                if not target.exists():
                    raise
            shutil.rmtree(staging, ignore_errors=True)
        return target

    models = tuple(dataclasses.replace(m, path=local(m.path) or m.path, calibration=local(m.calibration),
                                       data=local(m.data)) for m in config.models)
    return dataclasses.replace(config, models=models)


def _ray_cell(config: CheckConfig, cell: Cell, shipped: Shipped, marker: str, transfer: str
              ) -> tuple[CellOutcome, bytes | None]:
    """The Ray task: one cell, its outputs in place (shared path) or packed for the driver."""
    begun = time.perf_counter()
    maybe_crash(cell.classname(config))
    force = transfer == "object-store"
    local = _localize(config, shipped, force)
    if not force and (config.out / marker).exists():
        return run_cell(local, cell), None
    scratch = Path(tempfile.mkdtemp(prefix="edgeexport-ray-out-"))
    try:
        moved = dataclasses.replace(local, out=scratch)
        outcome = run_cell(moved, cell)
        out = cell.out_dir(moved)
        packed = pack(out) if out.exists() else None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dataclasses.replace(outcome, seconds=time.perf_counter() - begun), packed
