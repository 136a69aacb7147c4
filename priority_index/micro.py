"""Micro-places for patrol plans: the most harmful grid squares inside priority neighbourhoods.

Harm concentrates in a few streets even within a hot neighbourhood, so the patrol planner's
target list ranks small square cells (150 m by default, aligned to whole multiples of the cell
size in British National Grid so that lists from different runs name the same squares) by the
Crime Harm Index days recorded in them. Each cell is named by its south-west corner,
``"E<easting>N<northing>"`` in whole metres, and flagged when it is also a Getis-Ord Gi* hot
spot (its centre lies in a hot LSOA) or a kernel-density hot spot (its mean density exceeds a
high quantile of the surface).
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from priority_index.crime_groups import GROUP_LABELS
from priority_index.density import DensityGrid

__all__ = ["MICRO_COLUMNS", "cell_ids", "cell_totals", "micro_places"]

#: Columns of :func:`micro_places`, in order.
MICRO_COLUMNS: tuple[str, ...] = (
    "neighbourhood_id",
    "patrol_rank",
    "cell_id",
    "n_records",
    "harm",
    "harm_share",
    "crime_types",
    "top_location",
    "months_active",
    "gi_hotspot",
    "kde_hotspot",
    "geometry",
)

_CRS = "EPSG:27700"


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


def _first_containing(px: np.ndarray, py: np.ndarray, geoms: np.ndarray) -> np.ndarray:
    """Position of the first geometry covering each point (-1 for none), vectorised."""
    out = np.full(px.size, -1, dtype=np.int64)
    if px.size == 0 or geoms.size == 0:
        return out
    tree = shapely.STRtree(geoms)
    pt_idx, geom_idx = tree.query(shapely.points(px, py), predicate="intersects")
    if pt_idx.size:
        order = np.lexsort((geom_idx, pt_idx))
        pt_idx, geom_idx = pt_idx[order], geom_idx[order]
        first = np.r_[True, pt_idx[1:] != pt_idx[:-1]]
        out[pt_idx[first]] = geom_idx[first]
    return out


def _empty_result() -> gpd.GeoDataFrame:
    frame = pd.DataFrame(
        {
            "neighbourhood_id": pd.Series([], dtype=object),
            "patrol_rank": pd.Series([], dtype=np.int64),
            "cell_id": pd.Series([], dtype="string"),
            "n_records": pd.Series([], dtype=np.int64),
            "harm": pd.Series([], dtype=np.float64),
            "harm_share": pd.Series([], dtype=np.float64),
            "crime_types": pd.Series([], dtype="string"),
            "top_location": pd.Series([], dtype="string"),
            "months_active": pd.Series([], dtype=np.int64),
            "gi_hotspot": pd.Series([], dtype=bool),
            "kde_hotspot": pd.Series([], dtype=bool),
        }
    )
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries([], crs=_CRS), crs=_CRS)


def _gi_flags(
    keys: pd.DataFrame,
    assigned: pd.DataFrame,
    hot_lsoas: Any,
    *,
    cell_size: float,
    min_gi_bin: int,
) -> np.ndarray:
    """Gi* hot-spot flag for each row of ``keys`` (columns nb, col, row)."""
    if hot_lsoas is None:
        return np.zeros(len(keys), dtype=bool)
    if isinstance(hot_lsoas, gpd.GeoDataFrame | gpd.GeoSeries):
        hot = _to_bng(hot_lsoas)
        if isinstance(hot, gpd.GeoDataFrame):
            if "gi_bin" in hot.columns:
                hot = hot[hot["gi_bin"].to_numpy(dtype=np.float64, na_value=np.nan) >= min_gi_bin]
            geoms = hot.geometry.to_numpy()
        else:
            geoms = hot.to_numpy()
        geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
        cx = (keys["col"].to_numpy(np.float64) + 0.5) * cell_size
        cy = (keys["row"].to_numpy(np.float64) + 0.5) * cell_size
        return _first_containing(cx, cy, geoms) >= 0
    # A plain Series of gi_bin indexed by LSOA code: without polygons, the cell takes the LSOA
    # holding most of its records (ties to the lower code).
    gi = pd.Series(hot_lsoas)
    counts = (
        assigned.dropna(subset=["lsoa_code"])
        .groupby(["nb", "col", "row", "lsoa_code"], sort=False)
        .size()
        .rename("k")
        .reset_index()
        .sort_values(["nb", "col", "row", "k", "lsoa_code"], ascending=[True] * 3 + [False, True])
        .drop_duplicates(["nb", "col", "row"])
    )
    counts["hot"] = (
        counts["lsoa_code"].map(gi).to_numpy(dtype=np.float64, na_value=np.nan) >= min_gi_bin
    )
    merged = keys.merge(counts[["nb", "col", "row", "hot"]], on=["nb", "col", "row"], how="left")
    return merged["hot"].fillna(False).to_numpy(dtype=bool)


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
    if density is None:
        return np.zeros(len(keys), dtype=bool)
    vals = density.values.astype(np.float64)
    valid = np.isfinite(vals)
    if not valid.any():
        return np.zeros(len(keys), dtype=bool)
    cut = float(np.quantile(vals[valid], quantile)) if threshold is None else float(threshold)
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
    mean = np.nan_to_num(mean, nan=-np.inf)
    # "At or above" so that a block at the surface's maximum counts even when the quantile equals
    # that maximum; positive so that a zero quantile does not flag every empty cell.
    return (mean >= cut) & (mean > 0)


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

    Returns
    -------
    geopandas.GeoDataFrame
        One row per kept cell, ordered by neighbourhood then rank, with the columns of
        :data:`MICRO_COLUMNS`: ``patrol_rank`` (1 = most harm; ties broken by records, then
        ``cell_id``), ``n_records``, ``harm`` (days), ``harm_share`` (of all the
        neighbourhood's harm; NaN when it has none), ``crime_types`` (``"Burglary 7; Robbery 2"``
        using :data:`GROUP_LABELS`, most harmful group first), ``top_location`` (most frequent
        location text, ties alphabetical), ``months_active`` (distinct months), ``gi_hotspot``,
        ``kde_hotspot`` and ``geometry`` (the cell square, EPSG:27700).
    """
    if cell_size < 1:
        raise ValueError("cell_size must be at least 1 m")
    if top_n < 1:
        raise ValueError("top_n must be at least 1")
    nbh = _to_bng(neighbourhoods)
    nb_ids = nbh.index
    pts = _located(points)
    px = pts["x"].to_numpy(dtype=np.float64)
    py = pts["y"].to_numpy(dtype=np.float64)
    nb = _first_containing(px, py, nbh.geometry.to_numpy())
    keep = nb >= 0
    if not keep.any():
        return _empty_result()
    col, row = _cell_index(px[keep], py[keep], cell_size)
    recs = pd.DataFrame(
        {
            "nb": nb[keep],
            "col": col,
            "row": row,
            "group": pts["crime_group"].astype("string").fillna("unknown").to_numpy()[keep],
            "harm": pts["harm"].to_numpy(dtype=np.float64, na_value=np.nan)[keep],
            "month": pts["month"].astype("string").to_numpy()[keep],
            "location": (
                pts["location"].astype("string").to_numpy()[keep]
                if "location" in pts.columns
                else pd.array([pd.NA] * int(keep.sum()), dtype="string")
            ),
        }
    )
    if "lsoa_code" in pts.columns:
        recs["lsoa_code"] = pts["lsoa_code"].astype("string").to_numpy()[keep]
    else:
        recs["lsoa_code"] = pd.array([pd.NA] * len(recs), dtype="string")
    recs["harm"] = recs["harm"].fillna(0.0)

    keys3 = ["nb", "col", "row"]
    cells = (
        recs.groupby(keys3, sort=False)
        .agg(n_records=("harm", "size"), harm=("harm", "sum"), months_active=("month", "nunique"))
        .reset_index()
    )
    cells["cell_id"] = cell_ids(cells["col"], cells["row"], cell_size=cell_size)
    nb_harm = recs.groupby("nb")["harm"].sum()
    denom = cells["nb"].map(nb_harm).to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cells["harm_share"] = np.where(denom > 0, cells["harm"].to_numpy() / denom, np.nan)
    cells = cells.sort_values(
        ["nb", "harm", "n_records", "cell_id"],
        ascending=[True, False, False, True],
        kind="stable",
    )
    cells["patrol_rank"] = cells.groupby("nb").cumcount().to_numpy() + 1
    cells = cells[cells["patrol_rank"] <= top_n].reset_index(drop=True)

    # Crime groups per kept cell, most harmful first.
    kept = recs.merge(cells[keys3], on=keys3, how="inner")
    by_group = (
        kept.groupby([*keys3, "group"], sort=False)
        .agg(k=("harm", "size"), h=("harm", "sum"))
        .reset_index()
    )
    by_group["label"] = (
        by_group["group"].map(GROUP_LABELS).astype("string").fillna(by_group["group"])
    )
    by_group = by_group.sort_values(
        [*keys3, "h", "k", "label"], ascending=[True] * 3 + [False, False, True], kind="stable"
    )
    by_group["text"] = by_group["label"] + " " + by_group["k"].astype("string")
    types = by_group.groupby(keys3, sort=False)["text"].agg("; ".join).rename("crime_types")

    # Most frequent location text per kept cell.
    locs = (
        kept.dropna(subset=["location"])
        .groupby([*keys3, "location"], sort=False)
        .size()
        .rename("k")
        .reset_index()
        .sort_values([*keys3, "k", "location"], ascending=[True] * 3 + [False, True])
        .drop_duplicates(keys3)
        .set_index(keys3)["location"]
        .rename("top_location")
    )
    cells = cells.join(types, on=keys3).join(locs, on=keys3)

    gi = _gi_flags(cells[keys3], kept, hot_lsoas, cell_size=cell_size, min_gi_bin=min_gi_bin)
    kde = _kde_flags(
        cells[keys3],
        density,
        cell_size=cell_size,
        quantile=density_quantile,
        threshold=density_threshold,
    )
    c = cells["col"].to_numpy(np.float64)
    r = cells["row"].to_numpy(np.float64)
    geometry = shapely.box(c * cell_size, r * cell_size, (c + 1) * cell_size, (r + 1) * cell_size)
    out = pd.DataFrame(
        {
            "neighbourhood_id": nb_ids.take(cells["nb"].to_numpy()).to_numpy(),
            "patrol_rank": cells["patrol_rank"].to_numpy(np.int64),
            "cell_id": pd.array(cells["cell_id"].to_numpy(), dtype="string"),
            "n_records": cells["n_records"].to_numpy(np.int64),
            "harm": cells["harm"].to_numpy(np.float64),
            "harm_share": cells["harm_share"].to_numpy(np.float64),
            "crime_types": pd.array(cells["crime_types"], dtype="string"),
            "top_location": pd.array(cells["top_location"], dtype="string"),
            "months_active": cells["months_active"].to_numpy(np.int64),
            "gi_hotspot": gi,
            "kde_hotspot": kde,
        }
    )
    return gpd.GeoDataFrame(out, geometry=geometry, crs=_CRS)
