"""Write the priority-index layers to one GeoPackage a GIS officer opens in QGIS as a finished map.

:func:`write_geopackage` writes every layer in EPSG:27700 with valid geometries (polygon layers
as MultiPolygon throughout), a spatial index, readable field names with descriptions, tables
without geometry as GeoPackage attribute tables, a default QGIS style per layer in the
``layer_styles`` table QGIS reads, and the run's provenance (config, inputs with hashes,
version, run date) as dataset metadata.

File format choices, each checked against QGIS 3.22 LTR (GDAL 3.6), see ``FIELD_NOTES.md``:

* GeoPackage **version 1.2**. GDAL 3.12 writes 1.4 by default, which GDAL 3.6 opens with a
  "may only be partially supported" warning on every layer.
* Field readable names and descriptions go to ``gpkg_data_columns`` (``name`` and
  ``description``, the GeoPackage schema extension), written by GDAL itself from the Arrow field
  metadata ``GDAL:OGR:alternative_name`` / ``GDAL:OGR:comment``. QGIS 3.22 does not read those
  as aliases, so the same names are also put in each layer's default style as field aliases.
* Layer descriptions go to ``gpkg_contents.description`` (QGIS shows it as the layer abstract).
  Provenance goes to ``gpkg_metadata`` (metadata extension) twice: as one dataset-level JSON
  document (``md_standard_uri`` :data:`PROVENANCE_URI`; GDAL reports it as the dataset metadata
  item ``GPKG_METADATA_ITEM_1``) and, per layer, inside a QGIS metadata document, which QGIS
  shows under Layer Properties > Metadata. GDAL's own XML dataset metadata is avoided on
  purpose: GDAL 3.12 copies it into a ``.gpkg.aux.xml`` file beside the GeoPackage each time it
  reads features.
* The file is written next to its destination under a temporary name and moved into place with
  :func:`os.replace`, so readers never see a half-written GeoPackage.
* Output is reproducible: GDAL's own timestamps (``gpkg_contents.last_change``, metadata
  references) come from the GDAL option ``OGR_CURRENT_DATE``, and the style timestamps from the
  same value, taken from ``metadata["run_date"]``. Writing the same layers and metadata twice
  gives byte-identical files.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyogrio
import shapely
from pyproj import CRS

from priority_index.crime_groups import GROUP_LABELS
from priority_index.exports import styles as qml

__all__ = [
    "EPSG",
    "FIELD_DESCRIPTIONS",
    "FIELD_LABELS",
    "GEOPACKAGE_VERSION",
    "PROVENANCE_URI",
    "STYLE_TABLE",
    "field_label",
    "write_geopackage",
]

#: Coordinate reference system of every spatial layer (British National Grid).
EPSG = 27700
#: GeoPackage version written (QGIS 3.22's GDAL 3.6 reads 1.2 without warnings).
GEOPACKAGE_VERSION = "1.2"
#: Table QGIS reads default layer styles from.
STYLE_TABLE = "layer_styles"

_GEOMETRY_COLUMN = "geom"
_FID_COLUMN = "fid"
_DEFAULT_TIMESTAMP = "1970-01-01T00:00:00.000Z"
_TIMESTAMP_KEYS = ("run_date", "run_timestamp")
_LAYER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_METADATA_KEY = re.compile(r"[A-Za-z0-9_.:-]+\Z")
_RESERVED_PREFIXES = ("gpkg_", "rtree_", "sqlite_")
_ALT_NAME = b"GDAL:OGR:alternative_name"
#: ``md_standard_uri`` of the dataset-level provenance document (JSON) in ``gpkg_metadata``.
PROVENANCE_URI = "urn:x-priority-index:provenance:1"
_COMMENT = b"GDAL:OGR:comment"

#: Readable names of the fields the pipeline writes (shown as field aliases in QGIS).
FIELD_LABELS: dict[str, str] = {
    "lsoa_code": "LSOA code",
    "lsoa_name": "LSOA name",
    "ward_name": "Ward",
    "residents": "Residents",
    "score": "Priority score",
    "rank": "Rank",
    "decile": "Decile",
    "median_rank": "Median rank (uncertainty)",
    "rank_p05": "Rank, 5th percentile",
    "rank_p95": "Rank, 95th percentile",
    "p_top_decile": "Probability of top decile",
    "gi_z": "Gi* z-score",
    "gi_p_sim": "Gi* pseudo p-value",
    "gi_bin": "Gi* hot/cold spot class",
    "lisa_quadrant": "LISA cluster type",
    "neighbourhood_id": "Priority neighbourhood ID",
    "top_drivers": "Top drivers",
    "name": "Name",
    "n_lsoas": "Number of LSOAs",
    "lsoa_codes": "LSOA codes",
    "total_harm": "Total harm",
    "violence_harm": "Violence harm",
    "share_of_borough_harm": "Share of borough harm",
    "drivers": "Drivers",
    "gi_hot_share": "Share in Gi* hot spots",
    "selection_frequency": "Selection frequency",
    "core_lsoas": "Core LSOA(s)",
    "mean_overlap": "Mean share of its LSOAs re-selected",
    "share_priority_before": "Share of LSOAs priority last period",
    "also_priority_before": "Also priority last period",
    "harm_per_1000_residents": "Harm per 1,000 residents (CCHI days)",
    "mean_score": "Mean priority score",
    "control_lsoa_codes": "Control LSOA codes",
    "distance": "Match distance (standardised)",
    "target_trend": "Target harm trend (change in CCHI days)",
    "control_trend": "Control harm trend (change in CCHI days)",
    "target_mean_score": "Target mean score",
    "control_mean_score": "Control mean score",
    "months_active": "Months with records",
    "fragile": "Fragile selection",
    "indicator": "Indicator",
    "patrol_rank": "Patrol rank",
    "cell_id": "Cell or street segment ID",
    "street": "Street",
    "crime_types_all": "Crime types (all, most harm first)",
    "generic_location": "Generic police.uk point (check on the ground)",
    "overlap_share": "Share inside its neighbourhood",
    "snap_distance_m_max": "Farthest record snapped (m)",
    "n_records": "Records",
    "harm": "Harm",
    "harm_share": "Share of harm",
    "crime_types": "Crime types",
    "top_location": "Top location",
    "gi_hotspot": "Gi* hot spot",
    "kde_hotspot": "Kernel density hot spot",
    "source": "Source",
    "file": "File",
    "line": "Line",
    "reason": "Reason",
    "detail": "Detail",
}

#: Descriptions written for these fields unless the caller gives its own.
FIELD_DESCRIPTIONS: dict[str, str] = {
    "lsoa_code": "Lower layer Super Output Area (LSOA) code",
    "lsoa_name": "LSOA name",
    "ward_name": "Electoral ward the LSOA lies in",
    "residents": "Resident population",
    "score": "Priority index score; higher means higher priority",
    "rank": "Rank by priority; 1 = highest priority",
    "decile": "Decile of the rank: 1 = top 10% (highest priority) ... 10 = lowest 10%",
    "median_rank": "Median rank across the uncertainty analysis runs",
    "rank_p05": "5th percentile of the rank across the uncertainty analysis runs",
    "rank_p95": "95th percentile of the rank across the uncertainty analysis runs",
    "p_top_decile": "Share of uncertainty analysis runs placing the LSOA in the top decile",
    "gi_z": "Getis-Ord Gi* z-score; positive = surrounded by high values",
    "gi_p_sim": "Gi* pseudo p-value from conditional permutations",
    "gi_bin": (
        "Gi* class: 3, 2, 1 = hot spot at 99, 95, 90% confidence; 0 = not significant; "
        "-1, -2, -3 = cold spot at 90, 95, 99% confidence"
    ),
    "lisa_quadrant": "Local Moran's I cluster type",
    "neighbourhood_id": "Priority neighbourhood the LSOA belongs to; 0 = none",
    "top_drivers": "Indicators contributing most to the score",
    "indicator": "Indicator the hot spot statistics refer to",
    "patrol_rank": "Order in which to patrol the cells of the neighbourhood; 1 = first",
}


def _words(name: str, *, unit: bool = True) -> str:
    if name in GROUP_LABELS:
        return GROUP_LABELS[name]
    spec = _indicator(name)
    if spec is not None:
        if unit and spec.unit and "(" not in spec.label:
            return f"{spec.label} ({spec.unit})"
        return spec.label
    text = re.sub(r"_+", " ", name).strip()
    return text[:1].upper() + text[1:] if text else name


def _indicator(name: str):
    """The indicator catalogue's entry for ``name`` (label and unit), if it is an indicator."""
    from .. import indicators

    if name not in indicators.INDICATORS and not name.startswith(("dep_", "other_", "count_")):
        return None
    try:
        return indicators.indicator_spec(name)
    except (KeyError, ValueError):
        return None


