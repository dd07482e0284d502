"""Framework-neutral low-rank factorization on numpy arrays: rank choice, truncated SVD and Tucker-2.

Shapes follow Keras: a dense kernel is ``(in, out)``, a conv kernel ``(kh, kw, cin, cout)``. A factorization
replaces one weight by a chain whose product approximates it:

* ``svd`` (dense, and k x k convs as a k x k conv to ``r`` channels then a 1x1 conv): the kernel reshaped to
  ``(kh*kw*cin, cout)`` is split by truncated SVD, ``A = U_r sqrt(S_r)`` and ``B = sqrt(S_r) V_r^T``.
* ``tucker2`` (k x k convs): a 1x1 conv ``cin -> r1``, a k x k core ``r1 -> r2`` and a 1x1 conv ``r2 -> cout``,
  from the leading singular vectors of the kernel unfolded along ``cin`` and along ``cout`` (HOSVD).

Rank choice: ``keep`` (0..1) picks the largest rank whose factorized layer has at most ``keep`` of the original
layer's parameters (bias included); ``energy`` (0..1) picks the smallest rank whose leading squared singular values
sum to at least that share of the total. Everything is deterministic (LAPACK SVD, no randomness).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeexport.types import LayerRank

FORMS = ("svd", "tucker2")


@dataclass(frozen=True)
class Factors:
    """The chain that replaces one kernel: weight arrays in application order (Keras layout), the rank(s) kept
    and the relative reconstruction error ||K - K_r||_F / ||K||_F."""

    form: str
    weights: tuple[NDArray[Any], ...]
    ranks: tuple[int, ...]
    relative_error: float


def energy_rank(singular_values: NDArray[Any], energy: float) -> int:
    """Smallest ``r`` with ``sum(s[:r]**2) >= energy * sum(s**2)`` (``energy`` in (0, 1]); at least 1."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    squares = np.asarray(singular_values, dtype=np.float64) ** 2
    total = float(squares.sum())
    if total == 0.0:
        return 1
    cumulative = np.cumsum(squares) / total
    # A small slack keeps a share that is exactly reached from tipping over on rounding.
    return int(min(len(squares), int(np.searchsorted(cumulative, energy - 1e-12)) + 1))


def svd_params(rows: int, cols: int, rank: int, bias: int) -> int:
    """Parameters of a ``(rows, cols)`` kernel split at ``rank``, plus ``bias`` (kept on the second factor)."""
    return rank * (rows + cols) + bias


def tucker_params(kh: int, kw: int, cin: int, cout: int, r1: int, r2: int, bias: int) -> int:
    """Parameters of a Tucker-2 chain (1x1 cin->r1, kh x kw r1->r2, 1x1 r2->cout) plus ``bias``."""
    return cin * r1 + kh * kw * r1 * r2 + r2 * cout + bias


def keep_rank_svd(rows: int, cols: int, keep: float, bias: int) -> int:
    """Largest rank whose split has at most ``keep`` (0..1) of the ``rows*cols + bias`` original parameters; 0 if
    none does."""
    budget = keep * (rows * cols + bias) - bias
    return max(0, min(min(rows, cols), int(np.floor(budget / (rows + cols)))))


def keep_rank_tucker(kh: int, kw: int, cin: int, cout: int, keep: float, bias: int) -> int:
    """Largest equal rank ``r`` (r1 = r2 = r) of a Tucker-2 chain within ``keep`` of the original parameters."""
    budget = keep * (kh * kw * cin * cout + bias)
    best = 0
    for r in range(1, min(cin, cout) + 1):
        if tucker_params(kh, kw, cin, cout, r, r, bias) <= budget:
            best = r
    return best


def svd_factors(kernel: NDArray[Any], rank: int) -> Factors:
    """Split ``kernel`` (dense ``(in, out)`` or conv ``(kh, kw, cin, cout)``) at ``rank``: the first factor has the
    kernel's leading shape with ``rank`` outputs, the second is ``(rank, out)`` (dense) or ``(1, 1, rank, out)``."""
    kernel = np.asarray(kernel)
    matrix = kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    root = np.sqrt(s[:rank])
    first = (u[:, :rank] * root).reshape(*kernel.shape[:-1], rank)
    second = (root[:, None] * vt[:rank])
    if kernel.ndim == 4:
        second = second.reshape(1, 1, rank, kernel.shape[-1])
    approx = (u[:, :rank] * s[:rank]) @ vt[:rank]
    error = _relative(matrix, approx)
    return Factors("svd", (first.astype(kernel.dtype), second.astype(kernel.dtype)), (rank,), error)


