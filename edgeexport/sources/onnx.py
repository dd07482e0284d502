"""ONNX sources (``.onnx``): checked before use, run by onnxruntime (CPU), exported through onnx2tf.

Loading refuses, before reading any weight, external data that would come from outside the model's directory,
and refuses at load time what cannot convert: an opset outside ``MIN_OPSET..max_opset()`` and ops onnx2tf has no
converter for (listed by name and count). The reference is onnxruntime's CPU execution provider.

Layout: ONNX is channels-first. By default the artifact takes what onnx2tf builds, channels-last for 3-D/4-D/5-D
tensors, and ``ExportedGraph.permutations`` says exactly how each input and output was permuted;
``LoadOptions.keep_layout`` keeps the ONNX layout at the artifact boundary (a transpose inside the graph instead).
Endpoint names are the ONNX names made valid for TensorFlow (``OnnxModel.endpoint_names``), in the same order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.errors import (
    ConversionError,
    DataError,
    EdgeExportError,
    ModelFormatError,
    UnsupportedError,
    UnsupportedOpError,
)
from edgeexport.limits import check_external_lengths
from edgeexport.runs import is_fixed, join_runs, split_runs
from edgeexport.sources.base import LoadedModel
from edgeexport.sources.onnx_checks import (
    check_external_data,
    check_ops,
    check_opset,
    declared_shape,
    external_locations,
    fixed_shapes,
    graph_inputs,
    op_histogram,
    resolved_shapes,
)
from edgeexport.sources.onnx_summary import (
    count_macs,
    inferred_shapes,
    layout,
    np_dtype,
    params,
)
from edgeexport.types import ExportedGraph, ModelSummary, Permutation, PruneReport, SourceModel, TensorSpec

_TF_NAME = re.compile(r"[^A-Za-z0-9_]")


def load(source: SourceModel, *, verbose: bool = False) -> OnnxModel:
    """Read and check ``source`` (an ``.onnx`` file); ``verbose`` lets onnx2tf print its log on export."""
    import onnx

    path = source.path
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise ModelFormatError(f"cannot read {path.name} as an ONNX model (corrupt or truncated?): {_first(err)}") from err
    if not model.HasField("graph") or not model.graph.node:
        raise ModelFormatError(f"{path.name} holds no ONNX graph (corrupt or truncated?)")
    check_opset(model, path.name)
    check_external_data(model, path)
    check_external_lengths(model, path)  # declared offsets/lengths inside the side files, before reading them
    check_ops(model, path.name)  # before the checker, which would reject an unknown op with a less useful message
    if external_locations(model):
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(model, str(path.resolve().parent))
        except Exception as err:
            raise ModelFormatError(f"cannot read the external data of {path.name}: {_first(err)}") from err
    try:
        onnx.checker.check_model(model)
    except Exception as err:
        raise ModelFormatError(f"{path.name} is not a valid ONNX model: {_first(err)}") from err
    resolved_shapes(model, source.options)  # an --input-shape naming no input fails here, not at export
    return OnnxModel(source, model, verbose=verbose)


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]


def tf_name(name: str, taken: set[str]) -> str:
    """``name`` made a valid TensorFlow/Python identifier (``input.1`` -> ``input_1``), unique among ``taken``."""
    base = _TF_NAME.sub("_", name) or "tensor"
    if not (base[0].isalpha() or base[0] == "_"):
        base = f"t_{base}"
    candidate, index = base, 1
    while candidate in taken:
        candidate, index = f"{base}_{index}", index + 1
    taken.add(candidate)
    return candidate


class OnnxModel(LoadedModel):
    """An ONNX model held in memory (external data loaded), with an onnxruntime session as the reference."""

    def __init__(self, source: SourceModel, model: Any, *, verbose: bool = False, notes: tuple[str, ...] = ()) -> None:
        self.source = source
        self.model = model
        self.verbose = verbose
        self.notes = notes
        self.input_names = tuple(value.name for value in graph_inputs(model))
        self.output_names = tuple(value.name for value in model.graph.output)
        taken: set[str] = set()
        endpoints = [tf_name(n, taken) for n in (*self.input_names, *self.output_names)]
        self.endpoint_names: dict[str, str] = dict(zip((*self.input_names, *self.output_names), endpoints))

    @property
    def onnx_graph(self) -> Any:
        """The ONNX ModelProto the targets convert from (``targets.onnx_limits`` checks it first)."""
        return self.model

    @cached_property
    def _session(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(self.model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as err:
            missing = re.search(r"Could not find an implementation for (\w+)\(", str(err))
            if missing:
                raise UnsupportedError(
                    f"onnxruntime (the reference) has no CPU kernel for {missing.group(1)} with these types in "
                    f"{self.source.path.name}, so it cannot be verified", hint=_first(err)[:200]) from err
            raise ConversionError(f"onnxruntime cannot run {self.source.path.name}: {_first(err)}") from err

    @cached_property
    def summary(self) -> ModelSummary:
        shapes = resolved_shapes(self.model, self.source.options)
        fixed = self._with_fixed_inputs(strict=False)
        inferred = inferred_shapes(fixed)
        inputs = []
        for value in graph_inputs(self.model):
            shape = shapes[value.name]
            inputs.append(TensorSpec(value.name, shape, np_dtype(value.type.tensor_type.elem_type),
                                     layout=layout(len(shape)), value_range=self._value_range(value.name)))
        outputs = []
        dynamic_batch = any(s and s[0] is None for s in shapes.values())
        for value in self.model.graph.output:
            shape = inferred.get(value.name) or declared_shape(value)
            if dynamic_batch and shape and declared_shape(value)[:1] != (1,):
                shape = (None, *shape[1:])
            outputs.append(TensorSpec(value.name, tuple(shape), np_dtype(value.type.tensor_type.elem_type),
                                      layout=layout(len(shape))))
        ops = op_histogram(self.model)
        return ModelSummary(tuple(inputs), tuple(outputs), tuple(sorted(ops.items())), params(self.model), count_macs(fixed))

    def _value_range(self, name: str) -> tuple[float, float] | None:
        """Integer ids read by a Gather from an initializer table must stay inside that table."""
        tables = {init.name: init.dims[0] for init in self.model.graph.initializer if len(init.dims)}
        for node in self.model.graph.node:
            if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == name and node.input[0] in tables:
                return (0.0, float(tables[node.input[0]] - 1))
        return None

    def _with_fixed_inputs(self, *, strict: bool) -> Any:
        """A copy whose inputs have fixed shapes (batch 1 where dynamic); outputs and value infos re-inferred.

        ``strict`` raises BadInputError for an unresolvable non-batch dimension; otherwise it stays symbolic."""
        import onnx

        copy = onnx.ModelProto()
        copy.CopyFrom(self.model)
        shapes = fixed_shapes(self.model, self.source.options) if strict else {
            name: tuple(1 if (d is None and i == 0) else d for i, d in enumerate(shape))
            for name, shape in resolved_shapes(self.model, self.source.options).items()
        }
        for value in copy.graph.input:
            if value.name in shapes:
                dims = value.type.tensor_type.shape.dim
                for dim, size in zip(dims, shapes[value.name]):
                    if size is not None:
                        dim.Clear()
                        dim.dim_value = int(size)
        del copy.graph.value_info[:]
        inferred = inferred_shapes(copy)
        for value in copy.graph.output:
            shape = inferred.get(value.name)
            if shape is not None and all(d is not None for d in shape):
                value.type.tensor_type.shape.Clear()
                for size in shape:
                    value.type.tensor_type.shape.dim.add().dim_value = int(size)  # type: ignore[arg-type]
        return copy

    def run(self, feeds: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """Run onnxruntime on a batch; a model with fixed input shapes runs once per sample (``edgeexport.runs``)."""
        arrays = self.check_feeds(feeds)
        shapes = [spec.shape for spec in self.summary.inputs]
        names = [spec.name for spec in self.summary.inputs]
        if not is_fixed(shapes):
            return self._run_once(arrays)
        runs = split_runs(shapes, [arrays[n] for n in names])
        return join_runs([self._run_once(dict(zip(names, run, strict=True))) for run in runs])

    def _run_once(self, arrays: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        session = self._session  # outside the try: a session onnxruntime cannot build is not a data problem
        try:
            values = session.run(list(self.output_names), {name: arrays[name] for name in self.input_names})
        except Exception as err:
            raise DataError(f"onnxruntime could not run {self.source.path.name} on this data: {_first(err)}") from err
        return {name: np.asarray(value) for name, value in zip(self.output_names, values)}

    def export_saved_model(self, directory: Path) -> ExportedGraph:
        from edgeexport.sources.onnx_convert import to_tensorflow
        from edgeexport.sources.onnx_rewrite import explicit_same_padding, spatial_mean_as_global_pool

        fixed = self._with_fixed_inputs(strict=True)
        input_shapes = {v.name: declared_shape(v) for v in graph_inputs(fixed)}
        output_shapes = {v.name: declared_shape(v) for v in fixed.graph.output}
        unknown = [name for name, shape in output_shapes.items() if any(d is None for d in shape)]
        if unknown:
            raise ConversionError(f"cannot infer a fixed shape for output(s) {', '.join(unknown)} of {self.source.path.name}")
        fixed, rewrites = explicit_same_padding(fixed)
        fixed, pooled = spatial_mean_as_global_pool(fixed)
        notes = [*self.notes, *rewrites, *pooled]
        try:
            converted = to_tensorflow(fixed, input_shapes, output_shapes, verbose=self.verbose)  # type: ignore[arg-type]
        except UnsupportedOpError:
            raise
        except ConversionError as first:
            # onnx2tf's channels-last input transpose breaks some graphs (a 3-D token tensor [1, seq, dim] feeding
            # MatMul becomes [1, dim, seq]); converting again with those inputs left as they are often works.
            spatial = [n for n, shape in input_shapes.items() if 3 <= len(shape) <= 5]
            if not spatial:
                raise
            try:
                converted = to_tensorflow(fixed, input_shapes, output_shapes, keep_inputs=spatial,  # type: ignore[arg-type]
                                          verbose=self.verbose)
            except ConversionError:
                raise first from None
            # onnx2tf now reads those inputs as channels-last: make sure that is what the graph means.
            try:
                error = self._disagreement(converted, input_shapes)  # type: ignore[arg-type]
            except EdgeExportError:  # seeded inputs this graph cannot take: the retry cannot be checked
                raise first from None
            if error is not None:
                raise ConversionError(f"{first.message}; with the inputs left as they are, {error}") from None
            notes.append(f"onnx2tf failed with channels-last input(s) {', '.join(spatial)}; they keep their ONNX layout")
        else:
            converted, note = self._agreeing(converted, fixed, input_shapes, output_shapes)  # type: ignore[arg-type]
            notes += [note] if note else []
        keep = self.source.options.keep_layout
        _write_serve(converted, directory, self, input_shapes, keep_layout=keep,  # type: ignore[arg-type]
                     output_shapes=output_shapes)  # type: ignore[arg-type]
        permutations: list[Permutation] = []
        if not keep:
            permutations += [Permutation("input", n, a) for n, a in converted.input_axes.items() if a is not None]
            permutations += [Permutation("output", n, a) for n, a in converted.output_axes.items() if a is not None]
        if any(op == "Erf" for op, _ in self.summary.ops):
            notes.append("Erf is computed with a polynomial approximation (abs. error < 1.5e-7): TFLite has no Erf op")
        renamed = [f"{n} -> {e}" for n, e in self.endpoint_names.items() if n != e]
        if renamed:
            notes.append("ONNX tensor names made valid for TensorFlow: " + ", ".join(renamed))
        if permutations:
            notes.append("artifact tensors are channels-last: " + ", ".join(
                f"{p.kind} {p.tensor} axes {p.axes}" for p in permutations) + " (pass --keep-layout to keep NCHW)")
        return ExportedGraph(
            directory,
            tuple(self.endpoint_names[n] for n in self.input_names),
            tuple(self.endpoint_names[n] for n in self.output_names),
            tuple(notes),
            tuple(permutations),
        )

    def _agreeing(self, converted: Any, fixed: Any, input_shapes: dict[str, tuple[int, ...]],
                  output_shapes: dict[str, tuple[int, ...]]) -> tuple[Any, str]:
        """onnx2tf's channels-last rewrite sometimes computes something else (Flatten or Clip on a transposed
        tensor): when the converted graph disagrees with onnxruntime on one seeded input, convert again with the
        3-D..5-D inputs kept as they are and keep whichever agrees (the first when neither does: verification
        then reports the numbers). Returns the graph and a note ('' when the first one agreed)."""
        from edgeexport.sources.onnx_convert import to_tensorflow

        try:
            error = self._disagreement(converted, input_shapes)
        except EdgeExportError:  # seeded inputs this graph cannot take (integer division by zero, ids out of range)
            return converted, ""
        spatial = [n for n, shape in input_shapes.items() if 3 <= len(shape) <= 5]
        if error is None or not spatial:
            return converted, ""
        try:
            retry = to_tensorflow(fixed, input_shapes, output_shapes, keep_inputs=spatial, verbose=self.verbose)
        except ConversionError:
            return converted, ""
        try:
            if self._disagreement(retry, input_shapes) is not None:
                return converted, ""
        except EdgeExportError:
            return converted, ""
        return retry, (f"onnx2tf's channels-last graph disagreed with onnxruntime ({error}); input(s) "
                       f"{', '.join(spatial)} keep their ONNX layout")

    def _disagreement(self, converted: Any, input_shapes: dict[str, tuple[int, ...]]) -> str | None:
        """Run onnxruntime and the converted model on one seeded input; describe a mismatch, or None."""
        from edgeexport.verify.inputs import seeded_inputs

        specs = tuple(TensorSpec(s.name, input_shapes[s.name], s.dtype, value_range=s.value_range)
                      for s in self.summary.inputs)
        feeds = seeded_inputs(specs, 1).arrays
        reference = self._run_once(feeds)
        tf_feeds = [feeds[n] if converted.input_axes[n] is None else feeds[n].transpose(converted.input_axes[n])
                    for n in self.input_names]
        outputs = converted.model(tf_feeds if len(tf_feeds) > 1 else tf_feeds[0], training=False)
        outputs = list(outputs) if isinstance(outputs, list | tuple) else [outputs]
        for name, value in zip(self.output_names, outputs):
            axes = converted.output_axes[name]
            expected = reference[name] if axes is None else reference[name].transpose(axes)
            got = np.asarray(value)
            scale = float(np.abs(expected).max()) or 1.0
            if got.shape != expected.shape or float(np.abs(got - expected).max()) > 1e-3 * scale:
                return f"output '{name}' disagrees with onnxruntime"
        return None

    def pruned(
        self, pruning: Any, *, finetune_data: Mapping[str, NDArray[Any]] | None = None, finetune_epochs: int = 0
    ) -> tuple[LoadedModel, PruneReport]:
        """Magnitude pruning of Conv/ConvTranspose/Gemm/MatMul weights. There is no ONNX training loop here, so
        ``finetune_data``/``finetune_epochs`` are not used and the report says 0 fine-tune epochs."""
        from edgeexport.sources.onnx_prune import prune_onnx

        if pruning.method == "lowrank":
            from edgeexport.sources.onnx_lowrank import factorize_onnx

            model, report = factorize_onnx(self.model, pruning)
        else:
            model, report = prune_onnx(self.model, pruning)
        notes = self.notes
        if finetune_data is not None and finetune_epochs:
            notes = (*notes, "ONNX models are pruned without fine-tuning (no training loop for ONNX graphs)")
        variant = OnnxModel(self.source, model, verbose=self.verbose, notes=notes)
        if pruning.method == "lowrank":
            # MACs need the input shapes fixed, which the summary does; the rewrite alone cannot count them.
            from dataclasses import replace

            report = replace(report, macs_before=self.summary.macs or None, macs_after=variant.summary.macs or None)
        return variant, report


def _write_serve(converted: Any, directory: Path, onnx_model: OnnxModel, input_shapes: dict[str, tuple[int, ...]],
                 *, keep_layout: bool, output_shapes: dict[str, tuple[int, ...]]) -> None:
    """Save a SavedModel whose one ``serve`` endpoint wraps onnx2tf's model with fixed shapes and ONNX names."""
    from edgeexport.quiet import captured_output
    from edgeexport.sources.tfgraph import quiet_tensorflow

    tf = quiet_tensorflow()
    keras_model = converted.model
    signature = []
    for name, tensor in zip(onnx_model.input_names, keras_model.inputs):
        axes = converted.input_axes[name]
        onnx_shape = input_shapes[name]
        shape = onnx_shape if keep_layout or axes is None else tuple(onnx_shape[a] for a in axes)
        signature.append(tf.TensorSpec(shape, tensor.dtype, name=onnx_model.endpoint_names[name]))
    out_names = [onnx_model.endpoint_names[n] for n in onnx_model.output_names]

    def serve(*xs: Any) -> dict[str, Any]:
        feeds = []
        for name, x, tensor in zip(onnx_model.input_names, xs, keras_model.inputs):
            axes = converted.input_axes[name]
            x = tf.transpose(x, axes) if keep_layout and axes is not None else x
            if len(tensor.shape) != len(x.shape):  # a scalar / unit axis onnx2tf built with another rank
                x = tf.reshape(x, [1 if d is None else int(d) for d in tensor.shape])
            feeds.append(x)
        outs = keras_model(feeds if len(feeds) > 1 else feeds[0], training=False)
        outs = list(outs) if isinstance(outs, list | tuple) else [outs]
        result = {}
        for onnx_name, out_name, out in zip(onnx_model.output_names, out_names, outs):
            axes = converted.output_axes[onnx_name]
            if keep_layout and axes is not None:
                out = tf.transpose(out, tuple(int(i) for i in np.argsort(axes)))
            if axes is None and len(out.shape) != len(output_shapes[onnx_name]):
                out = tf.reshape(out, list(output_shapes[onnx_name]))  # back to the ONNX rank (scalars included)
            result[out_name] = tf.identity(out, name=out_name)
        return result

    holder = tf.Module()
    # Track the weights, not the tf_keras model: saving a Keras model re-traces every layer for Keras's own
    # SavedModel metadata, which took most of a minute for MobileNetV2; the serve function is all we need.
    holder.weights = list(keras_model.variables)
    holder.serve = tf.function(serve, input_signature=signature)
    try:
        with captured_output():
            concrete = holder.serve.get_concrete_function()
            tf.saved_model.save(holder, str(directory), signatures={"serve": concrete})
    except Exception as err:
        raise ConversionError(f"cannot write the TensorFlow graph of {onnx_model.source.path.name}: {_first(err)}") from err