def field_label(column: str) -> str:
    """Readable name of a field: ``"norm_violence"`` -> ``"Violence Against the Person
    (normalised)"``.

    Parameters
    ----------
    column : str
        Field name as written to the GeoPackage.

    Returns
    -------
    str
        The label from :data:`FIELD_LABELS`, or one built from the name (indicator prefixes
        ``norm_`` and ``contrib_`` recognised, crime group ids spelled out).
    """
    if column in FIELD_LABELS:
        return FIELD_LABELS[column]
    if column.startswith("norm_") and len(column) > 5:
        return f"{_words(column[5:], unit=False)} (normalised)"
    if column.startswith("contrib_") and len(column) > 8:
        return f"{_words(column[8:], unit=False)} (contribution to score)"
    return _words(column)


def _default_description(column: str) -> str | None:
    if column in FIELD_DESCRIPTIONS:
        return FIELD_DESCRIPTIONS[column]
    if column.startswith("norm_") and len(column) > 5:
        return f"{_words(column[5:])}, normalised to the common scale the index combines"
    if column.startswith("contrib_") and len(column) > 8:
        return f"Contribution of {_words(column[8:])} to the priority score"
    return None


# --------------------------------------------------------------------------------------------
# Validation and preparation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    name: str
    table: pa.Table
    geometry_type: str | None  # None: attribute table
    labels: dict[str, str]


