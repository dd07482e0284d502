"""Core ML target: an ML Program (``.mlpackage``) from the fixed-shape SavedModel's ``serve`` function.

coremltools cannot convert a Keras 3 model object or a multi-function SavedModel directly (TOOLCHAIN.md), so
we hand it the single concrete function. Precision is the ML Program's compute precision; weight
compression (``w8``, ``palettize-4/6``, sparse storage after pruning) uses ``coremltools.optimize.coreml``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from numpy.typing import NDArray

from edgeexport.catalog.model import Preset
from edgeexport.errors import ConversionError, UnsupportedError, UnsupportedOpError
from edgeexport.quiet import captured_output, import_coremltools
from edgeexport.sources.tfgraph import quiet_tensorflow
from edgeexport.targets.base import ConvertContext
from edgeexport.targets.overrides import matching_names, mil_op_types
from edgeexport.types import ExportedGraph

if TYPE_CHECKING:
    from edgeexport.catalog.model import DeviceProfile
    from edgeexport.runtimes.coreml import CoremlRunner

DEFAULT_DEPLOYMENT_TARGET = "iOS16"  # the oldest target with fp16 ML Programs and palettized weights
_NOT_IMPLEMENTED = "not implemented"


def convert(
    exported: ExportedGraph,
    preset: Preset,
    out_path: Path,
    *,
    deployment_target: str | None = None,
    calibration: Mapping[str, NDArray[Any]] | None = None,
    sparse: bool = False,
) -> list[str]:
    """Convert ``exported`` with ``preset`` and save the package at ``out_path``; return warnings.

    ``deployment_target`` is an iOS version name (``"iOS16"``, default ``DEFAULT_DEPLOYMENT_TARGET``);
    ``sparse`` stores already-pruned weights in sparse form. Raises UnsupportedOpError for TF ops the Core ML
    converter lacks and ConversionError for other converter failures.
    """
    tf = quiet_tensorflow()
    ct = import_coremltools()
    from edgeexport.targets.coreml_tf_ops import register_missing_tf_ops

    register_missing_tf_ops()
    warnings: list[str] = []
    precision = preset.quantization.coreml_precision or "fp16"
    target_name = deployment_target or DEFAULT_DEPLOYMENT_TARGET
    try:
        target = getattr(ct.target, target_name)
    except AttributeError as err:
        raise UnsupportedError(f"unknown Core ML deployment target {target_name}", hint="use iOS15 .. iOS18") from err
    if exported.program is not None:
        from edgeexport.targets.coreml_torch import program_and_inputs

        function, inputs, source = program_and_inputs(ct, exported)
    else:
        with captured_output():
            loaded = tf.saved_model.load(str(exported.directory))
            function = [loaded.signatures["serve"]]
        inputs = [
            ct.TensorType(name=name, shape=tuple(spec.shape), dtype=spec.dtype.as_numpy_dtype)
            for name, spec in zip(exported.input_names, _input_specs(function[0], exported.input_names))
        ]
        source = "tensorflow"
    try:
        with captured_output():
            model = ct.convert(
                function,
                source=source,
                convert_to="mlprogram",
                inputs=inputs,
                compute_precision=_compute_precision(ct, precision, preset),
                minimum_deployment_target=target,
            )
    except NotImplementedError as err:
        raise _unsupported(err) from err
    except Exception as err:
        if _NOT_IMPLEMENTED in str(err):
            raise _unsupported(err) from err
        raise ConversionError(f"Core ML conversion ({preset.name}) failed: {_first_line(err)}") from err
    model = _compress(ct, model, preset, sparse, warnings, calibration)
    model = _rename_outputs(ct, model, exported.output_names)
    model.short_description = f"edgeexport {preset.name}"
    with captured_output():
        model.save(str(out_path))
    make_deterministic(out_path)
    return warnings


def make_deterministic(package: Path) -> None:
    """Rewrite the two parts of a saved ``.mlpackage`` that differ between identical conversions.

    coremltools names the package items with random UUIDs and serializes protobuf maps in hash order; we
    derive each identifier from the item's path (UUID5) and re-serialize the spec deterministically, so the
    same inputs give byte-identical packages. The content Core ML reads is unchanged.
    """
    from coremltools.proto import Model_pb2

    manifest_path = package / "Manifest.json"
    manifest = json.loads(manifest_path.read_text())
    renames = {
        old: str(uuid.uuid5(uuid.NAMESPACE_URL, f"edgeexport:{entry['path']}"))
        for old, entry in manifest.get("itemInfoEntries", {}).items()
    }
    manifest["itemInfoEntries"] = {
        renames[old]: entry for old, entry in sorted(manifest["itemInfoEntries"].items(), key=lambda kv: renames[kv[0]])
    }
    if manifest.get("rootModelIdentifier") in renames:
        manifest["rootModelIdentifier"] = renames[manifest["rootModelIdentifier"]]
    manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")
    for spec_path in package.rglob("*.mlmodel"):
        spec = Model_pb2.Model()
        spec.ParseFromString(spec_path.read_bytes())
        spec_path.write_bytes(spec.SerializeToString(deterministic=True))


def _compute_precision(ct: Any, precision: str, preset: Preset) -> Any:
    """fp16 everywhere, except ops of layers the preset's overrides keep in fp32."""
    if precision != "fp16":
        return ct.precision.FLOAT32
    kept = [o for o in preset.overrides if o.keep == "fp32"]
    if not kept:
        return ct.precision.FLOAT16
    op_types = set(mil_op_types(kept))

    def in_fp16(op: Any) -> bool:
        return op.op_type not in op_types and not matching_names(kept, op_names(op))

    return ct.transform.FP16ComputePrecision(op_selector=in_fp16)


