"""Micro-places for patrol plans: the most harmful grid squares or street segments inside
priority neighbourhoods.

Harm concentrates in a few streets even within a hot neighbourhood, so the patrol planner's
target list ranks small places by the Crime Harm Index days recorded in them.

* Grid cells (:func:`micro_places`): squares of 150 m by default, aligned to whole multiples of
  the cell size in British National Grid so that lists from different runs name the same
  squares. Each cell is named by its south-west corner, ``"E<easting>N<northing>"`` in whole
  metres.
* Street segments (:func:`segment_places`, when a road layer is given): the roads cut into
  pieces of at most 150 m by :func:`street_segments`, named by their midpoint
  (``"E<easting>N<northing>-<k>"``); records are snapped to the nearest segment.

Either way a place is flagged when it is also a Getis-Ord Gi* hot spot (its centre lies in a
hot LSOA) or a kernel-density hot spot (its mean density reaches a high quantile of the
surface), and both functions return the same columns, so the exports draw either.

Two checks help a patrol planner trust the list:

* ``overlap_share``: the share of a cell's area (of a segment's length) inside its
  neighbourhood; a cell on the edge holds only the records of its part inside, and
  ``min_overlap`` leaves out cells that lie mostly outside.
* ``generic_location``: police.uk moves every record to an anonymised map point, and some map
  points are named after a kind of place ("On or near Supermarket", "On or near Hospital")
  rather than a street. The labels are kept in ``data/police_uk_generic_locations.csv`` (every
  such label seen in the police.uk street files of four forces, 2019-2020, and the Met's
  burglaries, 2023-2025); a place whose top location is one of them is flagged, never dropped,
  so that someone checks on the ground where it is.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from priority_index.crime_groups import GROUP_LABELS
from priority_index.density import DensityGrid

__all__ = [
    "GENERIC_LOCATIONS",
    "MICRO_COLUMNS",
    "SEGMENT_COLUMNS",
    "cell_ids",
    "cell_totals",
    "is_generic_location",
    "micro_places",
    "points_note",
    "segment_places",
    "street_segments",
]

#: Columns of :func:`micro_places`, in order.
MICRO_COLUMNS: tuple[str, ...] = (
    "neighbourhood_id",
    "patrol_rank",
    "cell_id",
    "n_records",
    "harm",
    "harm_share",
    "crime_types",
    "crime_types_all",
    "top_location",
    "generic_location",
    "months_active",
    "overlap_share",
    "gi_hotspot",
    "kde_hotspot",
    "geometry",
)

_CRS = "EPSG:27700"
_PREFIX = "on or near "


def _normalise_location(text: pd.Series) -> pd.Series:
    """Lower-case, single-spaced location text without police.uk's "On or near " prefix."""
    out = text.astype("string").str.strip().str.replace(r"\s+", " ", regex=True).str.casefold()
    return out.str.removeprefix(_PREFIX).str.strip()


def _load_generic_locations() -> frozenset[str]:
    path = resources.files("priority_index") / "data" / "police_uk_generic_locations.csv"
    with path.open(encoding="utf-8") as handle:
        labels = pd.read_csv(handle, dtype="string", keep_default_na=False)
    if "label" not in labels.columns:
        raise ValueError("packaged police_uk_generic_locations.csv lacks column 'label'")
    return frozenset(labels["label"].str.strip().loc[lambda s: s != ""])


#: police.uk's generic map-point labels (``"Supermarket"``, ``"Hospital"`` ...), read from
#: ``data/police_uk_generic_locations.csv``: places named after a kind of place, not a street.
GENERIC_LOCATIONS: frozenset[str] = _load_generic_locations()
_GENERIC_KEYS = frozenset(_normalise_location(pd.Series(sorted(GENERIC_LOCATIONS))))


def is_generic_location(locations: Any) -> np.ndarray:
    """Whether each police.uk location text is a generic map-point label.

    Parameters
    ----------
    locations
        Location texts, with or without police.uk's ``"On or near "`` prefix (``"On or near
        Supermarket"`` and ``"supermarket"`` both match); case and spacing are ignored.

    Returns
    -------
    numpy.ndarray
        Boolean array, True where the text (after the prefix) is one of
        :data:`GENERIC_LOCATIONS`; missing text is False.
    """
    keys = _normalise_location(pd.Series(locations, dtype="string"))
    return keys.isin(_GENERIC_KEYS).fillna(False).to_numpy(dtype=bool)


def points_note(
    groups: Any,
    period: str | None = None,
    *,
    all_groups: Any = None,
    source: str = "police.uk",
) -> str:
    """One line saying what micro-places and density are made of, for maps and tables.

    Parameters
    ----------
    groups
        Crime groups of the points used (ids such as ``"burglary"``; duplicates and missing
        values ignored).
    period
        Period of those points (e.g. ``"2024/25"``).
    all_groups
        Every crime group of the run (points or area counts); when the points cover fewer,
        the note says "only".
    source
        Where the points come from.

    Returns
    -------
    str
        For example ``"Micro-places and density: police.uk Burglary points only, 2024/25"``;
        plain text (escape it for HTML).
    """
    have = sorted({str(g) for g in pd.Series(groups, dtype=object).dropna()})
    if not have:
        return "Micro-places and density: no point data"
    labels = [GROUP_LABELS.get(g, g) for g in have]
    named = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
    every = all_groups is None or set(have) >= {str(g) for g in all_groups if pd.notna(g)}
    if every and len(have) > 3:
        named = f"{len(have)} crime groups"
    only = "" if every else " only"
    when = f", {period}" if period else ""
    return f"Micro-places and density: {source} {named} points{only}{when}"


def _cell_index(x: np.ndarray, y: np.ndarray, cell_size: float) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.floor(x / cell_size).astype(np.int64),
        np.floor(y / cell_size).astype(np.int64),
    )


def cell_ids(col: Any, row: Any, *, cell_size: float) -> np.ndarray:
    """Names ``"E<easting>N<northing>"`` of grid cells from their column and row numbers.

    Parameters
    ----------
    col, row
        Integer cell numbers, ``floor(x / cell_size)`` and ``floor(y / cell_size)``.
    cell_size
        Cell side in metres.

    Returns
    -------
    numpy.ndarray
        Object array of names built from the south-west corner in whole metres, for example
        ``"E532050N165300"`` for the 150 m cell whose corner is at (532050, 165300).
    """
    e = np.floor(np.asarray(col, dtype=np.int64) * cell_size + 1e-6).astype(np.int64)
    n = np.floor(np.asarray(row, dtype=np.int64) * cell_size + 1e-6).astype(np.int64)
    out = "E" + pd.Series(e).astype(str) + "N" + pd.Series(n).astype(str)
    return out.to_numpy(dtype=object)