def _check_layer_name(name: object) -> str:
    if not isinstance(name, str) or not _LAYER_NAME.match(name):
        raise ValueError(
            f"layer name {name!r} must start with a letter and hold only letters, digits and _"
        )
    if name.lower().startswith(_RESERVED_PREFIXES) or name.lower() == STYLE_TABLE:
        raise ValueError(f"layer name {name!r} is reserved by GeoPackage or QGIS")
    return name


def _check_columns(name: str, columns: list[object]) -> None:
    seen: dict[str, object] = {}
    for col in columns:
        if not isinstance(col, str) or not col.strip() or col != col.strip():
            raise ValueError(f"layer {name!r}: field name {col!r} is not a plain non-empty string")
        if any(ord(ch) < 32 for ch in col):
            raise ValueError(f"layer {name!r}: field name {col!r} holds control characters")
        key = col.lower()
        if key in (_FID_COLUMN, _GEOMETRY_COLUMN):
            raise ValueError(
                f"layer {name!r}: field name {col!r} is reserved for the GeoPackage "
                f"feature id / geometry column"
            )
        if key in seen:
            raise ValueError(
                f"layer {name!r}: fields {seen[key]!r} and {col!r} differ only in case "
                "(GeoPackage field names are case-insensitive)"
            )
        seen[key] = col


def _is_collection(value: object) -> bool:
    return isinstance(value, set | frozenset | list | tuple | np.ndarray | dict)


