"""The only orchestrator: stages in order, progress, timings, counts for the manifest.

ingest and validate -> join to LSOAs -> indicators -> composite index (and its uncertainty)
-> hot spots (Gi*, local Moran, kernel density) -> priority neighbourhoods (and micro-places,
controls, trial allocation) -> exports.

Each stage returns one small typed object; only the export stage touches the output folder, and
it writes into a temporary sibling folder that replaces the output folder only when every file
is complete, so a failed run never leaves partial outputs.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from . import (
    composite,
    density,
    distributed,
    face_validity,
    harm,
    hotspots,
    indicators,
    micro,
    selection,
    spatial_weights,
    uncertainty,
    vintages,
)
from .config import Settings
from .crime_groups import GROUP_LABELS, source_mapping
from .errors import ConfigError, InputError
from .sources import area_tables, boundaries, police_uk
from .sources.quarantine import Quarantine
from .vintages import lookup_shares

Progress = Callable[[str], None]


# --------------------------------------------------------------------------- stage objects
@dataclass
class Inputs:
    """Everything read and validated, joined to the study area's LSOAs."""

    study: gpd.GeoDataFrame
    study_report: dict
    points: pd.DataFrame  # study-area records with x, y, crime_group, harm, period ...
    counts: pd.DataFrame  # long: lsoa_code, crime_group, period, count
    count_sources: dict[str, str]  # crime group -> "points" or the area table
    deprivation: pd.DataFrame | None
    population: pd.DataFrame | None
    wards: pd.Series | None
    ward_polygons: gpd.GeoDataFrame | None
    other: dict[str, pd.Series]
    quarantine: Quarantine
    input_files: list[Path]
    harm_weights: dict[str, float]
    points_generated: bool
    notes: list[str] = field(default_factory=list)
    segments: gpd.GeoDataFrame | None = None  # street segments (micro-places), when roads given
    _by_period: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def points_in(self, period: str | None) -> pd.DataFrame:
        """The points of one period (selected once, then reused; none for ``None``)."""
        if period is None:
            return self.points.iloc[:0]
        if period not in self._by_period:
            self._by_period[period] = self.points[self.points["period"] == period]
        return self._by_period[period]


@dataclass
class IndexResult:
    indicators: pd.DataFrame
    result: composite.CompositeResult
    mc: uncertainty.MonteCarloResult | None
    sensitivity: pd.DataFrame
    previous: composite.CompositeResult | None


@dataclass
class HotspotResult:
    weights_report: dict
    gi: dict[str, pd.DataFrame]  # indicator -> gi_star frame (+ lisa columns)
    surfaces: dict[str, density.DensityGrid]
    density_note: str


@dataclass
class SelectionResult:
    assignment: pd.Series
    summary: pd.DataFrame
    polygons: gpd.GeoDataFrame
    stability: pd.DataFrame
    lsoa_frequency: pd.Series | None
    persistence: pd.DataFrame | None
    controls: pd.DataFrame
    control_polygons: gpd.GeoDataFrame
    micro: gpd.GeoDataFrame
    trial: pd.DataFrame
    rule: str
    roles: pd.DataFrame | None = None


@dataclass
class RunResult:
    settings: Settings
    inputs: Inputs
    index: IndexResult
    hotspots: HotspotResult
    selection: SelectionResult
    harm_table: pd.DataFrame
    concentration: pd.DataFrame
    timings: dict[str, float]
    points_period: str | None = None
    face_validity: pd.DataFrame | None = None
    out_dir: Path | None = None


