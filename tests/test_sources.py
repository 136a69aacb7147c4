"""Readers: real formats, structural errors, and a bad-input suite that must reconcile exactly."""

from __future__ import annotations

import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer
from shapely.geometry import box

from priority_index.crime_groups import source_mapping
from priority_index.errors import InputError
from priority_index.sources import area_tables, boundaries, police_uk
from priority_index.sources.quarantine import Quarantine

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"
TO_WGS = Transformer.from_crs("EPSG:27700", "EPSG:4326", always_xy=True)
HEADER = ",".join(police_uk.COLUMNS)
CODES = ["E01000001", "E01000002", "E01000003", "E01000004"]


@pytest.fixture
def study() -> gpd.GeoDataFrame:
    """Four 1 km squares in south London, 2 x 2."""
    geoms = [
        box(530000 + i * 1000, 160000 + j * 1000, 531000 + i * 1000, 161000 + j * 1000)
        for j in range(2)
        for i in range(2)
    ]
    return gpd.GeoDataFrame(
        {"lsoa_name": [f"Test 00{k}A" for k in range(1, 5)]},
        geometry=geoms,
        index=pd.Index(CODES, name="lsoa_code"),
        crs="EPSG:27700",
    )


def lonlat(x: float, y: float) -> tuple[str, str]:
    lon, lat = TO_WGS.transform(x, y)
    return f"{lon:.6f}", f"{lat:.6f}"


def row(
    cid="",
    month="2025-01",
    x=530500.0,
    y=160500.0,
    code="E01000001",
    ctype="Burglary",
    location="On or near High Street",
    lon=None,
    lat=None,
) -> str:
    if lon is None:
        lon, lat = lonlat(x, y) if x is not None else ("", "")
    return ",".join(
        [
            cid,
            month,
            "Test Police",
            "Test Police",
            lon,
            lat,
            location,
            code,
            "Test 001A" if code else "",
            ctype,
            "Under investigation",
            "",
        ]
    )


def hexid(i: int) -> str:
    return f"{i:064x}"


PERIODS = {f"2025-{m:02d}": "2025" for m in range(1, 13)}


def read(path: Path, study, **kw) -> tuple[pd.DataFrame, Quarantine]:
    q = Quarantine()
    pts = police_uk.read_police_uk(
        path,
        study=study,
        period_of_month=PERIODS,
        crime_groups=source_mapping("police_uk"),
        quarantine=q,
        source="police.uk",
        **kw,
    )
    return pts, q


def write_month(folder: Path, month: str, rows: list[str], *, force="test") -> Path:
    d = folder / month
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{month}-{force}-street.csv"
    p.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return p


def test_good_rows_become_points_in_bng(tmp_path, study):
    rows = [
        row(hexid(1)),
        row(hexid(2), x=531500, y=161500, code="E01000004", ctype="Violence and sexual offences"),
        row("", ctype="Anti-social behaviour"),
        row("", ctype="Anti-social behaviour"),
    ]
    write_month(tmp_path, "2025-01", rows)
    pts, q = read(tmp_path, study)
    assert len(pts) == 4
    assert q.tallies["police.uk"].as_dict()["rows_rejected"] == 0
    assert list(pts["crime_group"]) == ["burglary", "violence_and_sexual", "asb", "asb"]
    assert np.allclose(pts["x"].iloc[0], 530500, atol=0.5)
    assert np.allclose(pts["y"].iloc[0], 160500, atol=0.5)
    assert list(pts["line"]) == [2, 3, 4, 5]
    assert set(pts["period"]) == {"2025"}