def _flatten_value(value: object) -> object:
    if isinstance(value, set | frozenset):
        return "; ".join(sorted(str(v) for v in value))
    if isinstance(value, list | tuple | np.ndarray):
        return "; ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def _attributes_to_arrow(name: str, frame: pd.DataFrame) -> pa.Table:
    frame = frame.copy()
    for col in frame.columns:
        series = frame[col]
        if isinstance(series.dtype, pd.CategoricalDtype):
            frame[col] = series.astype(series.cat.categories.dtype)
        elif series.dtype == object and series.map(_is_collection).any():
            frame[col] = series.map(_flatten_value)
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise TypeError(f"layer {name!r}: a field cannot be stored in a GeoPackage: {exc}") from exc
    # A field with no value at all has no Arrow type GDAL can map: store it as text.
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(
                i, field.with_type(pa.string()), table.column(i).cast(pa.string())
            )
    return table.replace_schema_metadata(None)


def _polygonal_parts(geom: shapely.Geometry) -> list[shapely.Geometry]:
    parts = shapely.get_parts(geom)
    out: list[shapely.Geometry] = []
    for part in parts:
        kind = shapely.get_type_id(part)
        if kind == 3:
            out.append(part)
        elif kind in (6, 7):
            out.extend(_polygonal_parts(part))
    return out


def _to_multipolygon(geom: shapely.Geometry | None) -> shapely.Geometry | None:
    if geom is None:
        return None
    kind = shapely.get_type_id(geom)
    if kind == 6:
        return geom
    if kind == 3:
        return shapely.MultiPolygon([geom]) if not geom.is_empty else shapely.MultiPolygon()
    # A collection (e.g. the repair of a polygon that collapsed in places): keep its area.
    parts = [p for p in _polygonal_parts(geom) if not p.is_empty]
    if not parts:
        return shapely.MultiPolygon()
    merged = shapely.union_all(parts) if len(parts) > 1 else parts[0]
    return _to_multipolygon(merged)


_FAMILIES = {0: "point", 4: "point", 1: "line", 2: "line", 5: "line", 3: "polygon", 6: "polygon"}
_MULTI = {"point": "MultiPoint", "line": "MultiLineString", "polygon": "MultiPolygon"}
_SINGLE = {"point": "Point", "line": "LineString", "polygon": "Polygon"}


def _families(geom: shapely.Geometry) -> set[str]:
    kind = shapely.get_type_id(geom)
    if kind == 7:
        parts = shapely.get_parts(geom)
        return set().union(*(_families(p) for p in parts)) if len(parts) else set()
    return {_FAMILIES[kind]}


def _prepare_geometry(name: str, series: gpd.GeoSeries) -> tuple[np.ndarray, str]:
    """Repair, flatten to 2D and unify the type; return WKB and the layer geometry type."""
    geoms = shapely.force_2d(np.asarray(series.array, dtype=object))
    given = ~shapely.is_missing(geoms)
    types = shapely.get_type_id(geoms)
    # The layer type follows every geometry given, empty ones included (an empty polygon is
    # still a polygon), read before repair.
    families: set[str] = set()
    for geom in geoms[given]:
        families |= _families(geom)
    singles = {_FAMILIES.get(int(t)) for t in types[given] if t != 7}

    repair = given & ~shapely.is_empty(geoms) & ~shapely.is_valid(geoms)
    repair &= np.isin(types, (3, 6, 7))
    if repair.any():
        geoms[repair] = shapely.make_valid(geoms[repair], method="structure", keep_collapsed=False)
        emptied = int((repair & shapely.is_empty(geoms)).sum())
        if emptied:
            warnings.warn(
                f"layer {name!r}: {emptied} invalid geometries had no area left after repair "
                "and are written empty",
                RuntimeWarning,
                stacklevel=2,
            )
        types = shapely.get_type_id(geoms)
    present = given & ~shapely.is_empty(geoms)

    if "polygon" in families:
        if singles - {"polygon"}:
            raise ValueError(
                f"layer {name!r} mixes polygons with {sorted(singles - {'polygon'})} geometries"
            )
        out = np.array([_to_multipolygon(g) for g in geoms], dtype=object)
        bad = ~shapely.is_missing(out) & ~shapely.is_valid(out)
        if bad.any():  # parts that only touch after the merge: one more repair pass
            fixed = shapely.make_valid(out[bad], method="structure", keep_collapsed=False)
            out[bad] = [_to_multipolygon(g) for g in fixed]
        geometry_type = "MultiPolygon"
    elif len(families) > 1:
        raise ValueError(f"layer {name!r} mixes {sorted(families)} geometries")
    elif families:
        family = next(iter(families))
        needs_multi = bool(np.isin(types[present], (4, 5, 7)).any())
        if needs_multi:
            multi = {"point": shapely.MultiPoint, "line": shapely.MultiLineString}[family]

            def promote(g: shapely.Geometry | None) -> shapely.Geometry | None:
                if g is None:
                    return None
                if g.is_empty:
                    return multi()
                return multi(list(shapely.get_parts(shapely.get_parts(g))))

            out = np.array([promote(g) for g in geoms], dtype=object)
            geometry_type = _MULTI[family]
        else:
            out = geoms
            geometry_type = _SINGLE[family]
    else:
        out = geoms
        geometry_type = "Unknown"

    wkb = shapely.to_wkb(out, output_dimension=2, byte_order=1, flavor="iso")
    return wkb, geometry_type


