"""Measurement rows for ``edgeexport calibrate --measurements``: CSV files and LiteRT ``benchmark_model`` logs.

CSV columns (header required; ``device``, ``options``, ``target``, ``source``, ``note`` optional)::

    device,unit,threads,model,input,options,preset,target,ms,source,note
    pixel-3,cpu,4,MobileNet,224,alpha=0.5,int8,tflite,4.7,"Q: hosted_models.md",
    ,gpu,,my_model.int8.tflite,,,int8,,3.1,,

``model`` is an artifact path (relative to the CSV) or a keras.applications architecture that edgeexport
builds (``input`` size, ``options``, ``preset``) and converts itself (``zoo.artifact_for``). ``unit`` is the
LiteRT path (``cpu``, ``gpu``, ``npu``; ``dsp``/``tpu``/``ane``/``delegate`` names map onto them) or, for Core ML
rows, ``cpu``/``gpu``/``ane`` or a ``coreml-<compute units>`` path. ``ms`` is the measured mean latency.

A ``benchmark_model`` log gives one row per run: the ``Graph: [...]`` file, ``Num threads: [N]``, the delegate
flags (``Use gpu: [1]``, ``Use NNAPI``, ``Use Hexagon``, ``Use QNN``, ...) and ``Inference (avg)`` from the
``Inference timings in us:`` line.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from edgeexport.errors import DataError
from edgeexport.targets.base import COREML, TFLITE, target_info, target_names

_NPU_NAMES = {"npu", "dsp", "tpu", "nnapi", "hexagon", "qnn", "edgetpu", COREML, "delegate", "ane"}
_COREML_UNITS = {"cpu": "coreml-cpu_only", "gpu": "coreml-cpu_and_gpu", "ane": "coreml-cpu_and_ne",
                 "all": "coreml-all"}


@dataclass(frozen=True)
class Row:
    """One measurement: ``model`` is an artifact path or an architecture name (then ``size``/``options``/
    ``preset`` say how to build it); ``path`` the simulator's runtime path; ``ms`` the measured latency."""

    device: str
    path: str
    threads: int | None
    model: str
    size: int | None
    options: str
    preset: str
    target: str
    ms: float
    source: str
    note: str = ""

    @property
    def is_artifact(self) -> bool:
        return self.model.endswith((".tflite", ".mlpackage", ".mlmodel"))


def runtime_path(unit: str, target: str) -> str:
    """The simulator path of a row's ``unit`` column."""
    name = unit.strip().lower()
    if name.startswith("coreml-"):
        return name
    if target in target_names() and not target_info(target).has_delegates:
        if name not in _COREML_UNITS:
            raise DataError(f"unknown Core ML unit {unit!r}", hint="cpu, gpu, ane, all or coreml-<compute units>")
        return _COREML_UNITS[name]
    if name in ("cpu", "xnnpack", "mcu"):
        return "cpu"
    if name in ("gpu", "metal", "opencl", "opengl"):
        return "gpu"
    if name in _NPU_NAMES:
        return "npu"
    raise DataError(f"unknown unit or delegate {unit!r}", hint="cpu, gpu, npu (or dsp, tpu, nnapi, qnn, edgetpu)")


def read_measurements(path: Path) -> list[Row]:
    """Rows of a CSV file or of a ``benchmark_model`` log (detected by its ``Inference timings`` line)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise DataError(f"cannot read measurements {path}: {err.strerror or err}") from err
    if "Inference timings in us" in text:
        return parse_benchmark_log(text, base=Path(path).parent)
    return _read_csv(text, Path(path))


def _read_csv(text: str, path: Path) -> list[Row]:
    reader = csv.DictReader(text.splitlines())
    need = {"unit", "model", "ms"}
    if reader.fieldnames is None or not need <= set(reader.fieldnames):
        raise DataError(f"{path}: a measurements CSV needs the columns {', '.join(sorted(need))}",
                        hint="or pass the log benchmark_model printed")
    rows: list[Row] = []
    for number, raw in enumerate(reader, start=2):
        try:
            target = (raw.get("target") or "").strip() or next((n for n in target_names() if raw["model"].endswith(target_info(n).suffixes)), TFLITE)
            model = raw["model"].strip()
            if model.endswith((".tflite", ".mlpackage", ".mlmodel")) and not Path(model).is_absolute():
                model = str(path.parent / model)
            threads = (raw.get("threads") or "").strip()
            size = (raw.get("input") or "").strip()
            rows.append(Row(
                device=(raw.get("device") or "").strip(), path=runtime_path(raw["unit"], target),
                threads=int(threads) if threads else None, model=model, size=int(size) if size else None,
                options=(raw.get("options") or "").strip(), preset=(raw.get("preset") or "fp32").strip(),
                target=target, ms=float(raw["ms"]), source=(raw.get("source") or f"{path.name}").strip(),
                note=(raw.get("note") or "").strip(),
            ))
        except (ValueError, KeyError, AttributeError) as err:
            raise DataError(f"{path}:{number}: bad measurement row ({err})") from err
        if rows[-1].ms <= 0:
            raise DataError(f"{path}:{number}: measured ms must be positive")
    if not rows:
        raise DataError(f"{path}: no measurement rows")
    return rows


_GRAPH = re.compile(r"Graph:\s*\[([^\]]+)\]")
_THREADS = re.compile(r"Num threads:\s*\[(\d+)\]")
_FLAG = re.compile(r"Use (gpu|nnapi|hexagon|qnn|xnnpack|coreml|edgetpu|npu)\s*:\s*\[(\w+)\]", re.IGNORECASE)
_AVG = re.compile(r"Inference timings in us:.*?Inference \(avg\):\s*([0-9.eE+]+)")


def parse_benchmark_log(text: str, base: Path | None = None, preset: str = "") -> list[Row]:
    """One Row per ``Inference timings in us: ... Inference (avg): N`` line of LiteRT's ``benchmark_model``
    output (N in microseconds), with the graph, thread count and delegate of the run that printed it. The
    graph is looked up next to the log (``base``) by its file name when its device path does not exist here."""
    graph, threads, delegate = "", None, "cpu"
    flags: dict[str, bool] = {}
    rows: list[Row] = []
    for line in text.splitlines():
        if "STARTING!" in line:  # a new run: its parameters follow
            graph, threads, flags = "", None, {}
        if (m := _GRAPH.search(line)) is not None:
            graph = m.group(1).strip()
        if (m := _THREADS.search(line)) is not None:
            threads = int(m.group(1))
        for name, value in _FLAG.findall(line):
            flags[name.lower()] = value.strip().lower() in ("1", "true", "yes")
        if (m := _AVG.search(line)) is not None:
            if not graph:
                raise DataError("benchmark_model log: an 'Inference timings' line without a 'Graph: [...]' line before it")
            delegate = next((n for n in ("gpu", "nnapi", "hexagon", "qnn", "edgetpu", COREML, "npu") if flags.get(n)),
                            "cpu")
            local = Path(graph)
            if not local.exists() and base is not None:
                local = base / Path(graph).name
            name = local.name
            guess = preset or next((p for p in ("int8", "fp16", "fp32") if f".{p}." in name or f"_{p}" in name), "fp32")
            rows.append(Row(device="", path=runtime_path(delegate, TFLITE), threads=threads, model=str(local),
                            size=None, options="", preset=guess, target=TFLITE, ms=float(m.group(1)) / 1e3,
                            source=f"benchmark_model log ({Path(graph).name})"))
    if not rows:
        raise DataError("no 'Inference timings in us: ... Inference (avg)' line in the benchmark_model log")
    return rows
