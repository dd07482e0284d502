"""Typed options of the public API: what ``convert``, ``verify`` and ``simulate`` can be asked to do.

Frozen dataclasses with defaults, so a misspelt option is a TypeError at the call site that a type checker
catches, not a keyword lost in ``**kwargs``. No framework imports: the CLI builds these before anything heavy
is loaded. ``edgeexport.api`` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edgeexport.catalog.model import Tolerance
from edgeexport.runtimes.names import CoremlRuntime
from edgeexport.search import PrecisionSearch
from edgeexport.types import LoadOptions

SYNTHETIC: Literal["synthetic"] = "synthetic"
CoremlPrecision = Literal["auto", "fp32"]


@dataclass(frozen=True)
class Budgets:
    """Limits an artifact must meet on the device: p50 latency in ms, size and peak memory in bytes (None:
    unchecked). The device profile's RAM and flash are always budgets too, when budgets are checked."""

    max_latency_ms: float | None = None
    max_size_bytes: int | None = None
    max_memory_bytes: int | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.max_latency_ms, self.max_size_bytes, self.max_memory_bytes))


@dataclass(frozen=True)
class VerifyOptions:
    """How artifacts are verified against their reference.

    ``data``: an ``.npz`` whose ``test`` split (or whole arrays) is used; None: seeded random inputs.
    ``samples``: how many samples (default 64). ``tighten``: limits that replace the preset's where set (a
    ``catalog.model.Tolerance`` with some fields set). ``coreml_precision``: ``"auto"`` rounds each MIL op to
    fp16 as the GPU/ANE do, ``"fp32"`` does not. ``coreml_runtime``: which engine runs Core ML artifacts.
    ``localize``: when the per-layer error (``verify.localize``) is attached: ``"auto"`` for a failed artifact and
    for every verified one where it is cheap (``verify.localize.cheap``), ``"always"`` for every verified artifact.
    """

    enabled: bool = True
    data: Path | None = None
    samples: int = 64
    tighten: Tolerance | None = None
    coreml_precision: CoremlPrecision = "auto"
    coreml_runtime: CoremlRuntime = CoremlRuntime.AUTO
    localize: Literal["auto", "always"] = "auto"


@dataclass(frozen=True)
class SimulateOptions:
    """How an artifact is simulated on a device.

    ``threads``: CPU threads (None: the profile's default). ``compute_units``: Core ML's setting (``all``,
    ``cpu_and_gpu``, ``cpu_only``, ``cpu_and_ne``). ``delegate``: LiteRT path (``cpu``, ``gpu``, ``npu`` or
    ``auto``, the fastest the device has).
    """

    threads: int | None = None
    compute_units: str = "all"
    delegate: str = "auto"


@dataclass(frozen=True)
class BundleOptions:
    """App bundles written next to the artifacts: ``labels`` a text file with one class per line,
    ``preprocess`` ``KEY=VALUE,...`` or a TOML file, or several ``NAME:KEY=VALUE,...`` for a model with several
    inputs (see ``bundle.preprocess``)."""

    labels: Path | None = None
    preprocess: str | tuple[str, ...] | None = None


@dataclass(frozen=True)
class ConvertOptions:
    """Everything ``convert`` can be asked besides the model and the output directory.

    ``targets``: target names (None: every target the device runs and the preset has a recipe for).
    ``preset``: a preset name, a composition (``"prune-50+int8"``) or ``"auto"`` (needs ``device``).
    ``device``: a shipped profile name or a profile TOML path. ``calibration``: an ``.npz`` path or
    ``"synthetic"`` (random data, accepted knowingly). ``check_budgets``: fail (exit 6) over the device's
    RAM/flash and ``budgets``. ``finetune_epochs``: distillation epochs after pruning (default 30).
    ``warn_only``: report failed checks but exit 0. ``write_report``: write report.json and report.html.
    ``precision_search``: an accuracy budget that keeps the layers that need it in float (None: the preset as is).
    """

    targets: tuple[str, ...] | None = None
    preset: str = "fp32"
    device: str | None = None
    calibration: Path | Literal["synthetic"] | None = None
    preset_files: tuple[Path, ...] = ()
    load: LoadOptions = field(default_factory=LoadOptions)
    verify: VerifyOptions = field(default_factory=VerifyOptions)
    budgets: Budgets = field(default_factory=Budgets)
    check_budgets: bool = False
    finetune_epochs: int = 30
    warn_only: bool = False
    write_report: bool = True
    bundle: BundleOptions | None = None
    precision_search: PrecisionSearch | None = None