def _unique_labels(columns: list[str]) -> dict[str, str]:
    """Readable names, made unique within a layer (``gpkg_data_columns`` requires it)."""
    labels = {col: field_label(col) for col in columns}
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label.lower()] = counts.get(label.lower(), 0) + 1
    return {
        col: (label if counts[label.lower()] == 1 else f"{label} ({col})")
        for col, label in labels.items()
    }


def _prepare(name: str, frame: pd.DataFrame, descriptions: Mapping[str, str]) -> _Prepared:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"layer {name!r} must be a GeoDataFrame or DataFrame, got {type(frame)}")
    spatial = isinstance(frame, gpd.GeoDataFrame) and (frame.active_geometry_name in frame.columns)
    geometry = None
    if spatial:
        if frame.crs is None:
            raise ValueError(f"layer {name!r} has no CRS; set it before writing")
        geometry = frame.geometry
        if not CRS.from_user_input(frame.crs).equals(CRS.from_epsg(EPSG)):
            geometry = geometry.to_crs(EPSG)
        attributes = pd.DataFrame(frame.drop(columns=frame.active_geometry_name))
    else:
        attributes = pd.DataFrame(frame)
    others = [
        c for c in attributes.columns if isinstance(attributes[c].dtype, gpd.array.GeometryDtype)
    ]
    if others:
        raise ValueError(f"layer {name!r} has more than one geometry column: {others}")

    # A named index (e.g. lsoa_code) is data; a default RangeIndex is not.
    if any(n is not None for n in attributes.index.names):
        attributes = attributes.reset_index()
    else:
        attributes = attributes.reset_index(drop=True)
    columns = list(attributes.columns)
    _check_columns(name, columns)

    table = _attributes_to_arrow(name, attributes)
    labels = _unique_labels(columns)
    merged = {c: d for c in columns if (d := descriptions.get(c, _default_description(c)))}
    fields = []
    for f in table.schema:
        meta = {_ALT_NAME: labels[f.name].encode()}
        if f.name in merged:
            meta[_COMMENT] = merged[f.name].encode()
        fields.append(f.with_metadata(meta))
    table = pa.table(table.columns, schema=pa.schema(fields))
    geometry_type = None
    if geometry is not None:
        wkb, geometry_type = _prepare_geometry(name, geometry)
        table = table.append_column(
            pa.field(_GEOMETRY_COLUMN, pa.binary()), pa.array(list(wkb), type=pa.binary())
        )
    return _Prepared(name=name, table=table, geometry_type=geometry_type, labels=labels)


