"""Per-layer preset overrides: which converted ops stay in float.

A ``LayerOverride`` names layers by ``op_type`` (a Keras layer class such as ``Conv2D``, a TFLite builtin such as
``CONV_2D`` or a MIL op type such as ``conv``) and/or ``name`` (a glob over layer names, e.g. ``conv1`` or
``probs*``). Converted graphs name their ops after the layers' paths (``model_1/conv1_1/Relu;...``), with the
``_1`` suffixes TensorFlow adds when it traces a model, so we match the glob against each path component with
those suffixes removed.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from edgeexport.catalog.model import LayerOverride

# Keras layer class -> the TFLite builtin and MIL op types it becomes.
_KERAS_TO_TFLITE = {
    "Conv2D": "CONV_2D", "Conv1D": "CONV_2D", "DepthwiseConv2D": "DEPTHWISE_CONV_2D", "Dense": "FULLY_CONNECTED",
    "Conv2DTranspose": "TRANSPOSE_CONV", "AveragePooling2D": "AVERAGE_POOL_2D", "MaxPooling2D": "MAX_POOL_2D",
    "Softmax": "SOFTMAX", "Add": "ADD", "Multiply": "MUL", "Concatenate": "CONCATENATION",
}
_KERAS_TO_MIL = {
    "Conv2D": "conv", "Conv1D": "conv", "DepthwiseConv2D": "conv", "Dense": "linear", "Conv2DTranspose": "conv_transpose",
    "MultiHeadAttention": "matmul", "Embedding": "gather",
}
_TRACE_SUFFIX = re.compile(r"_\d+$")


def tflite_op_types(overrides: Iterable[LayerOverride]) -> list[str]:
    """TFLite builtin op names to keep in float, from overrides that name only an op type."""
    types = {_KERAS_TO_TFLITE.get(o.op_type, o.op_type.upper()) for o in overrides if o.op_type and not o.name}
    return sorted(types)


def mil_op_types(overrides: Iterable[LayerOverride]) -> list[str]:
    """MIL op types to leave uncompressed, from overrides that name only an op type."""
    types = {_KERAS_TO_MIL.get(o.op_type, o.op_type.lower()) for o in overrides if o.op_type and not o.name}
    return sorted(types)


def matching_names(overrides: Iterable[LayerOverride], node_names: Iterable[str]) -> list[str]:
    """The node (tensor or op) names whose layer path matches any override's ``name`` glob."""
    patterns = [o.name for o in overrides if o.name]
    if not patterns:
        return []
    return sorted({node for node in node_names if any(_matches(node, p) for p in patterns)})


def _matches(node: str, pattern: str) -> bool:
    if "/" in node or ";" in node:
        parts = re.split(r"[;/]", node)
        return any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(_TRACE_SUFFIX.sub("", p), pattern) for p in parts)
    # MIL op names join the TF path with underscores (StatefulPartitionedCall_model_1_conv1_1_convolution), so a
    # layer name is found between underscores; a layer named conv1 also matches conv1_bn there (documented).
    glob = "".join(".*?" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.search(rf"(?:^|_)(?:{glob})(?:_\d+)?(?:_|$)", node) is not None
