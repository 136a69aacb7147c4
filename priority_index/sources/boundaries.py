"""LSOA boundaries from any OGR layer, in any CRS, to the study area in EPSG:27700."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely

from ..errors import InputError

BNG = "EPSG:27700"
LSOA_CODE = r"^[EW]01\d{6}$"


def read_layer(
    path: Path,
    *,
    layer: str | None = None,
    columns: Sequence[str] | None = None,
    where: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
) -> gpd.GeoDataFrame:
    """Read an OGR layer with structural checks (file, layer, CRS, columns).

    Parameters
    ----------
    path
        Any OGR-readable file (Shapefile, GeoPackage, GeoJSON...).
    layer
        Layer name, for multi-layer sources.
    columns
        Columns that must exist (they are the only ones read).
    where
        Optional OGR SQL attribute filter, applied while reading.
    bbox
        Optional (xmin, ymin, xmax, ymax) in EPSG:27700: only features intersecting it.

    Returns
    -------
    geopandas.GeoDataFrame
        The layer reprojected to EPSG:27700.
    """
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        info = pyogrio.read_info(path, layer=layer)
    except Exception as exc:  # pyogrio raises DataSourceError / DataLayerError
        raise InputError(path, f"not a readable vector layer: {exc}") from None
    fields = list(info["fields"])
    for col in columns or []:
        if col not in fields:
            raise InputError(
                path, "missing required column", column=col, expected=f"one of the columns {fields}"
            )
    if info.get("crs") is None:
        raise InputError(
            path,
            "the layer has no coordinate reference system",
            expected="a .prj file or a CRS in the layer",
        )
    if bbox is not None:  # bbox is in EPSG:27700; the layer may be in another CRS
        from pyproj import Transformer

        t = Transformer.from_crs(BNG, info["crs"], always_xy=True)
        bbox = t.transform_bounds(*bbox)
    frame = pyogrio.read_dataframe(
        path,
        layer=layer,
        columns=list(columns or []) or None,
        where=where,
        bbox=bbox,
        use_arrow=True,
    )
    return frame.to_crs(BNG)


def repair(geoms: gpd.GeoSeries) -> gpd.GeoSeries:
    """Make invalid polygons valid, keeping only their polygonal parts."""
    bad = ~geoms.is_valid
    if not bad.any():
        return geoms
    fixed = shapely.make_valid(geoms[bad].to_numpy(), method="structure")
    fixed = shapely.get_parts(fixed, return_index=True)
    parts, idx = fixed
    keep = shapely.get_type_id(parts) == shapely.GeometryType.POLYGON.value
    merged = (
        pd.Series(parts[keep]).groupby(idx[keep]).agg(lambda s: shapely.union_all(s.to_numpy()))
    )
    out = geoms.copy()
    positions = geoms.index[bad]
    values = [merged.get(i) for i in range(len(positions))]
    out.loc[positions] = values
    return out


def _fields(path: Path, layer: str | None) -> set[str]:
    """Attribute field names of an OGR layer (empty when it cannot be read: the read that
    follows reports why)."""
    try:
        return set(pyogrio.read_info(path, layer=layer)["fields"].tolist())
    except Exception:  # noqa: BLE001 - the actual read raises the informative error
        return set()


def load_study_area(
    path: Path,
    *,
    layer: str | None,
    code_column: str,
    name_column: str,
    lad_code_column: str | None,
    lad_name_column: str | None,
    lad_codes: Sequence[str],
    lad_names: Sequence[str],
) -> tuple[gpd.GeoDataFrame, dict]:
    """Read LSOA boundaries and cut out the study area.

    Parameters
    ----------
    path, layer
        The OGR source.
    code_column, name_column
        LSOA code and name fields.
    lad_code_column, lad_name_column
        Local-authority code and name fields, used to select the study area.
    lad_codes, lad_names
        Local authorities to keep; both empty keeps every LSOA in the layer.

    Returns
    -------
    (GeoDataFrame, dict)
        LSOAs indexed by ``lsoa_code`` (columns ``lsoa_name``, ``lad_code``, ``lad_name``,
        geometry in EPSG:27700, repaired) and a report (rows read, kept, repaired).
    """
    cols = [code_column, name_column]
    if lad_codes and lad_code_column:
        cols.append(lad_code_column)
    if lad_names and lad_name_column:
        cols.append(lad_name_column)
    # authority fields are read when the layer has them, selected by or not (maps group by them)
    cols += [c for c in (lad_code_column, lad_name_column) if c and c in _fields(path, layer)]
    if (lad_codes and not lad_code_column) or (lad_names and not lad_name_column):
        raise InputError(
            path,
            "study area selected by local authority but no LAD column named",
            expected="study_area.lad_code_column / lad_name_column",
        )
    frame = read_layer(path, layer=layer, columns=list(dict.fromkeys(cols)))
    n_read = len(frame)
    keep = pd.Series(True, index=frame.index)
    if lad_codes:
        keep &= frame[lad_code_column].isin(list(lad_codes))
    if lad_names:
        keep &= frame[lad_name_column].isin(list(lad_names))
    frame = frame[keep]
    if frame.empty:
        raise InputError(
            path,
            "the study area is empty: no LSOA matches the selection",
            column=lad_code_column if lad_codes else lad_name_column,
            expected=f"LSOAs of {list(lad_codes) or list(lad_names)}",
        )
    codes = frame[code_column].astype(str)
    bad_codes = codes[~codes.str.match(LSOA_CODE)]
    if len(bad_codes):
        raise InputError(
            path,
            f"{len(bad_codes)} LSOA codes are not ONS codes, e.g. {bad_codes.iloc[0]!r}",
            column=code_column,
            expected="E01 or W01 followed by 6 digits",
        )
    if codes.duplicated().any():
        raise InputError(
            path,
            f"duplicate LSOA code {codes[codes.duplicated()].iloc[0]!r}",
            column=code_column,
            expected="one polygon per LSOA",
        )
    out = gpd.GeoDataFrame(
        {
            "lsoa_name": frame[name_column].astype(str).to_numpy(),
            "lad_code": frame[lad_code_column].astype(str).to_numpy()
            if lad_code_column in frame
            else "",
            "lad_name": frame[lad_name_column].astype(str).to_numpy()
            if lad_name_column in frame
            else "",
        },
        geometry=frame.geometry.to_numpy(),
        index=pd.Index(codes.to_numpy(), name="lsoa_code"),
        crs=BNG,
    )
    invalid = int((~out.geometry.is_valid).sum())
    out["geometry"] = repair(out.geometry)
    out = out.sort_index()
    report = {
        "file": str(path),
        "rows_read": n_read,
        "lsoas": len(out),
        "invalid_repaired": invalid,
        "vintage": detect_vintage(out.index),
    }
    return out, report


def detect_vintage(
    codes: pd.Index | pd.Series,
    *,
    known_2011: set[str] | None = None,
    known_2021: set[str] | None = None,
) -> str:
    """Guess whether LSOA codes are of the 2011 or 2021 vintage.

    Without reference sets, codes above E01033768 (the last 2011 code) can only be 2021.
    With reference sets the share of codes in each decides.
    """
    values = pd.Series(codes, dtype=str)
    if known_2011 is not None and known_2021 is not None:
        in11 = values.isin(known_2011).mean()
        in21 = values.isin(known_2021).mean()
        return "2021" if in21 > in11 else "2011" if in11 > in21 else "either"
    try:
        newer = (values.str[:1] == "E") & (values.str[3:].astype(int) > 33768)
    except ValueError:
        return "unknown"
    return "2021" if newer.any() else "2011 or 2021"
