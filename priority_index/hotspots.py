"""Local hot-spot statistics for LSOA indicators: Getis-Ord Gi* and local Moran's I.

Both statistics take an indicator (a :class:`pandas.Series` indexed by LSOA code, or an array
in the order of the weights' ids) and a :class:`libpysal.weights.W` from
:func:`priority_index.spatial_weights.build_weights`, and return one row per LSOA.

Inference
---------
Each LSOA gets an analytical z-score and a conditional-permutation pseudo p-value. The
permutation test holds the LSOA's own value fixed and draws its ``k_i`` neighbours' values at
random, without replacement, from the other ``n - 1`` LSOAs (Anselin 1995), ``permutations``
times. As in esda, one set of draws is shared by all LSOAs (each LSOA's null distribution is
still exact); unlike esda, the draws come from ``numpy.random.default_rng(seed)``, so results
are reproducible, and depend only on the seed, the number of LSOAs and the largest number of
neighbours, so Gi* and local Moran on the same weights (and every indicator) share them. A draw
is the start of a random ordering of the LSOAs, drawn as independent uniform integers with the
rare draws that repeat one drawn again (``O(k_max)`` a draw, not ``O(n)``), and LSOA ``i`` takes
its first ``k_i`` entries, skipping itself. For binary or row-standardised weights the simulated
lag is then a prefix sum of the draw, the same for every LSOA with the same number of neighbours
(and weight) except in the few draws that hold the LSOA itself: each such group's simulated
values are sorted once and every LSOA's counts read by binary search, then corrected for those
few draws. The counts are exactly those of comparing every simulated value, in
``O(permutations * (k_max + log permutations))`` instead of ``O(permutations * n)``: with the
4,835 London LSOAs and 9,999 permutations a test takes about 10 ms (no numba needed).

All p-values here are **two-sided**. The permutation p-value is
``min(1, 2 * (min(n_ge, n_le) + 1) / (permutations + 1))`` where ``n_ge`` and ``n_le`` count
simulated statistics at least / at most the observed one; this is twice esda's default
("directed") ``p_sim``, as esda's own deprecation note recommends, and ties count against
significance in both tails (esda counts them only in the upper tail, which makes an LSOA whose
simulated values all tie with the observed one look significant). LSOAs with no neighbour
(islands), and LSOAs whose local Moran statistic is identically zero, get p = 1 and are never
significant.

Multiple testing
----------------
With ``fdr=True`` (the default) significance is decided by the Benjamini-Hochberg procedure
(:func:`fdr_bh`) applied separately at each confidence level, which is how ArcGIS's *Hot Spot
Analysis* applies its False Discovery Rate correction: the critical p-value of each level is
lowered to the largest ``p_(k)`` with ``p_(k) <= alpha * k / m`` (``m`` = LSOAs with at least
one neighbour). Because BH rejections are nested in ``alpha``, an LSOA in the 99% bin is also
significant at 95% and 90%.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from libpysal.weights import W
from scipy import sparse, stats

__all__ = [
    "QUADRANT_LABELS",
    "bh_adjust",
    "fdr_bh",
    "gi_bins",
    "gi_star",
    "local_moran",
]

#: Labels of the local Moran quadrants; "Not significant" when the test does not reject.
QUADRANT_LABELS: tuple[str, ...] = ("High-High", "Low-High", "Low-Low", "High-Low")
NOT_SIGNIFICANT = "Not significant"

# Working-array budget (elements) for the permutation engine; about 8 bytes each.
_MAX_ELEMENTS = 4_000_000


# --------------------------------------------------------------------------------------------
# Multiple testing and bins
# --------------------------------------------------------------------------------------------


def bh_adjust(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values).

    Parameters
    ----------
    p
        p-values; NaN entries are ignored (not counted among the tests) and stay NaN.

    Returns
    -------
    numpy.ndarray
        ``min_{j >= k} m * p_(j) / j`` capped at 1, in the input order; equal to
        ``scipy.stats.false_discovery_control(p, method="bh")`` when there are no NaNs.
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = ~np.isnan(p)
    pv = p[valid]
    m = pv.size
    if m == 0:
        return out
    order = np.argsort(pv, kind="stable")
    scaled = pv[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(adjusted, 1.0)
    out[valid] = res
    return out


def fdr_bh(p: np.ndarray | Sequence[float], alpha: float = 0.05) -> np.ndarray:
    """Benjamini-Hochberg step-up test controlling the false discovery rate at ``alpha``.

    Parameters
    ----------
    p
        p-values; NaN entries are ignored (not counted among the tests) and never rejected.
    alpha
        Target false discovery rate.

    Returns
    -------
    numpy.ndarray
        Boolean mask of rejected nulls: ``p <= p_(k*)`` with ``k*`` the largest ``k`` such that
        ``p_(k) <= alpha * k / m``.
    """
    p = np.asarray(p, dtype=float)
    valid = ~np.isnan(p)
    pv = np.sort(p[valid])
    m = pv.size
    reject = np.zeros(p.shape, dtype=bool)
    if m == 0:
        return reject
    below = np.flatnonzero(pv <= alpha * np.arange(1, m + 1) / m)
    if below.size:
        reject[valid] = p[valid] <= pv[below[-1]]
    return reject


def gi_bins(
    z: np.ndarray | Sequence[float],
    p: np.ndarray | Sequence[float],
    *,
    fdr: bool = True,
    alphas: Sequence[float] = (0.10, 0.05, 0.01),
) -> np.ndarray:
    """ArcGIS-style confidence bins (Gi_Bin): +3/+2/+1 hot, -1/-2/-3 cold, 0 not significant.

    Parameters
    ----------
    z
        z-scores; their sign gives hot (+) or cold (-). NaN gives bin 0.
    p
        Two-sided p-values of the same LSOAs (NaN is never significant).
    fdr
        Decide each level with :func:`fdr_bh` at that level's alpha (ArcGIS's FDR option)
        instead of ``p <= alpha``.
    alphas
        Two-sided significance levels of bins 1, 2, 3 (90%, 95%, 99% confidence), decreasing.

    Returns
    -------
    numpy.ndarray
        Integer bin per LSOA: ``sign(z) * (number of levels at which it is significant)``.
    """
    z = np.asarray(z, dtype=float)
    p = np.asarray(p, dtype=float)
    if z.shape != p.shape:
        raise ValueError("z and p must have the same shape")
    alphas = [float(a) for a in alphas]
    if any(a <= b for a, b in zip(alphas, alphas[1:], strict=False)):
        raise ValueError("alphas must be strictly decreasing (e.g. 0.10, 0.05, 0.01)")
    level = np.zeros(z.shape, dtype=int)
    for a in alphas:
        sig = fdr_bh(p, a) if fdr else p <= a
        level += sig.astype(int)
    sign = np.where(np.isnan(z), 0, np.sign(np.nan_to_num(z))).astype(int)
    return sign * level


# --------------------------------------------------------------------------------------------
# Shared machinery
# --------------------------------------------------------------------------------------------


def _align(y: np.ndarray | pd.Series, w: W) -> tuple[np.ndarray, pd.Index]:
    """Values in ``w.id_order`` (a Series is aligned by its index), checked for NaN."""
    ids = pd.Index(w.id_order, name="lsoa_code")
    if isinstance(y, pd.Series):
        missing = ids.difference(y.index)
        if len(missing):
            raise KeyError(f"{len(missing)} weights ids missing from y, e.g. {list(missing[:3])}")
        if not y.index.is_unique:
            raise ValueError("y index must be unique")
        values = y.reindex(ids).to_numpy(dtype=float)
    else:
        values = np.asarray(y, dtype=float).ravel()
        if values.size != w.n:
            raise ValueError(f"y has {values.size} values but the weights have {w.n} ids")
    if np.isnan(values).any():
        raise ValueError("y contains NaN; fill or drop LSOAs before the hot-spot analysis")
    return values, ids


def _split_diagonal(w: W) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Off-diagonal weights (CSR, explicit zeros removed) and the diagonal, from a copy."""
    a = sparse.csr_matrix(w.sparse, dtype=float, copy=True)
    diag = a.diagonal().copy()
    a.setdiag(0.0)
    a.eliminate_zeros()
    a.sort_indices()
    return a, diag