def _located(points: pd.DataFrame) -> pd.DataFrame:
    x = points["x"].to_numpy(dtype=np.float64)
    y = points["y"].to_numpy(dtype=np.float64)
    return points.loc[np.isfinite(x) & np.isfinite(y)]


def cell_totals(points: pd.DataFrame, *, cell_size: float = 150.0) -> pd.DataFrame:
    """Record count and harm of every occupied grid cell.

    Parameters
    ----------
    points
        Point frame with float ``x``, ``y`` (EPSG:27700) and ``harm``; rows without coordinates
        are left out.
    cell_size
        Cell side in metres; cells are aligned to whole multiples of it.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``cell_id``, with ``x_min``, ``y_min`` (south-west corner, metres),
        ``n_records`` and ``harm``; sorted by harm, then records, descending, then by id.
    """
    if cell_size < 1:
        raise ValueError("cell_size must be at least 1 m")
    pts = _located(points)
    col, row = _cell_index(pts["x"].to_numpy(np.float64), pts["y"].to_numpy(np.float64), cell_size)
    frame = pd.DataFrame(
        {"col": col, "row": row, "harm": pts["harm"].to_numpy(dtype=np.float64, na_value=np.nan)}
    )
    agg = (
        frame.groupby(["col", "row"], sort=True)
        .agg(n_records=("harm", "size"), harm=("harm", "sum"))
        .reset_index()
    )
    agg["cell_id"] = pd.array(cell_ids(agg["col"], agg["row"], cell_size=cell_size), "string")
    agg["x_min"] = agg["col"] * float(cell_size)
    agg["y_min"] = agg["row"] * float(cell_size)
    agg = agg.sort_values(
        ["harm", "n_records", "cell_id"], ascending=[False, False, True], kind="stable"
    )
    out = agg.set_index("cell_id")[["x_min", "y_min", "n_records", "harm"]]
    out["n_records"] = out["n_records"].astype(np.int64)
    return out


def _to_bng(frame: gpd.GeoDataFrame | gpd.GeoSeries) -> Any:
    if frame.crs is not None and not frame.crs.equals(_CRS):
        return frame.to_crs(_CRS)
    return frame


#: Up to this many geometries, points are tested polygon by polygon (no tree of points).
_FEW_GEOMETRIES = 64


def _first_containing(px: np.ndarray, py: np.ndarray, geoms: np.ndarray) -> np.ndarray:
    """Position of the first geometry covering each point (-1 for none), vectorised."""
    out = np.full(px.size, -1, dtype=np.int64)
    if px.size == 0 or geoms.size == 0:
        return out
    if geoms.size <= _FEW_GEOMETRIES:
        # a few polygons (the nine neighbourhoods): test only the points in each one's box
        shapely.prepare(geoms)
        bounds = shapely.bounds(geoms)
        for k, (geom, (x0, y0, x1, y1)) in enumerate(zip(geoms, bounds, strict=True)):
            if geom is None or shapely.is_empty(geom):
                continue
            cand = np.flatnonzero((out < 0) & (px >= x0) & (px <= x1) & (py >= y0) & (py <= y1))
            if cand.size:
                out[cand[shapely.intersects_xy(geom, px[cand], py[cand])]] = k
        return out
    tree = shapely.STRtree(geoms)
    pt_idx, geom_idx = tree.query(shapely.points(px, py), predicate="intersects")
    if pt_idx.size:
        order = np.lexsort((geom_idx, pt_idx))
        pt_idx, geom_idx = pt_idx[order], geom_idx[order]
        first = np.r_[True, pt_idx[1:] != pt_idx[:-1]]
        out[pt_idx[first]] = geom_idx[first]
    return out


def _empty_result(extra: dict[str, Any] | None = None) -> gpd.GeoDataFrame:
    frame = pd.DataFrame(
        {
            "neighbourhood_id": pd.Series([], dtype=object),
            "patrol_rank": pd.Series([], dtype=np.int64),
            "cell_id": pd.Series([], dtype="string"),
            "n_records": pd.Series([], dtype=np.int64),
            "harm": pd.Series([], dtype=np.float64),
            "harm_share": pd.Series([], dtype=np.float64),
            "crime_types": pd.Series([], dtype="string"),
            "crime_types_all": pd.Series([], dtype="string"),
            "top_location": pd.Series([], dtype="string"),
            "generic_location": pd.Series([], dtype=bool),
            "months_active": pd.Series([], dtype=np.int64),
            "overlap_share": pd.Series([], dtype=np.float64),
            "gi_hotspot": pd.Series([], dtype=bool),
            "kde_hotspot": pd.Series([], dtype=bool),
            **{k: pd.Series([], dtype=v) for k, v in (extra or {}).items()},
        }
    )
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries([], crs=_CRS), crs=_CRS)


# --------------------------------------------------------------------------------------------
# Helpers shared by grid cells and street segments: records, ranking, labels, hot-spot flags


def _records(pts: pd.DataFrame, take: np.ndarray) -> pd.DataFrame:
    """Attributes of the records at positions ``take`` of ``pts`` (harm NaN counted as 0)."""
    n = int(take.size)
    recs = pd.DataFrame(
        {
            "group": pts["crime_group"].take(take).astype("string").fillna("unknown").to_numpy(),
            "harm": pts["harm"].to_numpy(dtype=np.float64, na_value=np.nan)[take],
            "month": pts["month"].take(take).astype("string").to_numpy(),
            "location": (
                pts["location"].take(take).astype("string").to_numpy()
                if "location" in pts.columns
                else pd.array([pd.NA] * n, dtype="string")
            ),
            "lsoa_code": (
                pts["lsoa_code"].take(take).astype("string").to_numpy()
                if "lsoa_code" in pts.columns
                else pd.array([pd.NA] * n, dtype="string")
            ),
        }
    )
    recs["harm"] = recs["harm"].fillna(0.0)
    return recs


def _aggregate(recs: pd.DataFrame, keys: list[str], **extra: tuple[str, str]) -> pd.DataFrame:
    """Records, harm and active months per place (``keys`` start with ``"nb"``)."""
    return (
        recs.groupby(keys, sort=False)
        .agg(
            n_records=("harm", "size"),
            harm=("harm", "sum"),
            months_active=("month", "nunique"),
            **extra,
        )
        .reset_index()
    )


def _rank(places: pd.DataFrame, denom: pd.Series, id_col: str, top_n: int) -> pd.DataFrame:
    """Harm share (of ``denom``, by neighbourhood position), patrol rank, top ``top_n`` kept.

    Rank 1 has the most harm; ties go to more records, then to the lower ``id_col``.
    """
    places = places.copy()
    d = places["nb"].map(denom).to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        places["harm_share"] = np.where(d > 0, places["harm"].to_numpy() / d, np.nan)
    places = places.sort_values(
        ["nb", "harm", "n_records", id_col],
        ascending=[True, False, False, True],
        kind="stable",
    )
    places["patrol_rank"] = places.groupby("nb").cumcount().to_numpy() + 1
    return places[places["patrol_rank"] <= top_n].reset_index(drop=True)