# --------------------------------------------------------------------------- helpers
def sha256(path: Path) -> str:
    """SHA-256 of a file (or of every file below a folder, in name order)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def period_of_month(settings: Settings) -> dict[str, str]:
    """``{"YYYY-MM": period name}`` for every month of every analysis period."""
    out = {}
    for p in settings.periods:
        months = pd.period_range(p.start, p.end, freq="M")
        out.update({str(m): p.name for m in months})
    return out


def _quiet(_: str) -> None:
    return None


def _check_inputs_exist(settings: Settings) -> list[Path]:
    s = settings.sources
    paths: list[tuple[str, str]] = [("study_area.boundaries", settings.study_area.boundaries)]
    if settings.study_area.wards:
        paths.append(("study_area.wards.path", settings.study_area.wards.path))
        if settings.study_area.wards.boundaries:
            paths.append(("study_area.wards.boundaries", settings.study_area.wards.boundaries))
    for i, src in enumerate(s.police_uk):
        if not any(ch in src.path for ch in "*?["):
            paths.append((f"sources.police_uk[{i}].path", src.path))
    for i, src in enumerate(s.area_counts):
        paths.append((f"sources.area_counts[{i}].path", src.path))
    for key in ("deprivation", "population"):
        src = getattr(s, key)
        if src is not None:
            paths.append((f"sources.{key}.path", src.path))
            if key == "population" and src.vintage_lookup:
                paths.append((f"sources.{key}.vintage_lookup", src.vintage_lookup))
    for i, src in enumerate(s.other_points):
        paths.append((f"sources.other_points[{i}].path", src.path))
    if s.lsoa_lookup:
        paths.append(("sources.lsoa_lookup", s.lsoa_lookup))
    if s.other_vintage_boundaries:
        paths.append(("sources.other_vintage_boundaries", s.other_vintage_boundaries))
    if settings.harm.table:
        paths.append(("harm.table", settings.harm.table))
    if settings.micro.roads:
        paths.append(("micro.roads", settings.micro.roads))
    resolved = []
    for key, value in paths:
        p = settings.path(value)
        if not p.exists():
            raise InputError(p, f"file not found (named by {key} in {settings.source_file.name})")
        resolved.append(p)
    if not s.police_uk and not s.area_counts:
        raise ConfigError(
            settings.source_file, ["sources: no crime source (police_uk or area_counts) is given"]
        )
    return resolved


def validate_settings(settings: Settings) -> list[Path]:
    """Checks that need no data: inputs exist, indicator names and groups are known."""
    files = _check_inputs_exist(settings)
    problems = []
    for key, name in [(f"index.weights.{k}", k) for k in settings.index.weights] + [
        (f"hotspots.indicators[{i}]", k) for i, k in enumerate(settings.hotspots.indicators)
    ]:
        try:
            indicators.indicator_spec(name)
        except (KeyError, ValueError):
            problems.append(f"{key}: unknown indicator {name!r}")
    for i, src in enumerate(settings.sources.area_counts):
        if src.format == "met_annual" and src.crime_group not in GROUP_LABELS:
            problems.append(
                f"sources.area_counts[{i}].crime_group: {src.crime_group!r} is not "
                f"one of {list(GROUP_LABELS)}"
            )
    for g in settings.density.groups or []:
        if g not in GROUP_LABELS and g != "total_harm":
            problems.append(f"density.groups: unknown crime group {g!r}")
    if not settings.index.weights or not any(v > 0 for v in settings.index.weights.values()):
        problems.append("index.weights: give at least one positive weight")
    if problems:
        raise ConfigError(settings.source_file, problems)
    return files


# --------------------------------------------------------------------------- stage 1: ingest
def load_study(settings: Settings) -> tuple[gpd.GeoDataFrame, dict]:
    """The study area's LSOAs (EPSG:27700, indexed by code) and the boundary report."""
    sa = settings.study_area
    return boundaries.load_study_area(
        settings.path(sa.boundaries),
        layer=sa.layer,
        code_column=sa.code_column,
        name_column=sa.name_column,
        lad_code_column=sa.lad_code_column,
        lad_name_column=sa.lad_name_column,
        lad_codes=sa.lad_codes,
        lad_names=sa.lad_names,
    )


