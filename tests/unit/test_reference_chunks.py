"""The reference model runs in chunks bounded by input and layer-output bytes (issue 17, bounded memory; no
TensorFlow).

Measured: an eager Keras ResNet152V2 call at 299x299 grows the process ~570 MiB per sample in the batch, so 16
samples at once took the parent past 7 GiB. ``run_reference`` must give a large-input model one sample per call
while a small-input model keeps its 64-sample chunks, and the joined outputs must be the same either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.sources.base import LoadedModel
from edgeexport.types import ExportedGraph, ModelSummary, SourceModel, TensorSpec
from edgeexport.verify.stage import (
    REFERENCE_CHUNK,
    REFERENCE_CHUNK_BYTES,
    REFERENCE_CHUNK_INPUT_BYTES,
    reference_chunk,
    run_reference,
)


class ChannelMeans(LoadedModel):
    """A real (numpy) model: per-sample channel means; records the batch of every call."""

    def __init__(self, shape: tuple[int, ...], activations: int | None = None) -> None:
        self.source = SourceModel(Path("means.keras"), "keras", "0" * 64)
        self.shape = shape
        self.activations = activations
        self.batches: list[int] = []

    def activation_bytes(self) -> int | None:
        return self.activations

    @property
    def summary(self) -> ModelSummary:
        return ModelSummary((TensorSpec("image", (None, *self.shape), "float32"),),
                            (TensorSpec("means", (None, self.shape[-1]), "float32"),), (), 0, 0)

    def run(self, feeds: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        image = feeds["image"]
        self.batches.append(len(image))
        return {"means": image.mean(axis=tuple(range(1, image.ndim)))[:, None] * np.ones(self.shape[-1])}

    def export_saved_model(self, directory: Path) -> ExportedGraph:
        raise NotImplementedError


def _data(shape: tuple[int, ...], count: int) -> NDArray[np.float32]:
    return np.random.default_rng(0).random((count, *shape), dtype=np.float32)


def test_a_large_input_runs_one_sample_per_call_with_the_same_outputs() -> None:
    model = ChannelMeans((299, 299, 3))
    images = _data((299, 299, 3), 5)
    assert images[0].nbytes > REFERENCE_CHUNK_INPUT_BYTES
    outputs = run_reference(model, {"image": images})
    assert model.batches == [1, 1, 1, 1, 1]
    np.testing.assert_allclose(outputs["means"][:, 0], images.mean(axis=(1, 2, 3)), rtol=1e-6)


def test_small_inputs_keep_their_chunks() -> None:
    model = ChannelMeans((8, 8, 1))
    images = _data((8, 8, 1), 150)
    outputs = run_reference(model, {"image": images})
    assert model.batches == [REFERENCE_CHUNK, REFERENCE_CHUNK, 150 - 2 * REFERENCE_CHUNK]
    np.testing.assert_allclose(outputs["means"][:, 0], images.mean(axis=(1, 2, 3)), rtol=1e-6)


def test_a_mid_size_input_gets_as_many_samples_as_fit() -> None:
    model = ChannelMeans((128, 128, 3))  # 192 KiB per sample: 5 per 1 MiB chunk
    run_reference(model, {"image": _data((128, 128, 3), 12)})
    assert model.batches == [5, 5, 2]


def test_known_layer_outputs_set_the_chunk_within_the_byte_budget() -> None:
    """MobileNetV2 at 224x224 (83 MiB of layer outputs per sample, summed by the Keras source) gets 3 samples a
    call instead of one; ResNet152V2 at 299x299 (530 MiB, the growth measured per sample) stays at one."""
    mobilenet = ChannelMeans((224, 224, 3), activations=83 * 2**20)
    images = _data((224, 224, 3), 32)
    outputs = run_reference(mobilenet, {"image": images})
    assert mobilenet.batches == [3] * 10 + [2]
    np.testing.assert_allclose(outputs["means"][:, 0], images.mean(axis=(1, 2, 3)), rtol=1e-6)
    assert 3 * (83 * 2**20 + images[0].nbytes) <= REFERENCE_CHUNK_BYTES
    resnet = ChannelMeans((299, 299, 3), activations=530 * 2**20)
    run_reference(resnet, {"image": _data((299, 299, 3), 3)})
    assert resnet.batches == [1, 1, 1]


def test_the_chunk_is_never_below_one_nor_above_the_sample_cap() -> None:
    assert reference_chunk(10, 10 * REFERENCE_CHUNK_BYTES) == 1
    assert reference_chunk(4, 0) == REFERENCE_CHUNK
    assert reference_chunk(0, None) == REFERENCE_CHUNK