def test_bad_input_suite_reconciles_exactly(tmp_path, study):
    """Sixteen kinds of bad record; each counted under its reason, nothing lost."""
    far_x, far_y = 540000.0, 170000.0  # outside the study area
    jan = [
        row(hexid(1)),  # good
        row(hexid(2)),  # good
        row(hexid(2)),  # duplicate_crime_id
        row("", ctype="Anti-social behaviour"),  # good (ASB, no ID)
        row("", ctype="Anti-social behaviour"),  # good (not a duplicate)
        row(hexid(3), lon="", lat="", code=""),  # no_coordinates
        row(hexid(4), lon="abc", lat="51.3"),  # bad_coordinates
        row(hexid(5), lon="0.000000", lat="0.000000"),  # coordinates_out_of_range
        row(hexid(6), code="X0100001"),  # malformed_lsoa_code
        row(hexid(7), code="E01099999", x=far_x, y=far_y),  # outside_study_area
        row(hexid(8), code="", x=far_x, y=far_y),  # outside_study_area (located)
        row(hexid(9), code="", x=531500, y=160500),  # good: located in ...002
        row(hexid(10), x=531900, y=161900),  # lsoa_mismatch (stated 001)
        row(hexid(11), month="2025-13"),  # malformed_month
        row(hexid(12), month="2025-02"),  # month_mismatch
        row(hexid(13), ctype=""),  # missing_crime_type
        row(hexid(14), ctype="Shoplifting and stuff"),  # unknown_crime_type
        "only,three,fields",  # malformed_row
        row(hexid(15)) + ",extra",  # malformed_row
        row(hexid(16), location="<script>alert(1)</script>"),  # good; text kept as text
    ]
    write_month(tmp_path, "2025-01", jan)
    write_month(tmp_path, "2024-12", [row(hexid(20), month="2024-12")])  # outside_period
    write_month(tmp_path, "2025-02", [row(hexid(1), month="2025-02")])  # duplicate across files
    pts, q = read(tmp_path, study, tolerance_m=150.0)
    t = q.tallies["police.uk"]
    expected = {
        "duplicate_crime_id": 2,
        "no_coordinates": 1,
        "bad_coordinates": 1,
        "coordinates_out_of_range": 1,
        "malformed_lsoa_code": 1,
        "outside_study_area": 2,
        "lsoa_mismatch": 1,
        "malformed_month": 1,
        "month_mismatch": 1,
        "missing_crime_type": 1,
        "unknown_crime_type": 1,
        "malformed_row": 2,
        "outside_period": 1,
    }
    assert t.rejected == expected
    assert t.rows_read == 22
    assert t.rows_used == 6 == len(pts)
    assert t.reconciles
    rej = q.frame()
    assert len(rej) == sum(expected.values())
    # file and line of each rejected record are kept
    mism = rej[rej["reason"] == "lsoa_mismatch"].iloc[0]
    assert mism["file"].endswith("2025-01-test-street.csv") and mism["line"] == 14
    bad_rows = rej[rej["reason"] == "malformed_row"]
    assert sorted(bad_rows["line"]) == [19, 20]
    assert "<script>alert(1)</script>" in set(pts["location"])
    located = pts[pts["crime_id"] == hexid(9)]
    assert located["lsoa_code"].item() == "E01000002"


def test_unknown_code_needs_a_national_list(tmp_path, study):
    write_month(tmp_path, "2025-01", [row(hexid(1), code="E01999999", x=540000, y=170000)])
    _, q = read(tmp_path, study, known_codes={"E01000001", "E01000002"})
    assert q.tallies["police.uk"].rejected == {"unknown_lsoa_code": 1}


def test_zip_glob_and_folder_agree(tmp_path, study):
    folder = tmp_path / "tree"
    write_month(folder, "2025-01", [row(hexid(1)), row("", ctype="Anti-social behaviour")])
    write_month(folder, "2025-02", [row(hexid(2), month="2025-02")])
    zpath = tmp_path / "download.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(folder.rglob("*.csv")):
            zf.write(p, p.relative_to(folder).as_posix())
    a, _ = read(folder, study)
    b, _ = read(zpath, study)
    c, _ = read(Path(str(folder / "*" / "*-street.csv")), study)
    for other in (b, c):
        assert len(other) == len(a) == 3
        assert list(other["crime_id"]) == list(a["crime_id"])


