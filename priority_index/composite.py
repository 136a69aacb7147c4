"""The composite Priority Localities Index: normalisation, weighting and aggregation.

Each indicator is first oriented (multiplied by its direction, +1 when a higher value means more
priority) and normalised by one of:

``zscore``
    ``(x - mean) / sd`` with the population standard deviation (ddof = 0: the LSOAs of the
    borough are the whole population, not a sample). A constant column becomes 0.
``minmax``
    ``(x - min) / (max - min)`` in [0, 1]. A constant column becomes 0.
``rank``
    Percentile rank ``R = rank / N`` in (0, 1]: 1 for the highest-priority LSOA, ``1/N`` for
    the lowest; ties share their average rank.
``exponential``
    The Indices of Deprivation's exponential transformation of the percentile rank,
    ``X = -23 ln(1 - R (1 - exp(-100 / 23)))``, which maps ``R`` in (0, 1] onto (0, 100] and
    stretches the most deprived (highest-priority) end, so that a high value on one domain is
    only partly cancelled by low values on others.

Weights come from configuration in any scale; the effective weights are the weights of the
indicators used, divided by their sum. Aggregation is ``linear`` (``sum w_j y_j``) or
``geometric`` (``prod y_j ** w_j``). Geometric aggregation needs positive values: ``rank`` and
``exponential`` values are positive already and used as they are; ``zscore`` and ``minmax``
values are shifted per indicator to ``y - min(y) + geometric_offset`` (default offset 1, so the
lowest LSOA on each indicator has 1). For geometric aggregation the contributions are
``w_j ln(y_j)``, which sum to ``ln(score)``.

With the IoD domain scores, the IoD weights and ``normalisation="exponential"``,
:func:`composite_index` reproduces the English Index of Multiple Deprivation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from priority_index.indicators import indicator_spec

__all__ = [
    "NORMALISATIONS",
    "AGGREGATIONS",
    "CompositeResult",
    "resolve_weights",
    "resolve_directions",
    "normalise",
    "composite_index",
    "rank_scores",
    "deciles",
    "top_drivers",
]

NORMALISATIONS: tuple[str, ...] = ("zscore", "minmax", "rank", "exponential")
AGGREGATIONS: tuple[str, ...] = ("linear", "geometric")
_MISSING = ("raise", "neutral")


# --------------------------------------------------------------------------------------------
# Array engine (shared with the Monte Carlo; operates along the last axis = LSOAs)
# --------------------------------------------------------------------------------------------


def _check(normalisation: str, aggregation: str, missing: str) -> None:
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if missing not in _MISSING:
        raise ValueError(f"missing must be one of {_MISSING}, got {missing!r}")


def _percentile_rank(x: np.ndarray) -> np.ndarray:
    """Average rank / number of valid values along the last axis; NaN stays NaN."""
    valid = np.isfinite(x)
    filled = np.where(valid, x, np.inf)
    ranks = rankdata(filled, method="average", axis=-1)
    n_valid = valid.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, ranks / n_valid, np.nan)


def _normalise_array(
    x: np.ndarray,
    *,
    method: str,
    direction: int,
    missing: str,
    exponential_lambda: float,
    name: str = "indicator",
) -> np.ndarray:
    """Orient and normalise along the last axis; missing values handled per ``missing``."""
    v = np.asarray(x, dtype=float) * float(direction)
    valid = np.isfinite(v)
    if not valid.all():
        if missing == "raise":
            raise ValueError(
                f"{name}: {int((~valid).sum())} missing value(s); fill them or pass "
                "missing='neutral'"
            )
        if not valid.any(axis=-1).all():
            raise ValueError(f"{name}: no valid values")
    v = np.where(valid, v, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "zscore":
            mean = np.nanmean(v, axis=-1, keepdims=True)
            sd = np.nanstd(v, axis=-1, keepdims=True)
            y = np.where(sd > 0, (v - mean) / np.where(sd > 0, sd, 1.0), 0.0)
        elif method == "minmax":
            lo = np.nanmin(v, axis=-1, keepdims=True)
            span = np.nanmax(v, axis=-1, keepdims=True) - lo
            y = np.where(span > 0, (v - lo) / np.where(span > 0, span, 1.0), 0.0)
        else:
            y = _percentile_rank(v)
            if method == "exponential":
                lam = float(exponential_lambda)
                y = -lam * np.log1p(-y * (1.0 - np.exp(-100.0 / lam)))
    if not valid.all():  # neutral: the indicator's mean normalised value
        y = np.where(valid, y, np.nanmean(np.where(valid, y, np.nan), axis=-1, keepdims=True))
    return y


def _geometric_input(y: np.ndarray, *, method: str, offset: float) -> np.ndarray:
    """Positive values for geometric aggregation (see the module docstring)."""
    if method in ("zscore", "minmax"):
        return y - y.min(axis=-1, keepdims=True) + float(offset)
    return y


def _aggregate(y: np.ndarray, w: np.ndarray, *, aggregation: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores and contributions from normalised ``y (..., n, j)`` and weights ``w (..., j)``."""
    w = np.asarray(w, dtype=float)[..., None, :]
    if aggregation == "linear":
        contrib = y * w
        return contrib.sum(axis=-1), contrib
    if (y <= 0).any():
        raise ValueError("geometric aggregation needs positive normalised values")
    contrib = np.log(y) * w
    return np.exp(contrib.sum(axis=-1)), contrib


