"""Indicators per LSOA: harm, rates, counts, repeat map points, deprivation, demography.

Every indicator the index can use is described in :data:`INDICATORS` (label, description, unit,
direction and kind); exports, popups and the report read their wording from there.
:func:`build_indicators` turns a table of crime counts per LSOA (plus optional population,
deprivation and other agencies' layers) into one column per indicator.

Harm is measured in Cambridge Crime Harm Index (CCHI) days. The CCHI is defined per offence type
(days of custody at the sentencing-guideline starting point), but police.uk and the Met's LSOA
tables give only crime groups, so each group carries an *average* number of CCHI days per
recorded offence (by default calibrated from Croydon's published 2019-20 totals; see
``data/CCHI_DERIVATION.md``) and harm for a group is ``count x days per offence``. With fixed
weights, a change in harm between periods follows the counts (harm at a fixed offence mix).
Anti-social behaviour is not a crime and carries no CCHI weight; it only enters harm when a
partnership chooses a weight for it (``asb_weight`` days per incident).

Per-capita rates on LSOA populations (about 1,500 residents) are unstable, so by default they are
shrunk toward the mean of all areas passed in (the borough, for a partnership) by global
empirical Bayes (Marshall 1991), as the Indices of Deprivation do for their rates.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from priority_index.crime_groups import GROUP_LABELS

__all__ = [
    "INDICATORS",
    "DEPRIVATION_DOMAINS",
    "Indicator",
    "indicator_spec",
    "describe_indicators",
    "deprivation_name",
    "other_name",
    "eb_rate",
    "repeat_location_share",
    "count_indicator_arrays",
    "build_indicators",
]

_KINDS = ("crime", "asb", "deprivation", "demography", "other")


@dataclass(frozen=True)
class Indicator:
    """Description of one indicator.

    Attributes
    ----------
    name
        Column name in the indicator frame.
    label
        Short human label for tables, legends and popups.
    description
        One or two sentences on what the value measures and how it is computed.
    unit
        Unit of the value (for example ``"CCHI days"`` or ``"per 1,000 residents"``).
    direction
        ``+1`` when a higher value means more priority, ``-1`` when lower means more priority.
    kind
        One of ``"crime"``, ``"asb"``, ``"deprivation"``, ``"demography"``, ``"other"``.
    """

    name: str
    label: str
    description: str
    unit: str
    direction: int = 1
    kind: str = "crime"

    def __post_init__(self) -> None:
        if self.direction not in (1, -1):
            raise ValueError(f"direction must be +1 or -1, got {self.direction!r}")
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {self.kind!r}")


_EB_NOTE = (
    " Shrunk toward the mean of all LSOAs analysed by global empirical Bayes (Marshall 1991) "
    "unless shrinkage is switched off."
)

_HARM_NOTE = (
    " Each group's weight is its average CCHI days per recorded offence (by default calibrated "
    "from the Safer Croydon Partnership's published 2019 and 2020 CCHI totals over the Met's "
    "Croydon counts; see data/CCHI_DERIVATION.md), not the days of each offence: harm is "
    "counts times group averages, so it moves with the counts, not with the severity mix. "
    "Sexual offences count only when the input carries them (the Met does not publish them "
    "at LSOA level)."
)

_FIXED: tuple[Indicator, ...] = (
    Indicator(
        "harm_total",
        "Crime harm",
        "Total Cambridge Crime Harm Index (CCHI) days: recorded crimes of each group in the "
        "period times the group's average CCHI days per offence, summed over groups."
        + _HARM_NOTE
        + " Anti-social behaviour is excluded unless it is given a weight.",
        "CCHI days",
    ),
    Indicator(
        "harm_violence",
        "Violence harm",
        "CCHI days from the crime groups configured as violence (harm.violence_groups; by "
        "default violence against the person, police.uk's violence and sexual offences, and "
        "sexual offences where the input has them): counts times each group's average CCHI "
        "days per offence." + _HARM_NOTE,
        "CCHI days",
    ),
    Indicator(
        "crime_count",
        "Recorded crimes",
        "Number of recorded crimes in the period (anti-social behaviour excluded).",
        "crimes",
    ),
    Indicator(
        "asb_count",
        "ASB incidents",
        "Number of anti-social behaviour incidents recorded in the period.",
        "incidents",
        kind="asb",
    ),
    Indicator(
        "harm_rate",
        "Crime harm per 1,000",
        "CCHI days per 1,000 residents: the rate of each crime group per 1,000 residents times "
        "its average CCHI days per offence, summed over groups." + _HARM_NOTE + _EB_NOTE,
        "CCHI days per 1,000 residents",
    ),
    Indicator(
        "violence_harm_rate",
        "Violence harm per 1,000",
        "Violence CCHI days per 1,000 residents (the violence groups, as in Violence harm)."
        + _HARM_NOTE
        + _EB_NOTE,
        "CCHI days per 1,000 residents",
    ),
    Indicator(
        "crime_rate",
        "Crimes per 1,000",
        "Recorded crimes (ASB excluded) per 1,000 residents." + _EB_NOTE,
        "crimes per 1,000 residents",
    ),
    Indicator(
        "asb_rate",
        "ASB per 1,000",
        "Anti-social behaviour incidents per 1,000 residents." + _EB_NOTE,
        "incidents per 1,000 residents",
        kind="asb",
    ),
    Indicator(
        "repeat_share",
        "Repeat map points",
        "Share of the LSOA's geolocated records that fall on a map point (same x, y, or the "
        "same location text) holding at least two records in the period. police.uk snaps "
        "every record to one of a fixed set of anonymised map points (street centres, public "
        "places), so this measures repeat *map points*, not repeat addresses or victims.",
        "share of records (0-1)",
    ),
    Indicator(
        "young_share",
        "Young residents",
        "Share of usual residents in the age bands configured as young residents "
        "(sources.population.young_columns in the pipeline file; when none are given, the "
        "population reader's default band for its format: 'Aged 16 to 24 years' for Census "
        "age tables, 'Persons_16-29' for ONS mid-year estimates).",
        "share of residents (0-1)",
        kind="demography",
    ),
    Indicator(
        "population",
        "Residents",
        "Usual resident population used as the denominator of the rates.",
        "residents",
        kind="demography",
    ),
)

#: Canonical deprivation domain id -> (label, description).
DEPRIVATION_DOMAINS: dict[str, tuple[str, str]] = {
    "income": (
        "Income deprivation",
        "Indices of Deprivation Income domain score: proportion of residents on low incomes.",
    ),
    "employment": (
        "Employment deprivation",
        "Indices of Deprivation Employment domain score: proportion of working-age residents "
        "involuntarily out of work.",
    ),
    "education": (
        "Education deprivation",
        "Indices of Deprivation Education, Skills and Training domain score.",
    ),
    "health": (
        "Health deprivation",
        "Indices of Deprivation Health Deprivation and Disability domain score.",
    ),
    "crime": (
        "Crime domain (IoD)",
        "Indices of Deprivation Crime domain score (risk of personal and material "
        "victimisation, from police records of a past period).",
    ),
    "housing_services": (
        "Barriers to housing and services",
        "Indices of Deprivation Barriers to Housing and Services domain score.",
    ),
    "living_environment": (
        "Living environment deprivation",
        "Indices of Deprivation Living Environment domain score (housing condition, air "
        "quality, road traffic accidents).",
    ),
    "imd": (
        "Index of Multiple Deprivation",
        "Indices of Deprivation overall IMD score (weighted sum of the seven domains).",
    ),
}

_DEP_ALIASES: dict[str, str] = {
    "income": "income",
    "employment": "employment",
    "education": "education",
    "education_skills_and_training": "education",
    "education_skills_training": "education",
    "health": "health",
    "health_deprivation_and_disability": "health",
    "health_and_disability": "health",
    "crime": "crime",
    "housing_services": "housing_services",
    "housing_and_services": "housing_services",
    "barriers": "housing_services",
    "barriers_to_housing_and_services": "housing_services",
    "environment": "living_environment",
    "living_environment": "living_environment",
    "imd": "imd",
}


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(text).lower()).strip("_")


def deprivation_name(column: str) -> str:
    """Indicator name for a deprivation column.

    Accepts canonical ids (``"income"``), indicator names (``"dep_income"``) and the IoD
    column names (``"Income_score"``, ``"Housing_and_Services_score"``,
    ``"Environment_score"``); other columns become ``"dep_<slug>"``.

    Parameters
    ----------
    column
        Column name of the deprivation frame.

    Returns
    -------
    str
        ``"dep_<domain>"``.
    """
    slug = _slug(column)
    slug = re.sub(r"^dep_", "", slug)
    slug = re.sub(r"_(score|domain)$", "", slug)
    return "dep_" + _DEP_ALIASES.get(slug, slug)


def other_name(layer: str) -> str:
    """Indicator name of another agency's layer: ``"other_<slug>"``."""
    return "other_" + re.sub(r"^other_", "", _slug(layer))