def _input_specs(function: Any, names: tuple[str, ...]) -> list[Any]:
    kwargs = function.structured_input_signature[1]
    return [kwargs[name] for name in names]


def _rename_outputs(ct: Any, model: Any, names: tuple[str, ...]) -> Any:
    """Core ML names outputs after TF graph nodes; give them the model's output names, in order."""
    spec = model.get_spec()
    changed = False
    for output, new in zip(list(spec.description.output), names):
        if output.name != new:
            ct.utils.rename_feature(spec, output.name, new, rename_inputs=False)
            changed = True
    if not changed:
        return model
    return ct.models.MLModel(spec, weights_dir=model.weights_dir, skip_model_load=True)


def _compress(ct: Any, model: Any, preset: Preset, sparse: bool, warnings: list[str],
              calibration: Mapping[str, NDArray[Any]] | None = None) -> Any:
    from coremltools.optimize import coreml as cto

    weights = preset.quantization.coreml_weights
    op_names, op_types = _uncompressed_ops(model, preset)
    with captured_output():
        if sparse:
            # Pruning zeroed the source weights; storing them sparse is what makes the package smaller.
            config = cto.OptimizationConfig(global_config=cto.OpThresholdPrunerConfig(threshold=1e-12, minimum_sparsity_percentile=0.3))
            model = cto.prune_weights(model, config=config)
        if weights == "w8":
            config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric"),
                                            op_type_configs=op_types, op_name_configs=op_names)
            model = cto.linear_quantize_weights(model, config=config)
        elif weights in ("palettize-4", "palettize-6"):
            nbits = int(weights.split("-")[1])
            config = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(nbits=nbits, mode="kmeans"),
                                            op_type_configs=op_types, op_name_configs=op_names)
            model = cto.palettize_weights(model, config=config)
        elif weights == "w8a8":
            if calibration is None:
                raise ConversionError(f"preset {preset.name} needs calibration data for its activation ranges")
            from edgeexport.targets.coreml_activations import quantize_activations

            model = quantize_activations(model, calibration, op_name_configs=op_names, op_type_configs=op_types)
            config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric"),
                                            op_type_configs=op_types, op_name_configs=op_names)
            model = cto.linear_quantize_weights(model, config=config)
    return model


def _uncompressed_ops(model: Any, preset: Preset) -> tuple[dict[str, None], dict[str, None]]:
    """Op names and op types whose weights the preset's overrides keep uncompressed (config value None)."""
    if not preset.overrides or model._mil_program is None:
        return {}, {}
    names = [op.name for op in model._mil_program.functions["main"].operations
             if matching_names(preset.overrides, op_names(op))]
    return dict.fromkeys(names), dict.fromkeys(mil_op_types(preset.overrides))


# Inputs that carry data or learned values, not the op's own settings: their names come from other ops or from
# weight consts (which coremltools renames, e.g. conv_0_weight_0), so they say nothing about which layer this is.
_DATA_INPUTS = frozenset({"x", "y", "weight", "bias", "gamma", "beta", "mean", "variance", "values"})


def op_names(op: Any) -> list[str]:
    """Names that tell which source layer a MIL op computes: its own, and its setting consts'.

    coremltools' graph passes rebuild some ops under generic names (a Keras conv3 followed by a layout transpose
    becomes ``conv_0_cast_fp16``) but keep the original settings consts
    (``..._conv3_1_convolutionx_strides_0``), so an override naming conv3 still finds it."""
    names = [op.name]
    for key, value in op.inputs.items():
        if key in _DATA_INPUTS:
            continue
        for var in value if isinstance(value, list | tuple) else (value,):
            producer = getattr(var, "op", None)
            if producer is not None and producer.op_type == "const":
                names.append(var.name)
    return names


def _unsupported(err: Exception) -> Exception:
    text = str(err)
    ops = sorted({part.split("'")[1] for part in text.split("TF op")[1:] if "'" in part})
    if ops:
        return UnsupportedOpError(dict.fromkeys(ops, 1), where="the Core ML converter (TensorFlow frontend)")
    return ConversionError(f"Core ML conversion failed: {_first_line(err)}")


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:400]


def deployment_target(device: DeviceProfile | None, preset: Preset) -> str | None:
    """The newer of the device's Core ML deployment target and the preset's minimum (e.g. iOS16 to palettize)."""
    wanted = [t for t in (device.coreml_deployment_target if device else None, preset.min_coreml_deployment_target) if t]
    return max(wanted, key=lambda name: int(name.removeprefix("iOS"))) if wanted else None


class CoremlTarget:
    """The ``coreml`` target: ML Program packages. Off macOS they run on our MIL executor, which may lack a
    kernel for an op a valid package uses, so not every artifact executes here."""

    name = "coreml"
    suffix = ".mlpackage"
    executes_here = False

    def accepts(self, preset: Preset) -> bool:
        return self.name in preset.targets

    def convert(self, exported: ExportedGraph, preset: Preset, out_path: Path, ctx: ConvertContext) -> list[str]:
        return convert(exported, preset, out_path, deployment_target=deployment_target(ctx.device, preset),
                       calibration=ctx.calibration, sparse=ctx.sparse)

    def open_runner(self, path: Path, *, precision: str = "auto", runtime: str = "auto") -> CoremlRunner:
        from edgeexport.runtimes.coreml import CoremlRunner

        return CoremlRunner(path, runtime=runtime, precision=precision)

    def embed_metadata(self, path: Path, manifest: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
        from edgeexport.targets.metadata import embed_coreml

        return embed_coreml(path, manifest)


TARGET = CoremlTarget()