def _keep(
    places: pd.DataFrame, nb_ids: pd.Index, *, min_records: int, min_overlap: float
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Places with at least ``min_records`` records and an ``overlap_share`` of at least
    ``min_overlap``, and an account of those left out (plain values, ready for JSON)."""
    too_few = places["n_records"].to_numpy() < min_records
    outside = places["overlap_share"].to_numpy(dtype=np.float64) < min_overlap
    drop = too_few | outside
    nb = places["nb"].to_numpy(np.int64)
    k = len(nb_ids)

    def per_nb(mask: np.ndarray) -> np.ndarray:
        return np.bincount(nb[mask], minlength=k)

    summary = {
        "min_records": int(min_records),
        "min_overlap": float(min_overlap),
        "places": int(len(places)),
        "left_out": int(drop.sum()),
        "too_few_records": int(too_few.sum()),
        "mostly_outside": int((outside & ~too_few).sum()),
        "harm_left_out": float(places.loc[drop, "harm"].sum()),
        "by_neighbourhood": [
            {
                "neighbourhood_id": _plain(nid),
                "places": int(a),
                "qualifying": int(b),
                "too_few_records": int(c),
                "mostly_outside": int(d),
            }
            for nid, a, b, c, d in zip(
                nb_ids,
                per_nb(np.ones(nb.size, bool)),
                per_nb(~drop),
                per_nb(too_few),
                per_nb(outside & ~too_few),
                strict=True,
            )
        ],
    }
    return places.loc[~drop], summary


def _type_text(by_group: pd.DataFrame, keys: list[str], max_types: int | None) -> pd.Series:
    """``"Theft 7; Robbery 2; +3 more"``: the first ``max_types`` lines of each place (in
    ``by_group`` order), then the number of groups left out; ``None``: every group."""
    grouped = by_group.groupby(keys, sort=False)
    if max_types is None:
        return grouped["text"].agg("; ".join)
    pos = grouped.cumcount().to_numpy()
    top = by_group.loc[pos < max_types].groupby(keys, sort=False)["text"].agg("; ".join)
    more = (grouped.size() - max_types).reindex(top.index)
    suffix = np.where(more.to_numpy() > 0, "; +" + more.astype(str) + " more", "")
    return top + suffix


def _describe(
    places: pd.DataFrame, recs: pd.DataFrame, keys: list[str], *, max_types: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``crime_types``, ``crime_types_all`` and ``top_location`` of each kept place; also the
    kept places' records.

    ``crime_types_all``: ``"Burglary 7; Robbery 2"`` with :data:`GROUP_LABELS`, most harmful
    group first (ties: more records, then alphabetical); ``crime_types``: its first
    ``max_types`` groups and ``"+N more"`` when there are more; ``top_location``: the most
    frequent location text (ties alphabetical, missing text skipped).
    """
    n = len(keys)
    kept = recs.merge(places[keys], on=keys, how="inner")
    by_group = (
        kept.groupby([*keys, "group"], sort=False)
        .agg(k=("harm", "size"), h=("harm", "sum"))
        .reset_index()
    )
    by_group["label"] = (
        by_group["group"].map(GROUP_LABELS).astype("string").fillna(by_group["group"])
    )
    by_group = by_group.sort_values(
        [*keys, "h", "k", "label"], ascending=[True] * n + [False, False, True], kind="stable"
    ).reset_index(drop=True)
    by_group["text"] = by_group["label"] + " " + by_group["k"].astype("string")
    types = pd.DataFrame(
        {
            "crime_types": _type_text(by_group, keys, max_types),
            "crime_types_all": _type_text(by_group, keys, None),
        }
    )
    locs = (
        kept.dropna(subset=["location"])
        .groupby([*keys, "location"], sort=False)
        .size()
        .rename("k")
        .reset_index()
        .sort_values([*keys, "k", "location"], ascending=[True] * n + [False, True])
        .drop_duplicates(keys)
        .set_index(keys)["location"]
        .rename("top_location")
    )
    return places.join(types, on=keys).join(locs, on=keys), kept


def _hot_polygons(hot_lsoas: gpd.GeoDataFrame | gpd.GeoSeries, min_gi_bin: int) -> np.ndarray:
    hot = _to_bng(hot_lsoas)
    if isinstance(hot, gpd.GeoDataFrame):
        if "gi_bin" in hot.columns:
            hot = hot[hot["gi_bin"].to_numpy(dtype=np.float64, na_value=np.nan) >= min_gi_bin]
        geoms = hot.geometry.to_numpy()
    else:
        geoms = hot.to_numpy()
    return geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]


def _gi_flags(
    keys: pd.DataFrame,
    assigned: pd.DataFrame,
    hot_lsoas: Any,
    *,
    cx: np.ndarray,
    cy: np.ndarray,
    min_gi_bin: int,
) -> np.ndarray:
    """Gi* hot-spot flag for each row of ``keys`` (the place key columns, ``nb`` first).

    With polygons, a place is hot when its centre (``cx``, ``cy``) lies in a hot LSOA; with a
    Series of ``gi_bin`` by LSOA code, when the LSOA holding most of its records (ties to the
    lower code) is hot.
    """
    if hot_lsoas is None:
        return np.zeros(len(keys), dtype=bool)
    if isinstance(hot_lsoas, gpd.GeoDataFrame | gpd.GeoSeries):
        return _first_containing(cx, cy, _hot_polygons(hot_lsoas, min_gi_bin)) >= 0
    cols = list(keys.columns)
    gi = pd.Series(hot_lsoas)
    counts = (
        assigned.dropna(subset=["lsoa_code"])
        .groupby([*cols, "lsoa_code"], sort=False)
        .size()
        .rename("k")
        .reset_index()
        .sort_values([*cols, "k", "lsoa_code"], ascending=[True] * len(cols) + [False, True])
        .drop_duplicates(cols)
    )
    counts["hot"] = (
        counts["lsoa_code"].map(gi).to_numpy(dtype=np.float64, na_value=np.nan) >= min_gi_bin
    )
    merged = keys.merge(counts[[*cols, "hot"]], on=cols, how="left")
    return merged["hot"].fillna(False).to_numpy(dtype=bool)


def _kde_cut(
    density: DensityGrid | None, *, quantile: float, threshold: float | None
) -> float | None:
    """The KDE hot-spot threshold: ``threshold``, else the quantile of the valid surface cells
    (``None`` without a surface or valid cell)."""
    if density is None:
        return None
    vals = density.values.astype(np.float64)
    valid = np.isfinite(vals)
    if not valid.any():
        return None
    return float(np.quantile(vals[valid], quantile)) if threshold is None else float(threshold)