def _catalogue() -> dict[str, Indicator]:
    out = {ind.name: ind for ind in _FIXED}
    for group, label in GROUP_LABELS.items():
        if group == "asb":
            continue
        out[f"count_{group}"] = Indicator(
            f"count_{group}",
            f"{label} (count)",
            f"Number of recorded {label.lower()} offences in the period.",
            "crimes",
        )
    for domain, (label, description) in DEPRIVATION_DOMAINS.items():
        out[f"dep_{domain}"] = Indicator(
            f"dep_{domain}",
            label,
            description + " Higher = more deprived.",
            "IoD score",
            kind="deprivation",
        )
    return out


#: Catalogue of indicators: name -> :class:`Indicator`. Other agencies' layers
#: (``other_<layer>``) and unknown deprivation columns are described by :func:`indicator_spec`.
INDICATORS: dict[str, Indicator] = _catalogue()


def indicator_spec(name: str, *, label: str | None = None) -> Indicator:
    """Catalogue entry for an indicator, including generated ones.

    Parameters
    ----------
    name
        Indicator (column) name.
    label
        Optional label overriding the generated one for ``other_*`` / ``dep_*`` / ``count_*``
        names that are not in :data:`INDICATORS`.

    Returns
    -------
    Indicator

    Raises
    ------
    KeyError
        When the name is neither catalogued nor of a generated family.
    """
    if name in INDICATORS:
        return INDICATORS[name]
    pretty = name.split("_", 1)[-1].replace("_", " ").strip().capitalize()
    if name.startswith("other_"):
        return Indicator(
            name,
            label or pretty,
            f"Records or weight supplied by another agency for the layer '{pretty}' "
            "(LSOAs absent from the layer count as 0).",
            "as supplied",
            kind="other",
        )
    if name.startswith("dep_"):
        return Indicator(
            name,
            label or pretty,
            f"Deprivation score '{pretty}' as supplied (higher = more deprived).",
            "score",
            kind="deprivation",
        )
    if name.startswith("count_"):
        return Indicator(
            name, label or f"{pretty} (count)", f"Number of '{pretty}' records.", "records"
        )
    raise KeyError(f"unknown indicator {name!r}")