def test_structural_errors_name_file_and_column(tmp_path, study):
    with pytest.raises(InputError, match="file or folder not found"):
        read(tmp_path / "nope.zip", study)
    p = tmp_path / "2025-01" / "2025-01-test-street.csv"
    p.parent.mkdir()
    p.write_text("Crime ID,Month,Longitude,Latitude\n1,2025-01,0,51\n")
    with pytest.raises(InputError) as err:
        read(tmp_path, study)
    assert err.value.column == "Location" and err.value.row == 1
    p.write_bytes((HEADER + "\n").encode() + row(hexid(1), location="caf\xe9").encode("latin-1"))
    with pytest.raises(InputError, match="encoding"):
        read(tmp_path, study)


def test_study_area_errors(tmp_path, study):
    path = tmp_path / "lsoas.gpkg"
    study.reset_index().rename(columns={"lsoa_code": "LSOA21CD", "lsoa_name": "LSOA21NM"}).assign(
        LAD22CD="E09000008"
    ).to_file(path)
    kw = dict(
        layer=None,
        code_column="LSOA21CD",
        name_column="LSOA21NM",
        lad_code_column="LAD22CD",
        lad_name_column=None,
        lad_names=[],
    )
    got, rep = boundaries.load_study_area(path, lad_codes=["E09000008"], **kw)
    assert list(got.index) == CODES and got.crs.to_epsg() == 27700
    with pytest.raises(InputError, match="study area is empty"):
        boundaries.load_study_area(path, lad_codes=["E09000001"], **kw)
    with pytest.raises(InputError) as err:
        boundaries.load_study_area(path, lad_codes=[], **{**kw, "code_column": "LSOA11CD"})
    assert err.value.column == "LSOA11CD"
    # no CRS: a GeoJSON-less shapefile without .prj
    shp = tmp_path / "nocrs.shp"
    study.reset_index().rename(columns={"lsoa_code": "LSOA21CD", "lsoa_name": "LSOA21NM"}).set_crs(
        None, allow_override=True
    ).to_file(shp)
    with pytest.raises(InputError, match="coordinate reference system"):
        boundaries.load_study_area(shp, lad_codes=[], **{**kw, "lad_code_column": None})


def test_reprojection_from_wgs84_geojson(tmp_path, study):
    path = tmp_path / "lsoas.geojson"
    study.reset_index().rename(columns={"lsoa_code": "LSOA21CD", "lsoa_name": "LSOA21NM"}).to_crs(
        4326
    ).to_file(path)
    got, _ = boundaries.load_study_area(
        path,
        layer=None,
        code_column="LSOA21CD",
        name_column="LSOA21NM",
        lad_code_column=None,
        lad_name_column=None,
        lad_codes=[],
        lad_names=[],
    )
    assert np.allclose(got.total_bounds, study.total_bounds, atol=0.5)


def met_monthly(rows: list[list[str]]) -> str:
    head = area_tables.MET_MONTHLY_TEXT + ["202501", "202502", "202503"]
    return "\n".join(",".join(r) for r in [head, *rows]) + "\n"


