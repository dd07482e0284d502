"""The contract of a conversion target, and the registry that names them.

A target turns the fixed-shape TensorFlow graph of a source model into one artifact file (or package) with a
preset, and opens a runner for artifacts of its kind. A new target is one module with a ``TARGET`` object and
one line in ``_REGISTRY``; nothing else in edgeexport compares target names.

The registry knows each target's name and file suffixes without importing its module, so the CLI can list
targets and recognise artifact paths without loading a framework.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from edgeexport.errors import ModelFormatError, UnsupportedError

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from edgeexport.catalog.model import DeviceProfile, Preset
    from edgeexport.runtimes.base import Runner
    from edgeexport.types import ExportedGraph


@dataclass(frozen=True)
class ConvertContext:
    """What a conversion needs besides the graph and the preset.

    ``calibration`` maps the graph's input names to samples (leading sample axis) for calibrated presets;
    ``sparse`` asks for pruned weights to be stored sparsely; ``device`` is the profile converted for (None: none).
    """

    calibration: Mapping[str, NDArray[Any]] | None = None
    sparse: bool = False
    device: DeviceProfile | None = None


class Target(Protocol):
    """One artifact format. ``executes_here`` is False when this machine may lack a runtime for some of its
    artifacts (a Core ML op our MIL executor has no kernel for): such an artifact is kept and reported as
    not verifiable instead of failing the conversion."""

    @property
    def name(self) -> str: ...

    @property
    def suffix(self) -> str: ...

    @property
    def executes_here(self) -> bool: ...

    def accepts(self, preset: Preset) -> bool:
        """Whether ``preset`` has a recipe for this target."""
        ...

    def convert(self, exported: ExportedGraph, preset: Preset, out_path: Path, ctx: ConvertContext) -> list[str]:
        """Write the artifact at ``out_path``; return warnings. Raises ConversionError / UnsupportedOpError."""
        ...

    def open_runner(self, path: Path, *, precision: str = "auto", runtime: str = "auto") -> Runner:
        """A runner for an artifact of this target (``precision``/``runtime`` matter to Core ML only)."""
        ...

    def embed_metadata(self, path: Path, manifest: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
        """Write a bundle manifest's model metadata into the artifact at ``path``; return the fields embedded and
        the (field, why not) pairs that the format cannot hold."""
        ...


# The names of the targets edgeexport ships. Code that must say "this one" (a reader of one format, the host
# calibration that only measures LiteRT) names it through these; everything else asks the registry or a Target.
TFLITE: Final = "tflite"
COREML: Final = "coreml"


@dataclass(frozen=True)
class TargetInfo:
    """What the registry knows about a target without importing its module.

    ``suffixes``: artifact suffixes, the first is what convert writes. ``graph_format``: the simulator's
    ``OpGraph.format`` of its artifacts; ``graph_reader`` the ``module:function`` that reads one into an
    ``OpGraph`` (named, not imported: the readers import the graph module). ``preload``: a module the
    converter's forkserver imports besides TensorFlow (None: none). ``keeps_loops``: its converter keeps a
    recurrent layer's loop (short ones are still unrolled for speed); False: every Keras RNN must be unrolled
    before conversion. ``has_delegates``: the runtime picks a unit through LiteRT delegates (cpu/gpu/npu paths,
    ``--delegate``); False: through Core ML compute units. ``runtime_prefix``: the prefix of the simulator's runtime
    paths that belong to this target only (None: the shared cpu/gpu/npu paths). ``precision_ladder``: its presets
    from fastest to most exact, along which the precision search falls back. ``widens``: the preset an explicit
    choice may still widen by one rung (None: none). ``calibrated_modes``: the ``tflite_mode`` values whose
    artifacts per-layer overrides change (empty: overrides change a compressed or fp16 program).
    ``auto_candidates``: (preset, compute dtype of its artifact) pairs ``--preset auto`` simulates, most exact first.
    """

    name: str
    module: str
    suffixes: tuple[str, ...]
    graph_format: str
    graph_reader: str
    preload: str | None = None
    keeps_loops: bool = False
    has_delegates: bool = False
    runtime_prefix: str | None = None
    precision_ladder: tuple[str, ...] = ()
    widens: str | None = None
    calibrated_modes: tuple[str, ...] = ()
    auto_candidates: tuple[tuple[str, str], ...] = ()


_REGISTRY: dict[str, TargetInfo] = {
    TFLITE: TargetInfo(TFLITE, "edgeexport.targets.tflite", (".tflite",), "tflite",
                         "edgeexport.simulate.tflite_reader:read_tflite", keeps_loops=True, has_delegates=True,
                         precision_ladder=("int8", "int16x8", "fp16", "fp32"), widens="int8",
                         calibrated_modes=("int8", "int8-io"),
                         auto_candidates=(("fp32", "fp32"), ("fp16", "fp16"), ("int8", "int8"))),
    COREML: TargetInfo(COREML, "edgeexport.targets.coreml", (".mlpackage", ".mlmodel"), "mlpackage",
                         "edgeexport.simulate.coreml_reader:read_mlpackage",
                       preload="edgeexport._preload_coreml", runtime_prefix="coreml-",
                       precision_ladder=("w8a8", "w8", "fp16", "fp32"),
                       auto_candidates=(("fp32", "fp32"), ("fp16", "fp16"), ("w8a8", "int8"))),
}


def target_info(name: str) -> TargetInfo:
    """The registry's entry for target ``name`` (no import). Unknown: UnsupportedError (exit 4)."""
    return _entry(name)


