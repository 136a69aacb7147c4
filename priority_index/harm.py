"""Crime harm: Cambridge Crime Harm Index weights, harm by group and period, concentration.

The Cambridge Crime Harm Index (CCHI; Sherman, Neyroud & Neyroud 2016) weights each offence by
the days of custody a first-time offender would receive at the starting point of the Sentencing
Council guideline. The area tables this package reads (police.uk, the Metropolitan Police's LSOA
tables) give only broad crime groups, so the default weights are *average* days per recorded
offence of each group, calibrated from the Safer Croydon Partnership's published CCHI totals and
the Met's Croydon counts (see ``data/CCHI_DERIVATION.md`` and
``examples/calibrate_cchi.py``). A partnership with its own offence-level CCHI totals can pass
its own table to :func:`harm_weights`.

Anti-social behaviour is not a crime and has no CCHI value: its weight is a configuration choice
(``asb_weight``), never part of the calibrated table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from priority_index.crime_groups import GROUP_LABELS

__all__ = [
    "TOTAL_LABEL",
    "Concentration",
    "calibrate_days_per_offence",
    "concentration",
    "concentration_summary",
    "default_harm_weights",
    "harm_table",
    "harm_weights",
]

#: Label of the all-crime row of :func:`harm_table` (the Strategic Assessment's wording).
TOTAL_LABEL = "Total Notifiable Offences"

#: ``crime_group`` value of that row.
TOTAL_GROUP = "total_notifiable"

_TABLE_COLUMNS = ("crime_group", "label", "days", "days_2019", "days_2020", "source")


def default_harm_weights() -> pd.DataFrame:
    """Return the packaged CCHI table: average days of custody per offence of each group.

    Returns
    -------
    pandas.DataFrame
        One row per canonical crime group (:data:`priority_index.crime_groups.GROUP_LABELS`
        order) with columns ``crime_group``, ``label``, ``days`` (the weight used),
        ``days_2019`` and ``days_2020`` (the same calibration on each year alone, to show its
        stability; empty where not defined) and ``source`` (how the row was obtained). The
        ``asb`` row carries 0: anti-social behaviour has no CCHI and its weight comes from
        configuration.
    """
    path = resources.files("priority_index") / "data" / "cchi_groups.csv"
    with path.open("r", encoding="utf-8") as fh:
        table = pd.read_csv(
            fh,
            dtype={"crime_group": "string", "label": "string", "source": "string"},
        )
    missing = [c for c in _TABLE_COLUMNS if c not in table.columns]
    if missing:  # pragma: no cover - guards the shipped file
        raise ValueError(f"packaged cchi_groups.csv lacks columns {missing}")
    return table.loc[:, list(_TABLE_COLUMNS)]


def harm_weights(
    table: pd.DataFrame | None = None,
    *,
    asb_weight: float = 0.0,
) -> dict[str, float]:
    """Return ``{crime group: days per offence}`` for every canonical group.

    Parameters
    ----------
    table
        A user's own weights overriding rows of the packaged table: columns ``crime_group``
        (canonical ids) and ``days`` (non-negative, finite); other columns are ignored. Groups
        it leaves out keep their packaged value. It may not carry ``asb``: use ``asb_weight``.
    asb_weight
        Harm given to one anti-social behaviour incident, in the same unit (days). ASB has no
        CCHI value; 0 leaves ASB out of harm.

    Returns
    -------
    dict
        Keys in :data:`GROUP_LABELS` order, including ``asb``.

    Raises
    ------
    ValueError
        Missing columns, an unknown or repeated group (named), a negative or non-finite weight,
        or an ``asb`` row in ``table``.
    """
    if not np.isfinite(asb_weight) or asb_weight < 0:
        raise ValueError(f"asb_weight must be a finite number >= 0, got {asb_weight!r}")
    default = default_harm_weights()
    weights = dict(zip(default["crime_group"], default["days"].astype(float), strict=True))
    if table is not None:
        missing = [c for c in ("crime_group", "days") if c not in table.columns]
        if missing:
            raise ValueError(f"harm weights table lacks column(s) {missing}")
        groups = table["crime_group"].astype(str)
        unknown = sorted(set(groups) - set(GROUP_LABELS))
        if unknown:
            raise ValueError(
                f"unknown crime group(s) {unknown} in harm weights table; "
                f"expected some of {list(GROUP_LABELS)}"
            )
        repeated = sorted(groups[groups.duplicated()].unique())
        if repeated:
            raise ValueError(f"crime group(s) {repeated} appear more than once")
        if (groups == "asb").any():
            raise ValueError("ASB has no CCHI value: set it with asb_weight, not in the table")
        days = pd.to_numeric(table["days"], errors="coerce").astype(float)
        bad = groups[~np.isfinite(days.to_numpy()) | (days.to_numpy() < 0)]
        if not bad.empty:
            raise ValueError(f"days must be finite and >= 0; bad for {sorted(bad)}")
        weights.update(zip(groups, days.to_numpy(), strict=True))
    weights["asb"] = float(asb_weight)
    return {g: float(weights[g]) for g in GROUP_LABELS}


def calibrate_days_per_offence(
    published: pd.DataFrame,
    counts: pd.DataFrame,
    *,
    periods: Sequence[str],
) -> pd.DataFrame:
    """Average harm per recorded offence of each group: published harm over counted offences.

    Parameters
    ----------
    published
        Long table of published harm for one area: columns ``crime_group``, ``period``,
        ``harm`` (days).
    counts
        Long table of recorded offences for the same area: columns ``crime_group``,
        ``period``, ``count`` (already summed over the area's units).
    periods
        The periods to calibrate on (compared as strings).

    Returns
    -------
    pandas.DataFrame
        One row per group of ``published``: ``crime_group``, ``harm`` and ``count`` summed over
        ``periods``, ``days`` = pooled harm / pooled count (the count-weighted mean of the
        per-period values), and ``days_<period>`` for each period alone. Days are NaN where
        the count is zero (for example sexual offences, not published at LSOA level).
    """
    periods = [str(p) for p in periods]
    pub = published.assign(
        period=published["period"].astype(str), harm=published["harm"].astype(float)
    )
    cnt = counts.assign(period=counts["period"].astype(str), count=counts["count"].astype(float))
    pub = pub[pub["period"].isin(periods)]
    cnt = cnt[cnt["period"].isin(periods)]
    harm = pub.pivot_table(
        index="crime_group", columns="period", values="harm", aggfunc="sum", fill_value=0.0
    ).reindex(columns=periods, fill_value=0.0)
    n = (
        cnt.pivot_table(
            index="crime_group", columns="period", values="count", aggfunc="sum", fill_value=0.0
        )
        .reindex(index=harm.index, columns=periods, fill_value=0.0)
        .astype(float)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        per_period = harm.to_numpy(float) / n.to_numpy()
        pooled = harm.sum(axis=1).to_numpy(float) / n.sum(axis=1).to_numpy()
    out = pd.DataFrame(
        {
            "crime_group": harm.index.astype(str),
            "harm": harm.sum(axis=1).to_numpy(float),
            "count": n.sum(axis=1).to_numpy(),
            "days": np.where(np.isfinite(pooled), pooled, np.nan),
        }
    )
    for j, p in enumerate(periods):
        col = per_period[:, j]
        out[f"days_{p}"] = np.where(np.isfinite(col), col, np.nan)
    order = {g: i for i, g in enumerate(GROUP_LABELS)}
    out = out.sort_values("crime_group", key=lambda s: s.map(order).fillna(len(order)))
    return out.reset_index(drop=True)


def harm_table(
    counts: pd.DataFrame,
    weights: Mapping[str, float],
    *,
    periods: Sequence[str],
    labels: Mapping[str, str] = GROUP_LABELS,
) -> pd.DataFrame:
    """Harm by crime group and period, laid out like the Strategic Assessment's table.

    Parameters
    ----------
    counts
        Long counts: columns ``lsoa_code``, ``crime_group``, ``period``, ``count``. Periods
        are compared as strings; rows of other periods are ignored.
    weights
        Days per offence of each group (for example from :func:`harm_weights`); every group in
        ``counts`` needs one.
    periods
        Two or more periods, in order; change columns compare the first with the last.
    labels
        Crime group -> the label shown in ``Crime Type``.

    Returns
    -------
    pandas.DataFrame
        One row per crime group present in ``counts`` (in ``labels`` order), then the
        ``Total Notifiable Offences`` row (all groups except ``asb``), then an ``asb`` row when
        ASB is present (shown apart because it is not a notifiable offence). Columns:
        ``crime_group``, ``Crime Type``, one harm column per period (named by the period),
        ``+/-`` (last minus first), ``% +/-`` (100 x change / first; NaN when first is 0),
        and ``Offences <period>`` with the counts.

    Raises
    ------
    ValueError
        Fewer than two or repeated periods, a period absent from ``counts``, missing columns,
        negative counts, or groups without a weight (named).
    """
    periods = [str(p) for p in periods]
    if len(periods) < 2 or len(set(periods)) != len(periods):
        raise ValueError(f"periods must be two or more distinct values, got {periods}")
    missing = [c for c in ("lsoa_code", "crime_group", "period", "count") if c not in counts]
    if missing:
        raise ValueError(f"counts lacks column(s) {missing}")
    data = counts.assign(period=counts["period"].astype(str))
    absent = [p for p in periods if p not in set(data["period"])]
    if absent:
        raise ValueError(f"period(s) {absent} not found in counts")
    data = data[data["period"].isin(periods)]
    values = pd.to_numeric(data["count"], errors="coerce")
    if values.isna().any() or (values < 0).any():
        raise ValueError("counts must be numbers >= 0")
    groups = list(dict.fromkeys(data["crime_group"].astype(str)))
    unweighted = sorted(g for g in groups if g not in weights)
    if unweighted:
        raise ValueError(f"no harm weight for crime group(s) {unweighted}")

    n = (
        data.assign(count=values.astype(float))
        .pivot_table(
            index="crime_group", columns="period", values="count", aggfunc="sum", fill_value=0.0
        )
        .reindex(columns=periods, fill_value=0.0)
    )
    order = {g: i for i, g in enumerate(labels)}
    n = n.loc[sorted(n.index, key=lambda g: (order.get(g, len(order)), g))]
    w = np.array([float(weights[g]) for g in n.index])
    harm = n.mul(w, axis=0)

    crime = [g for g in n.index if g != "asb"]
    total_h = harm.loc[crime].sum(axis=0)
    total_n = n.loc[crime].sum(axis=0)
    rows_h = [harm.loc[crime], total_h.to_frame(TOTAL_GROUP).T]
    rows_n = [n.loc[crime], total_n.to_frame(TOTAL_GROUP).T]
    if "asb" in n.index:
        rows_h.append(harm.loc[["asb"]])
        rows_n.append(n.loc[["asb"]])
    h = pd.concat(rows_h)
    c = pd.concat(rows_n)

    names = [TOTAL_LABEL if g == TOTAL_GROUP else labels.get(g, g) for g in h.index]
    out = pd.DataFrame({"crime_group": list(h.index), "Crime Type": names})
    for p in periods:
        out[p] = h[p].to_numpy(float)
    first, last = h[periods[0]].to_numpy(float), h[periods[-1]].to_numpy(float)
    out["+/-"] = last - first
    with np.errstate(divide="ignore", invalid="ignore"):
        out["% +/-"] = np.where(first > 0, 100.0 * (last - first) / first, np.nan)
    for p in periods:
        out[f"Offences {p}"] = c[p].to_numpy(float)
    return out


@dataclass(frozen=True)
class Concentration:
    """How unequally a total is spread over units (LSOAs, people, places).

    Attributes
    ----------
    x
        Cumulative share of units, ``0, 1/n, ..., 1``, with units sorted by value
        **descending** (the highest first): a concentration curve rather than the classic
        ascending Lorenz curve, so ``(x, y)`` reads "the top x of units hold y of the total".
        The classic Lorenz curve is ``(1 - x[::-1], 1 - y[::-1])``; both give the same Gini.
    y
        Cumulative share of the total held by those units (``0`` to ``1``).
    gini
        Population Gini coefficient, ``sum_i sum_j |v_i - v_j| / (2 n^2 mean)``, equal to
        ``2 * area under (x, y) - 1``: 0 when every unit holds the same, ``(n - 1) / n`` when
        one unit holds everything (no small-sample ``n / (n - 1)`` correction).
    n
        Number of units.
    total
        Sum of the values.
    """

    x: np.ndarray
    y: np.ndarray
    gini: float
    n: int
    total: float

    def share_of_units_for(self, fraction: float = 0.5) -> float:
        """Smallest share of units that together hold at least ``fraction`` of the total.

        Units are whole (no interpolation inside a unit): the answer is ``k / n`` for the
        smallest ``k`` such that the ``k`` highest units hold ``fraction`` or more.

        Parameters
        ----------
        fraction
            Share of the total, in ``(0, 1]``.

        Returns
        -------
        float
            Share of units, in ``(0, 1]``.
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        k = int(np.searchsorted(self.y[1:], fraction - 1e-12, side="left")) + 1
        return min(k, self.n) / self.n


def concentration(values: ArrayLike) -> Concentration:
    """Concentration curve and Gini coefficient of non-negative values, one per unit.

    Parameters
    ----------
    values
        One non-negative, finite value per unit (harm, counts ...).

    Returns
    -------
    Concentration
        See :class:`Concentration` for the curve's orientation and the Gini definition.

    Raises
    ------
    ValueError
        Empty input, negative or non-finite values, or a zero total.

    Examples
    --------
    >>> c = concentration([0, 0, 0, 10])
    >>> c.gini, c.share_of_units_for(0.5)
    (0.75, 0.25)
    """
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("no values")
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError("values must be finite and >= 0")
    total = float(v.sum())
    if total <= 0:
        raise ValueError("values sum to zero: concentration is undefined")
    n = v.size
    desc = np.sort(v)[::-1]
    y = np.concatenate([[0.0], np.cumsum(desc) / total])
    y[-1] = 1.0
    x = np.arange(n + 1, dtype=float) / n
    asc = desc[::-1]
    ranks = np.arange(1, n + 1, dtype=float)
    gini = float(2.0 * np.sum(ranks * asc) / (n * total) - (n + 1) / n)
    return Concentration(x=x, y=y, gini=gini, n=n, total=total)


def concentration_summary(per_unit: pd.DataFrame) -> pd.DataFrame:
    """Compare how concentrated harm is with how concentrated counts are.

    Parameters
    ----------
    per_unit
        One row per unit: ``unit_label`` (the unit's identifier, e.g. an LSOA code),
        ``harm`` and ``count`` (non-negative).

    Returns
    -------
    pandas.DataFrame
        Two rows, ``measure`` = ``"harm"`` then ``"count"``, with ``units`` (n), ``total``,
        ``gini``, ``share_of_units_for_half`` (smallest share of units holding 50% of the
        total), ``units_for_half`` (how many units that is), ``top_unit`` and
        ``top_unit_share`` (the unit with the most and its share; first in input order on
        ties), and ``harm_concentrates_more`` (same on both rows: harm's Gini is above the
        count's).
    """
    missing = [c for c in ("unit_label", "harm", "count") if c not in per_unit]
    if missing:
        raise ValueError(f"per_unit lacks column(s) {missing}")
    labels = per_unit["unit_label"].astype(str)
    if labels.duplicated().any():
        raise ValueError(f"repeated unit_label(s): {sorted(labels[labels.duplicated()])}")
    rows = []
    for measure in ("harm", "count"):
        v = pd.to_numeric(per_unit[measure], errors="coerce").to_numpy(float)
        c = concentration(v)
        share = c.share_of_units_for(0.5)
        top = int(np.argmax(v))
        rows.append(
            {
                "measure": measure,
                "units": c.n,
                "total": c.total,
                "gini": c.gini,
                "share_of_units_for_half": share,
                "units_for_half": round(share * c.n),
                "top_unit": labels.iloc[top],
                "top_unit_share": float(v[top] / c.total),
            }
        )
    out = pd.DataFrame(rows)
    out["harm_concentrates_more"] = bool(out.loc[0, "gini"] > out.loc[1, "gini"])
    return out