def test_met_monthly_bad_rows(tmp_path, study):
    lines = [
        [
            "E01000001",
            "Test 001A",
            "E09000008",
            "BURGLARY",
            "RES BURGLARY OF A HOME",
            "1",
            "2",
            "3",
        ],
        [
            "E01000001",
            "Test 001A",
            "E09000008",
            "VIOLENCE AGAINST THE PERSON",
            "VIOLENCE WITH INJURY",
            "4",
            "0",
            "1",
        ],
        [
            "E01000001",
            "Test 001A",
            "E09000008",
            "BURGLARY",
            "RES BURGLARY OF A HOME",
            "1",
            "1",
            "1",
        ],  # duplicate
        ["E01000002", "Test 002A", "E09000008", "THEFT", "OTHER THEFT", "x", "0", "0"],  # bad
        ["E01000002", "Test 002A", "E09000008", "THEFT", "SHOPLIFTING", "-1", "0", "0"],  # neg
        ["E01000003", "Test 003A", "E09000008", "MADE UP", "THING", "1", "0", "0"],  # unknown
        [
            "E01099999",
            "Else 001A",
            "E09000001",
            "ROBBERY",
            "ROBBERY OF PERSONAL PROPERTY",
            "5",
            "0",
            "0",
        ],  # outside
        ["E0100X", "Bad", "E09000008", "ROBBERY", "ROBBERY OF PERSONAL PROPERTY", "1", "0", "0"],
    ]
    p = tmp_path / "met.csv"
    p.write_text(met_monthly(lines))
    q = Quarantine()
    counts = area_tables.read_met_monthly(
        p,
        study_codes=study.index,
        period_of_month={"2025-01": "A", "2025-02": "A"},
        major_groups=source_mapping("met_major"),
        quarantine=q,
        source="met",
    )
    t = q.tallies["met"]
    assert t.rejected == {
        "duplicate_area_row": 1,
        "bad_count": 1,
        "negative_count": 1,
        "unknown_crime_type": 1,
        "outside_study_area": 1,
        "malformed_lsoa_code": 1,
    }
    assert t.rows_read == 8 and t.rows_used == 2 and t.reconciles
    got = counts.set_index("crime_group")["count"]
    assert got["burglary"] == 3.0 and got["violence"] == 4.0  # March is outside the period
    assert t.offences_used == 7.0


@pytest.mark.realdata
def test_real_met_monthly_croydon(study):
    path = SHARED / "london/crime_lsoa_monthly/MPS_LSOA_Level_Crime_2024-02_to_2026-02.csv"
    if not path.exists():
        pytest.skip("../shared/data/raw not present")
    lsoas = gpd.read_file(
        SHARED / "london/boundaries/london-2021-lsoa-gen20.shp", where="LAD22CD = 'E09000008'"
    )
    codes = pd.Index(sorted(lsoas["LSOA21CD"]))
    pom = {
        f"{y}-{m:02d}": "2024/25"
        for y, ms in ((2024, range(3, 13)), (2025, range(1, 3)))
        for m in ms
    }
    q = Quarantine()
    counts = area_tables.read_met_monthly(
        path,
        study_codes=codes,
        period_of_month=pom,
        major_groups=source_mapping("met_major"),
        quarantine=q,
        source="met",
    )
    t = q.tallies["met"]
    assert t.reconciles and t.rows_read == 105_620
    assert counts["lsoa_code"].nunique() == 229
    assert set(t.rejected) == {"outside_study_area"}
    assert counts["crime_group"].isin(source_mapping("met_major").values()).all()


@pytest.mark.realdata
def test_real_deprivation_and_population():
    iod = SHARED / "iod/imd2025_england_lsoa21.csv.gz"
    census = SHARED / "census2021/census2021_usual_residents_lsoa21_by_age6.csv.gz"
    if not iod.exists():
        pytest.skip("../shared/data/raw not present")
    lsoas = gpd.read_file(
        SHARED / "london/boundaries/london-2021-lsoa-gen20.shp", where="LAD22CD = 'E09000008'"
    )
    codes = pd.Index(sorted(lsoas["LSOA21CD"]))
    q = Quarantine()
    dep = area_tables.read_deprivation(
        iod, format="humaniverse", study_codes=codes, quarantine=q, source="iod"
    )
    assert list(dep.columns) == [f"dep_{d}" for d in area_tables.IOD_DOMAINS]
    assert len(dep) == 229 and q.tallies["iod"].reconciles
    pop = area_tables.read_population(
        census, format="census_age_long", study_codes=codes, quarantine=q, source="pop"
    )
    assert round(pop["residents"].sum()) == 390_732
    assert (pop["young"] < pop["residents"]).all()
