"""Uncertainty of the Priority Localities Index: Monte Carlo and drop-one sensitivity.

:func:`monte_carlo` perturbs two things at once, each draw independently:

- **Weights.** With ``weight_distribution="uniform"`` (the default) each configured weight is
  multiplied by an independent factor ``U(1 - s, 1 + s)``, ``s = weight_spread < 1`` (0.25:
  each weight varies by up to +-25%); with ``"lognormal"`` by ``exp(s Z)``, ``Z ~ N(0, 1)``
  (median factor 1, ``s`` the standard deviation of the log weight, any ``s >= 0``; 0.25 gives
  factors of about 0.61-1.64 in 95% of draws). The perturbed weights are then rescaled to sum
  to 1, as the composite does.
- **Crime counts.** Each LSOA x group count ``c`` is replaced by a ``Poisson(c)`` draw (a
  parametric bootstrap of the recorded counts; a zero count stays zero). All count-based
  indicators (harm, harm rates with their empirical-Bayes shrinkage re-estimated per draw,
  counts) are rebuilt from the resampled counts; the other indicators (deprivation, young
  residents, repeat map points, other layers) are held fixed.

The draws are vectorised: counts for a block of draws are resampled as one array and every
indicator, normalisation, score and rank is computed along the LSOA axis for the whole block.
Two independent random streams are spawned from ``seed`` with
``numpy.random.SeedSequence(seed).spawn(2)`` (the first for the weights, the second for the
counts), so the random numbers do not depend on the block size and switching count resampling
off leaves the weight draws unchanged. The same seed and inputs give identical arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from priority_index.composite import (
    _aggregate,
    _check,
    _code_order,
    _geometric_input,
    _normalise_array,
    _rank_desc,
    composite_index,
    resolve_directions,
    resolve_weights,
)
from priority_index.indicators import build_indicators, count_indicator_arrays, indicator_spec

__all__ = [
    "MonteCarloResult",
    "perturb_weights",
    "poisson_counts",
    "top_count",
    "monte_carlo",
    "drop_one_sensitivity",
]

_COUNT_KWARGS = ("violence_groups", "asb_group", "asb_weight", "shrink", "per")


def top_count(n: int, top_fraction: float) -> int:
    """Size of the top set: ``floor(top_fraction * n)``, at least 1 (22 of 229 for 10%)."""
    if not 0 < top_fraction <= 1:
        raise ValueError("top_fraction must be in (0, 1]")
    return max(1, int(np.floor(top_fraction * n + 1e-9)))


def perturb_weights(
    weights: np.ndarray,
    *,
    draws: int,
    spread: float,
    distribution: str = "uniform",
    rng: np.random.Generator,
) -> np.ndarray:
    """Randomly perturbed weights, rescaled to sum to 1 per draw.

    Parameters
    ----------
    weights
        Base weights, shape ``(j,)``, positive.
    draws
        Number of draws.
    spread
        Uniform: half-width of the factor ``U(1 - spread, 1 + spread)`` (must be < 1);
        lognormal: standard deviation of the log factor. 0 returns the base weights
        (normalised) in every draw.
    distribution
        ``"uniform"`` or ``"lognormal"``.
    rng
        Random generator.

    Returns
    -------
    numpy.ndarray
        Shape ``(draws, j)``, rows summing to 1.
    """
    w = np.asarray(weights, dtype=float)
    if spread < 0:
        raise ValueError("spread must be >= 0")
    if distribution == "lognormal":
        factor = np.exp(spread * rng.standard_normal((draws, w.size)))
    elif distribution == "uniform":
        if spread >= 1:
            raise ValueError("uniform spread must be < 1 to keep weights positive")
        factor = rng.uniform(1.0 - spread, 1.0 + spread, size=(draws, w.size))
    else:
        raise ValueError(f"distribution must be 'lognormal' or 'uniform', got {distribution!r}")
    out = w[None, :] * factor
    return out / out.sum(axis=1, keepdims=True)


def poisson_counts(counts: np.ndarray, *, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson resamples of a count array: shape ``(draws, *counts.shape)``, float."""
    lam = np.asarray(counts, dtype=float)
    return rng.poisson(lam, size=(draws, *lam.shape)).astype(float)