def _is_kde_hot(mean: np.ndarray, cut: float) -> np.ndarray:
    # "At or above" so that a place at the surface's maximum counts even when the quantile equals
    # that maximum; positive so that a zero quantile does not flag every empty place.
    mean = np.nan_to_num(mean, nan=-np.inf)
    return (mean >= cut) & (mean > 0)


def _kde_flags(
    keys: pd.DataFrame,
    density: DensityGrid | None,
    *,
    cell_size: float,
    quantile: float,
    threshold: float | None,
) -> np.ndarray:
    """KDE hot-spot flag: mean density of the surface cells centred in each micro cell.

    A cell is hot when that mean is positive and at or above the threshold.
    """
    cut = _kde_cut(density, quantile=quantile, threshold=threshold)
    if cut is None:
        return np.zeros(len(keys), dtype=bool)
    vals = density.values.astype(np.float64)
    valid = np.isfinite(vals)
    xs, ys = density.cell_centres()
    mcol, mrow = _cell_index(xs, ys, cell_size)
    ucol, col_pos = np.unique(mcol, return_inverse=True)
    urow, row_pos = np.unique(mrow, return_inverse=True)
    code = row_pos[:, None] * ucol.size + col_pos[None, :]
    sums = np.bincount(code[valid], weights=vals[valid], minlength=ucol.size * urow.size)
    cnts = np.bincount(code[valid], minlength=ucol.size * urow.size)
    kc = keys["col"].to_numpy(np.int64)
    kr = keys["row"].to_numpy(np.int64)
    ci = np.clip(np.searchsorted(ucol, kc), 0, ucol.size - 1)
    ri = np.clip(np.searchsorted(urow, kr), 0, urow.size - 1)
    on_grid = (ucol[ci] == kc) & (urow[ri] == kr)
    flat = ri * ucol.size + ci
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(on_grid & (cnts[flat] > 0), sums[flat] / np.maximum(cnts[flat], 1), np.nan)
    return _is_kde_hot(mean, cut)


_POLYGON_TYPES = (shapely.GeometryType.POLYGON.value, shapely.GeometryType.MULTIPOLYGON.value)


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """The polygon parts of each geometry (an intersection may add lines or points where the
    shapes only touch); an empty Polygon when there are none."""
    out = geoms.copy()
    for i in np.flatnonzero(~np.isin(shapely.get_type_id(geoms), _POLYGON_TYPES)):
        parts = shapely.get_parts(shapely.get_parts(geoms[i]))
        parts = parts[np.isin(shapely.get_type_id(parts), _POLYGON_TYPES)]
        parts = parts[shapely.area(parts) > 0]
        if parts.size == 0:
            out[i] = shapely.Polygon()
        else:
            out[i] = parts[0] if parts.size == 1 else shapely.multipolygons(parts)
    return out