def describe_indicators(names: Sequence[str]) -> pd.DataFrame:
    """Table of catalogue entries for some indicator names (for field descriptions).

    Parameters
    ----------
    names
        Indicator names, for example the columns of :func:`build_indicators`.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``name`` with columns ``label``, ``description``, ``unit``, ``direction``,
        ``kind``.
    """
    rows = [indicator_spec(n) for n in names]
    frame = pd.DataFrame(
        {
            "label": [r.label for r in rows],
            "description": [r.description for r in rows],
            "unit": [r.unit for r in rows],
            "direction": [r.direction for r in rows],
            "kind": [r.kind for r in rows],
        },
        index=pd.Index(list(names), name="name"),
    )
    return frame


# --------------------------------------------------------------------------------------------
# Empirical Bayes
# --------------------------------------------------------------------------------------------


def eb_rate(events: np.ndarray, population: np.ndarray, *, per: float = 1000.0) -> np.ndarray:
    """Global empirical-Bayes smoothed rates (Marshall 1991 method of moments).

    With crude rates ``r_i = e_i / n_i``, the pooled mean ``b = sum(e) / sum(n)``, the
    population-weighted variance ``s2 = sum(n_i (r_i - b)^2) / sum(n)`` and the mean
    population ``nbar = sum(n) / k``, the between-area variance is estimated as
    ``a = s2 - b / nbar`` (set to 0 when negative) and each rate is shrunk to
    ``w_i r_i + (1 - w_i) b`` with ``w_i = a / (a + b / n_i)``: small populations are pulled
    further toward the mean. When ``a <= 0`` all rates equal the mean. This is
    ``esda.smoothing.Empirical_Bayes`` with the negative-variance truncation of Marshall (1991).

    Parameters
    ----------
    events
        Event counts, shape ``(..., n)``; leading axes (for example Monte Carlo draws) are
        smoothed independently along the last axis.
    population
        Population at risk, shape ``(n,)`` or broadcastable to ``events``. Areas with zero,
        negative or missing population (or missing events) are left out of the estimates and
        get NaN.
    per
        Multiplier of the rate (1,000 gives rates per 1,000 residents).

    Returns
    -------
    numpy.ndarray
        Smoothed rates with the shape of ``events``.
    """
    e = np.asarray(events, dtype=float)
    n = np.asarray(population, dtype=float)
    if n.ndim == 1 and n.shape[0] == e.shape[-1] and np.isfinite(e).all():
        return _eb_rate_1d(e, n, per=per)
    n = np.broadcast_to(n, e.shape)
    valid = np.isfinite(n) & (n > 0) & np.isfinite(e)
    e0 = np.where(valid, e, 0.0)
    n0 = np.where(valid, n, 0.0)
    n_safe = np.where(valid, n, 1.0)
    total_e = e0.sum(axis=-1, keepdims=True)
    total_n = n0.sum(axis=-1, keepdims=True)
    k = valid.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        b = total_e / total_n
        r = e0 / n_safe
        s2 = (n0 * (r - b) ** 2).sum(axis=-1, keepdims=True) / total_n
        a = np.maximum(s2 - b * k / total_n, 0.0)
        denom = a + b / n_safe
        w = np.where(denom > 0, a / np.where(denom > 0, denom, 1.0), 0.0)
    smoothed = w * r + (1.0 - w) * b
    return np.where(valid, smoothed * per, np.nan)