def _timestamp(metadata: Mapping[str, str]) -> str:
    """The file's fixed timestamp (``YYYY-MM-DDTHH:MM:SS.sssZ``, UTC)."""
    for key in _TIMESTAMP_KEYS:
        if key in metadata:
            text = metadata[key].strip()
            try:
                when = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError as exc:
                raise ValueError(f"metadata[{key!r}] = {text!r} is not an ISO 8601 date") from exc
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
            return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    return _DEFAULT_TIMESTAMP


@contextmanager
def _gdal_config(options: Mapping[str, str]) -> Iterator[None]:
    before = {key: pyogrio.get_gdal_config_option(key) for key in options}
    pyogrio.set_gdal_config_options(dict(options))
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options(
            {k: (None if v is None else str(v)) for k, v in before.items()}
        )


# --------------------------------------------------------------------------------------------
# QGIS layer metadata (QMD): provenance shown in Layer Properties > Metadata
# --------------------------------------------------------------------------------------------


def _qmd(name: str, description: str | None, metadata: Mapping[str, str]) -> str:
    root = ET.Element("qgis", version=qml.QGIS_VERSION)
    ET.SubElement(root, "identifier").text = name
    ET.SubElement(root, "parentidentifier")
    ET.SubElement(root, "language")
    ET.SubElement(root, "type").text = "dataset"
    ET.SubElement(root, "title").text = name
    ET.SubElement(root, "abstract").text = description or ""
    keywords = ET.SubElement(root, "keywords", vocabulary="priority_index")
    ET.SubElement(keywords, "keyword").text = "Priority Localities Index"
    for key, value in metadata.items():
        ET.SubElement(root, "history").text = f"{key}: {value}"
    ET.SubElement(root, "extent")
    ET.indent(root, space="  ")
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        + ET.tostring(root, encoding="unicode")
        + "\n"
    )


_METADATA_DDL = (
    "CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT,column_name TEXT,"
    "extension_name TEXT NOT NULL,definition TEXT NOT NULL,scope TEXT NOT NULL,"
    "CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))",
    "CREATE TABLE IF NOT EXISTS gpkg_metadata (id INTEGER CONSTRAINT m_pk PRIMARY KEY ASC NOT NULL,"
    "md_scope TEXT NOT NULL DEFAULT 'dataset',md_standard_uri TEXT NOT NULL,"
    "mime_type TEXT NOT NULL DEFAULT 'text/xml',metadata TEXT NOT NULL DEFAULT '')",
    "CREATE TABLE IF NOT EXISTS gpkg_metadata_reference (reference_scope TEXT NOT NULL,"
    "table_name TEXT,column_name TEXT,row_id_value INTEGER,"
    "timestamp DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),"
    "md_file_id INTEGER NOT NULL,md_parent_id INTEGER,"
    "CONSTRAINT crmr_mfi_fk FOREIGN KEY (md_file_id) REFERENCES gpkg_metadata(id),"
    "CONSTRAINT crmr_mpi_fk FOREIGN KEY (md_parent_id) REFERENCES gpkg_metadata(id))",
)
_METADATA_EXTENSION = "http://www.geopackage.org/spec120/#extension_metadata"


