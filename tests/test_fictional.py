"""The fictional borough: determinism, the real downloads' formats, and a realistic pattern."""

from __future__ import annotations

import gzip
import re
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from pyproj import Transformer

from priority_index.crime_groups import source_mapping
from priority_index.examples.fictional import (
    CRIME_TYPES,
    DEFECT_REASONS,
    FAR_M,
    FORCE,
    IOD_COLUMNS,
    LAD_CODE,
    PARTS,
    generate_borough,
    write_borough,
)

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"
POLICE_HEADER = (
    "Crime ID,Month,Reported by,Falls within,Longitude,Latitude,Location,LSOA code,LSOA name,"
    "Crime type,Last outcome category,Context"
)
AGE_GROUPS = [
    "Aged 15 years and under",
    "Aged 16 to 24 years",
    "Aged 25 to 34 years",
    "Aged 35 to 49 years",
    "Aged 50 to 64 years",
    "Aged 65 years and over",
]
TO_BNG = Transformer.from_crs("EPSG:4326", "EPSG:27700", always_xy=True)
HIGHEST_REAL_LSOA21 = 35762  # E01035762, the highest English code in the ONS lookup


def _read_street(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _street_files(root: Path) -> list[Path]:
    return sorted((root / "police_uk").glob("*/*-fictional-street.csv"))


def _all_street(root: Path) -> pd.DataFrame:
    return pd.concat([_read_street(p) for p in _street_files(root)], ignore_index=True)


def _bng(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    x, y = TO_BNG.transform(frame["Longitude"].astype(float), frame["Latitude"].astype(float))
    return np.asarray(x), np.asarray(y)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    borough = generate_borough(n_lsoas=90, months=3, start="2024-11", seed=11)
    out = tmp_path_factory.mktemp("clean")
    paths = write_borough(borough, out)
    return borough, out, paths


@pytest.fixture(scope="module")
def defective(tmp_path_factory):
    borough = generate_borough(n_lsoas=70, months=3, seed=5, defects=True)
    out = tmp_path_factory.mktemp("defective")
    write_borough(borough, out)
    return borough, out


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(tmp_path):
    files = {}
    for run in ("a", "b"):
        borough = generate_borough(n_lsoas=40, months=2, seed=3, defects=True)
        write_borough(borough, tmp_path / run)
        files[run] = {
            p.relative_to(tmp_path / run): p.read_bytes()
            for p in sorted((tmp_path / run).rglob("*"))
            if p.is_file()
        }
    assert len(files["a"]) == 2 + 1 + 2 + 1 + 1 + 1  # gpkgs, lookup, months, iod, census, readme
    assert files["a"].keys() == files["b"].keys()
    for name, data in files["a"].items():
        assert data == files["b"][name], name
    other = generate_borough(n_lsoas=40, months=2, seed=4, defects=True)
    write_borough(other, tmp_path / "c", parts=("police_uk",))
    month = next(p for p in files["a"] if p.name.endswith("street.csv"))
    assert (tmp_path / "c" / month).read_bytes() != files["a"][month]


# ---------------------------------------------------------------- police.uk files


def test_street_files_have_police_uk_layout(clean):
    borough, out, paths = clean
    assert borough.months == ("2024-11", "2024-12", "2025-01")
    files = _street_files(out)
    assert [p.relative_to(out).as_posix() for p in files] == [
        f"police_uk/{m}/{m}-fictional-street.csv" for m in borough.months
    ]
    assert [paths[f"street:{m}"] for m in borough.months] == files
    for path, month in zip(files, borough.months, strict=True):
        raw = path.read_bytes()
        assert raw.startswith(POLICE_HEADER.encode() + b"\r\n")
        assert raw.endswith(b"\r\n")
        assert raw.count(b"\n") == raw.count(b"\r\n")  # CRLF throughout, as the archive
        assert b'"' not in raw
        frame = _read_street(path)
        assert list(frame.columns) == POLICE_HEADER.split(",")
        assert (frame["Month"] == month).all()
        assert (frame["Reported by"] == FORCE).all() and (frame["Falls within"] == FORCE).all()
        assert (frame["Context"] == "").all()
        assert frame["Longitude"].str.fullmatch(r"-?\d+\.\d{6}").all()
        assert frame["Latitude"].str.fullmatch(r"5\d\.\d{6}").all()
        assert frame["Location"].str.startswith("On or near ").all()
        assert set(frame["Crime type"]) == set(CRIME_TYPES)
        # police.uk order: by LSOA name, then crime type in police.uk's order
        key = list(zip(frame["LSOA name"], frame["Crime type"].map(CRIME_TYPES.index), strict=True))
        assert key == sorted(key)


def test_real_header_and_crime_types_match():
    assert set(CRIME_TYPES) == set(source_mapping("police_uk"))
    assert len(CRIME_TYPES) == 14
    archive = RAW / "police_uk" / "four-forces-2019-01_to_2020-12.zip"
    if not archive.exists():
        pytest.skip("real police.uk archive not available")
    with zipfile.ZipFile(archive) as zf:
        first = zf.read("2019-01/2019-01-merseyside-street.csv").split(b"\n", 1)[0] + b"\n"
    assert first == POLICE_HEADER.encode() + b"\r\n"


def test_crime_ids_empty_for_asb_and_64_hex_otherwise(clean):
    _, out, _ = clean
    frame = _all_street(out)
    asb = frame["Crime type"] == "Anti-social behaviour"
    assert asb.sum() > 0
    assert (frame.loc[asb, "Crime ID"] == "").all()
    ids = frame.loc[~asb, "Crime ID"]
    assert ids.str.fullmatch(r"[0-9a-f]{64}").all()
    assert ids.is_unique


def test_every_point_lies_in_the_lsoa_it_states(clean):
    borough, out, _ = clean
    lsoas = gpd.read_file(out / "boundaries" / "fictional_lsoa21.gpkg").set_index("LSOA21CD")
    frame = _all_street(out)
    x, y = _bng(frame)
    polys = lsoas.geometry.reindex(frame["LSOA code"]).to_numpy()
    assert shapely.contains_xy(polys, x, y).all()
    names = lsoas["LSOA21NM"].reindex(frame["LSOA code"]).to_numpy()
    assert (names == frame["LSOA name"].to_numpy()).all()
    assert borough.defect_counts == dict.fromkeys(DEFECT_REASONS, 0)


def test_crime_mix_and_outcomes_are_realistic(clean):
    borough, out, _ = clean
    frame = _all_street(out)
    share = frame["Crime type"].value_counts(normalize=True)
    assert 0.2 < share["Anti-social behaviour"] < 0.32
    crime = frame[frame["Crime type"] != "Anti-social behaviour"]
    vso = (crime["Crime type"] == "Violence and sexual offences").mean()
    assert 0.28 < vso < 0.42
    assert (
        frame.loc[frame["Crime type"] == "Anti-social behaviour", "Last outcome category"] == ""
    ).all()
    assert (crime["Last outcome category"] != "").all()
    drugs = crime.loc[crime["Crime type"] == "Drugs", "Last outcome category"]
    assert "Offender given a drugs possession warning" in set(drugs)
    # recent months are still under investigation, older ones not
    ui = crime["Last outcome category"] == "Under investigation"
    by_month = ui.groupby(crime["Month"]).mean()
    assert by_month["2025-01"] > 0.3 > by_month["2024-12"] > 0.1 > by_month["2024-11"]


def test_street_frame_matches_the_files(clean):
    borough, out, _ = clean
    pd.testing.assert_frame_equal(borough.street(), _all_street(out), check_dtype=False)
    assert len(borough.records) == len(borough.street())


# ---------------------------------------------------------------- the point pattern


def test_hot_spots_and_clustering(clean):
    borough, out, _ = clean
    frame = _all_street(out)

    def top_decile_share(ctype: str) -> float:
        counts = (
            frame[frame["Crime type"] == ctype]
            .groupby("LSOA code")
            .size()
            .reindex(borough.lsoas["LSOA21CD"], fill_value=0)
            .sort_values(ascending=False)
        )
        return counts.iloc[: len(counts) // 10].sum() / counts.sum()

    violence = top_decile_share("Violence and sexual offences")
    assert violence > 0.30
    assert top_decile_share("Burglary") < violence
    # violence per resident is highest near the main centre
    lsoas = borough.lsoas.set_index("LSOA21CD")
    main = borough.centres.iloc[0]
    dist = shapely.distance(lsoas.geometry.to_numpy(), shapely.Point(main.x, main.y))
    v = frame[frame["Crime type"] == "Violence and sexual offences"].groupby("LSOA code").size()
    v = v.reindex(lsoas.index, fill_value=0).to_numpy()
    near = dist < np.quantile(dist, 0.2)
    assert v[near].mean() > 2 * v[~near].mean()


def test_records_snap_to_map_points(clean):
    borough, out, _ = clean
    frame = _all_street(out)
    coords = frame["Longitude"] + "," + frame["Latitude"]
    assert coords.nunique() < len(frame) / 3
    # at most 25 map points per LSOA, however many records it has
    per_lsoa = coords.groupby(frame["LSOA code"]).nunique()
    assert per_lsoa.max() <= 25
    busy = frame["LSOA code"].value_counts()
    assert busy.iloc[0] > 4 * per_lsoa[busy.index[0]]
    # each map point has one location label and lies in one LSOA
    per_point = frame.groupby(coords).agg(
        loc=("Location", "nunique"), lsoa=("LSOA code", "nunique")
    )
    assert (per_point["loc"] == 1).all() and (per_point["lsoa"] == 1).all()
    # the busiest map point carries many records
    assert coords.value_counts().iloc[0] >= 10


def test_deprivation_correlates_with_crime(clean):
    borough, out, _ = clean
    iod = pd.read_csv(out / "iod2025_file7.csv")
    frame = _all_street(out)
    crime = frame[frame["Crime type"] != "Anti-social behaviour"].groupby("LSOA code").size()
    pop = (
        pd.read_csv(out / "census2021_residents_by_age.csv")
        .groupby("lsoa21_code")["usual_residents"]
        .sum()
    )
    rate = crime.reindex(pop.index, fill_value=0) / pop
    score = iod.set_index("LSOA code (2021)")["Index of Multiple Deprivation (IMD) Score"]
    assert score.corr(rate.reindex(score.index), method="spearman") > 0.3
    crime_score = iod.set_index("LSOA code (2021)")["Crime Score"]
    assert crime_score.corr(rate.reindex(score.index), method="spearman") > 0.5


# ---------------------------------------------------------------- other files


def test_iod_file7_layout(clean):
    borough, out, _ = clean
    raw_header = (out / "iod2025_file7.csv").read_text(encoding="utf-8").split("\n", 1)[0]
    assert raw_header.startswith(
        "LSOA code (2021),LSOA name (2021),Local Authority District code (2024),"
        "Local Authority District name (2024),Index of Multiple Deprivation (IMD) Score,"
    )
    iod = pd.read_csv(out / "iod2025_file7.csv")
    assert list(iod.columns) == list(IOD_COLUMNS)
    assert len(iod.columns) == 56
    for header in [
        "Index of Multiple Deprivation (IMD) Rank (where 1 is most deprived)",
        "Index of Multiple Deprivation (IMD) Decile (where 1 is most deprived 10% of LSOAs)",
        "Income Score (rate)",
        "Income Rank (where 1 is most deprived)",
        "Income Decile (where 1 is most deprived 10% of LSOAs)",
        "Employment Score (rate)",
        "Education, Skills and Training Score",
        "Health Deprivation and Disability Score",
        "Crime Score",
        "Crime Rank (where 1 is most deprived)",
        "Crime Decile (where 1 is most deprived 10% of LSOAs)",
        "Barriers to Housing and Services Score",
        "Living Environment Score",
        "Living Environment Decile (where 1 is most deprived 10% of LSOAs)",
        "Income Deprivation Affecting Children Index (IDACI) Score (rate)",
        "Children and Young People Sub-domain Decile (where 1 is most deprived 10% of LSO",
        "Total population: mid 2022",
    ]:
        assert header in iod.columns, header
    assert list(iod["LSOA code (2021)"]) == list(borough.lsoas["LSOA21CD"])
    assert list(iod["LSOA name (2021)"]) == list(borough.lsoas["LSOA21NM"])
    assert (iod["Local Authority District code (2024)"] == LAD_CODE).all()
    for i in range(4, 52, 3):
        score, rank, decile = iod.iloc[:, i], iod.iloc[:, i + 1], iod.iloc[:, i + 2]
        assert rank.between(1, 33_755).all() and rank.is_unique
        assert (decile == np.ceil(rank * 10 / 33_755)).all()
        order = np.argsort(rank.to_numpy())
        assert (np.diff(score.to_numpy()[order]) <= 0).all()  # rank 1 = highest score
    assert iod["Income Score (rate)"].between(0, 1).all()
    total = iod["Total population: mid 2022"]
    assert (iod["Dependent Children aged 0-15: mid 2022"] < total).all()


def test_population_has_the_census_long_layout(clean):
    borough, out, _ = clean
    text = (out / "census2021_residents_by_age.csv").read_text(encoding="utf-8")
    assert text.split("\n", 2)[:2] == [
        "lsoa21_code,lsoa21_name,age_group,usual_residents",
        f"{borough.lsoas['LSOA21CD'].iloc[0]},{borough.lsoas['LSOA21NM'].iloc[0]},"
        f"Aged 15 years and under,{text.split(chr(10))[1].rsplit(',', 1)[1]}",
    ]
    assert re.fullmatch(r"\d+\.0", text.split("\n")[1].rsplit(",", 1)[1])
    pop = pd.read_csv(out / "census2021_residents_by_age.csv")
    assert list(pop["age_group"].iloc[:6]) == AGE_GROUPS
    assert len(pop) == 6 * len(borough.lsoas)
    totals = pop.groupby("lsoa21_code")["usual_residents"].sum()
    assert 1500 <= totals.mean() <= 2000 and totals.min() >= 1000
    real = RAW / "census2021" / "census2021_usual_residents_lsoa21_by_age6.csv.gz"
    if real.exists():
        with gzip.open(real, "rt", encoding="utf-8") as fh:
            real_head = pd.read_csv(fh, nrows=6)
        assert list(real_head.columns) == list(pop.columns)
        assert list(real_head["age_group"]) == AGE_GROUPS
        assert real_head["usual_residents"].dtype == pop["usual_residents"].dtype


def test_boundaries_wards_and_lookup(clean):
    borough, out, _ = clean
    path = out / "boundaries" / "fictional_lsoa21.gpkg"
    info = pyogrio.read_info(path)
    assert list(info["fields"]) == [
        "LSOA21CD",
        "LSOA21NM",
        "MSOA21CD",
        "MSOA21NM",
        "LAD22CD",
        "LAD22NM",
    ]
    assert info["geometry_type"] == "MultiPolygon" and info["features"] == 90
    lsoas = gpd.read_file(path)
    assert lsoas.crs.to_epsg() == 27700
    assert lsoas["LSOA21CD"].str.fullmatch(r"E01999\d{3}").all() and lsoas["LSOA21CD"].is_unique
    assert (lsoas["LSOA21CD"].str[3:].astype(int) > HIGHEST_REAL_LSOA21).all()
    assert lsoas["LSOA21NM"].str.fullmatch(r"Fictional \d{3}[A-Z]").all()
    assert (lsoas["LSOA21NM"].str[:-1] == lsoas["MSOA21NM"]).all()
    assert (lsoas["LAD22NM"] == "Fictional Borough (generated)").all()
    # a tessellation of the outline: no gaps, no overlaps
    area = lsoas.area.sum()
    assert area == pytest.approx(borough.outline.area, rel=1e-9)
    assert shapely.union_all(lsoas.geometry.to_numpy()).area == pytest.approx(area, rel=1e-9)
    assert lsoas.is_valid.all()

    wards = gpd.read_file(out / "boundaries" / "fictional_wards.gpkg", layer="wards")
    assert list(wards.columns) == [
        "WD24CD",
        "WD24NM",
        "WD24NMW",
        "BNG_E",
        "BNG_N",
        "LONG",
        "LAT",
        "GlobalID",
        "geometry",
    ]
    assert 6 <= len(wards) <= 12 and wards["WD24NM"].is_unique
    assert wards["WD24CD"].str.fullmatch(r"E05999\d{3}").all()
    assert (wards["WD24NMW"] == " ").all()
    assert wards["GlobalID"].str.fullmatch(r"\{[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}\}").all()
    assert wards.area.sum() == pytest.approx(area, rel=1e-9)

    raw = (out / "lsoa_ward_lookup.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfLSOA21CD,LSOA21NM,LSOA21NMW,WD24CD,WD24NM,WD24NMW,")
    lookup = pd.read_csv(out / "lsoa_ward_lookup.csv", encoding="utf-8-sig", dtype=str)
    assert {"LSOA21CD", "LSOA21NM", "WD24CD", "WD24NM", "LAD24CD", "LAD24NM"} <= set(lookup)
    assert sorted(lookup["LSOA21CD"]) == sorted(lsoas["LSOA21CD"])
    # each LSOA lies inside the ward the lookup names
    inner = lsoas.set_index("LSOA21CD").geometry.representative_point()
    ward_poly = wards.set_index("WD24CD").geometry.reindex(lookup["WD24CD"]).to_numpy()
    assert shapely.contains(ward_poly, inner.reindex(lookup["LSOA21CD"]).to_numpy()).all()
    assert (
        lookup["WD24NM"] == wards.set_index("WD24CD")["WD24NM"][lookup["WD24CD"]].to_numpy()
    ).all()


def test_codes_above_999_lsoas_stay_clear_of_real_codes():
    borough = generate_borough(n_lsoas=1200, months=1, records_per_lsoa_month=1, seed=2)
    codes = borough.lsoas["LSOA21CD"]
    assert codes.iloc[0] == "E01900000" and codes.iloc[-1] == "E01901199"
    assert codes.str.fullmatch(r"E019\d{5}").all() and codes.is_unique
    assert borough.lsoas["LSOA21NM"].is_unique
    assert borough.wards["WD24CD"].is_unique and len(borough.wards) > 100


def test_write_only_the_parts_asked(tmp_path):
    borough = generate_borough(n_lsoas=20, months=1, seed=1)
    paths = write_borough(borough, tmp_path, parts=("boundaries",))
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*"))
    assert written == [
        "README.md",
        "boundaries/fictional_lsoa21.gpkg",
        "boundaries/fictional_wards.gpkg",
    ]
    assert set(paths) == {"lsoas", "wards", "readme"}
    readme = (tmp_path / "README.md").read_text()
    assert "fictional and generated" in readme and '"seed": 1' in readme
    with pytest.raises(ValueError, match="unknown parts"):
        write_borough(borough, tmp_path, parts=("boundaries", "shapefiles"))
    assert set(PARTS) == {"boundaries", "lookups", "police_uk", "iod", "census"}


# ---------------------------------------------------------------- defects


def test_defect_counts_reconcile_exactly(defective):
    borough, out = defective
    counts = borough.defect_counts
    assert set(counts) == set(DEFECT_REASONS)
    assert all(n > 0 for n in counts.values()), counts
    lsoas = gpd.read_file(out / "boundaries" / "fictional_lsoa21.gpkg").set_index("LSOA21CD")
    frame = _all_street(out)
    no_xy = frame["Longitude"] == ""
    flags = pd.DataFrame(index=frame.index)
    flags["no_coordinates"] = no_xy
    assert (frame.loc[no_xy, "Location"] == "No Location").all()
    assert (frame.loc[no_xy, ["Latitude", "LSOA code", "LSOA name"]] == "").all().all()
    flags["malformed_month"] = ~frame["Month"].str.fullmatch(r"\d{4}-\d{2}")
    flags["unknown_crime_type"] = ~frame["Crime type"].isin(CRIME_TYPES)
    flags["outside_study_area"] = ~no_xy & ~frame["LSOA code"].isin(lsoas.index)
    ids = frame["Crime ID"]
    flags["duplicate_crime_id"] = (ids != "") & ids.duplicated()
    located = ~no_xy & ~flags["outside_study_area"]
    x, y = _bng(frame[located])
    polys = lsoas.geometry.reindex(frame.loc[located, "LSOA code"]).to_numpy()
    dist = shapely.distance(polys, shapely.points(x, y))
    far = pd.Series(False, index=frame.index)
    far[located] = dist > 150.0
    flags["lsoa_mismatch"] = far
    assert (dist[dist > 150.0] >= FAR_M - 1).all()
    assert (flags.sum(axis=1) <= 1).all()  # one reason per row
    assert flags.sum().to_dict() == counts
    # points outside the borough are outside the outline
    outside = frame[flags["outside_study_area"]]
    ox, oy = _bng(outside)
    assert not shapely.contains_xy(borough.outline, ox, oy).any()
    assert outside["LSOA code"].str.fullmatch(r"E01800\d{3}").all()
    # the duplicate repeats a clean row's month and crime type
    dup_ids = set(ids[flags["duplicate_crime_id"]])
    pairs = frame[ids.isin(dup_ids)].groupby("Crime ID")
    assert (pairs.size() == 2).all()
    assert (pairs["Crime type"].nunique() == 1).all() and (pairs["Month"].nunique() == 1).all()
    # the generator's own record of the defects agrees with the files, row by row
    assert (borough.records["defect"].astype(str).to_numpy() != "").sum() == sum(counts.values())
    labels = borough.records["defect"].astype(str).replace("", np.nan)
    from_flags = flags.idxmax(axis=1).where(flags.any(axis=1))
    assert (labels.fillna("").to_numpy() == from_flags.fillna("").to_numpy()).all()
    clean = flags.sum(axis=1) == 0
    assert clean.sum() + sum(counts.values()) == len(frame)
