"""Tests for priority_index.micro: patrol micro-places inside priority neighbourhoods."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from affine import Affine

from priority_index.density import DensityGrid
from priority_index.micro import MICRO_COLUMNS, cell_ids, cell_totals, micro_places

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"
E0, N0 = 530000.0, 160000.0


def rec(x, y, group, harm, month, location, lsoa):
    return {
        "x": E0 + x,
        "y": N0 + y,
        "crime_group": group,
        "harm": harm,
        "month": month,
        "location": location,
        "lsoa_code": lsoa,
        "crime_type": group,
    }


@pytest.fixture
def points() -> pd.DataFrame:
    rows = [
        # Cell A, E530000N160000 (N1): 3 burglaries and a robbery, harm 665, 3 months.
        rec(10, 10, "burglary", 100.0, "2024-01", "On or near Park Road", "E01000001"),
        rec(20, 30, "burglary", 100.0, "2024-01", "On or near High Street", "E01000001"),
        rec(55, 45, "burglary", 100.0, "2024-02", "On or near High Street", "E01000001"),
        rec(90, 90, "robbery", 365.0, "2024-03", "On or near Park Road", "E01000001"),
        # Cell B, E530100N160100 (N1): two violence records, harm 800.
        rec(150, 150, "violence", 400.0, "2024-01", "On or near Church Lane", "E01000002"),
        rec(160, 140, "violence", 400.0, "2024-01", "On or near Church Lane", "E01000002"),
        # Cell C, E530200N160000 (N1): one theft (harm 10) and five ASB (harm 0).
        rec(250, 50, "theft", 10.0, "2024-02", "On or near Station Road", "E01000003"),
        *[
            rec(260, 60, "asb", 0.0, "2024-02", "On or near Station Road", "E01000003")
            for _ in range(5)
        ],
        # On the N1/N2 border (x = 530300): belongs to N1, the first neighbourhood.
        rec(300, 50, "theft", 1.0, "2024-04", "On or near Border Road", "E01000003"),
        # N2: three cells of harm 50; ties broken by records, then by cell id.
        rec(350, 50, "drugs", 50.0, "2024-01", "On or near Mill Lane", "E01000004"),
        rec(450, 50, "theft", 25.0, "2024-01", "On or near Mill Lane", "E01000004"),
        rec(460, 60, "theft", 25.0, "2024-02", "On or near Mill Lane", "E01000004"),
        rec(450, 150, "public_order", 25.0, "2024-01", "On or near Mill Lane", "E01000004"),
        rec(455, 155, "public_order", 25.0, "2024-01", None, "E01000004"),
        # Outside every neighbourhood, and one without coordinates.
        rec(1000, 50, "robbery", 365.0, "2024-01", "On or near Far Away", "E01000009"),
        rec(np.nan, np.nan, "robbery", 365.0, "2024-01", "No location", None),
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def neighbourhoods() -> gpd.GeoDataFrame:
    frame = gpd.GeoDataFrame(
        {"name": ["North", "South"]},
        geometry=[
            shapely.box(E0, N0, E0 + 300, N0 + 200),
            shapely.box(E0 + 300, N0, E0 + 500, N0 + 200),
        ],
        index=pd.Index(["N1", "N2"], name="neighbourhood_id"),
        crs="EPSG:27700",
    )
    return frame


def test_cell_ids_name_the_south_west_corner():
    ids = cell_ids(np.array([3547, 0]), np.array([1102, 5]), cell_size=150.0)
    assert list(ids) == ["E532050N165300", "E0N750"]


def test_ranking_counts_shares_and_text(points, neighbourhoods):
    out = micro_places(points, neighbourhoods, cell_size=100.0, top_n=3)
    assert isinstance(out, gpd.GeoDataFrame)
    assert tuple(out.columns) == MICRO_COLUMNS
    assert out.crs == "EPSG:27700"
    assert list(out["neighbourhood_id"]) == ["N1"] * 3 + ["N2"] * 3
    assert list(out["patrol_rank"]) == [1, 2, 3, 1, 2, 3]
    n1 = out[out["neighbourhood_id"] == "N1"].set_index("cell_id")
    assert list(n1.index) == ["E530100N160100", "E530000N160000", "E530200N160000"]
    assert list(n1["n_records"]) == [2, 4, 6]
    np.testing.assert_allclose(n1["harm"], [800.0, 665.0, 10.0])
    # Shares are of all N1 harm, including the border record's cell that did not make the top 3.
    np.testing.assert_allclose(n1["harm_share"], np.array([800.0, 665.0, 10.0]) / 1476.0)
    assert n1.loc["E530000N160000", "crime_types"] == "Robbery 1; Burglary 3"
    assert n1.loc["E530100N160100", "crime_types"] == "Violence Against the Person 2"
    assert n1.loc["E530200N160000", "crime_types"] == "Theft 1; Anti-social Behaviour 5"
    # Two records each on Park Road and High Street: the tie goes to the alphabetical first.
    assert n1.loc["E530000N160000", "top_location"] == "On or near High Street"
    assert n1.loc["E530200N160000", "top_location"] == "On or near Station Road"
    assert list(n1["months_active"]) == [1, 3, 1]
    assert n1.loc["E530000N160000", "geometry"].equals(shapely.box(E0, N0, E0 + 100, N0 + 100))
    n2 = out[out["neighbourhood_id"] == "N2"]
    # Equal harm: more records first, then the lower cell id.
    assert list(n2["cell_id"]) == ["E530400N160000", "E530400N160100", "E530300N160000"]
    np.testing.assert_allclose(n2["harm_share"], [1 / 3] * 3)
    assert n2["top_location"].iloc[1] == "On or near Mill Lane"  # missing text is skipped
    assert out["gi_hotspot"].dtype == bool and not out["gi_hotspot"].any()
    assert out["kde_hotspot"].dtype == bool and not out["kde_hotspot"].any()


def test_top_n_and_border_record(points, neighbourhoods):
    out = micro_places(points, neighbourhoods, cell_size=100.0, top_n=10)
    n1 = out[out["neighbourhood_id"] == "N1"]
    # The border record went to N1 only, in its own cell (whose square lies in N2).
    assert list(n1["cell_id"])[-1] == "E530300N160000"
    assert n1["n_records"].iloc[-1] == 1
    assert n1["harm_share"].sum() == pytest.approx(1.0)
    assert out.loc[out["neighbourhood_id"] == "N2", "n_records"].sum() == 5
    assert out["n_records"].sum() == len(points) - 2  # outside and unlocated records left out
    two = micro_places(points, neighbourhoods, cell_size=100.0, top_n=2)
    assert two.groupby("neighbourhood_id").size().tolist() == [2, 2]


def test_gi_hotspot_from_polygons_series_and_bins(points, neighbourhoods):
    lsoas = gpd.GeoDataFrame(
        {"gi_bin": [1, 3]},
        geometry=[
            shapely.box(E0, N0, E0 + 100, N0 + 100),  # holds cell A's centre, but only bin 1
            shapely.box(E0 + 100, N0 + 100, E0 + 300, N0 + 200),  # holds cell B's centre
        ],
        index=pd.Index(["E01000001", "E01000002"], name="lsoa_code"),
        crs="EPSG:27700",
    )
    out = micro_places(points, neighbourhoods, cell_size=100.0, hot_lsoas=lsoas)
    assert set(out.loc[out["gi_hotspot"], "cell_id"]) == {"E530100N160100"}
    out = micro_places(points, neighbourhoods, cell_size=100.0, hot_lsoas=lsoas, min_gi_bin=1)
    assert set(out.loc[out["gi_hotspot"], "cell_id"]) == {"E530100N160100", "E530000N160000"}
    # A GeoSeries is taken as the hot polygons themselves.
    out = micro_places(points, neighbourhoods, cell_size=100.0, hot_lsoas=lsoas.geometry[:1])
    assert set(out.loc[out["gi_hotspot"], "cell_id"]) == {"E530000N160000"}
    # A plain Series of gi_bin by LSOA code uses the LSOA of most of the cell's records:
    # E01000003 (cell C and the border record) is absent, so not hot.
    bins = pd.Series({"E01000001": 0, "E01000002": 2, "E01000004": 2})
    out = micro_places(points, neighbourhoods, cell_size=100.0, hot_lsoas=bins)
    hot = out.loc[out["gi_hotspot"], ["neighbourhood_id", "cell_id"]]
    assert set(map(tuple, hot.to_numpy())) == {
        ("N1", "E530100N160100"),
        ("N2", "E530300N160000"),
        ("N2", "E530400N160000"),
        ("N2", "E530400N160100"),
    }


def test_kde_hotspot_from_cell_means(points, neighbourhoods):
    # 50 m surface over N1 and N2: 4 rows x 10 columns.
    values = np.zeros((4, 10), dtype=np.float32)
    values[2:4, 4:6] = 10.0  # the four 50 m cells of cell C (530200..530300, 160000..160100)
    values[3, 0] = 10.0  # one of the four cells of cell A: mean 2.5
    grid = DensityGrid(
        values=values,
        transform=Affine(50.0, 0.0, E0, 0.0, -50.0, N0 + 200),
        cell_size=50.0,
        bandwidth=200.0,
        kernel="quartic",
        units="harm days per km2",
    )
    # 5 of 40 cells hold 10, so the 0.95 quantile is 10: only cell C's mean (10) reaches it.
    out = micro_places(points, neighbourhoods, cell_size=100.0, density=grid)
    assert set(out.loc[out["kde_hotspot"], "cell_id"]) == {"E530200N160000"}
    out = micro_places(points, neighbourhoods, cell_size=100.0, density=grid, density_threshold=2)
    assert set(out.loc[out["kde_hotspot"], "cell_id"]) == {"E530200N160000", "E530000N160000"}
    # NaN cells (outside the study area) are left out of the mean.
    masked = values.copy()
    masked[2, 0] = masked[2, 1] = masked[3, 1] = np.nan
    grid2 = DensityGrid(masked, grid.transform, 50.0, 200.0, "quartic", "harm days per km2")
    out = micro_places(points, neighbourhoods, cell_size=100.0, density=grid2, density_threshold=9)
    assert set(out.loc[out["kde_hotspot"], "cell_id"]) == {"E530200N160000", "E530000N160000"}


def test_no_points_inside_gives_empty_frame(points, neighbourhoods):
    far = neighbourhoods.copy()
    far.geometry = far.geometry.translate(10000, 0)
    out = micro_places(points, far)
    assert len(out) == 0 and tuple(out.columns) == MICRO_COLUMNS
    assert out.crs == "EPSG:27700"


def test_cell_totals(points):
    tot = cell_totals(points, cell_size=100.0)
    assert tot.index.name == "cell_id"
    assert list(tot.columns) == ["x_min", "y_min", "n_records", "harm"]
    assert tot["n_records"].sum() == len(points) - 1  # only the unlocated record is dropped
    assert tot["harm"].sum() == pytest.approx(points["harm"].sum() - 365.0)
    assert tot.index[0] == "E530100N160100"  # harm 800, but the far robbery cell is 365
    assert tot.loc["E530000N160000", "n_records"] == 4
    assert tot.loc["E530000N160000", "harm"] == 665.0
    assert tot.loc["E530300N160000"].tolist() == [530300.0, 160000.0, 2, 51.0]
    assert tot["harm"].is_monotonic_decreasing
    coarse = cell_totals(points, cell_size=1000.0)
    assert list(coarse.index) == ["E530000N160000", "E531000N160000"]


@pytest.mark.realdata
def test_croydon_burglary_patrol_list():
    archive = RAW / "police_uk" / "met-burglary-only-2023-03_to_2025-02.zip"
    wards = RAW / "london" / "boundaries" / "london-2024-ward.gpkg"
    if not (archive.exists() and wards.exists()):
        pytest.skip("shared raw data not available")
    from pyproj import Transformer

    cols = ["Month", "Longitude", "Latitude", "Location", "LSOA code", "LSOA name", "Crime type"]
    with zipfile.ZipFile(archive) as z:
        frames = [
            pd.read_csv(io.BytesIO(z.read(n)), usecols=cols)
            for n in sorted(z.namelist())
            if n.endswith(".csv")
        ]
    df = pd.concat(frames, ignore_index=True).dropna(subset=["Longitude", "Latitude"])
    df = df[df["LSOA name"].str.startswith("Croydon ")]
    x, y = Transformer.from_crs(4326, 27700, always_xy=True).transform(
        df["Longitude"].to_numpy(), df["Latitude"].to_numpy()
    )
    pts = pd.DataFrame(
        {
            "x": x,
            "y": y,
            "crime_group": "burglary",
            "harm": 60.0,
            "month": df["Month"].to_numpy(),
            "location": df["Location"].to_numpy(),
            "lsoa_code": df["LSOA code"].to_numpy(),
            "crime_type": df["Crime type"].to_numpy(),
        }
    )
    w = gpd.read_file(wards)
    code = next(c for c in w.columns if c.upper() == "WD24CD")
    name = next(c for c in w.columns if c.upper() == "WD24NM")
    inside = gpd.sjoin(
        gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs="EPSG:27700"),
        w.to_crs("EPSG:27700")[[code, name, "geometry"]],
        predicate="within",
    )
    top3 = inside[code].value_counts().index[:3]
    croydon_wards = w[w[code].isin(top3)].set_index(code).rename_axis("neighbourhood_id")
    out = micro_places(pts, croydon_wards, top_n=5)
    assert len(out) == 15
    assert out.groupby("neighbourhood_id")["patrol_rank"].apply(list).map(len).eq(5).all()
    assert (out.groupby("neighbourhood_id")["harm_share"].sum() <= 1.0 + 1e-12).all()
    assert out["top_location"].str.startswith("On or near").all()
    assert out["crime_types"].str.fullmatch(r"Burglary \d+").all()
    np.testing.assert_allclose(out["harm"], 60.0 * out["n_records"])
    tot = cell_totals(pts)
    assert tot["n_records"].sum() == len(pts)
    # Every listed cell's records are in the overall cell totals.
    assert (tot.loc[out["cell_id"], "n_records"].to_numpy() >= out["n_records"].to_numpy()).all()