def ingest(settings: Settings, progress: Progress = _quiet, client=None) -> Inputs:
    """Read every source, validate it, and place its records in the study area's LSOAs."""
    files = validate_settings(settings)
    sa = settings.study_area
    study, report = load_study(settings)
    progress(f"study area: {len(study)} LSOAs ({report['invalid_repaired']} repaired)")
    q = Quarantine()
    pom = period_of_month(settings)
    notes: list[str] = []

    code_map: dict[str, dict[str, float]] | None = None
    known_codes: set[str] | None = None
    if settings.sources.lsoa_lookup:
        lk = area_tables.read_csv_checked(
            settings.path(settings.sources.lsoa_lookup), required=["LSOA11CD", "LSOA21CD"]
        )
        in21 = study.index.isin(lk["LSOA21CD"]).mean()
        in11 = study.index.isin(lk["LSOA11CD"]).mean()
        fwd, back = ("LSOA11CD", "LSOA21CD") if in21 >= in11 else ("LSOA21CD", "LSOA11CD")
        code_map = {
            k: v
            for k, v in lookup_shares(lk, from_column=fwd, to_column=back).items()
            if k not in study.index
        }
        known_codes = set(lk["LSOA11CD"]) | set(lk["LSOA21CD"])
        report["vintage"] = "2021" if in21 >= in11 else "2011"
    if settings.sources.other_vintage_boundaries:
        other = boundaries.read_layer(
            settings.path(settings.sources.other_vintage_boundaries),
            columns=[settings.sources.other_vintage_code_column],
            bbox=tuple(study.total_bounds),
        )
        other = other.set_index(settings.sources.other_vintage_code_column)
        other.index.name = "lsoa_code"
        code_map = best_fit_map(vintages.overlap_lookup(other, study), study.index)
        report["other_vintage_codes_mapped"] = len(code_map)

    hw = harm.harm_weights(
        area_tables.read_csv_checked(
            settings.path(settings.harm.table), required=["crime_group", "days"], dtype=None
        )
        if settings.harm.table
        else None,
        asb_weight=settings.harm.asb_weight,
    )

    # area-level counts
    count_parts, count_sources = [], {}
    for i, src in enumerate(settings.sources.area_counts):
        label = f"{src.label} [{i + 1}]" if len(settings.sources.area_counts) > 1 else src.label
        if src.format == "met_monthly":
            part = area_tables.read_met_monthly(
                settings.path(src.path),
                study_codes=study.index,
                period_of_month=pom,
                major_groups=source_mapping("met_major"),
                quarantine=q,
                source=label,
                code_map=code_map,
            )
        else:
            part = area_tables.read_met_annual(
                settings.path(src.path),
                crime_group=src.crime_group,
                study_codes=study.index,
                periods=[(p.name, p.start, p.end) for p in settings.periods],
                quarantine=q,
                source=label,
                code_map=code_map,
            )
        for g in part["crime_group"].unique():
            count_sources[str(g)] = label
        count_parts.append(part)
        progress(f"{label}: {q.tally(label).rows_read:,} rows, {q.tally(label).rows_used:,} used")

    # police.uk points
    point_parts, generated = [], False
    for i, src in enumerate(settings.sources.police_uk):
        label = f"{src.label} [{i + 1}]" if len(settings.sources.police_uk) > 1 else src.label
        read = (
            police_uk.read_police_uk
            if client is None
            else partial(distributed.read_police_uk_dask, client=client)
        )
        pts = read(
            settings.path(src.path),
            study=study,
            period_of_month=pom,
            crime_groups=source_mapping("police_uk"),
            quarantine=q,
            source=label,
            tolerance_m=src.lsoa_tolerance_m,
            code_map=_best_fit(code_map),
            known_codes=known_codes,
        )
        generated |= src.points_are_generated
        point_parts.append(pts)
        t = q.tally(label)
        progress(
            f"{label}: {t.rows_read:,} rows in {t.files} files, {t.rows_used:,} used, "
            f"{t.rows_rejected:,} rejected"
        )
    points = pd.concat(point_parts, ignore_index=True) if point_parts else police_uk._empty_points()
    points = compact_points(points)
    points["harm"] = points["crime_group"].map(hw).astype(float)
    if generated:
        notes.append(
            "Point positions are GENERATED (placed inside real LSOAs from real counts); "
            "they are not real locations."
        )

    # counts from points for groups no area table covers
    if len(points):
        from_points = points[~points["crime_group"].isin(list(count_sources))]
        if len(from_points):
            agg = (
                from_points.groupby(["lsoa_code", "crime_group", "period"], as_index=False)
                .size()
                .rename(columns={"size": "count"})
            )
            agg["count"] = agg["count"].astype(float)
            count_parts.append(agg)
            for g in agg["crime_group"].unique():
                count_sources[str(g)] = "police.uk points"
    counts = (
        pd.concat(count_parts, ignore_index=True)
        if count_parts
        else pd.DataFrame(columns=["lsoa_code", "crime_group", "period", "count"])
    )
    counts = counts.groupby(["lsoa_code", "crime_group", "period"], as_index=False, sort=True)[
        "count"
    ].sum()

    dep = pop = None
    s = settings.sources
    if s.deprivation:
        dep = area_tables.read_deprivation(
            settings.path(s.deprivation.path),
            format=s.deprivation.format,
            study_codes=study.index,
            quarantine=q,
            source="deprivation",
            code_column=s.deprivation.code_column,
            columns=s.deprivation.columns,
            measure=s.deprivation.measure,
        )
        progress(f"deprivation: {dep.shape[1]} domains for {len(dep)} LSOAs")
    if s.population:
        pop_map = None
        if s.population.vintage_lookup:
            lk = area_tables.read_csv_checked(
                settings.path(s.population.vintage_lookup), required=["LSOA11CD", "LSOA21CD"]
            )
            to_col = "LSOA11CD" if study.index.isin(lk["LSOA11CD"]).mean() > 0.5 else "LSOA21CD"
            from_col = "LSOA21CD" if to_col == "LSOA11CD" else "LSOA11CD"
            pop_map = lookup_shares(lk, from_column=from_col, to_column=to_col)
        pop = area_tables.read_population(
            settings.path(s.population.path),
            format=s.population.format,
            study_codes=study.index,
            quarantine=q,
            source="population",
            code_column=s.population.code_column,
            total_column=s.population.total_column,
            young_columns=s.population.young_columns,
            code_map=pop_map,
        )
        progress(f"population: {pop['residents'].sum():,.0f} residents")

    wards = ward_polys = None
    if sa.wards:
        lk = area_tables.read_csv_checked(
            settings.path(sa.wards.path), required=[sa.wards.lsoa_column, sa.wards.ward_name_column]
        )
        wards = (
            lk.drop_duplicates(sa.wards.lsoa_column)
            .set_index(sa.wards.lsoa_column)[sa.wards.ward_name_column]
            .reindex(study.index)
        )
        if wards.isna().any():
            notes.append(f"{int(wards.isna().sum())} LSOAs have no ward in the lookup")
        if sa.wards.boundaries:
            ward_polys = boundaries.read_layer(
                settings.path(sa.wards.boundaries), columns=[sa.wards.boundaries_name_column]
            )
            ward_polys = ward_polys.rename(columns={sa.wards.boundaries_name_column: "ward_name"})
            ward_polys = ward_polys[ward_polys["ward_name"].isin(wards.dropna().unique())]

    segments = None
    m = settings.micro
    if m.roads:
        reach = 2 * m.max_snap_m + m.segment_length_m
        roads = boundaries.read_layer(
            settings.path(m.roads),
            layer=m.roads_layer,
            columns=[m.roads_name_column] if m.roads_name_column else None,
            bbox=tuple(study.total_bounds + np.array([-1, -1, 1, 1]) * reach),
        )
        segments = micro.street_segments(
            roads, max_length=m.segment_length_m, name_column=m.roads_name_column
        )
        progress(f"roads: {len(roads):,} lines -> {len(segments):,} street segments")

    other: dict[str, pd.Series] = {}
    for src in s.other_points:
        other[src.name] = _read_other_points(settings, src, study, q, pom)

    unreconciled = q.unreconciled()
    if unreconciled:  # a bug, not bad input: every reader must account for every row
        raise RuntimeError(f"rows do not reconcile for {unreconciled}")
    return Inputs(
        study=study,
        study_report=report,
        points=points,
        counts=counts,
        count_sources=count_sources,
        deprivation=dep,
        population=pop,
        wards=wards,
        ward_polygons=ward_polys,
        other=other,
        quarantine=q,
        input_files=files,
        harm_weights=hw,
        points_generated=generated,
        notes=notes,
        segments=segments,
    )


