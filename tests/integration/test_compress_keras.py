"""Pruning real (tiny) Keras 3 models: magnitude, 2:4 and channel removal that really shrinks the model."""

from __future__ import annotations

import os

import numpy as np
import pytest

from edgeexport.catalog import load_preset
from edgeexport.catalog.model import Pruning
from edgeexport.compress.pruning import sparsity

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
L = keras.layers


def _cnn() -> "keras.Model":
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        L.Conv2D(8, 3, name="stem"), L.BatchNormalization(name="bn1"), L.ReLU(name="r1"),
        L.Conv2D(16, 3, name="c2"), L.BatchNormalization(name="bn2"), L.ReLU(name="r2"),
        L.DepthwiseConv2D(3, name="dw"), L.Conv2D(16, 1, name="pw"), L.ReLU(name="r3"),
        L.GlobalAveragePooling2D(name="gap"), L.Dense(16, activation="relu", name="fc"), L.Dense(10, name="head"),
    ])


@pytest.fixture(scope="module")
def cnn() -> "keras.Model":
    return _cnn()


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(4, 12, 12, 3)).astype("float32")


def _kernels(model: "keras.Model", names: tuple[str, ...]) -> list[np.ndarray]:
    return [model.get_layer(n).get_weights()[0] for n in names]


@pytest.mark.parametrize("spec", ["prune-50", "prune-75"])
def test_magnitude_reaches_target_and_keeps_reference_intact(cnn: "keras.Model", batch: np.ndarray, spec: str) -> None:
    from edgeexport.compress.keras_pruning import prune_keras_model

    before = cnn.get_weights()
    pruned, stats = prune_keras_model(cnn, load_preset(spec).pruning)
    target = load_preset(spec).pruning.sparsity
    assert abs(stats.achieved_sparsity - target) <= 0.01
    assert abs(sparsity(_kernels(pruned, stats.layers_pruned)) - target) <= 0.01
    assert "stem" not in stats.layers_pruned and dict(stats.layers_skipped)["stem"].startswith("stem layer")
    assert set(stats.layers_pruned) == {"c2", "dw", "pw", "fc", "head"}
    assert all(np.array_equal(a, b) for a, b in zip(before, cnn.get_weights(), strict=True))   # input untouched
    biases = [pruned.get_layer(n).get_weights()[1] for n in stats.layers_pruned]
    assert biases and all(np.array_equal(b, cnn.get_layer(n).get_weights()[1])
                          for b, n in zip(biases, stats.layers_pruned, strict=True))
    assert stats.params_before == stats.params_after == cnn.count_params()
    assert pruned(batch).shape == cnn(batch).shape


