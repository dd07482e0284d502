"""TensorFlow graph helpers shared by the Keras and SavedModel sources: quiet imports, MAC counting, op lists.

Everything here imports TensorFlow, so only source and target modules call it, inside functions.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any

from edgeexport.errors import BadInputError
from edgeexport.quiet import captured_output
from edgeexport.types import TensorSpec

# Graph bookkeeping ops that say nothing about what a model computes.
_NOISE_OPS = frozenset({"Const", "Identity", "NoOp", "Placeholder", "IdentityN", "StatefulPartitionedCall",
                        "PartitionedCall", "ReadVariableOp", "VarHandleOp", "AssignVariableOp"})


def quiet_tensorflow() -> Any:
    """Import TensorFlow with its C++ and Python logging turned down; returns the ``tensorflow`` module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN reorders sums: fixed order keeps outputs reproducible
    with captured_output():
        import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    return tf


def frozen_graph_def(concrete_function: Any) -> Any:
    """The GraphDef of ``concrete_function`` with variables folded into constants."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    return convert_variables_to_constants_v2(concrete_function).graph.as_graph_def()


# Loop ops whose bodies (library functions) TensorFlow's profiler does not count.
_LOOP_OPS = frozenset({"While", "StatelessWhile"})


def count_macs(graph_def: Any) -> int:
    """Multiply-accumulates of one inference (see ``count_macs_noted``; its notes are dropped)."""
    return count_macs_noted(graph_def)[0]


def count_function_macs(concrete_function: Any) -> tuple[int, tuple[str, ...]]:
    """``count_macs_noted`` for a traced function, profiled as traced: its variables stay captured handles whose
    shapes the FLOP statistics read, so no weight is copied (freezing a 240 MB model first cost the loading
    stage over 2 GB of copies; issue 17). Same count as on the frozen graph (tests/unit checks it)."""
    return _profile(concrete_function.graph, concrete_function.graph.as_graph_def())


def count_macs_noted(graph_def: Any) -> tuple[int, tuple[str, ...]]:
    """Multiply-accumulates of one inference: TensorFlow's registered FLOP statistics divided by 2, and the
    notes that say what the count misses.

    Counts convolutions and matrix products exactly; elementwise ops add their (small) element counts. Work
    inside While loops (recurrent layers that were not unrolled) is not counted, and a note says how many
    loops there are; when the profiler fails the count is 0 and a note says so (never a silent 0).
    """
    tf = quiet_tensorflow()
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(_without_weights(graph_def), name="")
    return _profile(graph, graph_def)


def _profile(graph: Any, graph_def: Any) -> tuple[int, tuple[str, ...]]:
    tf = quiet_tensorflow()
    notes: list[str] = []
    loops = sum(1 for node in graph_def.node if node.op in _LOOP_OPS)
    with graph.as_default():
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        try:
            with captured_output():
                profile = tf.compat.v1.profiler.profile(graph, options=options)
        except Exception as err:
            detail = " ".join(str(err).split())[:160]
            failed = (f"MACs not counted: TensorFlow's profiler failed on this graph ({type(err).__name__}: "
                      f"{detail}); the MAC figure 0 means unknown")
            return 0, (failed,)
    if loops:
        notes.append(f"MACs inside {loops} While loop(s) (recurrent layers that are not unrolled) are not "
                     "counted in this figure")
    return int(profile.total_float_ops // 2), tuple(notes)


# A constant larger than this (bytes) is a weight: the profiler needs its shape, not its values.
_WEIGHT_BYTES = 1024


def _without_weights(graph_def: Any) -> Any:
    """``graph_def`` with each large constant replaced by a Placeholder of the same dtype and shape: the FLOP
    statistics read shapes only, and importing a frozen graph copied every weight once more (a 240 MB model cost
    another 240 MB here, plus the profiler's own copy; issue 17, bounded memory)."""
    from tensorflow.core.framework import graph_pb2

    light = graph_pb2.GraphDef()
    light.versions.CopyFrom(graph_def.versions)
    light.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        value = node.attr["value"].tensor if node.op == "Const" and "value" in node.attr else None
        if value is None or len(value.tensor_content) <= _WEIGHT_BYTES:
            light.node.add().CopyFrom(node)
            continue
        stub = light.node.add(name=node.name, op="Placeholder", device=node.device)
        stub.attr["dtype"].type = value.dtype
        stub.attr["shape"].shape.CopyFrom(value.tensor_shape)
    return light


def op_histogram(graph_def: Any) -> tuple[tuple[str, int], ...]:
    """Count the graph's ops by type (including inside functions), without bookkeeping ops."""
    counts: Counter[str] = Counter(node.op for node in graph_def.node if node.op not in _NOISE_OPS)
    for function in graph_def.library.function:
        counts.update(node.op for node in function.node_def if node.op not in _NOISE_OPS)
    return tuple(sorted(counts.items()))


def numpy_dtype(tf_dtype: Any) -> str:
    """The numpy dtype name of a TensorFlow dtype (``tf.float32`` -> ``"float32"``)."""
    return str(tf_dtype.as_numpy_dtype().dtype) if hasattr(tf_dtype.as_numpy_dtype(), "dtype") else tf_dtype.name


def fixed_signature(specs: tuple[TensorSpec, ...], batch: int = 1) -> list[Any]:
    """``tf.TensorSpec``s with a dynamic batch set to ``batch`` (a fixed one, e.g. from ``--input-shape``, is
    kept); any other dynamic dimension is BadInputError (exit 3) naming the input and the ``--input-shape`` that
    fixes it."""
    tf = quiet_tensorflow()
    signature = []
    for spec in specs:
        shape = () if not spec.shape else (batch if spec.shape[0] is None else spec.shape[0], *spec.shape[1:])
        if any(d is None for d in shape):
            fix = ",".join("1" if d is None else str(d) for d in spec.shape)
            raise BadInputError(f"input '{spec.name}' has a dynamic dimension {spec.describe()}",
                                hint=f"fix it with --input-shape {spec.name}={fix}")
        signature.append(tf.TensorSpec(shape, tf.as_dtype(spec.dtype), name=spec.name))
    return signature