def _overlap(shapes: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share of each shape inside its owner polygon (by area for polygons, by length for lines;
    rounded to 6 decimals), and the shape clipped to the owner.

    Shapes wholly inside keep share 1 and their own geometry without any overlay; a polygon
    with no area inside keeps its whole geometry as the clipped one.
    """
    share = np.ones(shapes.size, dtype=np.float64)
    clipped = shapes.copy()
    if shapes.size == 0:
        return share, clipped
    shapely.prepare(owners)
    edge = np.flatnonzero(~shapely.contains(owners, shapes))
    if edge.size == 0:
        return share, clipped
    part = shapely.intersection(shapes[edge], owners[edge])
    polygons = np.isin(shapely.get_type_id(shapes[edge]), _POLYGON_TYPES)
    part[polygons] = _polygonal(part[polygons])
    size = np.where(polygons, shapely.area(shapes[edge]), shapely.length(shapes[edge]))
    inside = np.where(polygons, shapely.area(part), shapely.length(part))
    with np.errstate(invalid="ignore", divide="ignore"):
        share[edge] = np.clip(np.round(np.where(size > 0, inside / size, 0.0), 6), 0.0, 1.0)
    has = polygons & (inside > 0)
    clipped[edge[has]] = part[has]
    return share, clipped


def _result(
    places: pd.DataFrame,
    nb_ids: pd.Index,
    *,
    id_col: str,
    gi: np.ndarray,
    kde: np.ndarray,
    geometry: np.ndarray,
    extra: dict[str, Any] | None = None,
) -> gpd.GeoDataFrame:
    out = pd.DataFrame(
        {
            "neighbourhood_id": nb_ids.take(places["nb"].to_numpy()).to_numpy(),
            "patrol_rank": places["patrol_rank"].to_numpy(np.int64),
            "cell_id": pd.array(places[id_col].to_numpy(), dtype="string"),
            "n_records": places["n_records"].to_numpy(np.int64),
            "harm": places["harm"].to_numpy(np.float64),
            "harm_share": places["harm_share"].to_numpy(np.float64),
            "crime_types": pd.array(places["crime_types"], dtype="string"),
            "crime_types_all": pd.array(places["crime_types_all"], dtype="string"),
            "top_location": pd.array(places["top_location"], dtype="string"),
            "generic_location": is_generic_location(places["top_location"]),
            "months_active": places["months_active"].to_numpy(np.int64),
            "overlap_share": places["overlap_share"].to_numpy(np.float64),
            "gi_hotspot": gi,
            "kde_hotspot": kde,
            **(extra or {}),
        }
    )
    return gpd.GeoDataFrame(out, geometry=geometry, crs=_CRS)


_NO_PLACES = pd.DataFrame(
    {
        "nb": pd.Series([], dtype=np.int64),
        "n_records": pd.Series([], dtype=np.int64),
        "harm": pd.Series([], dtype=np.float64),
        "overlap_share": pd.Series([], dtype=np.float64),
    }
)


def _check_options(top_n: int, min_records: int, min_overlap: float, max_types: int) -> None:
    if top_n < 1:
        raise ValueError("top_n must be at least 1")
    if min_records < 1:
        raise ValueError("min_records must be at least 1")
    if not 0.0 <= min_overlap <= 1.0:
        raise ValueError("min_overlap must be a share between 0 and 1")
    if max_types < 1:
        raise ValueError("max_crime_types must be at least 1")


def micro_places(
    points: pd.DataFrame,
    neighbourhoods: gpd.GeoDataFrame,
    *,
    cell_size: float = 150.0,
    top_n: int = 10,
    hot_lsoas: gpd.GeoDataFrame | gpd.GeoSeries | pd.Series | None = None,
    min_gi_bin: int = 2,
    density: DensityGrid | None = None,
    density_quantile: float = 0.95,
    density_threshold: float | None = None,
    min_records: int = 1,
    min_overlap: float = 0.0,
    max_crime_types: int = 3,
    clip: bool = True,
) -> gpd.GeoDataFrame:
    """Rank the grid cells inside each priority neighbourhood by harm: the patrol target list.

    Parameters
    ----------
    points
        Point frame with float ``x``, ``y`` (EPSG:27700), ``crime_group``, ``harm``, ``month``
        and ``location`` (and ``lsoa_code`` when ``hot_lsoas`` is a plain Series). Each record
        belongs to the first neighbourhood (in frame order) whose polygon covers it; records in
        none, or without coordinates, are left out.
    neighbourhoods
        Polygons indexed by ``neighbourhood_id``; reprojected to EPSG:27700 if needed.
    cell_size
        Side of the square cells in metres (aligned to whole multiples of it).
    top_n
        Cells kept per neighbourhood.
    hot_lsoas
        Gi* results: a GeoDataFrame of LSOA polygons (only rows with ``gi_bin >= min_gi_bin``
        count when it has a ``gi_bin`` column), a GeoSeries of hot polygons, or a Series of
        ``gi_bin`` indexed by LSOA code (the cell then takes the LSOA of most of its records).
        A cell is a Gi* hot spot when its centre lies in a hot LSOA. ``None``: all False.
    min_gi_bin
        Smallest ``gi_bin`` counted as hot (2 = hot at 95 % confidence).
    density
        Density surface for the KDE flag; ``None``: all False.
    density_quantile
        A cell is a KDE hot spot when the mean of the (non-NaN) surface cells centred in it is
        positive and at or above this quantile of the surface's valid cells.
    density_threshold
        Absolute density to use instead of the quantile.
    min_records
        Cells with fewer records are not listed (nor ranked); their harm still counts in the
        neighbourhood's harm, the denominator of ``harm_share``.
    min_overlap
        Cells with a smaller ``overlap_share`` are not listed (nor ranked); 0 lists every cell.
    max_crime_types
        Crime groups named in ``crime_types`` (the rest are counted as ``"+N more"``).
    clip
        Clip each cell's geometry to its neighbourhood (where its records are); a cell with no
        area inside keeps its square. ``cell_id`` always names the whole square.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per kept cell, ordered by neighbourhood then rank, with the columns of
        :data:`MICRO_COLUMNS`: ``patrol_rank`` (1 = most harm; ties broken by records, then
        ``cell_id``), ``n_records``, ``harm`` (days), ``harm_share`` (of all the
        neighbourhood's harm, listed cells or not; NaN when it has none), ``crime_types_all``
        (``"Burglary 7; Robbery 2"`` using :data:`GROUP_LABELS`, most harmful group first; ties
        to more records, then alphabetical), ``crime_types`` (its first ``max_crime_types``
        groups, then ``"+N more"``), ``top_location`` (most frequent location text, ties
        alphabetical), ``generic_location`` (the top location is a generic police.uk map point,
        see :func:`is_generic_location`: check on the ground), ``months_active`` (distinct
        months), ``overlap_share`` (share of the cell square's area inside the neighbourhood),
        ``gi_hotspot``, ``kde_hotspot`` and ``geometry`` (the cell square, clipped to the
        neighbourhood with ``clip``; EPSG:27700).

        ``attrs["left_out"]`` (plain values, ready for JSON) counts the occupied cells
        (``places``), those not listed because of ``min_records`` (``too_few_records``) or
        else ``min_overlap`` (``mostly_outside``), their harm (``harm_left_out``), and the same
        per neighbourhood in frame order (``by_neighbourhood``, with ``qualifying``: cells that
        pass both, before ``top_n``).
    """
    if cell_size < 1:
        raise ValueError("cell_size must be at least 1 m")
    _check_options(top_n, min_records, min_overlap, max_crime_types)
    nbh = _to_bng(neighbourhoods)
    nb_ids = nbh.index
    nb_geoms = nbh.geometry.to_numpy()
    pts = _located(points)
    px = pts["x"].to_numpy(dtype=np.float64)
    py = pts["y"].to_numpy(dtype=np.float64)
    nb = _first_containing(px, py, nb_geoms)
    take = np.flatnonzero(nb >= 0)
    if take.size == 0:
        out = _empty_result()
        out.attrs["left_out"] = _keep(
            _NO_PLACES, nb_ids, min_records=min_records, min_overlap=min_overlap
        )[1]
        return out
    recs = _records(pts, take)
    recs["nb"] = nb[take]
    recs["col"], recs["row"] = _cell_index(px[take], py[take], cell_size)

    keys = ["nb", "col", "row"]
    cells = _aggregate(recs, keys)
    cells["cell_id"] = cell_ids(cells["col"], cells["row"], cell_size=cell_size)
    c = cells["col"].to_numpy(np.float64)
    r = cells["row"].to_numpy(np.float64)
    squares = shapely.box(c * cell_size, r * cell_size, (c + 1) * cell_size, (r + 1) * cell_size)
    cells["overlap_share"], cells["clipped"] = _overlap(squares, nb_geoms[cells["nb"].to_numpy()])
    cells["square"] = squares
    cells, left_out = _keep(cells, nb_ids, min_records=min_records, min_overlap=min_overlap)
    cells = _rank(cells, recs.groupby("nb")["harm"].sum(), "cell_id", top_n)
    cells, kept = _describe(cells, recs, keys, max_types=max_crime_types)

    c = cells["col"].to_numpy(np.float64)
    r = cells["row"].to_numpy(np.float64)
    gi = _gi_flags(
        cells[keys],
        kept,
        hot_lsoas,
        cx=(c + 0.5) * cell_size,
        cy=(r + 0.5) * cell_size,
        min_gi_bin=min_gi_bin,
    )
    kde = _kde_flags(
        cells[keys],
        density,
        cell_size=cell_size,
        quantile=density_quantile,
        threshold=density_threshold,
    )
    geometry = cells["clipped" if clip else "square"].to_numpy()
    out = _result(cells, nb_ids, id_col="cell_id", gi=gi, kde=kde, geometry=geometry)
    out.attrs["left_out"] = left_out
    return out


# --------------------------------------------------------------------------------------------
# Street segments


#: Columns of :func:`segment_places`: those of :func:`micro_places` (``cell_id`` holds the
#: ``segment_id``, ``geometry`` the segment line) plus ``street`` and ``snap_distance_m_max``.
SEGMENT_COLUMNS: tuple[str, ...] = (
    *MICRO_COLUMNS[:-1],
    "street",
    "snap_distance_m_max",
    "geometry",
)

_SEGMENT_EXTRA = {"street": "string", "snap_distance_m_max": np.float64}
_LINE_TYPES = (shapely.GeometryType.LINESTRING.value, shapely.GeometryType.LINEARRING.value)


def _split_lines(lines: np.ndarray, max_length: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut each line into the fewest equal pieces no longer than ``max_length``.

    Returns the pieces and, for each, the position of the line it came from. Vectorised on the
    vertex arrays: each piece is its start point, the line's vertices strictly between its ends
    (within 1 micrometre of an end they are dropped) and its end point.
    """
    lengths = shapely.length(lines)
    k = np.maximum(1, np.ceil(lengths / max_length - 1e-9)).astype(np.int64)
    step = lengths / k
    n_pieces = int(k.sum())
    first_piece = np.r_[0, np.cumsum(k)[:-1]]
    piece_line = np.repeat(np.arange(lines.size), k)
    j = np.arange(n_pieces) - first_piece[piece_line]
    starts_d = j * step[piece_line]
    ends_d = np.where(j == k[piece_line] - 1, lengths[piece_line], (j + 1) * step[piece_line])
    start_xy = shapely.get_coordinates(shapely.line_interpolate_point(lines[piece_line], starts_d))
    end_xy = shapely.get_coordinates(shapely.line_interpolate_point(lines[piece_line], ends_d))

    xy, v_line = shapely.get_coordinates(lines, return_index=True)
    hop = np.r_[0.0, np.hypot(*np.diff(xy, axis=0).T)]
    line_start = np.r_[True, v_line[1:] != v_line[:-1]]
    hop[line_start] = 0.0
    run = np.cumsum(hop)
    d = run - run[np.flatnonzero(line_start)][v_line]  # distance along its own line
    vj = np.minimum(np.floor(d / step[v_line]).astype(np.int64), k[v_line] - 1)
    v_piece = first_piece[v_line] + vj
    tol = 1e-6
    inner = (d > starts_d[v_piece] + tol) & (d < ends_d[v_piece] - tol)

    pieces = np.arange(n_pieces)
    piece_of = np.r_[pieces, v_piece[inner], pieces]
    order_in = np.r_[np.zeros(n_pieces), np.ones(int(inner.sum())), np.full(n_pieces, 2.0)]
    along = np.r_[starts_d, d[inner], ends_d]
    coords = np.r_[start_xy, xy[inner], end_xy]
    order = np.lexsort((along, order_in, piece_of))
    out = shapely.linestrings(coords[order], indices=piece_of[order])
    return out, piece_line


def street_segments(
    roads: gpd.GeoDataFrame,
    *,
    max_length: float = 150.0,
    name_column: str | None = None,
) -> gpd.GeoDataFrame:
    """Split a road layer into street segments no longer than ``max_length`` metres.

    Every line (each part of a MultiLineString on its own) is cut into the fewest pieces of
    equal length that are no longer than ``max_length``: a 400 m link with 150 m gives three
    133.3 m segments. Road layers such as OS Open Roads already end their links at junctions,
    so segments run between junctions or are equal parts of a long link.

    Parameters
    ----------
    roads
        LineString or MultiLineString layer in any CRS (reprojected to EPSG:27700; no CRS is
        taken as EPSG:27700). Missing, empty and zero-length geometries are left out; Z is
        dropped.
    max_length
        Longest segment in metres.
    name_column
        Column holding the street name (e.g. ``"name1"`` of OS Open Roads); ``None``: no names.

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:27700, sorted by ``segment_id``, with ``segment_id`` (``"E<e>N<n>-<k>"``: the
        segment's midpoint, half way along it, rounded to whole metres, and ``k`` = 1, 2, ...
        among segments sharing that rounded midpoint, ordered by their end points regardless of
        direction, then length, street and input order), ``street`` (string, missing when no
        name), ``length_m`` and ``geometry`` (LineString). The same road layer always gives the
        same ids, whatever its row order or digitising direction.

    Raises
    ------
    ValueError
        For a bad ``max_length``, an unknown ``name_column`` or non-line geometries.
    """
    if not np.isfinite(max_length) or max_length < 1:
        raise ValueError("max_length must be at least 1 m")
    if name_column is not None and name_column not in roads.columns:
        raise ValueError(f"roads have no column {name_column!r} (columns: {list(roads.columns)})")
    roads = _to_bng(roads)
    geoms = shapely.force_2d(np.asarray(roads.geometry.array, dtype=object))
    parts, src = shapely.get_parts(geoms, return_index=True)
    types = shapely.get_type_id(parts)
    not_line = ~np.isin(types, _LINE_TYPES) & ~shapely.is_empty(parts)
    if not_line.any():
        kinds = sorted({shapely.GeometryType(int(t)).name.title() for t in types[not_line]})
        raise ValueError(f"roads must be lines; {int(not_line.sum())} parts are {', '.join(kinds)}")
    parts = shapely.remove_repeated_points(parts, 0.0)
    keep = shapely.length(parts) > 0
    parts, src = parts[keep], src[keep]
    names = (
        roads[name_column].astype("string").str.strip().replace("", pd.NA).to_numpy()
        if name_column is not None
        else np.full(len(roads), pd.NA, dtype=object)
    )
    if parts.size == 0:
        frame = pd.DataFrame(
            {
                "segment_id": pd.Series([], dtype="string"),
                "street": pd.Series([], dtype="string"),
                "length_m": pd.Series([], dtype=np.float64),
            }
        )
        return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries([], crs=_CRS), crs=_CRS)

    pieces, line = _split_lines(parts, float(max_length))
    street = pd.array(names[src[line]], dtype="string")
    length = shapely.length(pieces)
    mid = shapely.get_coordinates(shapely.line_interpolate_point(pieces, 0.5, normalized=True))
    e = np.floor(mid[:, 0] + 0.5).astype(np.int64)
    n = np.floor(mid[:, 1] + 0.5).astype(np.int64)
    ends = np.c_[
        shapely.get_coordinates(shapely.get_point(pieces, 0)),
        shapely.get_coordinates(shapely.get_point(pieces, -1)),
    ]
    swap = (ends[:, 2] < ends[:, 0]) | ((ends[:, 2] == ends[:, 0]) & (ends[:, 3] < ends[:, 1]))
    ends[swap] = ends[swap][:, [2, 3, 0, 1]]
    street_key = pd.Series(street).fillna("").to_numpy(dtype=object)
    street_rank = pd.Series(street_key).rank(method="dense").to_numpy()
    order = np.lexsort(
        (
            np.arange(pieces.size),
            street_rank,
            length,
            ends[:, 3],
            ends[:, 2],
            ends[:, 1],
            ends[:, 0],
            n,
            e,
        )
    )
    base = "E" + pd.Series(e[order]).astype(str) + "N" + pd.Series(n[order]).astype(str)
    k = base.groupby(base, sort=False).cumcount() + 1
    ids = (base + "-" + k.astype(str)).to_numpy(dtype=object)
    frame = pd.DataFrame(
        {
            "segment_id": pd.array(ids, dtype="string"),
            "street": street[order],
            "length_m": length[order],
        }
    )
    out = gpd.GeoDataFrame(frame, geometry=pieces[order], crs=_CRS)
    return out.sort_values("segment_id", kind="stable").reset_index(drop=True)


def _snap(
    px: np.ndarray, py: np.ndarray, lines: np.ndarray, max_snap_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Position of the nearest line within ``max_snap_m`` of each point (inclusive; -1 for
    none) and the distance (NaN for none). Equidistant lines: the lowest position wins."""
    seg = np.full(px.size, -1, dtype=np.int64)
    dist = np.full(px.size, np.nan)
    if px.size == 0 or lines.size == 0:
        return seg, dist
    tree = shapely.STRtree(lines)
    (pi, li), d = tree.query_nearest(
        shapely.points(px, py), max_distance=max_snap_m, return_distance=True, all_matches=True
    )
    if pi.size:
        order = np.lexsort((li, d, pi))
        pi, li, d = pi[order], li[order], d[order]
        first = np.r_[True, pi[1:] != pi[:-1]]
        seg[pi[first]] = li[first]
        dist[pi[first]] = d[first]
    return seg, dist


def _segment_kde_flags(
    lines: np.ndarray,
    density: DensityGrid | None,
    *,
    quantile: float,
    threshold: float | None,
) -> np.ndarray:
    """KDE hot-spot flag of street segments: mean of the surface sampled along each segment
    (one sample per surface cell length, at least the midpoint; NaN samples left out)."""
    cut = _kde_cut(density, quantile=quantile, threshold=threshold)
    if cut is None or lines.size == 0:
        return np.zeros(lines.size, dtype=bool)
    n = np.maximum(1, np.ceil(shapely.length(lines) / density.cell_size)).astype(np.int64)
    owner = np.repeat(np.arange(lines.size), n)
    first = np.r_[0, np.cumsum(n)[:-1]]
    frac = (np.arange(owner.size) - first[owner] + 0.5) / n[owner]
    xy = shapely.get_coordinates(
        shapely.line_interpolate_point(lines[owner], frac, normalized=True)
    )
    vals = density.sample(xy[:, 0], xy[:, 1])
    ok = np.isfinite(vals)
    sums = np.bincount(owner[ok], weights=vals[ok], minlength=lines.size)
    cnts = np.bincount(owner[ok], minlength=lines.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnts > 0, sums / np.maximum(cnts, 1), np.nan)
    return _is_kde_hot(mean, cut)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def segment_places(
    points: pd.DataFrame,
    neighbourhoods: gpd.GeoDataFrame,
    segments: gpd.GeoDataFrame,
    *,
    top_n: int = 10,
    max_snap_m: float = 50.0,
    hot_lsoas: gpd.GeoDataFrame | gpd.GeoSeries | pd.Series | None = None,
    min_gi_bin: int = 2,
    density: DensityGrid | None = None,
    density_quantile: float = 0.95,
    density_threshold: float | None = None,
    min_records: int = 1,
    min_overlap: float = 0.0,
    max_crime_types: int = 3,
) -> gpd.GeoDataFrame:
    """Rank the street segments of each priority neighbourhood by harm: the patrol target list.

    police.uk publishes each record at an anonymised "map point" near the centre of a street,
    so snapping records to the nearest street segment puts almost all of them on their street
    within a few metres.

    * A segment belongs to the neighbourhood containing its midpoint (half way along it; the
      first neighbourhood in frame order when on a shared edge). This depends on the roads
      only, never on the crime data, so a segment stays in the same neighbourhood from one
      period to the next (stable trial units).
    * Every located record is snapped to its nearest segment of the whole road layer within
      ``max_snap_m`` (equidistant segments, e.g. at a junction: the lowest ``segment_id``). A
      record counts for that segment when the segment belongs to a neighbourhood, wherever the
      record itself lies (a record just across a boundary street counts on that street).
    * Records inside a neighbourhood with no segment within ``max_snap_m`` are not on any
      list; they are counted in ``attrs["snap_summary"]`` and in the neighbourhood's harm, so
      the shares of its segments add up to less than 1 by exactly their share.

    Parameters
    ----------
    points
        As for :func:`micro_places`.
    neighbourhoods
        Polygons indexed by ``neighbourhood_id``; reprojected to EPSG:27700 if needed.
    segments
        Output of :func:`street_segments` (``segment_id``, ``street``, LineString geometry); the
        whole road network around the neighbourhoods, not only the segments inside them, so
        records near other streets snap to those.
    top_n
        Segments kept per neighbourhood.
    max_snap_m
        Furthest a record may lie from its segment, in metres (inclusive).
    hot_lsoas, min_gi_bin
        As for :func:`micro_places`; a segment is a Gi* hot spot when its midpoint lies in a hot
        LSOA (or, with a Series, when the LSOA of most of its records is hot).
    density, density_quantile, density_threshold
        As for :func:`micro_places`; the density of a segment is the mean of the surface
        sampled along it, one sample per surface cell length (at least one, at the midpoint).
    min_records, min_overlap, max_crime_types
        As for :func:`micro_places`; a segment's ``overlap_share`` is the share of its length
        inside its neighbourhood. Segments are never clipped: records snap to the whole line.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per kept segment, ordered by neighbourhood then rank, with the columns of
        :data:`SEGMENT_COLUMNS`: those of :func:`micro_places` with ``cell_id`` = the
        ``segment_id`` and ``geometry`` = the segment LineString; ``harm_share`` is of the
        neighbourhood's harm (records on its segments plus its unsnapped records); ``top_location``
        is the most frequent police.uk location text, else the street name; ``street`` is the
        street name and ``snap_distance_m_max`` the furthest any of its records was moved.
        ``attrs["left_out"]`` as for :func:`micro_places`, of segments.

        ``attrs["snap_summary"]`` (plain Python values, ready for JSON) accounts for every
        located record inside a neighbourhood or on one of its segments: ``max_snap_m``;
        ``records`` (those records), ``on_segments``, ``unsnapped`` (inside a neighbourhood,
        no segment within ``max_snap_m``), ``unsnapped_harm``, ``snapped_out`` (inside a
        neighbourhood but nearest to a segment whose midpoint is outside it), ``snapped_in``
        (outside a neighbourhood but on one of its segments); and ``by_neighbourhood``, a list
        of the same counts (plus ``segments``, the neighbourhood's segment count, and
        ``harm_on_segments``) per neighbourhood in frame order. For every neighbourhood,
        records inside it = ``on_segments - snapped_in + snapped_out + unsnapped``.
    """
    _check_options(top_n, min_records, min_overlap, max_crime_types)
    if not np.isfinite(max_snap_m) or max_snap_m <= 0:
        raise ValueError("max_snap_m must be a positive number of metres")
    for col in ("segment_id", "street"):
        if col not in segments.columns:
            raise ValueError(f"segments lack column {col!r}: build them with street_segments()")
    nbh = _to_bng(neighbourhoods)
    nb_ids = nbh.index
    nb_geoms = nbh.geometry.to_numpy()
    segs = _to_bng(segments)
    seg_geoms = np.asarray(segs.geometry.array, dtype=object)
    usable = ~(shapely.is_missing(seg_geoms) | shapely.is_empty(seg_geoms))
    segs = segs.loc[usable].sort_values("segment_id", kind="stable")
    if not segs["segment_id"].is_unique:
        dup = segs.loc[segs["segment_id"].duplicated(), "segment_id"].iloc[0]
        raise ValueError(f"segment_id values must be unique; {dup!r} repeats")
    lines = np.asarray(segs.geometry.array, dtype=object)
    seg_ids = segs["segment_id"].astype("string").to_numpy(dtype=object)
    streets = segs["street"].astype("string").to_numpy(dtype=object)
    mid = shapely.get_coordinates(shapely.line_interpolate_point(lines, 0.5, normalized=True))
    seg_nb = _first_containing(mid[:, 0], mid[:, 1], nb_geoms)

    pts = _located(points)
    px = pts["x"].to_numpy(dtype=np.float64)
    py = pts["y"].to_numpy(dtype=np.float64)
    pt_nb = _first_containing(px, py, nb_geoms)
    # Only records within max_snap_m of the neighbourhoods or their segments can matter, and
    # their nearest segments lie within 2 * max_snap_m of them: filtering by bounding box
    # changes no result, and keeps a large road layer or point file cheap.
    seg = np.full(px.size, -1, dtype=np.int64)
    dist = np.full(px.size, np.nan)
    in_nb = seg_nb >= 0
    if nb_geoms.size and lines.size:
        box = np.r_[shapely.bounds(nb_geoms), shapely.bounds(lines[in_nb])]
        box = box[np.isfinite(box).all(axis=1)]
        if box.size:
            x0, y0 = box[:, 0].min(), box[:, 1].min()
            x1, y1 = box[:, 2].max(), box[:, 3].max()
            m = max_snap_m
            near = (px >= x0 - m) & (px <= x1 + m) & (py >= y0 - m) & (py <= y1 + m)
            b = shapely.bounds(lines)
            cand = np.flatnonzero(
                (b[:, 2] >= x0 - 2 * m)
                & (b[:, 0] <= x1 + 2 * m)
                & (b[:, 3] >= y0 - 2 * m)
                & (b[:, 1] <= y1 + 2 * m)
            )
            which = np.flatnonzero(near)
            if cand.size and which.size:
                s, dist[which] = _snap(px[which], py[which], lines[cand], max_snap_m)
                seg[which] = np.where(s >= 0, cand[np.maximum(s, 0)], -1)
    rec_nb = np.where(seg >= 0, seg_nb[np.maximum(seg, 0)], -1)

    harm_all = np.nan_to_num(pts["harm"].to_numpy(dtype=np.float64, na_value=np.nan), nan=0.0)
    on = rec_nb >= 0
    unsnapped = (pt_nb >= 0) & (seg < 0)
    snapped_out = (pt_nb >= 0) & (seg >= 0) & (rec_nb != pt_nb)
    snapped_in = on & (pt_nb != rec_nb)
    k = nb_geoms.size

    def per_nb(
        mask: np.ndarray, owner: np.ndarray, weights: np.ndarray | None = None
    ) -> np.ndarray:
        return np.bincount(
            owner[mask], weights=None if weights is None else weights[mask], minlength=k
        )

    unsnapped_harm = per_nb(unsnapped, pt_nb, harm_all).astype(np.float64)
    summary = {
        "max_snap_m": float(max_snap_m),
        "records": int((on | (pt_nb >= 0)).sum()),
        "on_segments": int(on.sum()),
        "unsnapped": int(unsnapped.sum()),
        "unsnapped_harm": float(unsnapped_harm.sum()),
        "snapped_out": int(snapped_out.sum()),
        "snapped_in": int(snapped_in.sum()),
        "by_neighbourhood": [
            {
                "neighbourhood_id": _plain(nid),
                "segments": int(a),
                "on_segments": int(b),
                "harm_on_segments": float(c),
                "unsnapped": int(d),
                "unsnapped_harm": float(e),
                "snapped_out": int(f),
                "snapped_in": int(g),
            }
            for nid, a, b, c, d, e, f, g in zip(
                nb_ids,
                np.bincount(seg_nb[in_nb], minlength=k),
                per_nb(on, rec_nb),
                per_nb(on, rec_nb, harm_all),
                per_nb(unsnapped, pt_nb),
                unsnapped_harm,
                per_nb(snapped_out, pt_nb),
                per_nb(snapped_in, rec_nb),
                strict=True,
            )
        ],
    }

    take = np.flatnonzero(on)
    if take.size == 0:
        out = _empty_result(_SEGMENT_EXTRA)
        out.attrs["snap_summary"] = summary
        out.attrs["left_out"] = _keep(
            _NO_PLACES, nb_ids, min_records=min_records, min_overlap=min_overlap
        )[1]
        return out
    recs = _records(pts, take)
    recs["nb"] = rec_nb[take]
    recs["seg"] = seg[take]
    recs["snap"] = dist[take]

    keys = ["nb", "seg"]
    places = _aggregate(recs, keys, snap_distance_m_max=("snap", "max"))
    places["segment_id"] = seg_ids[places["seg"].to_numpy()]
    places["overlap_share"] = _overlap(
        lines[places["seg"].to_numpy()], nb_geoms[places["nb"].to_numpy()]
    )[0]
    places, left_out = _keep(places, nb_ids, min_records=min_records, min_overlap=min_overlap)
    denom = recs.groupby("nb")["harm"].sum().add(pd.Series(unsnapped_harm), fill_value=0.0)
    places = _rank(places, denom, "segment_id", top_n)
    places, kept = _describe(places, recs, keys, max_types=max_crime_types)
    pos = places["seg"].to_numpy()
    places["street"] = pd.array(streets[pos], dtype="string")
    places["top_location"] = places["top_location"].astype("string").fillna(places["street"])

    gi = _gi_flags(
        places[keys], kept, hot_lsoas, cx=mid[pos, 0], cy=mid[pos, 1], min_gi_bin=min_gi_bin
    )
    kde = _segment_kde_flags(
        lines[pos], density, quantile=density_quantile, threshold=density_threshold
    )
    out = _result(
        places,
        nb_ids,
        id_col="segment_id",
        gi=gi,
        kde=kde,
        geometry=lines[pos],
        extra={
            "street": places["street"].array,
            "snap_distance_m_max": places["snap_distance_m_max"].to_numpy(np.float64),
        },
    )
    out.attrs["snap_summary"] = summary
    out.attrs["left_out"] = left_out
    return out
