"""Low-rank factorization of a Keras 3 model's Dense and Conv2D layers (Keras is imported inside functions only).

Which layers (decided here, documented for users):

* ``Dense`` and 1x1 ``Conv2D`` kernels become two layers by truncated SVD; k x k ``Conv2D`` kernels become a k x k
  conv to ``r`` channels then a 1x1 conv (``form="svd"``, the default) or a Tucker-2 chain (``form="tucker2"``).
  The first factor has no bias; the last keeps the original bias and activation, so the function is unchanged up
  to the truncation.
* Skipped (and reported with the reason): kernels with fewer than ``min_weights`` weights, the stem (a layer that
  reads a model input with at most 4 channels), grouped or channels-first convs, nested models (their layers are
  left alone), and every layer where no rank would reduce both its parameters and its MACs.

A factorized layer is replaced by a nested ``keras.Sequential`` carrying the original layer's name, so the model's
input and output names do not change. The input model is never modified; a new model is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.compress.lowrank import (
    FORMS,
    Factors,
    plan_kernel,
)
from edgeexport.errors import UnsupportedError
from edgeexport.types import LayerRank

DEFAULT_FORM = "svd"
MIN_WEIGHTS = 512
FINETUNE_LEARNING_RATE = 5e-3
_STEM_MAX_CHANNELS = 4


@dataclass(frozen=True)
class LowRankStats:
    """What factorization did to a model: every candidate layer (factorized or skipped with a reason), and the
    parameters and Conv/Dense MACs (per sample) of the whole model before and after."""

    form: str
    layers: tuple[LayerRank, ...]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    @property
    def factorized(self) -> tuple[LayerRank, ...]:
        return tuple(layer for layer in self.layers if layer.rank > 0)

    @property
    def factorized_share(self) -> float:
        """Parameters of the factorized layers after / before (0..1); 1.0 when nothing was factorized."""
        before = sum(layer.params_before for layer in self.factorized)
        return sum(layer.params_after for layer in self.factorized) / before if before else 1.0


def _positions(shape: tuple[Any, ...]) -> int:
    """Spatial positions of a channels-last tensor shape (batch and channels excluded); 0 when dynamic."""
    count = 1
    for dim in tuple(shape)[1:-1]:
        if dim is None:
            return 0
        count *= int(dim)
    return count


def _plan_layer(layer: Any, keep: float | None, energy: float | None, form: str, reads_input: bool,
                min_weights: int) -> tuple[LayerRank, Factors | None]:
    """The rank chosen for one Dense/Conv2D layer and its factors, or a LayerRank with the reason it is skipped."""
    kind = type(layer).__name__
    weights = layer.get_weights()
    kernel = weights[0]
    bias = int(weights[1].size) if len(weights) > 1 else 0
    before = int(kernel.size) + bias
    out_pos = _positions(tuple(layer.output.shape))
    in_pos = _positions(tuple(layer.input.shape))
    macs_before = out_pos * int(kernel.size)
    full = int(min(int(np.prod(kernel.shape[:-1])), kernel.shape[-1]))

    def skip(reason: str, layer_form: str = "svd") -> tuple[LayerRank, None]:
        return LayerRank(layer.name, layer_form, 0, full, before, before, macs_before, macs_before, reason), None

    if kernel.size < min_weights:
        return skip(f"kernel has {kernel.size} weights (< {min_weights})")
    channels_in = int(kernel.shape[-2])
    if reads_input and channels_in <= _STEM_MAX_CHANNELS:
        return skip(f"stem layer reading the model input ({channels_in} channels) is kept whole")
    if kind == "Conv2D":
        if int(getattr(layer, "groups", 1)) != 1:
            return skip("grouped conv")
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return skip("channels-first conv")
    return plan_kernel(layer.name, kernel, bias, keep=keep, energy=energy, form=form, in_positions=in_pos,
                       out_positions=out_pos)


def _chain(layer: Any, factors: Factors) -> tuple[Any, list[list[NDArray[Any]]]]:
    """A nested Sequential named like ``layer`` that computes the factorized layer, and the weights of each of its
    layers in order."""
    import keras

    config = layer.get_config()
    bias = layer.get_weights()[1:]
    name = layer.name
    last_kwargs = {"activation": config.get("activation"), "use_bias": bool(config.get("use_bias", True))}
    if type(layer).__name__ == "Dense":
        a, b = factors.weights
        parts = [keras.layers.Dense(a.shape[-1], use_bias=False, name=f"{name}_lr0"),
                 keras.layers.Dense(b.shape[-1], name=f"{name}_lr1", **last_kwargs)]
    else:
        spatial = {"strides": config["strides"], "padding": config["padding"], "dilation_rate": config["dilation_rate"]}
        kernels = factors.weights
        parts = []
        for i, kernel in enumerate(kernels):
            is_spatial = kernel.shape[0] * kernel.shape[1] > 1
            last = i == len(kernels) - 1
            parts.append(keras.layers.Conv2D(
                int(kernel.shape[-1]), kernel.shape[:2], name=f"{name}_lr{i}",
                **(spatial if is_spatial else {}), **(last_kwargs if last else {"use_bias": False})))
    weights = [[w] for w in factors.weights]
    weights[-1].extend(bias)
    return keras.Sequential(parts, name=name), weights


def _reads_model_input(layer: Any, model: Any) -> bool:
    try:
        inputs = layer.input if isinstance(layer.input, list | tuple) else [layer.input]
    except (AttributeError, ValueError):
        return False
    ids = {id(t) for t in model.inputs}
    return any(id(t) in ids for t in inputs)


def factorize_keras_model(model: Any, *, keep: float | None = None, energy: float | None = None,
                          form: str = DEFAULT_FORM, min_weights: int = MIN_WEIGHTS) -> tuple[Any, LowRankStats]:
    """A factorized copy of ``model`` and what was done (see the module docstring for which layers change).

    Give exactly one of ``keep`` (share of each factorized layer's parameters to keep, 0..1) and ``energy`` (share
    of squared singular values to keep, 0..1). ``form`` is ``"svd"`` or ``"tucker2"`` for k x k convs;
    ``min_weights`` (default 512) skips small kernels. Raises ``UnsupportedError`` (exit 4) for a model that
    cannot be cloned (subclassed) or when no layer can be factorized."""
    import keras

    if (keep is None) == (energy is None):
        raise ValueError("give exactly one of keep and energy")
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    plans: dict[str, tuple[LayerRank, Factors | None]] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            count = int(layer.count_params())
            plans[layer.name] = (LayerRank(layer.name, "svd", 0, 0, count, count, 0, 0,
                                           "nested model: its layers are not factorized"), None)
            continue
        if type(layer).__name__ in ("Dense", "Conv2D") and layer.get_weights():
            plans[layer.name] = _plan_layer(layer, keep, energy, form, _reads_model_input(layer, model), min_weights)
    chosen = {name: factors for name, (_, factors) in plans.items() if factors is not None}
    if not chosen:
        reasons = "; ".join(f"{name}: {rank.reason}" for name, (rank, _) in plans.items()) or "no Dense/Conv2D layers"
        raise UnsupportedError(f"no layer of {model.name} can be factorized ({reasons})",
                               hint="low-rank presets help Dense- and conv-heavy models; try prune-* or int8")
    chains: dict[str, list[list[NDArray[Any]]]] = {}

    def clone(layer: Any) -> Any:
        if layer.name in chosen:
            chain, weights = _chain(layer, chosen[layer.name])
            chains[layer.name] = weights
            return chain
        return layer.__class__.from_config(layer.get_config())

    try:
        new = keras.models.clone_model(model, clone_function=clone)
    except Exception as err:
        raise UnsupportedError(f"cannot factorize {type(model).__name__}: {err}",
                               hint="low-rank presets need a Sequential or functional Keras model") from err
    for layer in model.layers:
        target = new.get_layer(layer.name)
        if layer.name in chains:
            for part, weights in zip(target.layers, chains[layer.name], strict=True):
                part.set_weights(weights)
        elif layer.get_weights():
            target.set_weights(layer.get_weights())
    from edgeexport.compress.keras_pruning import kernel_macs

    ranks = tuple(rank for rank, _ in plans.values())
    macs_before = kernel_macs(model)
    saved = sum(r.macs_before - r.macs_after for r in ranks)
    return new, LowRankStats(
        form=form, layers=ranks, params_before=int(model.count_params()), params_after=int(new.count_params()),
        macs_before=macs_before, macs_after=macs_before - saved if macs_before else 0,
    )


def finetune_config(epochs: int) -> Any:
    """The distillation settings after factorization (a ``DistillConfig``): ``epochs`` as asked (``convert
    --finetune-epochs``, default 30), Adam from 5e-3 with cosine decay, early stopping after 8 flat epochs."""
    from edgeexport.compress.distill import DistillConfig

    return DistillConfig(epochs=epochs, learning_rate=FINETUNE_LEARNING_RATE, patience=8)


def factorized_keras_source(source: Any, pruning: Any, *, finetune_data: Any = None,
                            finetune_epochs: int = 0) -> tuple[Any, Any]:
    """``KerasModel.pruned`` for ``pruning.method == "lowrank"``: the factorized model as a new ``KerasModel``,
    distilled against the original on ``finetune_data`` (no labels needed) for ``finetune_epochs`` epochs when both
    are given, and a ``PruneReport`` whose ``achieved_sparsity`` is the share of the factorized layers' parameters
    removed (0..1) and whose ``ranks`` list every candidate layer."""
    from edgeexport.quiet import captured_output
    from edgeexport.sources.keras import KerasModel
    from edgeexport.types import PruneReport

    keep = None if pruning.energy is not None else 1.0 - float(pruning.sparsity)
    model, stats = factorize_keras_model(source.model, keep=keep, energy=pruning.energy,
                                         form=pruning.form or DEFAULT_FORM)
    tuned = None
    if finetune_data is not None and finetune_epochs > 0:
        # Hinton-style distillation with mixup and early stopping (compress/distill.py) rather than finetune.py's
        # output MSE: equal at keep 50% and 4 points better at 25% on the digits sample (benchmarks/RESULTS.md).
        from edgeexport.compress.distill import distill_student
        from edgeexport.compress.finetune import FinetuneReport, _mse

        x = [np.asarray(finetune_data[name]) for name in source.input_names]
        feed = x if len(x) > 1 else x[0]
        targets = source.model.predict(feed, verbose=0)
        before = _mse(model.predict(feed, verbose=0), targets)
        with captured_output():
            result = distill_student(model, source.model, finetune_data, source.input_names,
                                     config=finetune_config(finetune_epochs))
        tuned = FinetuneReport(result.epochs_run, len(x[0]), before, _mse(model.predict(feed, verbose=0), targets))
    report = PruneReport(
        method="lowrank", target_sparsity=float(pruning.sparsity), achieved_sparsity=1.0 - stats.factorized_share,
        params_before=stats.params_before, params_after=stats.params_after, layers_pruned=len(stats.factorized),
        layers_skipped=tuple(f"{r.name}: {r.reason}" for r in stats.layers if r.rank == 0),
        macs_before=stats.macs_before, macs_after=stats.macs_after,
        finetune_epochs=tuned.epochs if tuned else 0, finetune_samples=tuned.samples if tuned else 0,
        finetune_mse_before=tuned.mse_before if tuned else None, finetune_mse_after=tuned.mse_after if tuned else None,
        ranks=stats.layers,
    )
    return KerasModel(source.source, model, notes=source.notes), report