def test_two_four_pattern_in_every_group(cnn: "keras.Model") -> None:
    from edgeexport.compress.keras_pruning import prune_keras_model

    pruned, stats = prune_keras_model(cnn, load_preset("prune-2:4").pruning)
    assert "dw" in dict(stats.layers_skipped) and "c2" in stats.layers_pruned
    for name in stats.layers_pruned:
        kernel = pruned.get_layer(name).get_weights()[0]
        cin = kernel.shape[-2]
        groups = np.moveaxis(kernel != 0, -2, -1).reshape(-1, cin // 4, 4)
        assert (groups.sum(axis=-1) <= 2).all(), name
    assert stats.achieved_sparsity == pytest.approx(0.5, abs=0.01)


def test_channel_pruning_really_shrinks_and_runs(cnn: "keras.Model", batch: np.ndarray) -> None:
    from edgeexport.compress.keras_pruning import prune_keras_model

    pruned, stats = prune_keras_model(cnn, load_preset("prune-channels-25").pruning)
    assert set(stats.layers_pruned) == {"stem", "c2", "pw", "fc"}
    assert dict(stats.layers_skipped)["head"].startswith("output reaches the model output")
    assert pruned.get_layer("c2").filters == 12 and pruned.get_layer("stem").filters == 6
    assert pruned.get_layer("fc").units == 12 and pruned.get_layer("head").units == 10
    assert stats.params_after == pruned.count_params() < 0.75 * stats.params_before
    assert stats.channels_removed == 2 + 4 + 4 + 4
    # stem 10x10x(3*3*3*8) + c2 8x8x(3*3*8*16) + dw 6x6x(3*3*16) + pw 6x6x(16*16) + fc 16*16 + head 16*10
    assert stats.macs_before == 21600 + 73728 + 5184 + 9216 + 256 + 160
    assert stats.macs_after == 16200 + 41472 + 3888 + 5184 + 144 + 120
    out = pruned(batch)
    assert out.shape == cnn(batch).shape and np.isfinite(np.asarray(out)).all()


def test_channel_pruning_of_dead_channels_is_exact(batch: np.ndarray) -> None:
    """Removing channels whose kernel and bias are zero must not change the function: proves the slicing of
    BatchNorm, depthwise and next-layer input weights is aligned."""
    from edgeexport.compress.keras_pruning import prune_keras_model

    model = _cnn()
    rng = np.random.default_rng(3)
    dead_of = {"stem": [1, 5], "c2": [0, 3, 9, 14], "pw": [2, 4, 6, 8], "fc": [0, 5, 10, 15]}
    for name, dead in dead_of.items():
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        bias = rng.normal(size=bias.shape).astype("float32")
        kernel[..., dead] = 0.0
        bias[dead] = 0.0
        layer.set_weights([kernel, bias])
    # Distinct per-channel BatchNorm and depthwise parameters, so a misaligned slice changes the output; dead
    # channels keep beta = mean = 0 (and a zero depthwise bias) so that they stay exactly zero.
    for bn_name, dead in (("bn1", dead_of["stem"]), ("bn2", dead_of["c2"])):
        bn = model.get_layer(bn_name)
        gamma, beta, mean, var = (rng.uniform(0.5, 1.5, size=w.shape).astype("float32") for w in bn.get_weights())
        beta[dead] = 0.0
        mean[dead] = 0.0
        bn.set_weights([gamma, beta, mean, var])
    dw_kernel, dw_bias = model.get_layer("dw").get_weights()
    dw_bias = rng.normal(size=dw_bias.shape).astype("float32")
    dw_bias[dead_of["c2"]] = 0.0
    model.get_layer("dw").set_weights([rng.normal(size=dw_kernel.shape).astype("float32"), dw_bias])
    pruned, stats = prune_keras_model(model, Pruning(method="channels", sparsity=0.25))
    assert stats.channels_removed == 14
    np.testing.assert_allclose(np.asarray(pruned(batch)), np.asarray(model(batch)), rtol=1e-5, atol=1e-5)


def test_unsafe_layers_are_left_intact() -> None:
    from edgeexport.compress.keras_pruning import prune_keras_model

    inp = keras.Input((8, 8, 4))
    a = L.Conv2D(8, 3, padding="same", name="a")(inp)
    b = L.Conv2D(8, 3, padding="same", name="b")(L.ReLU()(a))
    added = L.Add(name="add")([a, b])
    c = L.Conv2D(8, 3, name="c")(added)
    out = L.Dense(3, name="out")(L.Flatten(name="flat")(c))
    d = L.Dense(16, name="d")(L.GlobalAveragePooling2D()(c))
    out2 = L.Dense(3, name="out2")(L.Activation("softmax", name="sm")(d))
    model = keras.Model(inp, [out, out2])
    pruned, stats = prune_keras_model(model, Pruning(method="channels", sparsity=0.25))
    reasons = dict(stats.layers_skipped)
    assert "Add" in reasons["a"] and "Add" in reasons["b"] and "Flatten" in reasons["c"]
    assert "mixes channels" in reasons["d"]
    assert stats.layers_pruned == () and stats.params_after == stats.params_before