def _rank_desc(score: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, 1 = highest score, ties by ``tiebreak`` ascending."""
    score = np.asarray(score, dtype=float)
    tb = np.broadcast_to(tiebreak, score.shape)
    order = np.lexsort((tb, -score), axis=-1)
    ranks = np.empty(score.shape, dtype=np.int64)
    seq = np.broadcast_to(np.arange(1, score.shape[-1] + 1), score.shape)
    np.put_along_axis(ranks, order, seq, axis=-1)
    return ranks


def _code_order(index: pd.Index) -> np.ndarray:
    """Position of each code in sorted code order (tie-breaker for ranks)."""
    order = np.argsort(np.asarray(index.astype(str), dtype=object), kind="stable")
    pos = np.empty(len(index), dtype=np.int64)
    pos[order] = np.arange(len(index))
    return pos


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def resolve_weights(
    weights: Mapping[str, float], available: Sequence[str]
) -> tuple[pd.Series, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Effective weights of the indicators used.

    Parameters
    ----------
    weights
        Configured weights (any positive scale; they need not sum to 100).
    available
        Indicator names present.

    Returns
    -------
    effective : pandas.Series
        Weights of the indicators used (present, weight > 0), in ``available`` order, divided by
        their sum.
    zero_weight : tuple
        Indicators present whose configured weight is 0.
    absent : tuple
        Indicators with a positive weight that are not present.
    unweighted : tuple
        Indicators present that have no configured weight.
    """
    bad = {k: v for k, v in weights.items() if not np.isfinite(v) or v < 0}
    if bad:
        raise ValueError(f"weights must be finite and >= 0: {bad}")
    avail = list(available)
    used = [a for a in avail if weights.get(a, 0.0) > 0]
    if not used:
        raise ValueError("no indicator with a positive weight is present")
    raw = pd.Series([float(weights[a]) for a in used], index=pd.Index(used, name="indicator"))
    effective = (raw / raw.sum()).rename("effective_weight")
    zero = tuple(a for a in avail if a in weights and weights[a] == 0)
    absent = tuple(k for k, v in weights.items() if v > 0 and k not in set(avail))
    unweighted = tuple(a for a in avail if a not in weights)
    return effective, zero, absent, unweighted


def resolve_directions(
    names: Sequence[str], directions: Mapping[str, int] | None = None
) -> pd.Series:
    """Direction of each indicator: ``directions`` first, then the catalogue, else +1.

    Parameters
    ----------
    names
        Indicator names.
    directions
        Overrides (+1 higher = more priority, -1 lower = more priority).

    Returns
    -------
    pandas.Series
        Integer directions indexed by name.
    """
    out = []
    for n in names:
        if directions is not None and n in directions:
            d = int(directions[n])
        else:
            try:
                d = indicator_spec(n).direction
            except KeyError:
                d = 1
        if d not in (1, -1):
            raise ValueError(f"direction of {n!r} must be +1 or -1, got {d}")
        out.append(d)
    return pd.Series(out, index=pd.Index(list(names), name="indicator"), name="direction")


def normalise(
    indicators: pd.DataFrame,
    *,
    method: str = "zscore",
    directions: Mapping[str, int] | None = None,
    missing: str = "raise",
    exponential_lambda: float = 23.0,
) -> pd.DataFrame:
    """Orient and normalise each indicator column (see the module docstring).

    Parameters
    ----------
    indicators
        One row per LSOA, one column per indicator.
    method
        ``"zscore"``, ``"minmax"``, ``"rank"`` or ``"exponential"``.
    directions
        Direction overrides (see :func:`resolve_directions`).
    missing
        ``"raise"`` on missing values, or ``"neutral"``: a missing value takes the indicator's
        mean normalised value (0 for z-scores).
    exponential_lambda
        Constant of the exponential transformation (23 in the IoD).

    Returns
    -------
    pandas.DataFrame
        Normalised values, same shape and labels; higher = more priority.
    """
    _check(method, "linear", missing)
    dirs = resolve_directions(list(indicators.columns), directions)
    out = {}
    for col in indicators.columns:
        x = pd.to_numeric(indicators[col], errors="coerce").to_numpy(dtype=float)
        out[col] = _normalise_array(
            x,
            method=method,
            direction=int(dirs[col]),
            missing=missing,
            exponential_lambda=exponential_lambda,
            name=str(col),
        )
    return pd.DataFrame(out, index=indicators.index, columns=indicators.columns)


def rank_scores(score: pd.Series) -> pd.Series:
    """Rank 1 = highest score; ties broken by LSOA code (ascending) for determinism.

    Parameters
    ----------
    score
        Scores indexed by LSOA code.

    Returns
    -------
    pandas.Series
        Integer ranks 1..N named ``rank``.
    """
    ranks = _rank_desc(score.to_numpy(dtype=float), _code_order(score.index))
    return pd.Series(ranks, index=score.index, name="rank")


def deciles(rank: pd.Series | np.ndarray, n: int | None = None) -> np.ndarray:
    """Decile from rank: 1 = the top 10% (highest priority) ... 10.

    ``decile = ceil(10 rank / N)``, so decile 1 holds ranks ``1 .. floor(N / 10)`` (and the
    rank at exactly N/10), as the IoD assigns its deciles.

    Parameters
    ----------
    rank
        Ranks 1..N.
    n
        Number of ranked areas (default: the length of ``rank``, last axis).

    Returns
    -------
    numpy.ndarray
        Integer deciles.
    """
    r = np.asarray(rank, dtype=np.int64)
    n = r.shape[-1] if n is None else int(n)
    return (r * 10 - 1) // n + 1


@dataclass(frozen=True)
class CompositeResult:
    """Output of :func:`composite_index`.

    Attributes
    ----------
    normalised
        Normalised, oriented indicator values used (columns = effective weights' index).
    score
        Composite score per LSOA (higher = more priority).
    rank
        1 = highest priority; ties by LSOA code.
    decile
        1 = top 10% ... 10.
    contributions
        Weight x normalised value per indicator (geometric: weight x ln value); the row sums
        equal the score (geometric: ln score).
    effective_weights
        Weights of the indicators used, summing to 1.
    directions
        Direction applied to each indicator used.
    zero_weight, absent, unweighted
        Indicators present with weight 0; weighted but not present; present without a weight.
    normalisation, aggregation
        Methods used.
    """

    normalised: pd.DataFrame
    score: pd.Series
    rank: pd.Series
    decile: pd.Series
    contributions: pd.DataFrame
    effective_weights: pd.Series
    directions: pd.Series
    zero_weight: tuple[str, ...]
    absent: tuple[str, ...]
    unweighted: tuple[str, ...]
    normalisation: str
    aggregation: str

    def to_frame(self, *, n_drivers: int = 3) -> pd.DataFrame:
        """``score``, ``rank``, ``decile`` and ``top_drivers`` per LSOA."""
        return pd.DataFrame(
            {
                "score": self.score,
                "rank": self.rank,
                "decile": self.decile,
                "top_drivers": top_drivers(self.contributions, n=n_drivers),
            }
        )


def composite_index(
    indicators: pd.DataFrame,
    weights: Mapping[str, float],
    *,
    normalisation: str = "zscore",
    aggregation: str = "linear",
    directions: Mapping[str, int] | None = None,
    missing: str = "raise",
    exponential_lambda: float = 23.0,
    geometric_offset: float = 1.0,
) -> CompositeResult:
    """Composite Priority Localities Index.

    Parameters
    ----------
    indicators
        One row per LSOA (index ``lsoa_code``), one column per indicator.
    weights
        Configured weights; only indicators present with a positive weight are used and the
        weights are rescaled to sum to 1.
    normalisation
        ``"zscore"``, ``"minmax"``, ``"rank"`` or ``"exponential"`` (see module docstring).
    aggregation
        ``"linear"`` or ``"geometric"``.
    directions
        Direction overrides; the default comes from the indicator catalogue (else +1).
    missing
        ``"raise"`` or ``"neutral"`` (see :func:`normalise`).
    exponential_lambda
        Constant of the exponential transformation.
    geometric_offset
        Value given to each indicator's lowest LSOA when z-score or min-max values are shifted
        for geometric aggregation.

    Returns
    -------
    CompositeResult
    """
    _check(normalisation, aggregation, missing)
    if indicators.index.has_duplicates:
        raise ValueError("indicators index has duplicate LSOA codes")
    effective, zero, absent, unweighted = resolve_weights(weights, list(indicators.columns))
    used = list(effective.index)
    dirs = resolve_directions(used, directions)
    normalised = normalise(
        indicators[used],
        method=normalisation,
        directions=dirs.to_dict(),
        missing=missing,
        exponential_lambda=exponential_lambda,
    )
    y = normalised.to_numpy(dtype=float)
    if aggregation == "geometric":
        y = _geometric_input(y.T, method=normalisation, offset=geometric_offset).T
    score_arr, contrib_arr = _aggregate(y, effective.to_numpy(), aggregation=aggregation)
    index = pd.Index(indicators.index, name=indicators.index.name or "lsoa_code")
    normalised.index = index
    score = pd.Series(score_arr, index=index, name="score")
    rank = rank_scores(score)
    decile = pd.Series(deciles(rank.to_numpy()), index=index, name="decile")
    contributions = pd.DataFrame(contrib_arr, index=index, columns=used)
    return CompositeResult(
        normalised=normalised,
        score=score,
        rank=rank,
        decile=decile,
        contributions=contributions,
        effective_weights=effective,
        directions=dirs,
        zero_weight=zero,
        absent=absent,
        unweighted=unweighted,
        normalisation=normalisation,
        aggregation=aggregation,
    )


def top_drivers(
    contributions: pd.DataFrame,
    n: int = 3,
    *,
    labels: Mapping[str, str] | None = None,
) -> pd.Series:
    """Readable main drivers of each LSOA's score, e.g. ``"Violence harm 41%, Income ... 22%"``.

    Each driver's share is its contribution divided by the sum of the LSOA's positive
    contributions (those pushing the score up); only positive contributions are listed, largest
    first (ties in column order), percentages rounded to whole numbers.

    Parameters
    ----------
    contributions
        Per-LSOA contributions (:attr:`CompositeResult.contributions`).
    n
        Number of drivers listed.
    labels
        Indicator labels; default from the indicator catalogue, else the column name.

    Returns
    -------
    pandas.Series
        Strings named ``top_drivers`` (empty when no contribution is positive).
    """
    cols = list(contributions.columns)
    names = []
    for c in cols:
        if labels is not None and c in labels:
            names.append(labels[c])
            continue
        try:
            names.append(indicator_spec(c).label)
        except KeyError:
            names.append(str(c))
    c = contributions.to_numpy(dtype=float)
    pos = np.where(c > 0, c, 0.0)
    total = pos.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, pos / np.where(total > 0, total, 1.0), 0.0)
    order = np.argsort(-share, axis=1, kind="stable")[:, :n]
    top_share = np.take_along_axis(share, order, axis=1)
    pct = np.rint(top_share * 100).astype(int)
    out = []
    for row_order, row_share, row_pct in zip(order, top_share, pct, strict=True):
        parts = [
            f"{names[j]} {p}%"
            for j, s, p in zip(row_order, row_share, row_pct, strict=True)
            if s > 0
        ]
        out.append(", ".join(parts))
    return pd.Series(out, index=contributions.index, name="top_drivers", dtype="string")