def best_fit_map(overlap: pd.DataFrame, study_codes: pd.Index) -> dict[str, dict[str, float]]:
    """``{other-vintage code: {study code: 1.0}}``: each code goes whole to the study LSOA that
    holds the largest share of its area (a best-fit lookup, as ONS publishes them), provided at
    least half of it lies in the study area (a neighbour's LSOA is not claimed); codes that
    exist in both vintages need no conversion and are left out."""
    inside = overlap.groupby("from_code")["share"].transform("sum")
    best = overlap[overlap["best_fit"] & (inside >= 0.5) & ~overlap["from_code"].isin(study_codes)]
    return {a: {b: 1.0} for a, b in zip(best["from_code"], best["to_code"], strict=True)}


#: Text columns of the points with few distinct values. Stored as categoricals (sorted
#: categories): the many selections of rows by period and group become integer takes.
_CATEGORICAL_COLUMNS = (
    "month",
    "period",
    "crime_group",
    "crime_type",
    "lsoa_code",
    "location",
    "source_file",
)


def compact_points(points: pd.DataFrame) -> pd.DataFrame:
    """The points with their low-cardinality text columns as sorted categoricals.

    Parameters
    ----------
    points
        Points as the police.uk reader returns them (text columns as strings).

    Returns
    -------
    pandas.DataFrame
        The same rows and values; ``month``, ``period``, ``crime_group``, ``crime_type``,
        ``lsoa_code``, ``location`` and ``source_file`` as categoricals whose categories
        (Python strings) are sorted.
    """
    out = points.copy()
    for col in _CATEGORICAL_COLUMNS:
        if col not in out.columns or isinstance(out[col].dtype, pd.CategoricalDtype):
            continue
        codes, uniques = pd.factorize(out[col], sort=True, use_na_sentinel=True)
        categories = pd.Index(np.asarray(uniques, dtype=object), dtype=object)
        out[col] = pd.Categorical.from_codes(codes, categories=categories)
    return out


def _best_fit(code_map: dict[str, dict[str, float]] | None) -> dict[str, str] | None:
    if not code_map:
        return None
    return {a: max(t.items(), key=lambda kv: (kv[1], kv[0]))[0] for a, t in code_map.items()}


def _read_other_points(
    settings: Settings, src, study: gpd.GeoDataFrame, q: Quarantine, pom: dict[str, str]
) -> pd.Series:
    """Another agency's dated points -> weight per study LSOA in the current period."""
    path = settings.path(src.path)
    cols = [src.x_column, src.y_column] + [c for c in (src.date_column, src.weight_column) if c]
    frame = area_tables.read_csv_checked(path, required=cols)
    t = q.tally(src.label)
    t.files += 1
    t.rows_read += len(frame)
    lines = np.arange(2, len(frame) + 2)
    alive = np.ones(len(frame), dtype=bool)

    def reject(mask, reason, detail=""):
        nonlocal alive
        mask = mask & alive
        if mask.any():
            q.reject(src.label, str(path), reason, frame[mask], lines=lines[mask], detail=detail)
            alive &= ~mask

    x = pd.to_numeric(frame[src.x_column], errors="coerce")
    y = pd.to_numeric(frame[src.y_column], errors="coerce")
    reject((frame[src.x_column].str.strip() == "").to_numpy(), "no_coordinates")
    reject((x.isna() | y.isna()).to_numpy(), "bad_coordinates")
    if src.weight_column:
        wv = pd.to_numeric(frame[src.weight_column], errors="coerce")
        reject((wv.isna() | (wv < 0)).to_numpy(), "bad_weight")
    else:
        wv = pd.Series(1.0, index=frame.index)
    if src.date_column:
        month = frame[src.date_column].astype(str).str.slice(0, 7)
        reject(~month.str.fullmatch(r"\d{4}-\d{2}").to_numpy(), "bad_date")
        reject(
            ~month.isin(
                [m for m, p in pom.items() if p == settings.current_period.name]
            ).to_numpy(),
            "outside_period",
        )
    pts = gpd.GeoSeries(gpd.points_from_xy(x.fillna(0), y.fillna(0)), crs=src.crs).to_crs(27700)
    tree_idx, poly_idx = study.sindex.query(pts.to_numpy(), predicate="within")
    where = np.full(len(frame), -1)
    where[tree_idx] = poly_idx
    reject(where < 0, "outside_study_area")
    t.rows_used += int(alive.sum())
    codes = study.index.to_numpy()[where[alive]]
    return pd.Series(wv[alive].to_numpy(dtype=float), index=codes).groupby(level=0).sum()