def _random_orderings(rng: np.random.Generator, n_perm: int, n: int, size: int) -> np.ndarray:
    """``(n_perm, size)`` distinct indices from ``range(n)``: the start of random permutations."""
    keys = rng.random((n_perm, n))
    if size < n:
        part = np.argpartition(keys, size - 1, axis=1)[:, :size]
    else:
        part = np.broadcast_to(np.arange(n), (n_perm, n)).copy()
    order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _has_repeat(rows: np.ndarray) -> np.ndarray:
    """True for each row of a 2-D integer array that holds some value twice."""
    s = np.sort(rows, axis=1)
    return (s[:, 1:] == s[:, :-1]).any(axis=1)


def _permutation_prefixes(rng: np.random.Generator, n_perm: int, n: int, size: int) -> np.ndarray:
    """``(n_perm, size)`` int64: the first ``size`` entries of ``n_perm`` random orderings.

    Each row is distributed as the start of a uniform random permutation of ``range(n)``.
    When ``size`` is small against ``n`` the rows are drawn as independent uniform integers
    and every row holding a repeat is drawn again (rejection sampling: a sequence of independent
    uniform draws, conditioned on being distinct, is uniform over the ordered ``size``-subsets),
    which costs ``O(size)`` a row instead of the ``O(n)`` of sorting random keys, used otherwise.
    The result depends only on the generator's state.
    """
    size = min(size, n)
    # Probability that `size` independent draws are distinct.
    log_accept = float(np.log1p(-np.arange(size) / n).sum())
    if log_accept < np.log(0.25):
        block = max(1, _MAX_ELEMENTS // max(n, 1))
        parts = [
            _random_orderings(rng, min(block, n_perm - s), n, size)
            for s in range(0, n_perm, block)  # blocks of rows bound the memory
        ]
        return np.concatenate(parts) if parts else np.empty((0, size), dtype=np.int64)
    out = rng.integers(0, n, size=(n_perm, size), dtype=np.int64)
    redo = np.flatnonzero(_has_repeat(out))
    while redo.size:  # expected 1 / accept - 1 rounds (accept >= 0.25), each on the rejects
        out[redo] = rng.integers(0, n, size=(redo.size, size), dtype=np.int64)
        redo = redo[_has_repeat(out[redo])]
    return out


def _conditional_pvalues(
    values: np.ndarray,
    offdiag: sparse.csr_matrix,
    *,
    permutations: int,
    seed: int | None,
    force_general: bool = False,
) -> np.ndarray:
    """Two-sided conditional-permutation p-values of the spatial lag ``offdiag @ values``.

    Any local statistic of the form ``a_i + b_i * lag_i`` (Gi*, local Moran with fixed
    ``z_i != 0``) has the same two-sided p-value as its lag. One set of ``permutations``
    draws is shared by every LSOA: draw ``p`` is the start of a random ordering of all LSOAs
    (:func:`_permutation_prefixes`), and LSOA ``i`` with ``k_i`` neighbours takes its first
    ``k_i`` entries, skipping ``i`` (so a uniform ``k_i``-subset of the others), and assigns
    them the row's weights.

    Rows whose weights are all equal (binary, row-standardised) have the simulated lag
    ``w_i * S_p(k_i)`` with ``S_p(k)`` the prefix sum of draw ``p``, unless ``i`` is among its
    own first ``k_i`` entries (then ``S_p(k_i + 1) - y_i``). All the rows with the same
    ``(k_i, w_i)`` therefore share one simulated distribution: it is sorted once and each row's
    counts are read by binary search, then the few (draw, row) pairs that hold ``i`` itself are
    corrected one by one. The counts are exactly those of comparing every simulated value, in
    ``O(permutations * (k_max + log permutations))`` work instead of
    ``O(permutations * n)``. Other rows gather their draws and weights.
    """
    n = values.size
    card = np.diff(offdiag.indptr)
    kmax = int(card.max()) if n else 0
    observed = offdiag @ values
    pvals = np.ones(n)
    if kmax == 0 or permutations <= 0:
        return pvals

    # Rows with equal weights (binary, row-standardised): lag = w_i * (sum of drawn values).
    row_max = np.maximum.reduceat(offdiag.data, offdiag.indptr[:-1][card > 0])
    row_min = np.minimum.reduceat(offdiag.data, offdiag.indptr[:-1][card > 0])
    wconst = np.zeros(n)
    equal = np.zeros(n, dtype=bool)
    equal[card > 0] = np.isclose(row_max, row_min, rtol=1e-12, atol=0.0)
    wconst[card > 0] = row_max
    if force_general:
        equal[:] = False
    fast = np.flatnonzero(equal & (card > 0))
    slow = np.flatnonzero(~equal & (card > 0))

    # Tolerance for ties: sums of the same numbers in another order.
    scale = np.abs(offdiag).sum(axis=1).A1 * np.abs(values).max()
    tol = 1e-9 * scale + 1e-300
    lo = observed - tol
    hi = observed + tol
    n_ge = np.zeros(n, dtype=np.int64)
    n_le = np.zeros(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    size = min(kmax + 1, n)
    draws = _permutation_prefixes(rng, permutations, n, size)  # (permutations, size)
    if fast.size:
        _count_equal_rows(values, draws, card, wconst, fast, lo, hi, n_ge, n_le)
    if slow.size:
        _count_general_rows(values, offdiag, draws, card, slow, lo, hi, n_ge, n_le)

    directed = (np.minimum(n_ge, n_le) + 1) / (permutations + 1)
    pvals = np.minimum(1.0, 2.0 * directed)
    pvals[card == 0] = 1.0
    return pvals


def _count_equal_rows(
    values: np.ndarray,
    draws: np.ndarray,
    card: np.ndarray,
    wconst: np.ndarray,
    rows: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    n_ge: np.ndarray,
    n_le: np.ndarray,
) -> None:
    """Add to ``n_ge`` / ``n_le`` the simulated lags ``>= lo`` / ``<= hi`` of equal-weight rows."""
    n_perm, size = draws.shape
    cum = np.zeros((n_perm, size + 1))
    np.cumsum(values[draws], axis=1, out=cum[:, 1:])
    # One sorted null distribution per (cardinality, weight) group of rows.
    k = card[rows]
    w = wconst[rows]
    order = np.lexsort((w, k))
    rows, k, w = rows[order], k[order], w[order]
    starts = np.flatnonzero(np.r_[True, (k[1:] != k[:-1]) | (w[1:] != w[:-1])])
    for s, e in zip(starts, np.r_[starts[1:], rows.size], strict=True):  # groups, not LSOAs
        sims = np.sort(cum[:, k[s]] * w[s])
        g = rows[s:e]
        n_ge[g] += n_perm - np.searchsorted(sims, lo[g], side="left")
        n_le[g] += np.searchsorted(sims, hi[g], side="right")
    # Draws where row i is among its own first k_i entries: it is skipped and one more taken.
    is_row = np.zeros(card.size, dtype=bool)
    is_row[rows] = True
    position = np.broadcast_to(np.arange(size), draws.shape)
    p, j = np.nonzero(is_row[draws] & (position < card[draws]))
    i = draws[p, j]
    ki = card[i]
    old = cum[p, ki] * wconst[i]
    new = (cum[p, np.minimum(ki + 1, size)] - values[i]) * wconst[i]
    m = card.size
    n_ge += np.bincount(i[new >= lo[i]], minlength=m) - np.bincount(i[old >= lo[i]], minlength=m)
    n_le += np.bincount(i[new <= hi[i]], minlength=m) - np.bincount(i[old <= hi[i]], minlength=m)


def _count_general_rows(
    values: np.ndarray,
    offdiag: sparse.csr_matrix,
    draws: np.ndarray,
    card: np.ndarray,
    rows: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    n_ge: np.ndarray,
    n_le: np.ndarray,
) -> None:
    """Add to ``n_ge`` / ``n_le`` the simulated lags ``>= lo`` / ``<= hi`` of any rows."""
    n_perm, size = draws.shape
    n = card.size
    kmax = int(card[rows].max())
    # Dense, zero-padded weights of the rows.
    wpad = np.zeros((rows.size, kmax))
    cols = np.arange(kmax)
    mask = cols[None, :] < card[rows][:, None]
    wpad[mask] = offdiag.data[(offdiag.indptr[rows][:, None] + cols[None, :])[mask]]
    block = max(1, min(n_perm, _MAX_ELEMENTS // max(n, 1)))
    for start in range(0, n_perm, block):  # blocks of draws bound the memory
        d = draws[start : start + block]
        nb = d.shape[0]
        pos = np.full((nb, n), size, dtype=np.int32)  # position of each LSOA in the draw
        np.put_along_axis(pos, d, np.arange(size, dtype=np.int32)[None, :], axis=1)
        step = max(1, _MAX_ELEMENTS // (nb * kmax))
        perm = np.arange(nb)[:, None, None]
        for c0 in range(0, rows.size, step):
            obs_rows = rows[c0 : c0 + step]
            p_i = pos[:, obs_rows][:, :, None]  # (nb, m, 1)
            idx = cols[None, None, :] + (cols[None, None, :] >= p_i)  # skip i itself
            drawn = values[d[perm, np.minimum(idx, size - 1)]]  # (nb, m, kmax)
            sims = np.einsum("pmk,mk->pm", drawn, wpad[c0 : c0 + step])
            n_ge[obs_rows] += (sims >= lo[obs_rows]).sum(axis=0)
            n_le[obs_rows] += (sims <= hi[obs_rows]).sum(axis=0)


# --------------------------------------------------------------------------------------------
# Getis-Ord Gi*
# --------------------------------------------------------------------------------------------


def gi_star(
    y: np.ndarray | pd.Series,
    w: W,
    *,
    permutations: int = 999,
    seed: int | None = 0,
    fdr: bool = True,
    p_value: Literal["sim", "norm"] = "sim",
    alphas: Sequence[float] = (0.10, 0.05, 0.01),
    self_weight: float = 1.0,
) -> pd.DataFrame:
    """Getis-Ord Gi* hot spots with analytical z, permutation p-values and Gi_Bin.

    Weights are used as given (binary from :func:`~priority_index.spatial_weights.build_weights`)
    with a self-weight added on the diagonal when ``w`` has none, which is ArcGIS's Gi* and
    esda's ``G_Local(star=True, transform="B")``. The z-score is Getis and Ord's (1995) for
    general weights, ``(sum_j w_ij y_j - ybar W_i) / (s sqrt((n S1_i - W_i^2) / (n - 1))``
    with population ``s``; it is unchanged by scaling a row of weights, so row-standardising
    has no effect (as ArcGIS notes) and is not offered. esda's ``transform="R"`` instead uses
    the binary variance formula with the row sum 1 and gives different, smaller z-scores, so
    results match esda with ``transform="B"``.

    Parameters
    ----------
    y
        Indicator per LSOA: a Series indexed by LSOA code (aligned to ``w.id_order``) or an
        array already in ``w.id_order``. No NaN.
    w
        Spatial weights; ids are LSOA codes. Not modified.
    permutations
        Conditional permutations for the pseudo p-value (0 skips them; ``gi_p_sim`` is NaN).
    seed
        Seed of :func:`numpy.random.default_rng` for the permutations.
    fdr
        Benjamini-Hochberg control of the false discovery rate at each confidence level
        (ArcGIS's FDR option) when assigning bins.
    p_value
        p-value used for the bins: ``"sim"`` (two-sided permutation pseudo p-value, default)
        or ``"norm"`` (two-sided normal p-value of the z-score, as ArcGIS).
    alphas
        Two-sided levels of bins 1, 2, 3 (90%, 95%, 99% confidence).
    self_weight
        Diagonal weight added when ``w`` has no self-weights (1 = each LSOA counts in its own
        neighbourhood like a neighbour).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``w.id_order`` (``lsoa_code``), columns: ``gi`` (G*_i: the share of the
        indicator's total in the neighbourhood, esda's ``Gs``), ``gi_z``, ``gi_p_norm``
        (two-sided), ``gi_p_sim`` (two-sided), ``gi_bin`` (int, -3..3) and
        ``gi_n_neighbors`` (neighbours including the LSOA itself, ArcGIS's NNeighbors).
        LSOAs without neighbours get ``gi_z`` NaN, p-values 1 and bin 0.
    """
    if p_value not in ("sim", "norm"):
        raise ValueError("p_value must be 'sim' or 'norm'")
    if p_value == "sim" and permutations <= 0:
        raise ValueError("p_value='sim' needs permutations > 0")
    values, ids = _align(y, w)
    n = values.size
    offdiag, diag = _split_diagonal(w)
    if not diag.any():
        diag = np.full(n, float(self_weight))
    card = np.diff(offdiag.indptr)
    island = card == 0

    total = values.sum()
    ybar = values.mean()
    s = np.sqrt(max((values**2).mean() - ybar**2, 0.0))
    lag_star = offdiag @ values + diag * values
    wi = np.asarray(offdiag.sum(axis=1)).ravel() + diag
    s1 = np.asarray(offdiag.multiply(offdiag).sum(axis=1)).ravel() + diag**2
    with np.errstate(divide="ignore", invalid="ignore"):
        gi = lag_star / total
        z = (lag_star - ybar * wi) / (s * np.sqrt((n * s1 - wi**2) / (n - 1)))
    z[island] = np.nan
    p_norm = np.where(np.isnan(z), 1.0, 2.0 * stats.norm.sf(np.abs(z)))

    if permutations > 0:
        p_sim = _conditional_pvalues(values, offdiag, permutations=permutations, seed=seed)
        if s == 0:
            p_sim[:] = 1.0
    else:
        p_sim = np.full(n, np.nan)
    p_use = p_sim if p_value == "sim" else p_norm
    p_test = np.where(island, np.nan, p_use)  # islands are not among the tests
    bins = gi_bins(z, p_test, fdr=fdr, alphas=alphas)
    return pd.DataFrame(
        {
            "gi": gi,
            "gi_z": z,
            "gi_p_norm": p_norm,
            "gi_p_sim": p_sim,
            "gi_bin": bins.astype(np.int64),
            "gi_n_neighbors": (card + (diag != 0)).astype(np.int64),
        },
        index=ids,
    )


# --------------------------------------------------------------------------------------------
# Local Moran's I
# --------------------------------------------------------------------------------------------


def local_moran(
    y: np.ndarray | pd.Series,
    w: W,
    *,
    permutations: int = 999,
    seed: int | None = 0,
    fdr: bool = True,
    alpha: float = 0.05,
    transform: Literal["R", "B"] = "R",
) -> pd.DataFrame:
    """Local Moran's I (LISA) with cluster/outlier quadrants, as esda's ``Moran_Local``.

    ``I_i = (n - 1) z_i sum_j w_ij z_j / sum_j z_j^2`` with ``z`` the indicator standardised
    by its mean and population standard deviation and ``w`` without self-weights.

    Parameters
    ----------
    y
        Indicator per LSOA: a Series indexed by LSOA code (aligned to ``w.id_order``) or an
        array already in ``w.id_order``. No NaN.
    w
        Spatial weights; ids are LSOA codes. Not modified; any diagonal is ignored.
    permutations
        Conditional permutations for the pseudo p-value (must be positive).
    seed
        Seed of :func:`numpy.random.default_rng` for the permutations.
    fdr
        Decide significance by Benjamini-Hochberg at ``alpha`` instead of ``p <= alpha``.
    alpha
        Significance level (two-sided) for the quadrant labels.
    transform
        ``"R"`` row-standardised weights (esda's default) or ``"B"`` binary.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``w.id_order`` (``lsoa_code``), columns: ``lisa_i`` (esda's ``Is``),
        ``lisa_z`` (analytical z under total randomisation, ``(Is - EI) / sqrt(VI)`` of esda,
        Sokal et al. 1998), ``lisa_p_sim`` (two-sided permutation p-value, used for
        significance), ``lisa_lag`` (spatial lag of the standardised indicator) and
        ``lisa_quadrant`` ("High-High", "Low-High", "Low-Low", "High-Low" or
        "Not significant").
    """
    if transform not in ("R", "B"):
        raise ValueError("transform must be 'R' or 'B'")
    if permutations <= 0:
        raise ValueError("local_moran needs permutations > 0")
    values, ids = _align(y, w)
    n = values.size
    offdiag, _ = _split_diagonal(w)
    card = np.diff(offdiag.indptr)
    if transform == "R":
        rs = np.asarray(offdiag.sum(axis=1)).ravel()
        inv = np.divide(1.0, rs, out=np.zeros(n), where=rs != 0)
        offdiag = sparse.csr_matrix(sparse.diags(inv) @ offdiag)
        offdiag.sort_indices()

    sd = values.std()
    z = (values - values.mean()) / sd if sd > 0 else np.zeros(n)
    lag = offdiag @ z
    den = (z * z).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        li = (n - 1) * z * lag / den
    li = np.nan_to_num(li)

    # Moments under total randomisation (Sokal et al. 1998, eqs. A3-A4), as esda's EI/VI.
    m2 = den / n
    with np.errstate(divide="ignore", invalid="ignore"):
        b2 = ((z**4).sum() / n) / m2**2
        wi = np.asarray(offdiag.sum(axis=1)).ravel()
        wi2 = np.asarray(offdiag.multiply(offdiag).sum(axis=1)).ravel()
        ei = -wi / (n - 1)
        vi = (
            wi2 * (n - b2) / (n - 1)
            + (wi**2 - wi2) * (2 * b2 - n) / ((n - 1) * (n - 2))
            - (wi / (n - 1)) ** 2
        )
        lz = (li - ei) / np.sqrt(vi)
    lz[(card == 0) | ~np.isfinite(lz)] = np.nan

    p_sim = _conditional_pvalues(z, offdiag, permutations=permutations, seed=seed)
    p_sim[(z == 0) | (card == 0)] = 1.0
    p_test = np.where(card == 0, np.nan, p_sim)
    sig = fdr_bh(p_test, alpha) if fdr else p_test <= alpha

    high, lag_high = z > 0, lag > 0
    quad = np.select(
        [high & lag_high, ~high & lag_high, ~high & ~lag_high],
        list(QUADRANT_LABELS[:3]),
        default=QUADRANT_LABELS[3],
    )
    quad = np.where(sig, quad, NOT_SIGNIFICANT)
    return pd.DataFrame(
        {
            "lisa_i": li,
            "lisa_z": lz,
            "lisa_p_sim": p_sim,
            "lisa_lag": lag,
            "lisa_quadrant": quad,
        },
        index=ids,
    )