@dataclass(frozen=True)
class MonteCarloResult:
    """Output of :func:`monte_carlo`.

    Attributes
    ----------
    summary
        Per LSOA (index ``lsoa_code``): ``base_rank`` (rank without perturbation),
        ``median_rank``, ``rank_p05`` and ``rank_p95`` (5th and 95th percentiles of the rank,
        linear interpolation: a 90% interval), ``p_top_decile`` (share of draws in which the
        LSOA is in the top ``top_fraction``, the top decile by default).
    score_draws
        Scores, shape ``(draws, n_lsoa)``, columns in ``lsoa_codes`` order.
    rank_draws
        Ranks (1 = highest priority, ties by LSOA code), shape ``(draws, n_lsoa)``.
    weight_draws
        Effective weights used, shape ``(draws, n_indicator)``, columns in ``indicators`` order.
    lsoa_codes
        LSOA codes of the columns (the order of the counts index).
    indicators
        Indicators with a positive weight.
    """

    summary: pd.DataFrame
    score_draws: np.ndarray
    rank_draws: np.ndarray
    weight_draws: np.ndarray
    lsoa_codes: pd.Index
    indicators: tuple[str, ...]


def monte_carlo(
    counts: pd.DataFrame,
    harm_weights: Mapping[str, float],
    weights: Mapping[str, float],
    *,
    build_kwargs: Mapping[str, Any] | None = None,
    draws: int = 1000,
    weight_spread: float = 0.25,
    weight_distribution: str = "uniform",
    resample_counts: bool = True,
    seed: int = 0,
    normalisation: str = "zscore",
    aggregation: str = "linear",
    directions: Mapping[str, int] | None = None,
    missing: str = "raise",
    exponential_lambda: float = 23.0,
    geometric_offset: float = 1.0,
    top_fraction: float = 0.1,
    block_size: int | None = None,
) -> MonteCarloResult:
    """Monte Carlo uncertainty of the index ranks over weights and crime counts.

    Parameters
    ----------
    counts, harm_weights
        As for :func:`priority_index.indicators.build_indicators`.
    weights
        Configured index weights (as for :func:`priority_index.composite.composite_index`).
    build_kwargs
        Keyword arguments of ``build_indicators`` (population, deprivation, asb_weight, ...).
    draws
        Number of draws.
    weight_spread, weight_distribution
        Weight perturbation (see :func:`perturb_weights`); spread 0 keeps the weights fixed.
    resample_counts
        Poisson-resample the counts in every draw.
    seed
        Seed of ``numpy.random.default_rng``-style generators; same seed, same arrays.
    normalisation, aggregation, directions, missing, exponential_lambda, geometric_offset
        As for ``composite_index``.
    top_fraction
        Fraction defining the top set of ``p_top_decile`` (see :func:`top_count`).
    block_size
        Draws processed together (memory ~ block_size x LSOAs x groups floats); default: about
        one million counts per block. The random numbers drawn do not depend on it (results
        agree to floating-point rounding of the sums).

    Returns
    -------
    MonteCarloResult
    """
    _check(normalisation, aggregation, missing)
    if draws < 1:
        raise ValueError("draws must be >= 1")
    kwargs = dict(build_kwargs or {})
    base_ind = build_indicators(counts, harm_weights, **kwargs)
    base = composite_index(
        base_ind,
        weights,
        normalisation=normalisation,
        aggregation=aggregation,
        directions=directions,
        missing=missing,
        exponential_lambda=exponential_lambda,
        geometric_offset=geometric_offset,
    )
    effective, *_ = resolve_weights(weights, list(base_ind.columns))
    used = list(effective.index)
    dirs = resolve_directions(used, directions)
    n = len(base_ind)
    tiebreak = _code_order(base_ind.index)

    groups = [str(c) for c in counts.columns]
    arr = counts.apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy(dtype=float)
    pop = None
    if kwargs.get("population") is not None:
        pop = base_ind["population"].to_numpy(dtype=float)
    count_kwargs = {k: kwargs[k] for k in _COUNT_KWARGS if k in kwargs}
    probe_pop = None if pop is None else pop[:1]
    count_based = set(
        count_indicator_arrays(arr[:1], groups, harm_weights, population=probe_pop, **count_kwargs)
    )
    varying = [u for u in used if u in count_based] if resample_counts else []

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        y = _normalise_array(
            x,
            method=normalisation,
            direction=int(dirs[name]),
            missing=missing,
            exponential_lambda=exponential_lambda,
            name=name,
        )
        if aggregation == "geometric":
            y = _geometric_input(y, method=normalisation, offset=geometric_offset)
        return y

    fixed = {u: norm(base_ind[u].to_numpy(dtype=float), u) for u in used if u not in varying}

    seq_w, seq_c = np.random.SeedSequence(seed).spawn(2)
    rng_w, rng_c = np.random.default_rng(seq_w), np.random.default_rng(seq_c)
    weight_draws = perturb_weights(
        effective.to_numpy(),
        draws=draws,
        spread=weight_spread,
        distribution=weight_distribution,
        rng=rng_w,
    )
    score_draws = np.empty((draws, n), dtype=float)
    rank_draws = np.empty((draws, n), dtype=np.int32)
    if block_size is None:
        block_size = max(1, 1_000_000 // max(1, n * max(1, len(groups))))
    for start in range(0, draws, block_size):
        stop = min(draws, start + block_size)
        d = stop - start
        y = np.empty((d, n, len(used)), dtype=float)
        if varying:
            sample = poisson_counts(arr, draws=d, rng=rng_c)
            values = count_indicator_arrays(
                sample, groups, harm_weights, population=pop, names=varying, **count_kwargs
            )
        for j, u in enumerate(used):
            y[:, :, j] = norm(values[u], u) if u in varying else fixed[u][None, :]
        score, _ = _aggregate(y, weight_draws[start:stop], aggregation=aggregation)
        score_draws[start:stop] = score
        rank_draws[start:stop] = _rank_desc(score, tiebreak)

    k = top_count(n, top_fraction)
    p05, p50, p95 = np.percentile(rank_draws, [5, 50, 95], axis=0)
    summary = pd.DataFrame(
        {
            "base_rank": base.rank.to_numpy(),
            "median_rank": p50,
            "rank_p05": p05,
            "rank_p95": p95,
            "p_top_decile": (rank_draws <= k).mean(axis=0),
        },
        index=pd.Index(base_ind.index, name="lsoa_code"),
    )
    return MonteCarloResult(
        summary=summary,
        score_draws=score_draws,
        rank_draws=rank_draws,
        weight_draws=weight_draws,
        lsoa_codes=summary.index,
        indicators=tuple(used),
    )


def drop_one_sensitivity(
    indicators: pd.DataFrame,
    weights: Mapping[str, float],
    *,
    top_n: int | None = None,
    normalisation: str = "zscore",
    aggregation: str = "linear",
    directions: Mapping[str, int] | None = None,
    missing: str = "raise",
    exponential_lambda: float = 23.0,
    geometric_offset: float = 1.0,
) -> pd.DataFrame:
    """One-at-a-time sensitivity: drop each weighted indicator and compare the top-N set.

    The remaining weights are rescaled to sum to 1 (as the composite does).

    Parameters
    ----------
    indicators, weights
        As for :func:`priority_index.composite.composite_index`.
    top_n
        Size of the top set (default: the top decile, ``floor(N / 10)``).
    normalisation, aggregation, directions, missing, exponential_lambda, geometric_offset
        As for ``composite_index``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``dropped`` (each indicator with a positive weight), columns: ``label``,
        ``effective_weight`` (its weight in the full index), ``n_left`` (LSOAs that leave the
        top set), ``n_entered``, ``jaccard`` (|base & new| / |base | new|), ``left`` and
        ``entered`` (LSOA codes, "; "-separated, in order of their base / new rank). When only
        one indicator is weighted, dropping it leaves nothing to rank: that row has NaN.
    """
    opts = dict(
        normalisation=normalisation,
        aggregation=aggregation,
        directions=directions,
        missing=missing,
        exponential_lambda=exponential_lambda,
        geometric_offset=geometric_offset,
    )
    base = composite_index(indicators, weights, **opts)
    k = top_count(len(indicators), 0.1) if top_n is None else int(top_n)
    base_rank = base.rank
    base_top = set(base_rank.index[base_rank.to_numpy() <= k])
    rows = []
    for name, w in base.effective_weights.items():
        try:
            label = indicator_spec(str(name)).label
        except KeyError:
            label = str(name)
        reduced = {key: val for key, val in weights.items() if key != name}
        row: dict[str, Any] = {"dropped": name, "label": label, "effective_weight": float(w)}
        if len(base.effective_weights) == 1:
            row.update(n_left=np.nan, n_entered=np.nan, jaccard=np.nan, left="", entered="")
            rows.append(row)
            continue
        new_rank = composite_index(indicators, reduced, **opts).rank
        new_top = set(new_rank.index[new_rank.to_numpy() <= k])
        left = sorted(base_top - new_top, key=lambda c: base_rank[c])
        entered = sorted(new_top - base_top, key=lambda c: new_rank[c])
        union = base_top | new_top
        row.update(
            n_left=len(left),
            n_entered=len(entered),
            jaccard=len(base_top & new_top) / len(union) if union else 1.0,
            left="; ".join(map(str, left)),
            entered="; ".join(map(str, entered)),
        )
        rows.append(row)
    return pd.DataFrame(rows).set_index("dropped")