def points_period(settings: Settings, inputs: Inputs) -> str | None:
    """The period whose points feed density and micro-places: the current one, else the latest
    period that has points (point files often cover other months than the area tables)."""
    have = set(inputs.points["period"].dropna().unique())
    for p in reversed(settings.periods):
        if p.name in have:
            return p.name
    return None


def current_points(settings: Settings, inputs: Inputs) -> pd.DataFrame:
    """Points of :func:`points_period` (empty when there are none)."""
    per = points_period(settings, inputs)
    return inputs.points_in(per)


# --------------------------------------------------------------------------- stage 2-4
def wide_counts(counts: pd.DataFrame, period: str, lsoas: pd.Index) -> pd.DataFrame:
    """Counts of one period: one row per LSOA (all study LSOAs), one column per crime group."""
    sub = counts[counts["period"] == period]
    wide = sub.pivot_table(
        index="lsoa_code", columns="crime_group", values="count", aggfunc="sum", fill_value=0.0
    )
    wide = wide.reindex(index=lsoas, fill_value=0.0)
    wide.columns = [str(c) for c in wide.columns]
    wide.index.name = "lsoa_code"
    return wide.astype(float)


def _build_kwargs(settings: Settings, inputs: Inputs, repeat: pd.Series | None) -> dict:
    pop = inputs.population
    return dict(
        population=pop["residents"] if pop is not None else None,
        young=pop["young"] if pop is not None and pop["young"].notna().all() else None,
        deprivation=inputs.deprivation,
        repeat=repeat,
        other=inputs.other or None,
        violence_groups=tuple(settings.harm.violence_groups),
        asb_weight=settings.harm.asb_weight,
        shrink=settings.indicators.shrink_rates,
        per=settings.indicators.per,
    )


def build_index(settings: Settings, inputs: Inputs, progress: Progress = _quiet) -> IndexResult:
    """Indicators, the composite index, Monte Carlo ranks and drop-one sensitivity."""
    lsoas = inputs.study.index
    cur = settings.current_period.name
    counts = wide_counts(inputs.counts, cur, lsoas)
    pts_cur = inputs.points_in(cur)
    repeat = indicators.repeat_location_share(pts_cur) if len(pts_cur) else None
    if repeat is not None:
        repeat = repeat.reindex(lsoas)
    kwargs = _build_kwargs(settings, inputs, repeat)
    ind = indicators.build_indicators(counts, inputs.harm_weights, **kwargs)
    ix = settings.index
    weights = {k: v for k, v in ix.weights.items() if k in ind.columns}
    missing = sorted(set(ix.weights) - set(ind.columns))
    if missing:
        inputs.notes.append(f"Weighted indicators without data (left out): {missing}")
    if not any(v > 0 for v in weights.values()):
        raise InputError(
            settings.source_file,
            "none of the weighted indicators can be built from the inputs",
            column="index.weights",
            expected=f"some of {list(ind.columns)}",
        )
    res = composite.composite_index(
        ind, weights, normalisation=ix.normalisation, aggregation=ix.aggregation, missing="neutral"
    )
    progress(f"index: {len(ind)} LSOAs, {len(res.effective_weights)} weighted indicators")
    mc = None
    u = settings.uncertainty
    if u.draws > 0:
        mc = uncertainty.monte_carlo(
            counts,
            inputs.harm_weights,
            weights,
            build_kwargs=kwargs,
            draws=u.draws,
            weight_spread=u.weight_spread,
            resample_counts=u.resample_counts,
            seed=settings.pipeline.seed,
            normalisation=ix.normalisation,
            aggregation=ix.aggregation,
            missing="neutral",
            top_fraction=u.top_fraction,
        )
        progress(f"uncertainty: {u.draws} Monte Carlo draws")
    sens = uncertainty.drop_one_sensitivity(
        ind, weights, normalisation=ix.normalisation, aggregation=ix.aggregation, missing="neutral"
    )
    previous = None
    if len(settings.periods) > 1:
        prev_name = settings.periods[-2].name
        prev_counts = wide_counts(inputs.counts, prev_name, lsoas)
        if prev_counts.to_numpy().sum() > 0:
            pts_prev = inputs.points_in(prev_name)
            rp = (
                indicators.repeat_location_share(pts_prev).reindex(lsoas) if len(pts_prev) else None
            )
            ind_prev = indicators.build_indicators(
                prev_counts, inputs.harm_weights, **{**kwargs, "repeat": rp}
            )
            previous = composite.composite_index(
                ind_prev,
                {k: v for k, v in weights.items() if k in ind_prev.columns},
                normalisation=ix.normalisation,
                aggregation=ix.aggregation,
                missing="neutral",
            )
    return IndexResult(indicators=ind, result=res, mc=mc, sensitivity=sens, previous=previous)


