"""The GeoPackage export: GDAL read-back from the venv, QML builders, and QGIS 3.22 itself."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from priority_index.exports import geopackage as gp
from priority_index.exports import styles
from priority_index.exports.geopackage import write_geopackage

SIZE = 400.0
X0, Y0 = 531_000.0, 163_000.0
RUN_DATE = "2025-06-30T12:00:00Z"
METADATA = {
    "version": "0.1.0",
    "run_date": RUN_DATE,
    "config_toml": '[index]\nname = "Croydon"\n[index.weights]\nviolence = 2.0\n',
    "inputs": json.dumps(
        [{"path": "raw/2024-01-metropolitan-street.csv", "sha256": "ab" * 32}], sort_keys=True
    ),
}
LAYER_DESCRIPTIONS = {
    "lsoa_index": "Harm-weighted priority index, one row per 2021 LSOA",
    "rejected_records": "Input rows not used, with the reason",
}
FIELD_DESCRIPTIONS = {"lsoa_index": {"violence": "Recorded violence against the person"}}
DATA_LAYERS = [
    "lsoa_index",
    "priority_neighbourhoods",
    "hotspots_gi",
    "micro_hotspots",
    "lsoa_boundaries",
    "control_areas",
    "rejected_records",
]
QGIS_PYTHON = "/usr/bin/python3"
QGIS_CHECK = Path(__file__).with_name("qgis_check.py")


def _square(i: int, j: int) -> shapely.Polygon:
    return shapely.box(X0 + i * SIZE, Y0 + j * SIZE, X0 + (i + 1) * SIZE, Y0 + (j + 1) * SIZE)


def make_layers() -> dict[str, pd.DataFrame]:
    """A 5x5 lattice of 400 m squares standing in for LSOAs, and the layers built on it."""
    polys = [_square(i, j) for j in range(5) for i in range(5)]
    codes = [f"E0100{k:04d}" for k in range(25)]
    # LSOA 24 is a self-intersecting "bow tie": invalid, must be repaired to two triangles.
    bx, by = X0 + 4 * SIZE, Y0 + 4 * SIZE
    polys[24] = shapely.Polygon(
        [(bx, by), (bx + SIZE, by + SIZE), (bx + SIZE, by), (bx, by + SIZE)]
    )
    rng = np.random.default_rng(7)
    score = np.round(rng.random(25), 6)
    rank = (-score).argsort().argsort() + 1
    gi_bin = pd.array([int(v) for v in (np.arange(24) % 7) - 3] + [None], dtype="Int64")
    index = gpd.GeoDataFrame(
        {
            "lsoa_code": codes,
            "lsoa_name": [f"Croydon {k:03d}A" for k in range(25)],
            "ward_name": ["Fairfield"] * 12 + ["Broad Green"] * 13,
            "residents": rng.integers(1200, 2200, 25),
            "violence": rng.poisson(30, 25),
            "norm_violence": np.round(rng.random(25), 4),
            "contrib_violence": np.round(rng.random(25), 4),
            "score": score,
            "rank": rank,
            "decile": ((rank - 1) * 10) // 25 + 1,
            "median_rank": rank.astype(float),
            "p_top_decile": np.round(rng.random(25), 3),
            "gi_z": np.round(rng.normal(0, 2, 25), 3),
            "gi_p_sim": np.round(rng.random(25), 3),
            "gi_bin": gi_bin,
            "lisa_quadrant": ["High-High"] * 5 + ["Not significant"] * 20,
            "neighbourhood_id": [1] * 4 + [0] * 21,
            "top_drivers": ["violence; asb"] * 25,
        },
        geometry=polys,
        crs=27700,
    )
    town = shapely.union_all(polys[:4])  # a Polygon ...
    north = shapely.MultiPolygon([polys[10], polys[12]])  # ... and a MultiPolygon
    neighbourhoods = gpd.GeoDataFrame(
        {
            "neighbourhood_id": [1, 2],
            "name": ["Town Centre", "North End"],
            "n_lsoas": [4, 2],
            "lsoa_codes": [codes[:4], [codes[10], codes[12]]],  # lists become "; "-joined text
            "drivers": [np.array(["violence", "asb"]), ("robbery",)],
            "total_harm": [1234.5, 456.0],
            "fragile": [False, True],
        },
        geometry=[town, north],
        crs=27700,
    )
    cols = ["lsoa_code", "gi_z", "gi_p_sim", "gi_bin", "lisa_quadrant", "geometry"]
    hotspots = gpd.GeoDataFrame(
        pd.concat(
            [index[cols].assign(indicator=name) for name in ("score", "violence")],
            ignore_index=True,
        ),
        geometry="geometry",
        crs=27700,
    )
    cells = []
    for k, (cx, cy) in enumerate([(50, 50), (150, 50), (50, 150), (450, 50)]):
        cells.append(
            {
                "neighbourhood_id": 1,
                "patrol_rank": k + 1,
                "cell_id": f"N1-{k}",
                "n_records": 10 - k,
                "harm": 100.0 - 20 * k,
                "harm_share": 0.3 - 0.05 * k,
                "crime_types": "violence; robbery",
                "top_location": "On or near High Street",
                "gi_hotspot": k < 2,
                "kde_hotspot": k < 3,
                "geometry": shapely.box(X0 + cx - 50, Y0 + cy - 50, X0 + cx + 50, Y0 + cy + 50),
            }
        )
    micro = gpd.GeoDataFrame(cells, geometry="geometry", crs=27700)
    boundaries = index[["lsoa_code", "lsoa_name", "geometry"]].to_crs(4326)  # reprojected back
    control = gpd.GeoDataFrame(
        {"name": ["Control A"]}, geometry=[shapely.union_all(polys[20:22])], crs=27700
    )
    rejected = pd.DataFrame(
        {
            "source": ["police_uk", "police_uk", "met_lsoa"],
            "file": ["2024-01-metropolitan-street.csv"] * 2 + ["MPS LSOA Level Crime.csv"],
            "line": [12, 40, 7],
            "reason": ["no_coordinates", "outside_area", "unknown_lsoa"],
            "detail": ["Longitude empty", None, "E01999999"],
            "raw_longitude": [None, "-0.1", None],
            "raw_note": [None, None, None],  # no value at all: still a text field
        }
    )
    return {
        "lsoa_index": index,
        "priority_neighbourhoods": neighbourhoods,
        "hotspots_gi": hotspots,
        "micro_hotspots": micro,
        "lsoa_boundaries": boundaries,
        "control_areas": control,
        "rejected_records": rejected,
    }


def _write(path: Path, layers: dict[str, pd.DataFrame] | None = None, **kwargs) -> Path:
    write_geopackage(
        path,
        make_layers() if layers is None else layers,
        styles=kwargs.pop("styles", None),
        field_descriptions=kwargs.pop("field_descriptions", FIELD_DESCRIPTIONS),
        layer_descriptions=kwargs.pop("layer_descriptions", LAYER_DESCRIPTIONS),
        metadata=kwargs.pop("metadata", METADATA),
    )
    return path


def _sql(path: Path, query: str, *args: object) -> list[tuple]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(query, args).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def gpkg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("gpkg") / "priority_index.gpkg")


# --------------------------------------------------------------------------------------------
# GDAL read-back (venv)
# --------------------------------------------------------------------------------------------


def test_layers_in_order_with_styles_table(gpkg: Path) -> None:
    listed = [(str(name), gtype) for name, gtype in pyogrio.list_layers(gpkg)]
    expected = [(n, "MultiPolygon") for n in DATA_LAYERS[:-1]]
    expected += [("rejected_records", None), ("layer_styles", None)]
    assert listed == expected
    kinds = dict(_sql(gpkg, "SELECT table_name, data_type FROM gpkg_contents"))
    assert kinds["rejected_records"] == "attributes"
    assert kinds["layer_styles"] == "attributes"
    assert all(kinds[n] == "features" for n in DATA_LAYERS[:-1])


def test_read_back_counts_crs_and_values(gpkg: Path) -> None:
    layers = make_layers()
    for name, frame in layers.items():
        back = pyogrio.read_dataframe(gpkg, layer=name)
        assert len(back) == len(frame), name
        if isinstance(frame, gpd.GeoDataFrame):
            assert back.crs.to_epsg() == 27700, name
        else:
            assert not isinstance(back, gpd.GeoDataFrame) or back.geometry.isna().all()
    index = pyogrio.read_dataframe(gpkg, layer="lsoa_index")
    src = layers["lsoa_index"]
    assert index["lsoa_code"].tolist() == src["lsoa_code"].tolist()
    np.testing.assert_array_equal(index["score"], src["score"])
    assert index["decile"].tolist() == src["decile"].tolist()
    assert index["gi_bin"].isna().tolist() == [False] * 24 + [True]
    assert index["gi_bin"].iloc[:24].astype(int).tolist() == src["gi_bin"].iloc[:24].tolist()
    nb = pyogrio.read_dataframe(gpkg, layer="priority_neighbourhoods")
    assert nb["lsoa_codes"].tolist() == [
        "E01000000; E01000001; E01000002; E01000003",
        ("E01000010; E01000012"),
    ]
    assert nb["fragile"].tolist() == [False, True]
    assert nb["drivers"].tolist() == ["violence; asb", "robbery"]
    rejected = pyogrio.read_dataframe(gpkg, layer="rejected_records", read_geometry=False)
    assert rejected["reason"].tolist() == ["no_coordinates", "outside_area", "unknown_lsoa"]
    assert rejected["detail"].isna().tolist() == [False, True, False]
    assert rejected["raw_note"].isna().all()
    info = pyogrio.read_info(gpkg, layer="rejected_records")
    assert info["geometry_type"] is None
    assert info["ogr_types"][list(info["fields"]).index("raw_note")] == "OFTString"


def test_reprojected_to_27700(gpkg: Path) -> None:
    back = pyogrio.read_dataframe(gpkg, layer="lsoa_boundaries")
    xmin, ymin, xmax, ymax = back.total_bounds
    assert xmin == pytest.approx(X0, abs=0.01)
    assert ymin == pytest.approx(Y0, abs=0.01)
    assert xmax == pytest.approx(X0 + 5 * SIZE, abs=0.01)
    assert ymax == pytest.approx(Y0 + 5 * SIZE, abs=0.01)


def test_geometries_valid_and_multipolygon(gpkg: Path) -> None:
    for name in DATA_LAYERS[:-1]:
        back = pyogrio.read_dataframe(gpkg, layer=name)
        assert back.geometry.is_valid.all(), name
        assert set(back.geom_type) == {"MultiPolygon"}, name
    index = pyogrio.read_dataframe(gpkg, layer="lsoa_index")
    bow_tie = index.geometry.iloc[24]
    assert len(bow_tie.geoms) == 2  # the two triangles of the bow tie
    assert bow_tie.area == pytest.approx(SIZE * SIZE / 2)
    assert index.geometry.iloc[:24].area.tolist() == [SIZE * SIZE] * 24
    nb = pyogrio.read_dataframe(gpkg, layer="priority_neighbourhoods")
    assert [len(g.geoms) for g in nb.geometry] == [1, 2]


def test_version_application_id_and_spatial_index(gpkg: Path) -> None:
    assert _sql(gpkg, "PRAGMA application_id") == [(0x47504B47,)]  # "GPKG"
    assert _sql(gpkg, "PRAGMA user_version") == [(10200,)]  # GeoPackage 1.2
    rtrees = _sql(
        gpkg,
        "SELECT table_name, column_name FROM gpkg_extensions "
        "WHERE extension_name = 'gpkg_rtree_index' ORDER BY table_name",
    )
    assert rtrees == sorted((n, "geom") for n in DATA_LAYERS[:-1])
    for name in DATA_LAYERS[:-1]:
        n_index = _sql(gpkg, f'SELECT count(*) FROM "rtree_{name}_geom"')[0][0]
        n_rows = _sql(gpkg, f'SELECT count(*) FROM "{name}"')[0][0]
        assert n_index == n_rows > 0, name
    srs = _sql(gpkg, "SELECT DISTINCT srs_id FROM gpkg_contents WHERE data_type = 'features'")
    assert srs == [(27700,)]
    assert _sql(
        gpkg,
        "SELECT organization, organization_coordsys_id FROM gpkg_spatial_ref_sys "
        "WHERE srs_id = 27700",
    ) == [("EPSG", 27700)]
    assert _sql(gpkg, "PRAGMA integrity_check") == [("ok",)]


def test_field_names_and_descriptions_in_data_columns(gpkg: Path) -> None:
    rows = {
        (t, c): (name, desc)
        for t, c, name, desc in _sql(
            gpkg, "SELECT table_name, column_name, name, description FROM gpkg_data_columns"
        )
    }
    # the caller's description wins; built-in descriptions fill the standard fields
    assert rows[("lsoa_index", "violence")] == (
        "Violence Against the Person",
        "Recorded violence against the person",
    )
    assert rows[("lsoa_index", "decile")][0] == "Decile"
    assert "1 = top 10%" in rows[("lsoa_index", "decile")][1]
    assert rows[("lsoa_index", "norm_violence")][0] == "Violence Against the Person (normalised)"
    assert rows[("lsoa_index", "gi_bin")][1].startswith("Gi* class: 3, 2, 1 = hot spot")
    assert rows[("micro_hotspots", "patrol_rank")][0] == "Patrol rank"
    assert rows[("rejected_records", "reason")] == ("Reason", None)
    # every field of every layer has a readable name, unique within its layer
    for name, frame in make_layers().items():
        fields = [c for c in frame.columns if c != "geometry"]
        names = [rows[(name, c)][0] for c in fields]
        assert len(set(names)) == len(names) and all(names), name
    ext = _sql(
        gpkg,
        "SELECT table_name FROM gpkg_extensions WHERE extension_name = 'gpkg_schema' "
        "ORDER BY table_name",
    )
    assert ext == [("gpkg_data_column_constraints",), ("gpkg_data_columns",)]


def test_layer_descriptions_in_contents(gpkg: Path) -> None:
    desc = dict(_sql(gpkg, "SELECT table_name, description FROM gpkg_contents"))
    assert desc["lsoa_index"] == LAYER_DESCRIPTIONS["lsoa_index"]
    assert desc["rejected_records"] == LAYER_DESCRIPTIONS["rejected_records"]
    assert desc["hotspots_gi"] == ""


def test_layer_styles_rows(gpkg: Path) -> None:
    rows = _sql(
        gpkg,
        "SELECT f_table_catalog, f_table_schema, f_table_name, f_geometry_column, styleName, "
        "styleQML, styleSLD, useAsDefault, owner, ui, update_time FROM layer_styles ORDER BY id",
    )
    assert [r[2] for r in rows] == DATA_LAYERS
    expected_renderer = {
        "lsoa_index": "graduatedSymbol",
        "priority_neighbourhoods": "singleSymbol",
        "hotspots_gi": "RuleRenderer",
        "micro_hotspots": "graduatedSymbol",
        "lsoa_boundaries": "singleSymbol",
        "control_areas": "singleSymbol",
        "rejected_records": None,
    }
    for cat, schema, table, geom_col, style_name, text, sld, default, owner, ui, when in rows:
        assert (cat, schema, owner, sld, ui) == ("", "", "", "", None)
        assert geom_col == ("" if table == "rejected_records" else "geom")
        assert style_name == table
        assert default == 1
        assert when == "2025-06-30T12:00:00.000Z"
        assert text.startswith("<!DOCTYPE qgis")
        assert styles.renderer_type(text) == expected_renderer[table]
        aliases = ET.fromstring(text.split("\n", 1)[1]).find("aliases")
        assert aliases is not None, table
    qml = dict((r[2], r[5]) for r in rows)["lsoa_index"]
    found = {
        a.get("field"): a.get("name") for a in ET.fromstring(qml.split("\n", 1)[1]).iter("alias")
    }
    assert found["score"] == "Priority score"
    assert found["gi_bin"] == "Gi* hot/cold spot class"


def test_provenance_metadata(gpkg: Path) -> None:
    docs = _sql(
        gpkg,
        "SELECT m.md_standard_uri, m.mime_type, m.metadata, r.reference_scope, r.table_name, "
        "r.timestamp FROM gpkg_metadata m JOIN gpkg_metadata_reference r ON r.md_file_id = m.id "
        "ORDER BY m.id",
    )
    uri, mime, text, scope, table, when = docs[0]
    assert (uri, mime, scope, table) == (gp.PROVENANCE_URI, "application/json", "geopackage", None)
    assert json.loads(text) == METADATA
    assert when == "2025-06-30T12:00:00.000Z"
    qmd = {d[4]: d[2] for d in docs[1:]}
    assert sorted(qmd) == sorted(DATA_LAYERS)
    assert all(d[0] == "http://mrcc.com/qgis.dtd" and d[3] == "table" for d in docs[1:])
    root = ET.fromstring(qmd["lsoa_index"].split("\n", 1)[1])
    assert root.findtext("abstract") == LAYER_DESCRIPTIONS["lsoa_index"]
    history = [h.text for h in root.iter("history")]
    assert "version: 0.1.0" in history
    assert f"config_toml: {METADATA['config_toml']}" in history
    # GDAL sees the provenance as dataset metadata
    info = pyogrio.read_info(gpkg, layer="lsoa_index")
    assert json.loads(info["dataset_metadata"]["GPKG_METADATA_ITEM_1"]) == METADATA
    ext = _sql(
        gpkg, "SELECT table_name FROM gpkg_extensions WHERE extension_name = 'gpkg_metadata'"
    )
    assert sorted(ext) == [("gpkg_metadata",), ("gpkg_metadata_reference",)]


def test_reading_leaves_no_sidecar_files(tmp_path: Path) -> None:
    path = _write(tmp_path / "out.gpkg")
    assert sorted(os.listdir(tmp_path)) == ["out.gpkg"]  # atomic write: no temp file left
    for name in DATA_LAYERS:
        pyogrio.read_dataframe(path, layer=name)
    pyogrio.list_layers(path)
    # GDAL 3.12 writes an .aux.xml beside files holding GDAL-format dataset metadata
    assert sorted(os.listdir(tmp_path)) == ["out.gpkg"]


def test_internal_timestamps_fixed_and_gdal_option_restored(gpkg: Path, tmp_path: Path) -> None:
    changes = {c for (c,) in _sql(gpkg, "SELECT last_change FROM gpkg_contents")}
    assert changes == {"2025-06-30T12:00:00.000Z"}
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2001-02-03T04:05:06.000Z"})
    try:
        _write(tmp_path / "a.gpkg", metadata={"run_date": "2024-03-31"})
        assert pyogrio.get_gdal_config_option("OGR_CURRENT_DATE") == "2001-02-03T04:05:06.000Z"
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": None})
    changes = {c for (c,) in _sql(tmp_path / "a.gpkg", "SELECT last_change FROM gpkg_contents")}
    assert changes == {"2024-03-31T00:00:00.000Z"}
    _write(tmp_path / "b.gpkg", metadata={})
    assert pyogrio.get_gdal_config_option("OGR_CURRENT_DATE") is None
    changes = {c for (c,) in _sql(tmp_path / "b.gpkg", "SELECT last_change FROM gpkg_contents")}
    assert changes == {"1970-01-01T00:00:00.000Z"}


def test_rewrite_is_byte_identical(gpkg: Path, tmp_path: Path) -> None:
    again = _write(tmp_path / "elsewhere.gpkg")
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(gpkg.read_bytes()).digest()
    for name in DATA_LAYERS:
        a = pyogrio.read_dataframe(gpkg, layer=name)
        b = pyogrio.read_dataframe(again, layer=name)
        pd.testing.assert_frame_equal(pd.DataFrame(a), pd.DataFrame(b))


def test_replaces_existing_file_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.gpkg"
    layers = make_layers()
    _write(path, {"lsoa_index": layers["lsoa_index"]}, metadata={})
    before = path.read_bytes()

    real = pyogrio.write_arrow
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(gp.pyogrio, "write_arrow", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        _write(path, layers)
    assert path.read_bytes() == before  # the old file is untouched ...
    assert sorted(os.listdir(tmp_path)) == ["out.gpkg"]  # ... and no temp file is left
    monkeypatch.setattr(gp.pyogrio, "write_arrow", real)

    # a full rewrite replaces the file (no layers left over from the old one)
    _write(path, {"control_areas": layers["control_areas"]}, metadata={})
    assert [str(n) for n, _ in pyogrio.list_layers(path)] == ["control_areas", "layer_styles"]


def test_named_index_and_no_styles(tmp_path: Path) -> None:
    bounds = make_layers()["lsoa_boundaries"].set_index("lsoa_code")
    path = tmp_path / "b.gpkg"
    write_geopackage(
        path,
        {"lsoa_boundaries": bounds},
        styles={},
        field_descriptions=None,
        layer_descriptions=None,
        metadata=None,
    )
    assert [str(n) for n, _ in pyogrio.list_layers(path)] == ["lsoa_boundaries"]
    back = pyogrio.read_dataframe(path, layer="lsoa_boundaries")
    assert back["lsoa_code"].tolist() == bounds.index.tolist()
    tables = {t for (t,) in _sql(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "gpkg_metadata" not in tables  # nothing to record


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda L: L["lsoa_index"].set_crs(None, allow_override=True), ValueError, "no CRS"),
        (
            lambda L: pd.concat(
                [L["control_areas"], L["control_areas"].set_geometry(L["control_areas"].centroid)]
            ),
            ValueError,
            "mixes polygons",
        ),
        (lambda L: L["control_areas"].assign(fid=1), ValueError, "reserved"),
        (lambda L: L["control_areas"].assign(Name="x"), ValueError, "differ only in case"),
        (lambda L: L["rejected_records"].assign(bad=[object()] * 3), TypeError, "cannot be stored"),
    ],
)
def test_rejects_bad_layers(tmp_path: Path, change, error, match) -> None:
    layers = make_layers()
    with pytest.raises(error, match=match):
        _write(
            tmp_path / "x.gpkg",
            {"control_areas": change(layers)},
            field_descriptions={},
            layer_descriptions={},
        )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"styles": {"nowhere": "<qgis/>"}}, ValueError, "not written"),
        ({"styles": {"lsoa_index": "<qgis><unclosed></qgis>"}}, ValueError, "is not QML"),
        ({"styles": {"lsoa_index": "<style/>"}}, ValueError, "is not QML"),
        ({"metadata": {"version": 1}}, TypeError, "must be a string"),
        ({"metadata": {"bad key": "x"}}, ValueError, "metadata key"),
        ({"metadata": {"run_date": "last Tuesday"}}, ValueError, "ISO 8601"),
    ],
)
def test_rejects_bad_arguments(tmp_path: Path, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        _write(tmp_path / "x.gpkg", **kwargs)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["1abc", "gpkg_contents", "layer_styles", "has space", ""])
def test_rejects_bad_layer_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="layer name"):
        write_geopackage(tmp_path / "x.gpkg", {name: make_layers()["control_areas"]})


def test_field_label() -> None:
    assert gp.field_label("gi_p_sim") == "Gi* pseudo p-value"
    assert gp.field_label("contrib_asb") == "Anti-social Behaviour (contribution to score)"
    assert gp.field_label("norm_imd_score") == "Imd score (normalised)"
    assert gp.field_label("raw_longitude") == "Raw longitude"


# --------------------------------------------------------------------------------------------
# QML builders
# --------------------------------------------------------------------------------------------


def _xml(text: str) -> ET.Element:
    assert text.startswith("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n")
    return ET.fromstring(text.split("\n", 1)[1])


def _fill_props(symbol: ET.Element) -> list[dict[str, str]]:
    return [
        {o.get("name"): o.get("value") for o in layer.find("Option").findall("Option")}
        for layer in symbol.findall("layer")
    ]


def test_decile_qml() -> None:
    root = _xml(styles.decile_qml())
    rend = root.find("renderer-v2")
    assert (rend.get("type"), rend.get("attr")) == ("graduatedSymbol", "decile")
    ranges = rend.find("ranges").findall("range")
    assert [(float(r.get("lower")), float(r.get("upper"))) for r in ranges] == [
        (k - 0.5, k + 0.5) for k in range(1, 11)
    ]
    assert ranges[0].get("label") == "Decile 1 (0-10%) - highest priority"
    colors = [_fill_props(s)[0]["color"] for s in rend.find("symbols").findall("symbol")]
    assert colors[0] == "103,0,13,255"  # dark red for the highest priority ...
    assert colors[-1] == "255,245,240,255"  # ... to pale
    lightness = [sum(int(c) for c in col.split(",")[:3]) for col in colors]
    assert lightness == sorted(lightness) and len(set(lightness)) == 10
    assert root.findtext("layerGeometryType") == "2"
    assert root.get("labelsEnabled") == "0"


def test_gi_bins_qml_categorised() -> None:
    rend = _xml(styles.gi_bins_qml()).find("renderer-v2")
    assert (rend.get("type"), rend.get("attr")) == ("categorizedSymbol", "gi_bin")
    cats = [(c.get("value"), c.get("label")) for c in rend.find("categories")]
    assert cats == [
        ("3", "Hot spot - 99% confidence"),
        ("2", "Hot spot - 95% confidence"),
        ("1", "Hot spot - 90% confidence"),
        ("0", "Not significant"),
        ("-1", "Cold spot - 90% confidence"),
        ("-2", "Cold spot - 95% confidence"),
        ("-3", "Cold spot - 99% confidence"),
        ("", "No data"),
    ]
    colors = [_fill_props(s)[0]["color"] for s in rend.find("symbols")]
    assert colors[0] == "214,47,39,255" and colors[6] == "69,117,181,255"


def test_gi_bins_qml_one_indicator_at_a_time() -> None:
    rend = _xml(
        styles.gi_bins_qml(indicators=["violence", "score"], active_indicator="score")
    ).find("renderer-v2")
    assert rend.get("type") == "RuleRenderer"
    groups = rend.find("rules").findall("rule")
    assert [g.get("filter") for g in groups] == [
        "\"indicator\" = 'violence'",
        "\"indicator\" = 'score'",
    ]
    assert [g.get("checkstate") for g in groups] == ["0", None]  # only "score" is on
    assert [r.get("label") for r in groups[1]][:1] == ["Hot spot - 99% confidence"]
    assert groups[1][0].get("filter") == '"gi_bin" = 3' and groups[1][-1].get("filter") == "ELSE"
    symbols = {s.get("name") for s in rend.find("symbols")}
    assert {r.get("symbol") for g in groups for r in g} == symbols and len(symbols) == 16
    with pytest.raises(ValueError, match="active_indicator"):
        styles.gi_bins_qml(indicators=["a"], active_indicator="b")


def test_outline_styles() -> None:
    root = _xml(styles.neighbourhood_outline_qml())
    (halo, line) = _fill_props(root.find("renderer-v2/symbols/symbol"))
    assert halo["style"] == line["style"] == "no"  # no fill
    assert float(line["outline_width"]) >= 0.8 and line["outline_color"] == "20,20,20,255"
    assert float(halo["outline_width"]) > float(line["outline_width"])
    assert root.get("labelsEnabled") == "1"
    assert root.find("labeling").get("type") == "simple"
    assert root.find("labeling/settings/text-style").get("fieldName") == "name"
    assert root.find("labeling/settings/rendering").get("displayAll") == "1"  # all nine shown

    (dash,) = _fill_props(_xml(styles.control_areas_qml()).find("renderer-v2/symbols/symbol"))
    assert (dash["style"], dash["outline_style"]) == ("no", "dash")

    root = _xml(styles.lsoa_boundaries_qml())
    (thin,) = _fill_props(root.find("renderer-v2/symbols/symbol"))
    assert (thin["style"], thin["outline_style"], thin["outline_color"]) == (
        "no",
        "solid",
        "128,128,128,255",
    )
    assert float(thin["outline_width"]) <= 0.25
    assert root.get("labelsEnabled") == "0"


def test_micro_hotspots_qml_and_breaks() -> None:
    assert styles.quantile_breaks([1, 2, 3, 4, 5], n_classes=4) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert styles.quantile_breaks([7, 7, 7, np.nan]) == [7.0, 7.0]
    assert styles.quantile_breaks([0, 0, 0, 10], n_classes=4) == [0.0, 10.0]
    assert styles.quantile_breaks([0, 0, 1, 2, 3, 10], n_classes=4) == [0.0, 0.25, 1.5, 2.75, 10.0]
    assert styles.quantile_breaks([]) == [0.0, 1.0]
    rend = _xml(styles.micro_hotspots_qml(breaks=[0.0, 2.5, 10.0])).find("renderer-v2")
    assert (rend.get("type"), rend.get("attr")) == ("graduatedSymbol", "harm")
    assert [r.get("label") for r in rend.find("ranges")] == ["0.0 - 2.5", "2.5 - 10.0"]
    colors = [_fill_props(s)[0]["color"] for s in rend.find("symbols")]
    assert colors == ["254,235,226,255", "122,1,119,255"]  # palest and darkest of the ramp
    with pytest.raises(ValueError, match="ascending"):
        styles.graduated_qml(field="x", breaks=[2, 1], colors=[(0, 0, 0)], labels=["a"])


def test_with_field_aliases_replaces() -> None:
    once = styles.with_field_aliases(styles.decile_qml(), {"a": "A one"})
    twice = styles.with_field_aliases(once, {"b": "B & <two>"})
    aliases = [(a.get("field"), a.get("name")) for a in _xml(twice).iter("alias")]
    assert aliases == [("b", "B & <two>")]
    assert _xml(twice).find("renderer-v2") is not None


def test_default_styles_are_deterministic() -> None:
    layers = make_layers()
    first = styles.default_styles(layers)
    assert first == styles.default_styles(make_layers())
    assert sorted(first) == sorted(DATA_LAYERS)
    assert styles.renderer_type(first["hotspots_gi"]) == "RuleRenderer"
    one = {"hotspots_gi": layers["hotspots_gi"].query("indicator == 'score'")}
    assert styles.renderer_type(styles.default_styles(one)["hotspots_gi"]) == "categorizedSymbol"
    wards = layers["control_areas"].assign(ward_name="Fairfield")
    points = gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.Point(X0, Y0)], crs=27700)
    other = styles.default_styles({"ward_boundaries": wards, "other": wards, "points": points})
    assert sorted(other) == ["other", "ward_boundaries"]  # no polygon style forced on points
    root = _xml(other["ward_boundaries"])
    assert root.find("labeling/settings/text-style").get("fieldName") == "ward_name"
    assert root.find("labeling/settings/rendering").get("displayAll") == "0"  # drop collisions
    assert _fill_props(root.find("renderer-v2/symbols/symbol"))[0]["style"] == "no"
    assert _xml(other["other"]).get("labelsEnabled") == "0"
    assert _fill_props(_xml(other["other"]).find("renderer-v2/symbols/symbol"))[0]["style"] == "no"


# --------------------------------------------------------------------------------------------
# QGIS 3.22 (Debian python3-qgis, system Python)
# --------------------------------------------------------------------------------------------


def _qgis_available() -> bool:
    if not Path(QGIS_PYTHON).exists():
        return False
    probe = subprocess.run(
        [QGIS_PYTHON, "-c", "import qgis.core"],
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        capture_output=True,
        timeout=120,
    )
    return probe.returncode == 0


needs_qgis = pytest.mark.skipif(
    not _qgis_available(),
    reason=f"{QGIS_PYTHON} cannot import qgis.core (install Debian's python3-qgis)",
)


def _run_qgis(gpkg: Path, png: Path, *extra: str) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["QT_QPA_PLATFORM"] = "offscreen"
    done = subprocess.run(
        [QGIS_PYTHON, str(QGIS_CHECK), str(gpkg), str(png), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, f"qgis_check printed nothing; stderr:\n{done.stderr}"
    return json.loads(lines[-1]), done.stdout + done.stderr


def _colour_pixels(png: Path, rgb: tuple[int, int, int]) -> int:
    from PIL import Image

    with Image.open(png) as img:
        arr = np.asarray(img.convert("RGB"))
    return int((arr == np.array(rgb, dtype=arr.dtype)).all(axis=2).sum())


@pytest.mark.qgis
@needs_qgis
def test_qgis_opens_every_layer_styled(tmp_path: Path) -> None:
    layers = make_layers()
    # one more layer: Gi* bins of a single indicator, the categorised style
    layers["gi_score"] = layers["hotspots_gi"].query("indicator == 'score'")
    path = _write(
        tmp_path / "croydon.gpkg",
        layers,
        styles=styles.default_styles(layers) | {"gi_score": styles.gi_bins_qml()},
    )
    png = tmp_path / "map.png"
    order = "lsoa_index,micro_hotspots,lsoa_boundaries,control_areas,priority_neighbourhoods"
    report, output = _run_qgis(path, png, "--combined", order)

    assert report["ok"] is True
    assert report["qgis_version"].startswith("3.")
    # what a user dropping the file on QGIS is offered: the data, not the styles table
    assert sorted(s["name"] for s in report["sublayers"]) == sorted(layers)
    info = report["layers"]
    for name, frame in layers.items():
        assert info[name]["valid"], name
        assert info[name]["feature_count"] == len(frame), name
        assert info[name]["style_from_db"] is True, name
        assert info[name]["default_style_message"] == "Loaded from Provider", name
        assert info[name]["styles_in_database"] == [name], name
        if name != "rejected_records":
            assert info[name]["crs"] == "EPSG:27700", name
            assert info[name]["geometry"] == "MultiPolygon", name
            assert info[name]["plain_renderer"] == "singleSymbol", name
    assert info["rejected_records"]["spatial"] is False

    index = info["lsoa_index"]["renderer"]
    assert (index["type"], index["field"], len(index["classes"])) == (
        "graduatedSymbol",
        "decile",
        10,
    )
    assert index["classes"][0]["color"] == "#67000d"
    assert index["classes"][-1]["color"] == "#fff5f0"

    gi = info["gi_score"]["renderer"]
    assert (gi["type"], gi["field"]) == ("categorizedSymbol", "gi_bin")
    assert [c["label"] for c in gi["classes"]][:7] == [
        label for _, label, _ in styles.GI_BIN_CLASSES
    ]
    assert gi["classes"][0]["color"] == "#d62f27"

    stacked = info["hotspots_gi"]["renderer"]
    assert stacked["type"] == "RuleRenderer"
    groups = [r for r in stacked["classes"] if r["depth"] == 0]
    assert [(g["label"], g["active"]) for g in groups] == [
        ("Gi* hot spots: Priority score", True),
        ("Gi* hot spots: Violence Against the Person", False),
    ]

    micro = info["micro_hotspots"]["renderer"]
    assert (micro["type"], micro["field"], len(micro["classes"])) == ("graduatedSymbol", "harm", 4)

    nb = info["priority_neighbourhoods"]
    assert nb["labels_enabled"] is True and nb["label_field"] == "name"
    assert all(sl["no_fill"] for sl in nb["renderer"]["symbol_layers"])
    assert max(sl["outline_width"] for sl in nb["renderer"]["symbol_layers"]) >= 0.8
    (dashed,) = info["control_areas"]["renderer"]["symbol_layers"]
    assert dashed["no_fill"] and dashed["dashed"]
    (thin,) = info["lsoa_boundaries"]["renderer"]["symbol_layers"]
    assert thin["no_fill"] and not thin["dashed"] and thin["outline"] == "#ff808080"

    # readable names reach QGIS 3.22 as aliases; descriptions as the layer abstract
    assert info["lsoa_index"]["aliases"]["score"] == "Priority score"
    assert info["rejected_records"]["aliases"]["reason"] == "Reason"
    assert info["lsoa_index"]["abstract"] == LAYER_DESCRIPTIONS["lsoa_index"]
    assert "version: 0.1.0" in info["lsoa_index"]["history"]

    # GeoPackage 1.2: no "may only be partially supported" from QGIS 3.22's GDAL
    assert "partially supported" not in output
    assert not [m for m in report["messages"] if "partially supported" in m["message"]]

    # the styles were drawn: decile-1 red, Gi* hot-spot red and cold-spot blue are in the PNG
    assert report["png"]["path"] == str(png)
    assert _colour_pixels(png, (103, 0, 13)) > 1000
    assert _colour_pixels(png, (214, 47, 39)) > 1000
    assert _colour_pixels(png, (69, 117, 181)) > 1000


@pytest.mark.qgis
@needs_qgis
def test_qgis_check_sees_version_warning(tmp_path: Path) -> None:
    """Control: the check does catch the warning a GDAL-default (1.4) GeoPackage triggers."""
    path = tmp_path / "v14.gpkg"
    make_layers()["control_areas"].to_file(path, layer="control_areas", engine="pyogrio")
    report, output = _run_qgis(path, tmp_path / "v14.png")
    assert report["layers"]["control_areas"]["style_from_db"] is False
    assert report["layers"]["control_areas"]["renderer"]["type"] == "singleSymbol"
    assert "may only be partially supported" in output


def test_descriptions_for_absent_layers_and_fields_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "x.gpkg"
    write_geopackage(
        path,
        {"control_areas": make_layers()["control_areas"]},
        styles=None,
        field_descriptions={"control_areas": {"name": "Area name", "gone": "x"}, "other": {}},
        layer_descriptions={"control_areas": "Comparison areas", "lsoa_index": "absent"},
        metadata=None,
    )
    rows = _sql(path, "SELECT column_name, description FROM gpkg_data_columns")
    assert rows == [("name", "Area name")]
    assert _sql(
        path, "SELECT description FROM gpkg_contents WHERE table_name = 'control_areas'"
    ) == [("Comparison areas",)]


def test_geometry_types_other_than_polygons(tmp_path: Path) -> None:
    p = [shapely.Point(X0, Y0), shapely.Point(X0 + 10, Y0 + 10)]
    layers = {
        "points": gpd.GeoDataFrame({"a": [1, 2, 3]}, geometry=[p[0], None, p[1]], crs=27700),
        "mixed_points": gpd.GeoDataFrame(
            {"a": [1, 2]}, geometry=[p[0], shapely.MultiPoint(p)], crs=27700
        ),
        "lines": gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.LineString(p)], crs=27700),
        # a collapsed (zero-area) polygon: repaired to nothing, still a polygon layer
        "flat": gpd.GeoDataFrame(
            {"a": [1, 2]},
            geometry=[shapely.Polygon([p[0], p[1], (X0 + 20, Y0 + 20)]), _square(0, 0)],
            crs=27700,
        ),
    }
    path = tmp_path / "g.gpkg"
    with pytest.warns(RuntimeWarning, match="'flat': 1 invalid geometries had no area left"):
        write_geopackage(path, layers, styles={})
    assert dict((str(n), t) for n, t in pyogrio.list_layers(path)) == {
        "points": "Point",
        "mixed_points": "MultiPoint",
        "lines": "LineString",
        "flat": "MultiPolygon",
    }
    flat = pyogrio.read_dataframe(path, layer="flat")
    assert flat.geometry.iloc[0].is_empty and flat.geometry.iloc[1].area == SIZE * SIZE
    points = pyogrio.read_dataframe(path, layer="points")
    assert points.geometry.isna().tolist() == [False, True, False]


VALIDATE_GPKG = Path("/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_gpkg.py")


@pytest.mark.qgis
@pytest.mark.skipif(
    not VALIDATE_GPKG.exists(),
    reason=f"GDAL's GeoPackage validator {VALIDATE_GPKG} is missing (Debian python3-gdal)",
)
def test_gdal_validator_accepts_file(gpkg: Path) -> None:
    """GDAL's validate_gpkg.py (the GDAL 3.6 QGIS 3.22 uses) checks the spec requirements."""
    done = subprocess.run(
        [QGIS_PYTHON, str(VALIDATE_GPKG), str(gpkg)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------------------------
# Street-segment micro-places: a line micro_hotspots layer
# --------------------------------------------------------------------------------------------


def _line_micro_layer() -> gpd.GeoDataFrame:
    """The micro_hotspots layer as street segments: four lines in the Town Centre squares."""
    lines = [
        shapely.LineString([(X0 + 20, Y0 + 200), (X0 + 380, Y0 + 200)]),
        shapely.LineString([(X0 + 200, Y0 + 20), (X0 + 200, Y0 + 380)]),
        shapely.LineString([(X0 + 420, Y0 + 100), (X0 + 600, Y0 + 250), (X0 + 780, Y0 + 300)]),
        shapely.LineString([(X0 + 100, Y0 + 500), (X0 + 350, Y0 + 700)]),
    ]
    micro = make_layers()["micro_hotspots"].copy()
    micro["cell_id"] = [f"E{531000 + 100 * k}N163200-1" for k in range(4)]
    micro["street"] = ["High Street", "Church Lane", "Mill Lane", None]
    micro["snap_distance_m_max"] = [3.5, 12.0, 0.0, 48.0]
    return micro.set_geometry(gpd.GeoSeries(lines, crs=27700))


def test_micro_hotspots_line_qml() -> None:
    root = _xml(styles.micro_hotspots_qml(breaks=[0.0, 2.5, 10.0], geometry="line"))
    rend = root.find("renderer-v2")
    assert (rend.get("type"), rend.get("attr")) == ("graduatedSymbol", "harm")
    assert [r.get("label") for r in rend.find("ranges")] == ["0.0 - 2.5", "2.5 - 10.0"]
    assert root.find("layerGeometryType").text == "1"  # a line layer, or QGIS refuses the style
    symbols = list(rend.find("symbols"))
    assert [s.get("type") for s in symbols] == ["line", "line"]
    widths, colours = [], []
    for symbol in symbols:
        casing, main = symbol.findall("layer")
        assert (casing.get("class"), main.get("class")) == ("SimpleLine", "SimpleLine")
        assert (casing.get("locked"), main.get("locked")) == ("1", "0")
        props = {o.get("name"): o.get("value") for o in main.find("Option")}
        under = {o.get("name"): o.get("value") for o in casing.find("Option")}
        assert under["line_color"].startswith("255,255,255,")
        assert float(under["line_width"]) > float(props["line_width"])
        widths.append(float(props["line_width"]))
        colours.append(props["line_color"])
    # wider and darker with harm; the top class is the ramp's darkest at the widest width
    assert widths == [styles.HARM_LINE_WIDTHS[0], styles.HARM_LINE_WIDTHS[-1]]
    assert colours == ["251,180,185,255", "122,1,119,255"]
    one = _xml(styles.micro_hotspots_qml(breaks=[5.0, 5.0], geometry="line"))
    assert len(one.find("renderer-v2/symbols")) == 1
    with pytest.raises(ValueError, match="geometry must be"):
        styles.micro_hotspots_qml(breaks=[0, 1], geometry="point")
    with pytest.raises(ValueError, match="widths"):
        styles.graduated_line_qml(
            field="h", breaks=[0, 1], colors=[(0, 0, 0)], widths_mm=[1, 2], labels=["a"]
        )


def test_default_styles_detect_line_micro_places() -> None:
    lines = _line_micro_layer()
    cells = make_layers()["micro_hotspots"]
    got = styles.default_styles({"micro_hotspots": lines})
    root = _xml(got["micro_hotspots"])
    assert root.find("layerGeometryType").text == "1"
    assert {s.get("type") for s in root.find("renderer-v2/symbols")} == {"line"}
    assert root.find("previewExpression").text == (
        """coalesce("cell_id", '') || ' ' || coalesce("street", '')"""
    )
    multi = lines.set_geometry(
        gpd.GeoSeries([shapely.MultiLineString([g]) for g in lines.geometry], crs=27700)
    )
    assert styles.default_styles({"micro_hotspots": multi}) == got
    # grid cells keep the polygon style; other line layers still get none
    polygon = _xml(styles.default_styles({"micro_hotspots": cells})["micro_hotspots"])
    assert polygon.find("layerGeometryType").text == "2"
    assert styles.default_styles({"roads": lines}) == {}


@pytest.mark.qgis
@needs_qgis
def test_qgis_opens_line_micro_places_styled(tmp_path: Path) -> None:
    layers = make_layers()
    layers = {
        "lsoa_index": layers["lsoa_index"],
        "priority_neighbourhoods": layers["priority_neighbourhoods"],
        "micro_hotspots": _line_micro_layer(),
    }
    path = _write(tmp_path / "segments.gpkg", layers, styles=styles.default_styles(layers))
    png = tmp_path / "segments.png"
    report, output = _run_qgis(
        path, png, "--combined", "lsoa_index,micro_hotspots,priority_neighbourhoods"
    )
    assert report["ok"] is True
    micro = report["layers"]["micro_hotspots"]
    assert micro["valid"] and micro["feature_count"] == 4
    assert micro["geometry"] == "LineString"
    assert micro["style_from_db"] is True
    assert micro["default_style_message"] == "Loaded from Provider"
    rend = micro["renderer"]
    assert (rend["type"], rend["field"], len(rend["classes"])) == ("graduatedSymbol", "harm", 4)
    # the class colour QGIS reports is the line's, not the locked white casing's
    assert [c["color"] for c in rend["classes"]] == ["#fbb4b9", "#f768a1", "#c51b8a", "#7a0177"]
    assert micro["display_expression"] == (
        """coalesce("cell_id", '') || ' ' || coalesce("street", '')"""
    )
    assert not [m for m in report["messages"] if "geometry type" in m["message"].lower()]
    # the lines were drawn in the top class's dark purple
    assert _colour_pixels(png, (122, 1, 119)) > 100