def tucker2_factors(kernel: NDArray[Any], r1: int, r2: int) -> Factors:
    """Tucker-2 of a conv kernel ``(kh, kw, cin, cout)``: ``(1, 1, cin, r1)``, ``(kh, kw, r1, r2)`` and
    ``(1, 1, r2, cout)`` kernels, in application order."""
    kernel = np.asarray(kernel)
    k = kernel.astype(np.float64)
    _, _, cin, cout = k.shape
    u_in = _leading_vectors(np.moveaxis(k, 2, 0).reshape(cin, -1), r1)
    u_out = _leading_vectors(np.moveaxis(k, 3, 0).reshape(cout, -1), r2)
    core = np.einsum("hwio,ia,ob->hwab", k, u_in, u_out)
    approx = np.einsum("hwab,ia,ob->hwio", core, u_in, u_out)
    weights = (u_in.reshape(1, 1, cin, r1), core, u_out.T.reshape(1, 1, r2, cout))
    return Factors("tucker2", tuple(w.astype(kernel.dtype) for w in weights), (r1, r2), _relative(k, approx))


def singular_values(kernel: NDArray[Any]) -> NDArray[Any]:
    """Singular values of ``kernel`` reshaped to ``(-1, out)``, largest first."""
    kernel = np.asarray(kernel, dtype=np.float64)
    return np.asarray(np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False))


def unfolding_values(kernel: NDArray[Any], axis: int) -> NDArray[Any]:
    """Singular values of a conv kernel unfolded along ``axis`` (2 = cin, 3 = cout)."""
    k = np.moveaxis(np.asarray(kernel, dtype=np.float64), axis, 0)
    return np.asarray(np.linalg.svd(k.reshape(k.shape[0], -1), compute_uv=False))


def _leading_vectors(matrix: NDArray[Any], rank: int) -> NDArray[Any]:
    u, _, _ = np.linalg.svd(matrix, full_matrices=False)
    return np.asarray(u[:, :rank])


def _relative(original: NDArray[Any], approx: NDArray[Any]) -> float:
    norm = float(np.linalg.norm(original))
    return float(np.linalg.norm(original - approx)) / norm if norm else 0.0


def plan_kernel(name: str, kernel: NDArray[Any], bias: int, *, keep: float | None, energy: float | None,
                form: str = "svd", in_positions: int = 1, out_positions: int = 1) -> tuple[LayerRank, Factors | None]:
    """The rank for one kernel (Keras layout) with ``bias`` bias parameters, and its factors; or a LayerRank with
    rank 0 and the reason when no rank reduces both parameters and MACs. ``keep``/``energy``: see the module
    docstring (exactly one is given). ``in_positions``/``out_positions``: spatial positions of the layer's input and
    output per sample (they only matter for Tucker-2 of a strided conv, whose first 1x1 runs at input resolution)."""
    kernel = np.asarray(kernel)
    before = int(kernel.size) + bias
    in_pos, out_pos = in_positions, out_positions
    macs_before = out_pos * int(kernel.size)
    full = int(min(int(np.prod(kernel.shape[:-1])), kernel.shape[-1]))

    def skip(reason: str, layer_form: str = "svd") -> tuple[LayerRank, None]:
        return LayerRank(name, layer_form, 0, full, before, before, macs_before, macs_before, reason), None

    spatial = kernel.ndim == 4 and kernel.shape[0] * kernel.shape[1] > 1
    layer_form = form if spatial else "svd"
    if layer_form == "tucker2":
        kh, kw, cin, cout = (int(d) for d in kernel.shape)
        if energy is not None:
            r1 = energy_rank(unfolding_values(kernel, 2), energy)
            r2 = energy_rank(unfolding_values(kernel, 3), energy)
        else:
            r1 = r2 = keep_rank_tucker(kh, kw, cin, cout, float(keep or 0.0), bias)
        if min(r1, r2) == 0:
            return skip(f"no Tucker-2 rank fits in {keep:.0%} of {before} parameters", layer_form)
        after = tucker_params(kh, kw, cin, cout, r1, r2, bias)
        macs_after = in_pos * cin * r1 + out_pos * (kh * kw * r1 * r2 + r2 * cout)
        # Reported as the larger of the two ranks, out of the larger channel count.
        factors, rank = tucker2_factors(kernel, r1, r2), max(r1, r2)
        full = max(cin, cout)
    else:
        rows, cols = int(np.prod(kernel.shape[:-1])), int(kernel.shape[-1])
        if energy is not None:
            rank = energy_rank(singular_values(kernel), energy)
        else:
            rank = keep_rank_svd(rows, cols, float(keep or 0.0), bias)
        if rank == 0:
            return skip(f"no rank fits in {keep:.0%} of {before} parameters")
        after = svd_params(rows, cols, rank, bias)
        macs_after = out_pos * rank * (rows + cols)
        factors = svd_factors(kernel, rank)
    if after >= before or (macs_before and macs_after >= macs_before):
        what = f"rank {rank} of {full}" + (f" ({energy:.0%} energy)" if energy is not None else "")
        return skip(f"{what} would not reduce parameters ({before} -> {after}) and MACs", layer_form)
    return LayerRank(name, layer_form, rank, full, before, after, macs_before, macs_after), factors