# --------------------------------------------------------------------------- stage 5
def find_hotspots(
    settings: Settings,
    inputs: Inputs,
    index: IndexResult,
    progress: Progress = _quiet,
    client=None,
) -> HotspotResult:
    """Gi* and local Moran on the chosen indicators; kernel density where points exist."""
    h = settings.hotspots
    w, wrep = spatial_weights.build_weights(
        inputs.study, method=h.weights, k=h.k, threshold=h.threshold_m
    )
    gi = {}
    seed = settings.pipeline.seed
    for name in h.indicators:
        if name not in index.indicators:
            inputs.notes.append(f"Hot-spot indicator {name!r} has no data; skipped")
            continue
        y = index.indicators[name].reindex(inputs.study.index).fillna(0.0)
        g = hotspots.gi_star(y, w, permutations=max(h.permutations, 1), seed=seed, fdr=h.fdr)
        lm = hotspots.local_moran(
            y, w, permutations=max(h.permutations, 1), seed=seed, fdr=h.fdr, alpha=h.alpha
        )
        gi[name] = g.join(lm)
        hot = int((g["gi_bin"] >= 2).sum())
        progress(f"Gi* {name}: {hot} LSOAs hot at 95%+")
    pts = current_points(settings, inputs)
    per = points_period(settings, inputs)
    surfaces: dict[str, density.DensityGrid] = {}
    d = settings.density
    if len(pts) == 0:
        note = (
            "Kernel density skipped: no point data in the current period (area-level counts only)."
        )
    else:
        groups = [g for g in (d.groups or sorted(pts["crime_group"].unique())) if g != "total_harm"]
        surfaces_of = (
            density.density_surfaces
            if client is None
            else partial(distributed.density_surfaces_dask, client=client)
        )
        surfaces = surfaces_of(
            pts,
            groups=groups,
            bounds=tuple(inputs.study.total_bounds),
            cell_size=d.cell_size_m,
            bandwidth=d.bandwidth_m,
            kernel=d.kernel,
            mask_geometry=inputs.study.geometry.to_numpy(),
            include_total=True,
        )
        with_pts = sorted(pts["crime_group"].unique())
        note = (
            f"Kernel density and micro-places from points ({per}) for "
            f"{', '.join(GROUP_LABELS[g] for g in with_pts)}"
        )
        area_only = sorted(set(inputs.counts["crime_group"].unique()) - set(with_pts))
        if area_only:
            note += (
                f"; area-level counts only (no points) for "
                f"{', '.join(GROUP_LABELS.get(g, g) for g in area_only)}"
            )
        note += "."
        if per != settings.current_period.name:
            note += (
                f" The points do not reach the current period "
                f"({settings.current_period.name}): the latest period with points is used."
            )
        progress(f"density: {len(surfaces)} surfaces at {d.cell_size_m:g} m")
    return HotspotResult(weights_report=wrep.as_dict(), gi=gi, surfaces=surfaces, density_note=note)