def _write_metadata(
    path: Path,
    names: list[str],
    descriptions: Mapping[str, str],
    metadata: Mapping[str, str],
    timestamp: str,
) -> None:
    """Add provenance to ``gpkg_metadata`` (GeoPackage metadata extension).

    One dataset-level JSON document holds ``metadata`` as given; each layer gets a QGIS metadata
    document (abstract = its description, one history entry per provenance item). GDAL's own
    dataset metadata is not used: GDAL 3.12 copies it into a ``.gpkg.aux.xml`` sidecar whenever
    it reads features from the file.
    """
    layer_names = [n for n in names if metadata or descriptions.get(n)]
    if not metadata and not layer_names:
        return
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("BEGIN")
        for ddl in _METADATA_DDL:
            con.execute(ddl)
        for table in ("gpkg_metadata", "gpkg_metadata_reference"):
            con.execute(
                "INSERT OR IGNORE INTO gpkg_extensions (table_name, column_name, extension_name, "
                "definition, scope) VALUES (?, NULL, 'gpkg_metadata', ?, 'read-write')",
                (table, _METADATA_EXTENSION),
            )
        documents: list[tuple[str | None, str, str, str]] = []
        if metadata:
            text = json.dumps(dict(metadata), indent=2, ensure_ascii=False)
            documents.append((None, PROVENANCE_URI, "application/json", text))
        for name in layer_names:
            qmd = _qmd(name, descriptions.get(name), metadata)
            documents.append((name, "http://mrcc.com/qgis.dtd", "text/xml", qmd))
        for table, uri, mime, text in documents:
            cur = con.execute(
                "INSERT INTO gpkg_metadata (md_scope, md_standard_uri, mime_type, metadata) "
                "VALUES ('dataset', ?, ?, ?)",
                (uri, mime, text),
            )
            con.execute(
                "INSERT INTO gpkg_metadata_reference (reference_scope, table_name, column_name, "
                "row_id_value, timestamp, md_file_id, md_parent_id) "
                "VALUES (?, ?, NULL, NULL, ?, ?, NULL)",
                ("geopackage" if table is None else "table", table, timestamp, cur.lastrowid),
            )
        con.execute("COMMIT")
    finally:
        con.close()


# --------------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------------


def _style_table(prepared: list[_Prepared], styles: Mapping[str, str], timestamp: str) -> pa.Table:
    rows = [p for p in prepared if p.name in styles]
    when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    text = pa.string()
    return pa.table(
        {
            "f_table_catalog": pa.array([""] * len(rows), text),
            "f_table_schema": pa.array([""] * len(rows), text),
            "f_table_name": pa.array([p.name for p in rows], text),
            "f_geometry_column": pa.array(
                [_GEOMETRY_COLUMN if p.geometry_type else "" for p in rows], text
            ),
            "styleName": pa.array([p.name for p in rows], text),
            "styleQML": pa.array([styles[p.name] for p in rows], text),
            "styleSLD": pa.array([""] * len(rows), text),
            "useAsDefault": pa.array([True] * len(rows), pa.bool_()),
            "description": pa.array(["Priority Localities Index default style"] * len(rows), text),
            "owner": pa.array([""] * len(rows), text),
            "ui": pa.array([None] * len(rows), text),
            "update_time": pa.array([when] * len(rows), pa.timestamp("ms", tz="UTC")),
        }
    )


