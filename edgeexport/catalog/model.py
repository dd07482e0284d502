"""Typed device profiles and presets. Loaders in this package build these from TOML data files.

Units: throughput in GOP/s (one multiply-accumulate counts as 2 ops), bandwidth in GB/s (1e9 bytes/s),
overheads in microseconds, memory sizes in bytes, clocks in GHz, power in watts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

TFLITE_MODES = ("fp32", "fp16", "dynamic-int8", "int8", "int8-io", "int16x8")
COREML_PRECISIONS = ("fp32", "fp16")
COREML_WEIGHTS = ("w8", "palettize-4", "palettize-6", "w8a8")
PRUNING_METHODS = ("magnitude", "n:m", "channels", "lowrank")
LOWRANK_FORMS = ("svd", "tucker2")
UNIT_KINDS = ("cpu", "gpu", "npu", "dsp", "ane", "tpu", "mcu")


@dataclass(frozen=True)
class Tolerance:
    """Pass/fail limits for one output; ``None`` means the metric is not checked.

    ``max_abs``/``mean_abs`` are absolute errors in output units; ``cosine_min`` is the minimum cosine
    similarity (1.0 = identical); ``sqnr_db_min`` the minimum signal-to-quantization-noise ratio in dB;
    ``top1_agreement_min`` the minimum fraction of samples whose arg-max matches (classifiers only);
    ``accuracy_drop_max`` the largest allowed accuracy loss in points (0-100) when labels are given.
    """

    max_abs: float | None = None
    mean_abs: float | None = None
    cosine_min: float | None = None
    sqnr_db_min: float | None = None
    top1_agreement_min: float | None = None
    accuracy_drop_max: float | None = None

    def tightened_by(self, limits: Tolerance | None) -> Tolerance:
        """This tolerance with every limit that ``limits`` sets replacing ours (``None``: unchanged)."""
        if limits is None:
            return self
        given = {f.name: getattr(limits, f.name) for f in fields(limits) if getattr(limits, f.name) is not None}
        return replace(self, **given)


@dataclass(frozen=True)
class Quantization:
    """How a preset quantizes, per target; ``None`` means the preset does not apply to that target.

    ``tflite_mode`` is one of TFLITE_MODES. ``coreml_precision`` is the ML Program compute precision
    (COREML_PRECISIONS) and ``coreml_weights`` an optional weight compression (COREML_WEIGHTS).
    """

    tflite_mode: str | None = None
    coreml_precision: str | None = None
    coreml_weights: str | None = None
    requires_calibration: bool = False


@dataclass(frozen=True)
class Pruning:
    """Weight pruning applied before conversion.

    ``method``: ``"magnitude"`` (unstructured, ``sparsity`` in 0..1), ``"n:m"`` (keep ``n`` of every ``m``
    weights along the input axis) or ``"channels"`` (remove ``sparsity`` of the output channels for real).
    ``"lowrank"`` factorizes Dense/Conv kernels instead (issue 15): each factorized layer keeps ``1 - sparsity`` of
    its parameters, or, with ``energy`` (0..1), the smallest rank keeping that share of the squared singular values
    (``sparsity`` is then 0: the share is only known once the weights are seen); ``form`` (``"svd"`` or
    ``"tucker2"``, None for the default) picks how k x k convs are split.
    """

    method: str
    sparsity: float
    n: int | None = None
    m: int | None = None
    energy: float | None = None
    form: str | None = None


@dataclass(frozen=True)
class LayerOverride:
    """Keep matching layers at a higher precision. ``op_type`` matches the layer class or op type name,
    ``name`` is a glob over layer names; ``keep`` is ``"fp32"`` or ``"fp16"``."""

    keep: str
    op_type: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Preset:
    """A named compression recipe with its verification tolerance.

    ``targets`` lists the targets it can produce (``"tflite"``, ``"coreml"``). Composite presets
    (``"prune-50+int8"``) have ``parts`` naming their components.
    """

    name: str
    description: str
    targets: frozenset[str]
    quantization: Quantization
    tolerance: Tolerance
    pruning: Pruning | None = None
    overrides: tuple[LayerOverride, ...] = ()
    parts: tuple[str, ...] = ()
    source: str = "builtin"
    # Oldest Core ML deployment target the preset's coreml recipe needs (e.g. "iOS17" for w8a8); None = any.
    # Added by the catalog owner; additive.
    min_coreml_deployment_target: str | None = None


@dataclass(frozen=True)
class ComputeUnit:
    """One compute unit of a device (a CPU cluster, a GPU, an NPU, the Neural Engine, an MCU core).

    ``peak_gops`` maps dtype (``"fp32"``, ``"fp16"``, ``"int8"``) to peak throughput in GOP/s;
    ``efficiency`` maps op family (``"conv"``, ``"depthwise"``, ``"fc"``, ``"elementwise"``, ``"pool"``, ...,
    and ``"default"``) to the fraction of peak reached in practice (0..1). ``op_overhead_us`` is the fixed
    per-op dispatch cost in microseconds; ``memory_bandwidth_gbps`` in GB/s.
    """

    name: str
    kind: str
    cores: int
    clock_ghz: float
    peak_gops: Mapping[str, float]
    memory_bandwidth_gbps: float
    op_overhead_us: float
    dtypes: frozenset[str]
    op_families: frozenset[str]
    efficiency: Mapping[str, float] = field(default_factory=dict)
    runtime: str = ""
    power_w: float | None = None
    # Targets whose runtime can place ops on this unit (e.g. the Neural Engine: coreml only); empty = all the
    # device's targets. Added by the catalog owner; additive.
    targets: frozenset[str] = frozenset()
    # Fitted cost terms (additive, defaults keep the older behaviour). ``invoke_us``: fixed cost per
    # inference once the unit runs any op (a compiled accelerator's graph launch, the interpreter's invoke);
    # ``partition_us``: cost per partition entering this unit (None: ``placement.SYNC_US`` of its kind);
    # ``serial_fraction``: Amdahl serial fraction of a multi-threaded CPU run (None: ``cost.CPU_SERIAL_FRACTION``);
    # ``thread_sync_us``: per-op cost in microseconds of handing an op to the thread pool when more than one
    # thread runs (what keeps small ops from scaling; fitted by `edgeexport calibrate`);
    # ``on_chip_bytes``: weights stay on the unit when the model's weights fit in this many bytes, else they
    # stream from DRAM at ``memory_bandwidth_gbps`` on every run (None: the shared cache decides).
    invoke_us: float = 0.0
    partition_us: float | None = None
    serial_fraction: float | None = None
    thread_sync_us: float = 0.0
    on_chip_bytes: int | None = None
    # ``occupancy_elements``: output elements a kernel needs to keep every lane of a GPU busy; a kernel with
    # fewer runs at (elements / occupancy_elements) of the unit's throughput (None: no occupancy limit)
    occupancy_elements: float | None = None
    # ``vector_gbps``: GB/s at which a graph-compiled accelerator moves the activations of its ops without
    # MACs (element-wise, concatenation, pooling, padding) through its vector path; such an op then costs
    # (read + write bytes) / vector_gbps (None: the plain roofline, which prices them near zero on an NPU)
    vector_gbps: float | None = None

    def efficiency_for(self, family: str) -> float:
        return float(self.efficiency.get(family, self.efficiency.get("default", 0.5)))


@dataclass(frozen=True)
class FitRecord:
    """How a unit's fitted numbers were obtained: ``rows`` measurements named in ``source``, the fitted
    parameter names, and the residual of every row in percent (predicted / measured - 1, x100)."""

    rows: int
    source: str
    parameters: tuple[str, ...] = ()
    residuals_pct: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Validation:
    """Out-of-sample accuracy of a unit's fitted numbers (``method``, e.g. leave-one-architecture-out):
    ``rows`` predictions over ``architectures`` held-out architectures, their median absolute error and the
    share within +-10 % / +-25 % (percent), the 10th/90th percentile of measured / predicted (the uncertainty
    band ``simulate`` reports) and the median absolute error of the k x MACs baseline on the same rows."""

    rows: int
    architectures: int
    median_abs_pct: float
    within_10_pct: float
    within_25_pct: float
    ratio_p10: float
    ratio_p90: float
    baseline_median_abs_pct: float
    method: str


@dataclass(frozen=True)
class Evidence:
    """What a profile's numbers were fitted or validated on, so the simulator can tell interpolation from
    extrapolation. ``covered`` holds ``"family@dtype"`` pairs (``"conv@int8"``: the op families of
    ``edgeexport.simulate.ops`` in the compute dtypes fp32/fp16/int8/int16); ``basis`` says where they came
    from (e.g. ``"M: edgeexport calibrate, 44 LiteRT micro-benchmarks"``)."""

    covered: frozenset[str]
    basis: str = ""

    def covers(self, family: str, dtype: str) -> bool:
        return f"{family}@{dtype}" in self.covered


@dataclass(frozen=True)
class DeviceProfile:
    """A target device. ``device_class`` is ``"phone"``, ``"tablet"``, ``"sbc"``, ``"mcu"`` or ``"host"``.

    ``ram_bytes`` is memory available to a model, ``flash_bytes`` storage for its weights (microcontrollers)
    or ``None`` when storage is not a constraint. ``sources`` maps a dotted field path (e.g.
    ``"units.cpu.peak_gops.fp32"``) to where the number came from, with how it was derived.
    """

    name: str
    display_name: str
    device_class: str
    units: tuple[ComputeUnit, ...]
    ram_bytes: int
    flash_bytes: int | None
    os: str
    os_version: str
    targets: frozenset[str]
    android_api: int | None = None
    litert_delegates: tuple[str, ...] = ()
    coreml_deployment_target: str | None = None
    coreml_spec_version: int | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None
    # keyed by unit name; written by `edgeexport calibrate --measurements` (issue 12; additive)
    fits: Mapping[str, FitRecord] = field(default_factory=dict)
    validation: Mapping[str, Validation] = field(default_factory=dict)
    # The op families x dtypes the profile's numbers were fitted/validated on; None = not recorded.
    evidence: Evidence | None = None

    def unit(self, kind: str) -> ComputeUnit | None:
        """The first unit of the given kind, or None."""
        return next((u for u in self.units if u.kind == kind), None)