# --------------------------------------------------------------------------- stage 6
def choose_neighbourhoods(
    settings: Settings,
    inputs: Inputs,
    index: IndexResult,
    hot: HotspotResult,
    progress: Progress = _quiet,
) -> SelectionResult:
    """The N priority neighbourhoods, their stability, controls, micro-places and trial."""
    sel = settings.selection
    study = inputs.study
    residents = inputs.population["residents"] if inputs.population is not None else None
    graph = selection.neighbour_graph(study.index, selection.queen_neighbours(study))
    kw = dict(
        n=sel.n,
        min_lsoas=sel.min_lsoas,
        max_lsoas=sel.max_lsoas,
        residents=residents,
        min_residents=sel.min_residents,
        max_residents=sel.max_residents,
        threshold_quantile=sel.threshold_quantile,
        separate=sel.separate,
        pad=sel.pad,
    )
    score = index.result.score
    assignment = selection.select_neighbourhoods(study, score, neighbours=graph, **kw)
    roles = selection.selection_roles(study, score, neighbours=graph, **kw)
    names = selection.name_neighbourhoods(
        assignment,
        ward_names=inputs.wards,
        lsoa_names=study["lsoa_name"],
        residents=residents,
        lsoas=study,
    )
    first_gi = next(iter(hot.gi.values()), None)
    attrs = pd.DataFrame(index=study.index)
    attrs["residents"] = residents if residents is not None else np.nan
    attrs["total_harm"] = index.indicators.get("harm_total", 0.0)
    attrs["violence_harm"] = index.indicators.get("harm_violence", 0.0)
    attrs["score"] = score
    attrs["gi_bin"] = first_gi["gi_bin"] if first_gi is not None else 0
    for c in index.result.contributions.columns:
        attrs[f"contrib_{c}"] = index.result.contributions[c]
    labels = {c: indicators.indicator_spec(c).label for c in index.result.contributions.columns}
    summary = selection.summarise_neighbourhoods(
        assignment, attrs, names=names, driver_labels=labels, roles=roles
    )
    polys = selection.dissolve_neighbourhoods(study, assignment)
    stab_lsoa = None
    if index.mc is not None:
        stability, stab_lsoa = selection.selection_stability(
            index.mc.score_draws,
            assignment,
            lsoas=study,
            score=score,
            neighbours=graph,
            fragile_below=settings.uncertainty.fragile_below,
            **kw,
        )
    else:
        stability = pd.DataFrame(index=summary.index)
    pers = None
    if index.previous is not None:
        prev_assign = selection.select_neighbourhoods(
            study, index.previous.score, neighbours=graph, **kw
        )
        pers = selection.persistence(assignment, prev_assign)
    trend = None
    if len(settings.periods) > 1:
        prev = wide_counts(inputs.counts, settings.periods[-2].name, study.index)
        cur = wide_counts(inputs.counts, settings.current_period.name, study.index)
        hw = pd.Series(inputs.harm_weights)
        trend = cur.mul(hw.reindex(cur.columns).fillna(0)).sum(axis=1) - prev.mul(
            hw.reindex(prev.columns).fillna(0)
        ).sum(axis=1)
    controls = selection.propose_controls(
        study, assignment, score=score, residents=residents, pre_trend=trend, neighbours=graph
    )
    ctrl_assign = selection.control_assignment(controls, study.index)
    ctrl_polys = selection.dissolve_neighbourhoods(study, ctrl_assign)
    # micro-places inside each neighbourhood (points of the current period)
    pts = current_points(settings, inputs)
    hot_lsoas = None
    if first_gi is not None:
        hot_lsoas = study[["geometry"]].join(first_gi[["gi_bin"]])
    if inputs.segments is not None:
        micro_places = micro.segment_places(
            pts,
            polys[["geometry"]],
            inputs.segments,
            top_n=settings.micro.top_n,
            max_snap_m=settings.micro.max_snap_m,
            hot_lsoas=hot_lsoas,
            density=hot.surfaces.get("total_harm"),
            density_quantile=settings.micro.density_quantile,
            min_records=settings.micro.min_records,
            min_overlap=settings.micro.min_overlap,
            max_crime_types=settings.micro.max_crime_types,
        )
        snap = dict(micro_places.attrs.get("snap_summary", {}))
        inputs.notes.append(
            f"Micro-places are street segments (at most {settings.micro.segment_length_m:g} m): "
            f"{snap.get('on_segments', 0):,} of {snap.get('records', 0):,} records snapped within "
            f"{settings.micro.max_snap_m:g} m of a road; {snap.get('unsnapped', 0):,} farther "
            "(counted in each neighbourhood's harm share, on no segment)."
        )
    else:
        micro_places = micro.micro_places(
            pts,
            polys[["geometry"]],
            cell_size=settings.micro.cell_size_m,
            top_n=settings.micro.top_n,
            hot_lsoas=hot_lsoas,
            density=hot.surfaces.get("total_harm"),
            density_quantile=settings.micro.density_quantile,
            min_records=settings.micro.min_records,
            min_overlap=settings.micro.min_overlap,
            max_crime_types=settings.micro.max_crime_types,
            clip=settings.micro.clip_cells,
        )
    left = dict(micro_places.attrs.get("left_out", {}))
    micro_places.attrs = {}
    if left.get("left_out"):
        inputs.notes.append(
            f"{left['left_out']} of {left['places']} occupied micro-places are not listed: "
            f"{left['too_few_records']} with fewer than {settings.micro.min_records} records, "
            f"{left['mostly_outside']} less than {settings.micro.min_overlap:.0%} inside their "
            "neighbourhood (their harm still counts in the shares)."
        )
    if settings.trial.units == "micro_places" and len(micro_places):
        units = micro_places[["cell_id", "neighbourhood_id", "harm", "geometry"]].reset_index(
            drop=True
        )
        trial = selection.allocate_trial(
            units,
            block_by="harm",
            block_size=settings.trial.block_size,
            seed=settings.pipeline.seed,
            unit_col="cell_id",
            group_by="neighbourhood_id" if settings.trial.block_within_neighbourhood else None,
            min_value=settings.trial.min_harm,
            min_column="harm",
            geometry="geometry",
            buffer=settings.trial.buffer_m,
        )
    else:
        units = summary.reset_index()[["neighbourhood_id", "total_harm"]]
        trial = selection.allocate_trial(
            units,
            block_by="total_harm",
            block_size=settings.trial.block_size,
            seed=settings.pipeline.seed,
            unit_col="neighbourhood_id",
            min_value=settings.trial.min_harm,
            min_column="total_harm",
            geometry=polys.geometry,
            buffer=settings.trial.buffer_m,
        )
    progress(
        f"selection: {int((summary.index > 0).sum())} neighbourhoods, "
        f"{len(micro_places)} micro-places"
    )
    return SelectionResult(
        assignment=assignment,
        summary=summary,
        polygons=polys,
        stability=stability,
        lsoa_frequency=stab_lsoa,
        persistence=pers,
        controls=controls,
        control_polygons=ctrl_polys,
        micro=micro_places,
        trial=trial,
        rule=selection.describe_rule(**{k: v for k, v in kw.items() if k != "residents"}),
        roles=roles,
    )