def _eb_rate_1d(e: np.ndarray, n: np.ndarray, *, per: float) -> np.ndarray:
    """:func:`eb_rate` for finite events and one population vector (the Monte Carlo case)."""
    valid = np.isfinite(n) & (n > 0)
    inv_n = np.zeros_like(n)
    np.divide(1.0, n, out=inv_n, where=valid)
    n0 = np.where(valid, n, 0.0)
    total_n = n0.sum()
    k = int(valid.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        b = (e @ valid.astype(float) / total_n)[..., None]
        dev = e * inv_n - b  # r - b
        s2 = ((dev * dev) @ n0 / total_n)[..., None]
        a = np.maximum(s2 - b * k / total_n, 0.0)
        denom = a + b * inv_n
    w = np.zeros(np.broadcast_shapes(a.shape, denom.shape))
    np.divide(a, denom, out=w, where=denom > 0)
    out = (b + w * dev) * per
    if not valid.all():
        out[..., ~valid] = np.nan
    return out


def _crude_rate(events: np.ndarray, population: np.ndarray, *, per: float) -> np.ndarray:
    e = np.asarray(events, dtype=float)
    n = np.broadcast_to(np.asarray(population, dtype=float), e.shape)
    valid = np.isfinite(n) & (n > 0)
    return np.where(valid, e / np.where(valid, n, 1.0) * per, np.nan)


# --------------------------------------------------------------------------------------------
# Repeat map points
# --------------------------------------------------------------------------------------------


def repeat_location_share(
    records: pd.DataFrame,
    *,
    lsoa_col: str = "lsoa_code",
    x_col: str = "x",
    y_col: str = "y",
    location_col: str | None = None,
    min_records: int = 2,
) -> pd.Series:
    """Share of each LSOA's records at a repeat map point.

    A map point is a repeat point when it holds at least ``min_records`` records in the
    period within the LSOA. police.uk moves every record to the nearest of a fixed set of
    anonymised map points, so this is a repeat *map point* measure: records at the same
    snap point may come from different addresses.

    Parameters
    ----------
    records
        One row per record (crime or incident) with the LSOA code and either coordinates or a
        location text.
    lsoa_col, x_col, y_col
        Column names of the LSOA code and the coordinates.
    location_col
        When given, points are identified by this text column (police.uk ``Location``, for
        example ``"On or near Park Lane"``) instead of by coordinates.
    min_records
        Minimum number of records for a point to count as a repeat point.

    Returns
    -------
    pandas.Series
        ``repeat_share`` in [0, 1] indexed by ``lsoa_code`` for every LSOA with at least one
        usable record (records without LSOA or location are dropped).
    """
    keys = [location_col] if location_col is not None else [x_col, y_col]
    frame = records[[lsoa_col, *keys]].dropna()
    if frame.empty:
        return pd.Series([], dtype=float, name="repeat_share", index=pd.Index([], name="lsoa_code"))
    size = frame.groupby([lsoa_col, *keys], sort=False, dropna=True)[lsoa_col].transform("size")
    is_repeat = (size.to_numpy() >= min_records).astype(float)
    share = pd.Series(is_repeat, index=frame.index).groupby(frame[lsoa_col].to_numpy()).mean()
    share.index.name = "lsoa_code"
    share.name = "repeat_share"
    return share.sort_index()


# --------------------------------------------------------------------------------------------
# Count-based indicators (shared with the Monte Carlo)
# --------------------------------------------------------------------------------------------


def _count_names(
    groups: Sequence[str],
    *,
    has_population: bool,
    violence_groups: Collection[str],
    asb_group: str,
) -> list[str]:
    crime = [g for g in groups if g != asb_group]
    has_asb = asb_group in groups
    has_violence = any(g in violence_groups for g in crime)
    names = ["harm_total"]
    if has_violence:
        names.append("harm_violence")
    names.append("crime_count")
    if has_asb:
        names.append("asb_count")
    if has_population:
        names.append("harm_rate")
        if has_violence:
            names.append("violence_harm_rate")
        names.append("crime_rate")
        if has_asb:
            names.append("asb_rate")
    names.extend(f"count_{g}" for g in crime)
    return names


def count_indicator_arrays(
    counts: np.ndarray,
    groups: Sequence[str],
    harm_weights: Mapping[str, float],
    *,
    population: np.ndarray | None = None,
    violence_groups: Collection[str] = ("violence", "violence_and_sexual", "sexual_offences"),
    asb_group: str = "asb",
    asb_weight: float = 0.0,
    shrink: bool = True,
    per: float = 1000.0,
    names: Collection[str] | None = None,
) -> dict[str, np.ndarray]:
    """Indicators that depend on the crime counts, on arrays (vectorised over draws).

    This is the engine behind the count-based columns of :func:`build_indicators`; the Monte
    Carlo calls it on Poisson-resampled counts for all draws at once.

    Parameters
    ----------
    counts
        Counts of shape ``(..., n_lsoa, n_group)``; missing values must already be 0.
    groups
        Group id of each count column (last axis).
    harm_weights
        CCHI days per offence for each crime group (every group other than ``asb_group``
        needs one).
    population
        Residents per LSOA, shape ``(n_lsoa,)``; without it the rates are not produced.
    violence_groups
        Groups whose harm makes up ``harm_violence``.
    asb_group
        Group id of anti-social behaviour.
    asb_weight
        Days of harm per ASB incident; ASB enters ``harm_total`` / ``harm_rate`` only when
        this is positive (a weight for ``asb_group`` in ``harm_weights`` is ignored).
    shrink
        Empirical-Bayes shrinkage of the per-capita rates (:func:`eb_rate`); crude rates when
        False. Harm rates shrink each group's rate separately (each group's counts are the
        Poisson events) and then weight them.
    per
        Rate multiplier.
    names
        Only compute these indicators (default all that the inputs allow).

    Returns
    -------
    dict
        ``{indicator name: array of shape (..., n_lsoa)}``.
    """
    arr = np.asarray(counts, dtype=float)
    groups = list(groups)
    if arr.shape[-1] != len(groups):
        raise ValueError("the last axis of counts must match groups")
    crime_idx = [i for i, g in enumerate(groups) if g != asb_group]
    missing_w = [groups[i] for i in crime_idx if groups[i] not in harm_weights]
    if missing_w:
        raise ValueError(f"no harm weight for crime group(s) {missing_w}")
    w = np.array([float(harm_weights[groups[i]]) for i in crime_idx])
    viol = np.array([groups[i] in violence_groups for i in crime_idx], dtype=bool)
    asb_idx = groups.index(asb_group) if asb_group in groups else None
    use_asb_harm = asb_idx is not None and asb_weight > 0

    available = _count_names(
        groups,
        has_population=population is not None,
        violence_groups=violence_groups,
        asb_group=asb_group,
    )
    wanted = available if names is None else [n for n in available if n in set(names)]
    crime = arr[..., crime_idx]
    asb = arr[..., asb_idx] if asb_idx is not None else None
    out: dict[str, np.ndarray] = {}

    rate_fn = eb_rate if shrink else _crude_rate

    def rate(events: np.ndarray) -> np.ndarray:
        return rate_fn(events, population, per=per)

    group_rates: list[np.ndarray] = []  # (..., g, n_lsoa): each group's rate, computed once

    def crime_rates() -> np.ndarray:
        if not group_rates:
            by_group = np.ascontiguousarray(np.moveaxis(crime, -1, -2))
            group_rates.append(rate(by_group))
        return group_rates[0]

    for name in wanted:
        if name == "harm_total":
            val = crime @ w
            if use_asb_harm:
                val = val + asb * asb_weight
        elif name == "harm_violence":
            val = crime[..., viol] @ w[viol]
        elif name == "crime_count":
            val = crime.sum(axis=-1)
        elif name == "asb_count":
            val = asb.copy()
        elif name == "harm_rate":
            val = w @ crime_rates()
            if use_asb_harm:
                val = val + rate(asb) * asb_weight
        elif name == "violence_harm_rate":
            val = w[viol] @ crime_rates()[..., viol, :]
        elif name == "crime_rate":
            val = rate(crime.sum(axis=-1))
        elif name == "asb_rate":
            val = rate(asb)
        else:  # count_<group>
            val = arr[..., groups.index(name[len("count_") :])].copy()
        out[name] = val
    return out


# --------------------------------------------------------------------------------------------
# Public builder
# --------------------------------------------------------------------------------------------


def _as_lsoa_series(values: pd.Series, index: pd.Index, *, fill: float | None) -> np.ndarray:
    s = pd.Series(values).reindex(index)
    s = pd.to_numeric(s, errors="coerce").astype(float)
    if fill is not None:
        s = s.fillna(fill)
    return s.to_numpy(dtype=float)


def build_indicators(
    counts: pd.DataFrame,
    harm_weights: Mapping[str, float],
    *,
    population: pd.Series | None = None,
    young: pd.Series | None = None,
    deprivation: pd.DataFrame | None = None,
    repeat: pd.Series | None = None,
    other: Mapping[str, pd.Series] | None = None,
    violence_groups: Collection[str] = ("violence", "violence_and_sexual", "sexual_offences"),
    asb_group: str = "asb",
    asb_weight: float = 0.0,
    shrink: bool = True,
    per: float = 1000.0,
) -> pd.DataFrame:
    """Indicator table: one row per LSOA of ``counts``, one column per indicator.

    Columns (each described in :data:`INDICATORS` / :func:`indicator_spec`); inputs that are
    not supplied simply leave their indicators out:

    - ``harm_total``, ``harm_violence`` (when a violence group is present), ``crime_count``,
      ``asb_count`` (when ``asb_group`` is a column), ``count_<group>`` for every crime group;
    - with ``population``: ``harm_rate``, ``violence_harm_rate``, ``crime_rate``, ``asb_rate``
      (per ``per`` residents, empirical-Bayes shrunk when ``shrink``) and ``population``;
    - with ``repeat``: ``repeat_share`` (NaN for LSOAs absent from ``repeat``);
    - with ``young`` and ``population``: ``young_share`` = young / population;
    - with ``deprivation``: ``dep_<domain>`` per column (see :func:`deprivation_name`), NaN for
      LSOAs absent from the frame;
    - with ``other``: ``other_<layer>`` per layer, 0 for LSOAs absent from the layer.

    Parameters
    ----------
    counts
        Index ``lsoa_code``, one column per crime group (ids of
        :data:`priority_index.crime_groups.GROUP_LABELS`), counts in the analysis period.
        Missing values count as 0.
    harm_weights
        CCHI days per offence for each crime group in ``counts``.
    population
        Residents per LSOA (denominator of the rates).
    young
        Young residents per LSOA (numerator of ``young_share``).
    deprivation
        Deprivation domain scores per LSOA, higher = more deprived.
    repeat
        Repeat-map-point share per LSOA (see :func:`repeat_location_share`).
    other
        Other agencies' layers: ``{layer name: count or weight per LSOA}``.
    violence_groups
        Groups counted in the violence harm indicators.
    asb_group
        Column of anti-social behaviour counts.
    asb_weight
        Harm days per ASB incident; 0 keeps ASB out of harm.
    shrink
        Empirical-Bayes shrinkage of per-capita rates toward the mean of all LSOAs passed in.
    per
        Rate multiplier (1,000 = per 1,000 residents).

    Returns
    -------
    pandas.DataFrame
        Indexed like ``counts`` (index name ``lsoa_code``), float columns.
    """
    if counts.index.has_duplicates:
        raise ValueError("counts index has duplicate LSOA codes")
    index = pd.Index(counts.index, name="lsoa_code")
    groups = [str(c) for c in counts.columns]
    arr = counts.apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy(dtype=float)
    if (arr < 0).any():
        raise ValueError("counts must be non-negative")
    pop = None if population is None else _as_lsoa_series(population, index, fill=None)

    columns = count_indicator_arrays(
        arr,
        groups,
        harm_weights,
        population=pop,
        violence_groups=violence_groups,
        asb_group=asb_group,
        asb_weight=asb_weight,
        shrink=shrink,
        per=per,
    )
    if pop is not None:
        columns["population"] = pop
    if repeat is not None:
        columns["repeat_share"] = _as_lsoa_series(repeat, index, fill=None)
    if young is not None and pop is not None:
        y = _as_lsoa_series(young, index, fill=None)
        with np.errstate(invalid="ignore", divide="ignore"):
            columns["young_share"] = np.where(pop > 0, y / np.where(pop > 0, pop, 1.0), np.nan)
    if deprivation is not None:
        for col in deprivation.columns:
            name = deprivation_name(str(col))
            if name in columns:
                raise ValueError(f"two deprivation columns map to {name!r}")
            columns[name] = _as_lsoa_series(deprivation[col], index, fill=None)
    if other is not None:
        for layer, values in other.items():
            name = other_name(layer)
            if name in columns:
                raise ValueError(f"two layers map to {name!r}")
            columns[name] = _as_lsoa_series(values, index, fill=0.0)
    return pd.DataFrame(columns, index=index)