def target_of_graph_format(graph_format: str) -> str:
    """The target whose artifacts the simulator reads as ``graph_format``; UnsupportedError for another."""
    for name, entry in _REGISTRY.items():
        if entry.graph_format == graph_format:
            return name
    raise UnsupportedError(f"no target writes {graph_format} artifacts", hint=f"targets: {', '.join(_REGISTRY)}")


def target_of_runtime_path(path: str) -> str:
    """The target a simulator runtime path belongs to: the one whose ``runtime_prefix`` starts it, else the
    (first) target with delegates, whose cpu/gpu/npu paths are the shared ones."""
    for name, entry in _REGISTRY.items():
        if entry.runtime_prefix is not None and path.startswith(entry.runtime_prefix):
            return name
    return next(name for name, entry in _REGISTRY.items() if entry.has_delegates)


def target_names() -> tuple[str, ...]:
    """Every target's name, in the order convert produces them (no framework import)."""
    return tuple(_REGISTRY)


def suffix_of(name: str) -> str:
    """The file suffix convert gives an artifact of target ``name``."""
    return _entry(name).suffixes[0]


def target_named(name: str) -> Target:
    """The target called ``name`` (imports its module, not its framework). Unknown: UnsupportedError (exit 4)."""
    module = importlib.import_module(_entry(name).module)
    target: Target = module.TARGET
    return target


def target_name_for(path: Path) -> str:
    """The name of the target whose artifacts end like ``path``; ModelFormatError (exit 3) for anything else."""
    suffix = path.suffix.lower()
    for name, entry in _REGISTRY.items():
        if suffix in entry.suffixes:
            return name
    known = ", ".join(s for entry in _REGISTRY.values() for s in entry.suffixes)
    raise ModelFormatError(f"{path.name} is not an artifact edgeexport can run", hint=f"expected {known}")


def target_for(path: Path) -> Target:
    """The target of the artifact at ``path`` (by its suffix)."""
    return target_named(target_name_for(path))


def _entry(name: str) -> TargetInfo:
    if name not in _REGISTRY:
        raise UnsupportedError(f"unknown target {name}", hint=f"targets: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def convert_with(name: str, exported: ExportedGraph, preset: Preset, out_path: Path, ctx: ConvertContext) -> list[str]:
    """``target_named(name).convert(...)``: a module-level function, so a child process can run a conversion."""
    return target_named(name).convert(exported, preset, out_path, ctx)
