"""2011 <-> 2021 LSOA conversion: lookups from the ONS table or from boundary overlap.

A conversion is a mapping ``{from code: {to code: share}}``; shares of one from-code sum to 1.
Counts and populations are carried by multiplying by the share (a split LSOA's count is shared
among its parts, merged LSOAs add up).
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd


def lookup_shares(
    lookup: pd.DataFrame, *, from_column: str, to_column: str, weight_column: str | None = None
) -> dict[str, dict[str, float]]:
    """Shares from a lookup table such as ONS ``LSOA11_to_LSOA21_to_LAD22``.

    Parameters
    ----------
    lookup
        One row per (from, to) pair.
    from_column, to_column
        The code columns.
    weight_column
        Optional weight per pair (e.g. overlapping area); equal split when absent.

    Returns
    -------
    dict
        ``{from code: {to code: share}}`` with shares summing to 1 per from-code.
    """
    pairs = lookup[[from_column, to_column]].astype(str).drop_duplicates()
    if weight_column:
        w = lookup.loc[pairs.index, weight_column].astype(float)
    else:
        w = pd.Series(1.0, index=pairs.index)
    share = w / w.groupby(pairs[from_column]).transform("sum")
    out: dict[str, dict[str, float]] = {}
    for a, b, s in zip(pairs[from_column], pairs[to_column], share, strict=True):
        out.setdefault(a, {})[b] = float(s)
    return out


def overlap_lookup(source: gpd.GeoDataFrame, target: gpd.GeoDataFrame) -> pd.DataFrame:
    """Best-fit lookup by area overlap of two boundary sets (both indexed by LSOA code).

    Returns
    -------
    pandas.DataFrame
        Columns from_code, to_code, area_m2, share (of the whole from-LSOA's area), best_fit
        (the to-code holding the largest share of each from-code).
    """
    a = (
        source[["geometry"]]
        .reset_index()
        .rename(columns={source.index.name or "index": "from_code"})
    )
    b = target[["geometry"]].reset_index().rename(columns={target.index.name or "index": "to_code"})
    inter = gpd.overlay(a.to_crs(27700), b.to_crs(27700), how="intersection", keep_geom_type=True)
    inter["area_m2"] = inter.geometry.area
    inter = inter[inter["area_m2"] > 1.0]
    # share of the whole from-LSOA (not only of its part inside the target set): an LSOA mostly
    # outside the target area keeps small shares and is not claimed by it
    whole = a.set_index("from_code").geometry.area
    inter["share"] = inter["area_m2"] / inter["from_code"].map(whole).to_numpy()
    best = inter.groupby("from_code")["share"].transform("max") == inter["share"]
    inter["best_fit"] = best
    return (
        inter[["from_code", "to_code", "area_m2", "share", "best_fit"]]
        .sort_values(["from_code", "to_code"])
        .reset_index(drop=True)
    )