# --------------------------------------------------------------------------- the run
def run(
    settings: Settings,
    *,
    out_dir: Path | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
    write: bool = True,
) -> RunResult:
    """Run every stage and write the outputs.

    Parameters
    ----------
    settings
        Loaded settings.
    out_dir
        Output folder (default from the settings).
    seed
        Overrides ``pipeline.seed``.
    progress
        Called with one line per stage (None: quiet).
    write
        Write the outputs (False runs the computation only, for benchmarks and tests).
    """
    if seed is not None:
        settings = settings.model_copy(
            update={"pipeline": settings.pipeline.model_copy(update={"seed": seed})}
        )
    say = progress or _quiet
    timings: dict[str, float] = {}
    stages = ["ingest", "indicators and index", "hot spots", "neighbourhoods", "exports"]

    def timed(i: int, name: str, fn, *args):
        t0 = time.perf_counter()
        say(f"[{i}/{len(stages)}] {name} ...")
        out = fn(*args, lambda msg: say(f"      {msg}"))
        timings[name] = round(time.perf_counter() - t0, 3)
        say(f"      done in {timings[name]:.2f} s")
        return out

    eng = settings.engine
    with distributed.client_for(
        eng.kind, eng.scheduler, eng.n_workers, threads_per_worker=eng.threads_per_worker
    ) as client:
        if client is not None:
            say(f"engine: Dask, scheduler {client.scheduler.address}")
        inputs = timed(1, "ingest", partial(ingest, client=client), settings)
        index = timed(2, "indicators and index", build_index, settings, inputs)
        hot = timed(3, "hot spots", partial(find_hotspots, client=client), settings, inputs, index)
    chosen = timed(
        4, "priority neighbourhoods", choose_neighbourhoods, settings, inputs, index, hot
    )
    names = [p.name for p in settings.periods]
    htab = harm.harm_table(
        inputs.counts, inputs.harm_weights, periods=names if len(names) > 1 else names * 2
    )
    conc = _concentration(settings, inputs, index)
    fv = None
    if settings.report.face_validity:
        places = area_tables.read_csv_checked(
            settings.path(settings.report.face_validity), required=["place"]
        )
        fv = face_validity.face_validity(
            places,
            _face_lsoas(inputs, index, hot, chosen),
            chosen.summary,
            neighbours=selection.queen_neighbours(inputs.study),
            top_share=1 - settings.selection.threshold_quantile,
        )
    result = RunResult(
        settings=settings,
        inputs=inputs,
        index=index,
        hotspots=hot,
        selection=chosen,
        harm_table=htab,
        concentration=conc,
        timings=timings,
        points_period=points_period(settings, inputs),
        face_validity=fv,
    )
    if write:
        from .exports import bundle

        target = settings.output_dir(out_dir)
        result.out_dir = target
        timed(5, "exports", lambda r, p: write_outputs(r, target, bundle.write_all, p), result)
    return result


def _face_lsoas(
    inputs: Inputs, index: IndexResult, hot: HotspotResult, sel: SelectionResult
) -> pd.DataFrame:
    res = index.result
    out = pd.DataFrame(
        {
            "lsoa_name": inputs.study["lsoa_name"],
            "ward_name": inputs.wards if inputs.wards is not None else "",
            "score": res.score,
            "rank": res.rank,
            "neighbourhood_id": sel.assignment,
            "top_drivers": composite.top_drivers(res.contributions),
        }
    )
    first = next(iter(hot.gi.values()), None)
    if first is not None:
        out["gi_bin"] = first["gi_bin"]
    return out


def study_cells(study: gpd.GeoDataFrame, cell_size: float) -> pd.Index:
    """Ids (``E<x>N<y>`` of the south-west corner, as micro.cell_totals) of every grid cell whose
    centre lies in the study area: the denominator of cell-level concentration."""
    xmin, ymin, xmax, ymax = study.total_bounds
    x0 = np.floor(xmin / cell_size) * cell_size
    y0 = np.floor(ymin / cell_size) * cell_size
    xs = np.arange(x0, xmax, cell_size)
    ys = np.arange(y0, ymax, cell_size)
    gx, gy = np.meshgrid(xs, ys)
    gx, gy = gx.ravel(), gy.ravel()
    inside = shapely.contains_xy(study.union_all(), gx + cell_size / 2, gy + cell_size / 2)
    col = np.round(gx[inside] / cell_size).astype(np.int64)
    row = np.round(gy[inside] / cell_size).astype(np.int64)
    return pd.Index(micro.cell_ids(col, row, cell_size=cell_size).astype(str))


def _concentration(settings: Settings, inputs: Inputs, index: IndexResult) -> pd.DataFrame:
    """How concentrated harm and counts are: over LSOAs, and over grid cells when points exist
    (every cell of the study area counts, empty ones too)."""
    ind = index.indicators
    per_lsoa = pd.DataFrame(
        {
            "unit_label": ind.index,
            "harm": ind.get("harm_total", 0.0),
            "count": ind.get("crime_count", 0.0),
        }
    )
    out = harm.concentration_summary(per_lsoa).assign(unit="LSOA")
    pts = current_points(settings, inputs)
    pts = pts[pts["crime_group"] != "asb"]
    if len(pts):
        size = settings.micro.cell_size_m
        cells = micro.cell_totals(pts, cell_size=size)
        every = study_cells(inputs.study, size).union(cells.index.astype(str))
        cells = cells.reindex(every, fill_value=0)
        per_cell = pd.DataFrame(
            {
                "unit_label": cells.index.astype(str),
                "harm": cells["harm"].to_numpy(dtype=float),
                "count": cells["n_records"].to_numpy(dtype=float),
            }
        )
        present = sorted(pts["crime_group"].unique())
        groups = (
            ", ".join(GROUP_LABELS[g] for g in present)
            if len(present) <= 3
            else f"{len(present)} crime groups"
        )
        unit = (
            f"{size:g} m cell, police.uk points {points_period(settings, inputs)} "
            f"({groups}); all {len(every):,} cells of the study area"
        )
        out = pd.concat(
            [out, harm.concentration_summary(per_cell).assign(unit=unit)], ignore_index=True
        )
    return out


def write_outputs(result: RunResult, target: Path, writer, progress: Progress) -> None:
    """Write into a temporary sibling folder, then swap it in place of ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        writer(result, tmp, progress)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{time.time_ns()}")
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def stderr_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
