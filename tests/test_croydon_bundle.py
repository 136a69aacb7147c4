"""The real Croydon data bundle committed in the repository (boundaries/ and data/croydon/)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest

from priority_index.sources import police_uk

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = REPO / "data" / "croydon"
CROYDON = "E09000008"

MONTHS = [f"{y}-{m:02d}" for y in (2023, 2024, 2025) for m in range(1, 13)]
MONTHS = MONTHS[MONTHS.index("2023-03") : MONTHS.index("2025-02") + 1]
POLICE_FILES = [f"data/croydon/police_uk/{m}/{m}-metropolitan-street.csv" for m in MONTHS]
BUNDLE_FILES = sorted(
    [
        "boundaries/LICENCE.md",
        "boundaries/croydon_lsoa21.gpkg",
        "boundaries/croydon_wards24.gpkg",
        "data/croydon/LICENCE.md",
        "data/croydon/MPS_LSOA_Level_Crime_Croydon_2024-02_to_2026-02.csv",
        "data/croydon/census2021_residents_by_age_croydon_lsoa21.csv",
        "data/croydon/iod2025_croydon_lsoa21.csv",
        "data/croydon/lsoa21_ward24_lookup_croydon.csv",
        "data/croydon/unsafe_places_2021_survey.csv",
        *POLICE_FILES,
    ]
)
POLICE_COLUMNS = list(police_uk.COLUMNS)


def _csv(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / name, dtype=str, keep_default_na=False)


def _committed_files() -> list[str]:
    found = [*(REPO / "boundaries").rglob("*"), *DATA.rglob("*")]
    return sorted(p.relative_to(REPO).as_posix() for p in found if p.is_file())


@pytest.fixture(scope="module")
def lsoas() -> gpd.GeoDataFrame:
    return gpd.read_file(REPO / "boundaries" / "croydon_lsoa21.gpkg")


@pytest.fixture(scope="module")
def codes(lsoas) -> set[str]:
    return set(lsoas["LSOA21CD"])


def test_bundle_files_present_and_small():
    assert _committed_files() == BUNDLE_FILES
    total = sum((REPO / f).stat().st_size for f in BUNDLE_FILES)
    assert total < 5 * 1024 * 1024


def test_lsoa_boundaries(lsoas):
    info = pyogrio.read_info(REPO / "boundaries" / "croydon_lsoa21.gpkg")
    assert info["crs"] == "EPSG:27700"
    assert list(info["fields"]) == [
        "LSOA21CD",
        "LSOA21NM",
        "MSOA21CD",
        "MSOA21NM",
        "LAD22CD",
        "LAD22NM",
    ]
    assert len(lsoas) == 229 and lsoas["LSOA21CD"].is_unique
    assert (lsoas["LAD22CD"] == CROYDON).all() and (lsoas["LAD22NM"] == "Croydon").all()
    assert lsoas["LSOA21NM"].str.startswith("Croydon ").all()
    assert lsoas.is_valid.all()
    # Croydon is about 86 km2
    assert 84e6 < lsoas.area.sum() < 88e6


def test_ward_boundaries(lsoas):
    wards = gpd.read_file(REPO / "boundaries" / "croydon_wards24.gpkg")
    assert pyogrio.read_info(REPO / "boundaries" / "croydon_wards24.gpkg")["crs"] == "EPSG:27700"
    assert len(wards) == 28 and wards["WD24CD"].is_unique
    assert wards["WD24CD"].str.startswith("E05").all()
    assert (wards["LAD24CD"] == CROYDON).all()
    lookup = _csv("lsoa21_ward24_lookup_croydon.csv")
    assert set(wards["WD24NM"]) == set(lookup["WD24NM"])
    # the wards tile the same borough as the LSOAs
    assert wards.area.sum() == pytest.approx(lsoas.area.sum(), rel=0.01)


def test_met_monthly_table(codes):
    table = _csv("MPS_LSOA_Level_Crime_Croydon_2024-02_to_2026-02.csv")
    months = [f"{y}{m:02d}" for y in (2024, 2025, 2026) for m in range(1, 13)]
    months = months[months.index("202402") : months.index("202602") + 1]
    assert list(table.columns) == [
        "LSOA Code",
        "LSOA Name",
        "Borough",
        "Major Category",
        "Minor Category",
        *months,
    ]
    assert (table["Borough"] == CROYDON).all()
    assert set(table["LSOA Code"]) == codes
    assert "SEXUAL OFFENCES" not in set(table["Major Category"])
    assert len(table) == 4721


def test_police_uk_burglary(codes):
    total = 0
    for file, month in zip(POLICE_FILES, MONTHS, strict=True):
        rows = pd.read_csv(REPO / file, dtype=str, keep_default_na=False)
        assert list(rows.columns) == POLICE_COLUMNS
        assert (rows["Month"] == month).all()
        assert rows["LSOA code"].isin(codes).all()
        assert (rows["Crime type"] == "Burglary").all()
        assert (rows["Falls within"] == "Metropolitan Police Service").all()
        total += len(rows)
    assert total == 3702


def test_iod_census_and_lookup(codes):
    iod = _csv("iod2025_croydon_lsoa21.csv")
    assert iod.columns[0] == "lsoa21_code" and len(iod.columns) == 25
    assert {"IMD_score", "IMD_rank", "IMD_decile", "Crime_score"} <= set(iod.columns)
    assert set(iod["lsoa21_code"]) == codes and len(iod) == 229

    age = _csv("census2021_residents_by_age_croydon_lsoa21.csv")
    assert list(age.columns) == ["lsoa21_code", "lsoa21_name", "age_group", "usual_residents"]
    assert set(age["lsoa21_code"]) == codes and len(age) == 229 * 6
    assert age["age_group"].nunique() == 6
    assert age["usual_residents"].astype(float).sum() == 390_732

    lookup = _csv("lsoa21_ward24_lookup_croydon.csv")
    assert list(lookup.columns) == [
        "LSOA21CD",
        "LSOA21NM",
        "WD24CD",
        "WD24NM",
        "LAD24CD",
        "LAD24NM",
    ]
    assert set(lookup["LSOA21CD"]) == codes and len(lookup) == 229
    assert lookup["WD24CD"].nunique() == 28 and (lookup["LAD24CD"] == CROYDON).all()


def test_unsafe_places_are_data_with_real_wards():
    places = _csv("unsafe_places_2021_survey.csv")
    assert list(places.columns) == [
        "place",
        "source",
        "wards_2024",
        "ward_codes_2024",
        "adjacent_wards_2024",
        "notes",
    ]
    assert list(places["place"]) == [
        "West Croydon",
        "Thornton Heath",
        "South Norwood",
        "New Addington",
        "Croydon Town Centre",
    ]
    assert (
        places["source"]
        == "Safer Croydon Partnership 2021 surveys, Community Safety Strategy 2022-2024"
    ).all()
    assert (places["notes"].str.len() > 40).all()
    lookup = _csv("lsoa21_ward24_lookup_croydon.csv")
    code_of = dict(zip(lookup["WD24NM"], lookup["WD24CD"], strict=False))
    for row in places.itertuples():
        names = row.wards_2024.split("; ")
        assert row.ward_codes_2024.split("; ") == [code_of[n] for n in names]
        assert all(n in code_of for n in row.adjacent_wards_2024.split("; ") if n)
    by_place = places.set_index("place")["wards_2024"]
    assert by_place["Croydon Town Centre"] == "Fairfield"
    assert by_place["New Addington"] == "New Addington North; New Addington South"
    assert by_place["Thornton Heath"] == "Thornton Heath"


def test_licences():
    boundaries = (REPO / "boundaries" / "LICENCE.md").read_text(encoding="utf-8")
    data = (DATA / "LICENCE.md").read_text(encoding="utf-8")
    ogl = "Contains public sector information licensed under the Open Government Licence v3.0"
    assert ogl in boundaries and ogl in data
    assert "Contains OS data" in boundaries
    for text in (boundaries, data):
        assert "priority_index/examples/croydon.py" in text
    for name in BUNDLE_FILES:
        if name.startswith("data/croydon/") and "police_uk" not in name and "LICENCE" not in name:
            assert Path(name).name in data, name


@pytest.mark.realdata
def test_rebuild_gives_identical_bytes(tmp_path):
    raw = SHARED / "data" / "raw"
    if not (raw / "london" / "boundaries" / "london-2021-lsoa-gen20.shp").exists():
        pytest.skip("shared raw data absent")
    from priority_index.examples.croydon import build_bundle

    rebuilt = build_bundle(raw, tmp_path)
    assert sorted(rebuilt) == BUNDLE_FILES
    committed = {f: hashlib.sha256((REPO / f).read_bytes()).hexdigest() for f in BUNDLE_FILES}
    assert rebuilt == committed