def _remove(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


def write_geopackage(
    path: Path,
    layers: Mapping[str, gpd.GeoDataFrame | pd.DataFrame],
    *,
    styles: Mapping[str, str] | None = None,
    field_descriptions: Mapping[str, Mapping[str, str]] | None = None,
    layer_descriptions: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``layers`` to the GeoPackage ``path``, replacing it atomically.

    Parameters
    ----------
    path : Path
        Destination ``.gpkg``; its folder is created if missing. An existing file is replaced
        only once the new one is complete.
    layers : mapping
        Layer name -> GeoDataFrame (spatial layer, written in EPSG:27700) or DataFrame (written as
        a GeoPackage attributes table, e.g. ``rejected_records``), in the order wanted in the
        file. Names start with a letter and hold letters, digits and ``_``. Polygon layers are
        repaired with ``make_valid`` where invalid and written as MultiPolygon; a named index is
        written as a field; list values become ``"; "``-joined text.
    styles : mapping, optional
        Layer name -> QML text, stored in ``layer_styles`` as that layer's default QGIS style.
        ``None`` (default) uses :func:`priority_index.exports.styles.default_styles`; pass ``{}``
        to store no styles. Readable field names are added to each style as aliases.
    field_descriptions : mapping, optional
        Layer name -> {field name -> description}, written to ``gpkg_data_columns`` on top of
        the built-in descriptions of the pipeline's standard fields. Entries for layers or
        fields not written are ignored, so one catalogue can serve runs with optional layers.
    layer_descriptions : mapping, optional
        Layer name -> description (``gpkg_contents.description``, the abstract QGIS shows).
        Entries for layers not written are ignored.
    metadata : mapping, optional
        Provenance, e.g. ``{"config_toml": ..., "inputs": ..., "version": ...,
        "run_date": "2025-06-30T12:00:00Z"}``; string keys (letters, digits, ``_.:-``) and
        string values. Stored as a JSON document in ``gpkg_metadata`` and in each layer's QGIS
        metadata.
        ``run_date`` (ISO 8601) also dates the file's internal timestamps; without it they are
        1970-01-01, so the same input always gives the same bytes.

    Raises
    ------
    ValueError
        A layer or field name is invalid or reserved, a spatial layer has no CRS or mixes
        geometry families, a style names a layer that is not written or is not QML, or
        ``metadata["run_date"]`` is not an ISO 8601 date.
    TypeError
        A layer is not a DataFrame, a field holds values a GeoPackage cannot store, or metadata
        is not text.
    """
    path = Path(path)
    if not layers:
        raise ValueError("write_geopackage needs at least one layer")
    names = [_check_layer_name(n) for n in layers]
    lowered = [n.lower() for n in names]
    if len(set(lowered)) != len(lowered):
        raise ValueError(f"layer names must differ other than by case: {names}")
    field_descriptions = dict(field_descriptions or {})
    layer_descriptions = dict(layer_descriptions or {})
    metadata = dict(metadata or {})
    unknown = sorted(set(styles or {}) - set(names))
    if unknown:
        raise ValueError(f"styles name layers that are not written: {unknown}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not _METADATA_KEY.match(key):
            raise ValueError(f"metadata key {key!r} must hold only letters, digits and _.:-")
        if not isinstance(value, str):
            raise TypeError(f"metadata[{key!r}] must be a string, got {type(value).__name__}")
    for key, value in layer_descriptions.items():
        if not isinstance(value, str):
            raise TypeError(f"layer_descriptions[{key!r}] must be a string")

    prepared = [
        _prepare(name, frame, field_descriptions.get(name, {})) for name, frame in layers.items()
    ]
    style_map = dict(qml.default_styles(layers) if styles is None else styles)
    style_qml: dict[str, str] = {}
    for layer in prepared:
        if layer.name in style_map:
            try:
                style_qml[layer.name] = qml.with_field_aliases(style_map[layer.name], layer.labels)
            except (ET.ParseError, ValueError) as exc:
                raise ValueError(f"style of layer {layer.name!r} is not QML: {exc}") from exc
    timestamp = _timestamp(metadata)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp.gpkg")
    try:
        with _gdal_config({"OGR_CURRENT_DATE": timestamp}):
            for i, layer in enumerate(prepared):
                layer_options = {"FID": _FID_COLUMN, "IDENTIFIER": layer.name}
                if layer.name in layer_descriptions:
                    layer_options["DESCRIPTION"] = layer_descriptions[layer.name]
                kwargs: dict[str, object] = {}
                if layer.geometry_type is not None:
                    layer_options |= {"GEOMETRY_NAME": _GEOMETRY_COLUMN, "SPATIAL_INDEX": "YES"}
                    kwargs = {
                        "geometry_name": _GEOMETRY_COLUMN,
                        "geometry_type": layer.geometry_type,
                        "crs": f"EPSG:{EPSG}",
                    }
                if i == 0:
                    kwargs["dataset_options"] = {"VERSION": GEOPACKAGE_VERSION}
                pyogrio.write_arrow(
                    layer.table,
                    tmp,
                    layer=layer.name,
                    driver="GPKG",
                    layer_options=layer_options,
                    **kwargs,
                )
            if style_qml:
                pyogrio.write_arrow(
                    _style_table(prepared, style_qml, timestamp),
                    tmp,
                    layer=STYLE_TABLE,
                    driver="GPKG",
                    layer_options={"FID": "id", "DESCRIPTION": "QGIS layer styles"},
                )
        _write_metadata(tmp, names, layer_descriptions, metadata, timestamp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
