"""Tests for priority_index.micro: patrol micro-places inside priority neighbourhoods."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from affine import Affine

from priority_index.density import DensityGrid
from priority_index.micro import (
    GENERIC_LOCATIONS,
    MICRO_COLUMNS,
    SEGMENT_COLUMNS,
    cell_ids,
    cell_totals,
    is_generic_location,
    micro_places,
    points_note,
    segment_places,
    street_segments,
)

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


# --------------------------------------------------------------------------------------------
# Street segments


def line(*xy):
    return shapely.LineString([(E0 + x, N0 + y) for x, y in xy])


def local(geom):
    """A geometry's coordinates relative to (E0, N0), as a list of (x, y) tuples."""
    return [tuple(map(float, xy)) for xy in np.round(shapely.get_coordinates(geom) - [E0, N0], 6)]


@pytest.fixture
def roads() -> gpd.GeoDataFrame:
    """A small street grid (local metres from E0, N0).

    High Street runs west-east at y = 100 (400 m, with vertices at x = 100 and 250); Church
    Lane runs south-north at x = 200 as two parts meeting High Street; Back Lane crosses Church
    Lane at (200, 150), digitised east to west; Mill Lane runs at x = 450; an unnamed path at
    x = 600 lies outside both neighbourhoods.
    """
    return gpd.GeoDataFrame(
        {"name1": ["High Street", "Church Lane", "Back Lane", "Mill Lane", None]},
        geometry=[
            line((0, 100), (100, 100), (250, 100), (400, 100)),
            shapely.MultiLineString([line((200, 0), (200, 100)), line((200, 100), (200, 300))]),
            line((250, 150), (150, 150)),
            line((450, 0), (450, 200)),
            line((600, 0), (600, 200)),
        ],
        crs="EPSG:27700",
    )


SEGMENT_IDS = {
    "E530067N160100-1": ("High Street", [(0, 100), (100, 100), (133.333333, 100)]),
    "E530200N160050-1": ("Church Lane", [(200, 0), (200, 100)]),
    "E530200N160100-1": ("High Street", [(133.333333, 100), (250, 100), (266.666667, 100)]),
    # Back Lane and the middle of Church Lane share the rounded midpoint (200, 150): Back Lane's
    # western end (x = 150) sorts before Church Lane's southern end (x = 200).
    "E530200N160150-1": ("Back Lane", [(250, 150), (150, 150)]),
    "E530200N160150-2": ("Church Lane", [(200, 100), (200, 200)]),
    "E530200N160250-1": ("Church Lane", [(200, 200), (200, 300)]),
    "E530333N160100-1": ("High Street", [(266.666667, 100), (400, 100)]),
    "E530450N160050-1": ("Mill Lane", [(450, 0), (450, 100)]),
    "E530450N160150-1": ("Mill Lane", [(450, 100), (450, 200)]),
    "E530600N160050-1": (None, [(600, 0), (600, 100)]),
    "E530600N160150-1": (None, [(600, 100), (600, 200)]),
}


def test_street_segments_split_name_and_id(roads):
    segs = street_segments(roads, max_length=150.0, name_column="name1")
    assert list(segs.columns) == ["segment_id", "street", "length_m", "geometry"]
    assert segs.crs == "EPSG:27700"
    assert list(segs["segment_id"]) == list(SEGMENT_IDS)  # sorted by id
    for row in segs.itertuples():
        street, coords = SEGMENT_IDS[row.segment_id]
        assert (None if pd.isna(row.street) else row.street) == street, row.segment_id
        # the split keeps the line's own vertices between the cut points
        assert local(row.geometry) == coords, row.segment_id
    # the fewest equal pieces no longer than 150 m: 400 m -> 3 x 133.3 m, 200 m -> 2 x 100 m
    np.testing.assert_allclose(
        segs["length_m"], [400 / 3, 100, 400 / 3, 100, 100, 100, 400 / 3, 100, 100, 100, 100]
    )
    np.testing.assert_allclose(segs["length_m"], segs.geometry.length)
    by_street = segs.groupby(segs["street"].fillna("-"))["length_m"].agg(["size", "sum", "max"])
    assert by_street.loc["High Street"].tolist() == pytest.approx([3, 400.0, 400 / 3])
    assert by_street.loc["Church Lane"].tolist() == pytest.approx([3, 300.0, 100.0])
    assert by_street.loc["Mill Lane"].tolist() == pytest.approx([2, 200.0, 100.0])
    assert (segs["length_m"] <= 150.0 + 1e-9).all()
    assert segs["street"].dtype == "string"


def test_street_segments_are_stable_and_reproject(roads):
    first = street_segments(roads, name_column="name1")
    # other row order, every line digitised the other way, in WGS84, with Z values
    shuffled = roads.iloc[[3, 0, 4, 2, 1]].copy()
    shuffled.geometry = shapely.reverse(shuffled.geometry.to_numpy())
    shuffled.geometry = shapely.force_3d(shuffled.geometry.to_numpy(), 12.0)
    again = street_segments(shuffled.to_crs(4326), name_column="name1")
    assert list(again["segment_id"]) == list(first["segment_id"])
    pd.testing.assert_series_equal(again["street"], first["street"])
    assert not shapely.has_z(again.geometry.to_numpy()).any()
    assert shapely.equals_exact(
        shapely.normalize(again.geometry.to_numpy()),
        shapely.normalize(first.geometry.to_numpy()),
        tolerance=0.01,  # the WGS84 round trip moves points by about 1 mm
    ).all()
    # bit-for-bit the same on a rerun
    pd.testing.assert_frame_equal(street_segments(roads, name_column="name1"), first)
    unnamed = street_segments(roads)
    assert unnamed["street"].isna().all() and list(unnamed["segment_id"]) == list(SEGMENT_IDS)


def test_street_segments_cover_a_winding_road_exactly():
    rng = np.random.default_rng(3)
    steps = rng.normal(0, 7, size=(400, 2)) + [5, 0]
    road = shapely.LineString(np.cumsum(steps, axis=0) + [E0, N0])
    segs = street_segments(gpd.GeoDataFrame(geometry=[road], crs=27700), max_length=120.0)
    k = int(np.ceil(road.length / 120.0))
    assert len(segs) == k
    np.testing.assert_allclose(segs["length_m"], road.length / k, rtol=1e-9)
    merged = shapely.line_merge(shapely.union_all(segs.geometry.to_numpy()))
    assert merged.length == pytest.approx(road.length)
    assert shapely.hausdorff_distance(merged, road) < 1e-6
    assert segs["segment_id"].is_unique


def test_street_segments_reject_bad_input(roads):
    with pytest.raises(ValueError, match="max_length"):
        street_segments(roads, max_length=0)
    with pytest.raises(ValueError, match="no column 'name'"):
        street_segments(roads, name_column="name")
    polys = roads.assign(geometry=roads.buffer(5))
    with pytest.raises(ValueError, match="roads must be lines; 5 parts are Polygon"):
        street_segments(polys)
    # missing, empty and zero-length lines are left out
    odd = gpd.GeoDataFrame(
        geometry=[None, shapely.LineString(), line((0, 0), (0, 0)), line((0, 0), (10, 0))],
        crs=27700,
    )
    assert list(street_segments(odd)["segment_id"]) == ["E530005N160000-1"]
    assert len(street_segments(odd.iloc[:3])) == 0


def srec(x, y, group, harm, month, location, lsoa="E01000001"):
    return rec(x, y, group, harm, month, location, lsoa)


@pytest.fixture
def street_points() -> pd.DataFrame:
    rows = [
        # High Street west (E530067N160100-1, in N1): 4 records, harm 565; one exactly 50 m off
        srec(30, 103, "burglary", 100.0, "2024-01", "On or near High Street"),
        srec(60, 98, "burglary", 100.0, "2024-02", "On or near High Street"),
        srec(100, 100, "robbery", 365.0, "2024-02", "On or near Park Road"),
        srec(30, 150, "asb", 0.0, "2024-03", None),
        # High Street middle (E530200N160100-1, N1): two violence records 4 m off, harm 800
        srec(160, 104, "violence", 400.0, "2024-01", "On or near High Street", "E01000002"),
        srec(240, 96, "violence", 400.0, "2024-01", "On or near Church Lane", "E01000002"),
        # Church Lane south (E530200N160050-1, N1): a theft and five ASB, and a record exactly
        # on the junction (200, 100), 0 m from three segments: the lowest id takes it
        srec(205, 40, "theft", 10.0, "2024-02", "On or near Church Lane"),
        *[srec(195, 60, "asb", 0.0, "2024-02", None) for _ in range(5)],
        srec(200, 100, "public_order", 25.0, "2024-03", "On or near Church Lane"),
        # Back Lane (E530200N160150-1, N1): no location text, so the street name is shown
        srec(170, 152, "drugs", 50.0, "2024-01", None),
        # Inside N1, 70 m from any street: not on any list, counted as unsnapped
        srec(100, 30, "robbery", 365.0, "2024-01", "On or near Nowhere"),
        # Inside N1 (x < 300) but nearest to High Street east, whose midpoint is in N2
        srec(280, 101, "theft", 1.0, "2024-04", "On or near High Street", "E01000003"),
        # N2: High Street east, Mill Lane south and north
        srec(350, 98, "theft", 24.0, "2024-01", "On or near High Street", "E01000004"),
        srec(448, 50, "drugs", 50.0, "2024-01", "On or near Mill Lane", "E01000004"),
        srec(452, 60, "theft", 25.0, "2024-02", "On or near Mill Lane", "E01000004"),
        srec(455, 150, "theft", 25.0, "2024-01", "On or near Mill Lane", "E01000004"),
        # Outside both neighbourhoods (y > 200) but 14 m from Mill Lane north: counted there
        srec(440, 210, "asb", 0.0, "2024-02", "On or near Mill Lane", "E01000009"),
        # Inside N2, 80 m from any street
        srec(350, 180, "theft", 10.0, "2024-03", None, "E01000004"),
        # Outside everything: near the unnamed path, far away, and without coordinates
        srec(590, 100, "robbery", 365.0, "2024-01", "On or near Path", "E01000009"),
        srec(1000, 50, "robbery", 365.0, "2024-01", "On or near Far Away", "E01000009"),
        srec(np.nan, np.nan, "robbery", 365.0, "2024-01", "No location", None),
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def segments(roads) -> gpd.GeoDataFrame:
    return street_segments(roads, name_column="name1")


def test_segment_places_rank_share_and_text(street_points, neighbourhoods, segments):
    out = segment_places(street_points, neighbourhoods, segments, top_n=10)
    assert isinstance(out, gpd.GeoDataFrame) and out.crs == "EPSG:27700"
    assert tuple(out.columns) == SEGMENT_COLUMNS
    assert SEGMENT_COLUMNS[:-3] == MICRO_COLUMNS[:-1]  # micro_places' columns, then two more
    assert list(out["neighbourhood_id"]) == ["N1"] * 4 + ["N2"] * 3
    assert list(out["patrol_rank"]) == [1, 2, 3, 4, 1, 2, 3]
    n1 = out[out["neighbourhood_id"] == "N1"].set_index("cell_id")
    assert list(n1.index) == [
        "E530200N160100-1",  # High Street middle, harm 800
        "E530067N160100-1",  # High Street west, 565
        "E530200N160150-1",  # Back Lane, 50
        "E530200N160050-1",  # Church Lane south, 35 (theft 10 + junction record 25)
    ]
    assert list(n1["n_records"]) == [2, 4, 1, 7]
    np.testing.assert_allclose(n1["harm"], [800.0, 565.0, 50.0, 35.0])
    # Shares of N1's harm: its segments (1450) plus its unsnapped robbery (365).
    np.testing.assert_allclose(n1["harm_share"], np.array([800, 565, 50, 35]) / 1815.0)
    assert list(n1["months_active"]) == [1, 3, 1, 2]
    assert list(n1["street"]) == ["High Street", "High Street", "Back Lane", "Church Lane"]
    assert n1.loc["E530067N160100-1", "crime_types"] == (
        "Robbery 1; Burglary 2; Anti-social Behaviour 1"
    )
    assert n1.loc["E530200N160050-1", "crime_types"] == (
        "Public Order Offences 1; Theft 1; Anti-social Behaviour 5"
    )
    assert n1.loc["E530067N160100-1", "top_location"] == "On or near High Street"
    # a tie (1 each) goes to the alphabetical first
    assert n1.loc["E530200N160100-1", "top_location"] == "On or near Church Lane"
    assert n1.loc["E530200N160150-1", "top_location"] == "Back Lane"  # no text: the street
    np.testing.assert_allclose(n1["snap_distance_m_max"], [4.0, 50.0, 2.0, 5.0])
    assert local(n1.loc["E530200N160150-1", "geometry"]) == [(250, 150), (150, 150)]
    n2 = out[out["neighbourhood_id"] == "N2"].set_index("cell_id")
    # Mill Lane north (25, 2 records) and High Street east (25, 2 records) tie: lower id first
    assert list(n2.index) == ["E530450N160050-1", "E530333N160100-1", "E530450N160150-1"]
    np.testing.assert_allclose(n2["harm"], [75.0, 25.0, 25.0])
    assert list(n2["n_records"]) == [2, 2, 2]
    np.testing.assert_allclose(n2["harm_share"], np.array([75, 25, 25]) / 135.0)
    assert out["gi_hotspot"].dtype == bool and not out["gi_hotspot"].any()
    assert out["kde_hotspot"].dtype == bool and not out["kde_hotspot"].any()
    assert out["cell_id"].dtype == "string" and out["street"].dtype == "string"


def test_segment_places_account_for_every_record(street_points, neighbourhoods, segments):
    out = segment_places(street_points, neighbourhoods, segments)
    summary = out.attrs["snap_summary"]
    assert {k: v for k, v in summary.items() if k != "by_neighbourhood"} == {
        "max_snap_m": 50.0,
        "records": 22,  # 21 inside N1 or N2, and the one outside counted on Mill Lane north
        "on_segments": 20,
        "unsnapped": 2,
        "unsnapped_harm": 375.0,
        "snapped_out": 1,
        "snapped_in": 2,
    }
    assert summary["by_neighbourhood"] == [
        {
            "neighbourhood_id": "N1",
            "segments": 5,  # High W and middle, Church S and middle, Back Lane
            "on_segments": 14,
            "harm_on_segments": 1450.0,
            "unsnapped": 1,
            "unsnapped_harm": 365.0,
            "snapped_out": 1,
            "snapped_in": 0,
        },
        {
            "neighbourhood_id": "N2",
            "segments": 3,
            "on_segments": 6,
            "harm_on_segments": 125.0,
            "unsnapped": 1,
            "unsnapped_harm": 10.0,
            "snapped_out": 0,
            "snapped_in": 2,
        },
    ]
    # records inside each neighbourhood = on its segments - snapped in + snapped out + unsnapped
    for nb, inside in (("N1", 16), ("N2", 5)):
        row = next(r for r in summary["by_neighbourhood"] if r["neighbourhood_id"] == nb)
        assert row["on_segments"] - row["snapped_in"] + row["snapped_out"] + row["unsnapped"] == (
            inside
        )
        # the shares of all the neighbourhood's segments and its unsnapped harm make 1
        share = out.loc[out["neighbourhood_id"] == nb, "harm_share"].sum()
        assert share + row["unsnapped_harm"] / (
            row["harm_on_segments"] + row["unsnapped_harm"]
        ) == pytest.approx(1.0)
    assert out["n_records"].sum() == summary["on_segments"]
    assert json.loads(json.dumps(summary)) == summary  # plain values, ready for the manifest


def test_segment_places_snap_distance(street_points, neighbourhoods, segments):
    near = segment_places(street_points, neighbourhoods, segments, max_snap_m=4.5)
    s = near.attrs["snap_summary"]
    # Now unsnapped inside: the record 50 m off, Church Lane's theft and five ASB (5 m off),
    # the robbery 70 m off (N1); Mill Lane's theft 5 m off and the theft 80 m off (N2). The
    # record 14 m north of Mill Lane lies outside both neighbourhoods, so it drops out of the
    # count altogether.
    assert (s["records"], s["on_segments"], s["unsnapped"], s["snapped_in"]) == (21, 11, 10, 1)
    assert s["unsnapped_harm"] == 0 + 10 + 0 + 365 + 25 + 10
    n1 = near[near["neighbourhood_id"] == "N1"].set_index("cell_id")
    assert n1.loc["E530067N160100-1", "n_records"] == 3
    assert n1.loc["E530200N160050-1", ["n_records", "harm"]].tolist() == [1, 25.0]  # junction
    assert "E530450N160150-1" not in set(near["cell_id"])  # Mill Lane north: nothing left
    np.testing.assert_allclose(n1["harm_share"].sum() + 375.0 / (800 + 565 + 50 + 25 + 375), 1.0)
    assert (near["snap_distance_m_max"] <= 4.5).all()
    with pytest.raises(ValueError, match="max_snap_m"):
        segment_places(street_points, neighbourhoods, segments, max_snap_m=0)


def test_segment_places_top_n_and_determinism(street_points, neighbourhoods, segments):
    two = segment_places(street_points, neighbourhoods, segments, top_n=2)
    assert two.groupby("neighbourhood_id").size().tolist() == [2, 2]
    full = segment_places(street_points, neighbourhoods, segments)
    # shuffled records and segments, segments reversed: the same list, even for the record
    # exactly 50 m off and the junction record equidistant from three segments
    pts = street_points.sample(frac=1.0, random_state=5)
    segs = segments.sample(frac=1.0, random_state=6)
    segs = segs.assign(geometry=shapely.reverse(segs.geometry.to_numpy()))
    again = segment_places(pts, neighbourhoods, segs)
    pd.testing.assert_frame_equal(
        pd.DataFrame(again.drop(columns="geometry")),
        pd.DataFrame(full.drop(columns="geometry")),
    )
    assert shapely.equals(again.geometry.to_numpy(), full.geometry.to_numpy()).all()
    assert again.attrs == full.attrs


def test_segment_places_gi_and_kde(street_points, neighbourhoods, segments):
    lsoas = gpd.GeoDataFrame(
        {"gi_bin": [3]},
        geometry=[shapely.box(E0, N0, E0 + 150, N0 + 200)],  # holds High Street west's midpoint
        crs="EPSG:27700",
    )
    out = segment_places(street_points, neighbourhoods, segments, hot_lsoas=lsoas)
    assert set(out.loc[out["gi_hotspot"], "cell_id"]) == {"E530067N160100-1"}
    # a Series of gi_bin: the LSOA of most of a segment's records
    bins = pd.Series({"E01000002": 2, "E01000004": 3})
    out = segment_places(street_points, neighbourhoods, segments, hot_lsoas=bins)
    # High Street east: E01000003 and E01000004 tie 1-1, the lower code (absent) wins: not hot.
    # Mill Lane north: E01000004 and E01000009 tie 1-1, E01000004 wins: hot.
    assert set(out.loc[out["gi_hotspot"], "cell_id"]) == {
        "E530200N160100-1",
        "E530450N160050-1",
        "E530450N160150-1",
    }
    # 50 m surface offset by 25 m so that High Street (y = 100) runs through cell middles
    values = np.zeros((13, 11), dtype=np.float32)
    values[4, 3:6] = 10.0  # x 125..275, y 75..125: the middle piece of High Street
    grid = DensityGrid(
        values=values,
        transform=Affine(50.0, 0.0, E0 - 25, 0.0, -50.0, N0 + 325),
        cell_size=50.0,
        bandwidth=200.0,
        kernel="quartic",
        units="harm days per km2",
    )
    out = segment_places(street_points, neighbourhoods, segments, density=grid)
    assert set(out.loc[out["kde_hotspot"], "cell_id"]) == {"E530200N160100-1"}
    # High Street west samples x = 22, 67, 111 (all 0); Back Lane at y = 150 (row 3, all 0)
    low = values.copy()
    low[4, 2] = 6.0  # one of High Street west's three samples: mean 2
    grid2 = DensityGrid(low, grid.transform, 50.0, 200.0, "quartic", "harm days per km2")
    out = segment_places(
        street_points, neighbourhoods, segments, density=grid2, density_threshold=2
    )
    assert set(out.loc[out["kde_hotspot"], "cell_id"]) == {"E530200N160100-1", "E530067N160100-1"}


def test_segment_places_empty_and_bad_segments(street_points, neighbourhoods, segments):
    far = neighbourhoods.copy()
    far.geometry = far.geometry.translate(10000, 0)
    out = segment_places(street_points, far, segments)
    assert len(out) == 0 and tuple(out.columns) == SEGMENT_COLUMNS and out.crs == "EPSG:27700"
    assert out.attrs["snap_summary"]["records"] == 0
    assert [r["segments"] for r in out.attrs["snap_summary"]["by_neighbourhood"]] == [0, 0]
    none = segment_places(street_points.iloc[:0], neighbourhoods, segments)
    assert len(none) == 0 and none.attrs["snap_summary"]["by_neighbourhood"][0]["segments"] == 5
    with pytest.raises(ValueError, match="street_segments"):
        segment_places(street_points, neighbourhoods, segments.drop(columns="segment_id"))
    with pytest.raises(ValueError, match="unique"):
        segment_places(street_points, neighbourhoods, pd.concat([segments, segments.iloc[:1]]))


# --------------------------------------------------------------------------------------------
# Listing rules and checks for the patrol planner: min_records, overlap_share / min_overlap,
# generic police.uk locations, crime types in short


def test_min_records_leaves_places_out_but_not_their_harm(points, neighbourhoods):
    out = micro_places(points, neighbourhoods, cell_size=100.0, min_records=3)
    # N1: cell B (2 records) and the border cell (1) go; N2's cells hold 2, 2 and 1: none left.
    assert list(out["neighbourhood_id"]) == ["N1", "N1"]
    assert list(out["cell_id"]) == ["E530000N160000", "E530200N160000"]
    assert list(out["patrol_rank"]) == [1, 2]  # ranked among the listed cells
    # shares are still of all of N1's harm (1476), listed cells or not
    np.testing.assert_allclose(out["harm_share"], np.array([665.0, 10.0]) / 1476.0)
    left = out.attrs["left_out"]
    assert json.loads(json.dumps(left)) == left  # plain values, ready for the manifest
    assert {k: v for k, v in left.items() if k != "by_neighbourhood"} == {
        "min_records": 3,
        "min_overlap": 0.0,
        "places": 7,
        "left_out": 5,
        "too_few_records": 5,
        "mostly_outside": 0,
        "harm_left_out": 800.0 + 1.0 + 150.0,
    }
    assert [
        (r["neighbourhood_id"], r["places"], r["qualifying"]) for r in left["by_neighbourhood"]
    ] == [
        ("N1", 4, 2),
        ("N2", 3, 0),
    ]
    # the default lists every occupied cell
    assert len(micro_places(points, neighbourhoods, cell_size=100.0)) == 7
    with pytest.raises(ValueError, match="min_records"):
        micro_places(points, neighbourhoods, min_records=0)


@pytest.fixture
def offset_neighbourhoods() -> gpd.GeoDataFrame:
    """N1 and N2 meeting at x = 250, half way across the 100 m cells of column 2."""
    return gpd.GeoDataFrame(
        {"name": ["West", "East"]},
        geometry=[
            shapely.box(E0, N0, E0 + 250, N0 + 200),
            shapely.box(E0 + 250, N0, E0 + 500, N0 + 200),
        ],
        index=pd.Index(["N1", "N2"], name="neighbourhood_id"),
        crs="EPSG:27700",
    )


def test_overlap_share_clip_and_min_overlap(points, offset_neighbourhoods):
    out = micro_places(points, offset_neighbourhoods, cell_size=100.0)
    by = out.set_index(["neighbourhood_id", "cell_id"])
    # Cell C (x 200..300) is split by the boundary: its theft on x = 250 is N1's, its five ASB
    # at x = 260 are N2's; half of the square lies in each.
    assert by.loc[("N1", "E530200N160000"), "overlap_share"] == 0.5
    assert by.loc[("N2", "E530200N160000"), "overlap_share"] == 0.5
    assert by.loc[("N1", "E530200N160000"), "n_records"] == 1
    assert by.loc[("N2", "E530200N160000"), "n_records"] == 5
    assert by.loc[("N1", "E530000N160000"), "overlap_share"] == 1.0
    assert out["overlap_share"].dtype == np.float64
    # the geometry is the part of the square inside the neighbourhood; the id names the square
    geom = by.loc[("N1", "E530200N160000"), "geometry"]
    assert geom.equals(shapely.box(E0 + 200, N0, E0 + 250, N0 + 100))
    assert by.loc[("N2", "E530200N160000"), "geometry"].equals(
        shapely.box(E0 + 250, N0, E0 + 300, N0 + 100)
    )
    assert by.loc[("N1", "E530000N160000"), "geometry"].equals(
        shapely.box(E0, N0, E0 + 100, N0 + 100)
    )
    whole = micro_places(points, offset_neighbourhoods, cell_size=100.0, clip=False)
    assert (
        whole.set_index(["neighbourhood_id", "cell_id"])
        .loc[("N1", "E530200N160000"), "geometry"]
        .equals(shapely.box(E0 + 200, N0, E0 + 300, N0 + 100))
    )
    pd.testing.assert_frame_equal(
        pd.DataFrame(whole.drop(columns="geometry")), pd.DataFrame(out.drop(columns="geometry"))
    )
    # min_overlap leaves the half cells out; ranks close up, shares keep their denominators
    kept = micro_places(points, offset_neighbourhoods, cell_size=100.0, min_overlap=0.6)
    listed = set(zip(kept["neighbourhood_id"], kept["cell_id"], strict=True))
    assert ("N1", "E530200N160000") not in listed and ("N2", "E530200N160000") not in listed
    n1 = kept[kept["neighbourhood_id"] == "N1"]
    assert list(n1["patrol_rank"]) == [1, 2]
    np.testing.assert_allclose(n1["harm_share"], np.array([800.0, 665.0]) / 1475.0)
    assert kept.attrs["left_out"]["mostly_outside"] == 2
    # 0.5 is enough for min_overlap=0.5 (at or above)
    assert len(
        micro_places(points, offset_neighbourhoods, cell_size=100.0, min_overlap=0.5)
    ) == len(out)
    with pytest.raises(ValueError, match="min_overlap"):
        micro_places(points, offset_neighbourhoods, min_overlap=1.5)


def test_cell_touching_its_neighbourhood_only_on_an_edge(points, neighbourhoods):
    out = micro_places(points, neighbourhoods, cell_size=100.0)
    border = out[(out["neighbourhood_id"] == "N1") & (out["cell_id"] == "E530300N160000")]
    # The record on the N1/N2 boundary is N1's, but its square lies wholly in N2: no area
    # inside, so the whole square is kept as the geometry (nothing to clip to).
    assert border["overlap_share"].tolist() == [0.0]
    assert border.geometry.iloc[0].equals(shapely.box(E0 + 300, N0, E0 + 400, N0 + 100))
    assert (out.loc[out.index != border.index[0], "overlap_share"] == 1.0).all()
    assert len(micro_places(points, neighbourhoods, cell_size=100.0, min_overlap=0.01)) == 6


def test_overlap_on_a_ragged_boundary_is_polygonal():
    # A neighbourhood whose edge crosses a cell and touches it again at a single corner: the
    # intersection holds a polygon and a point; only the polygon is kept.
    nb = gpd.GeoDataFrame(
        geometry=[
            shapely.Polygon(
                [
                    (E0, N0),
                    (E0 + 60, N0),
                    (E0 + 60, N0 + 100),
                    (E0 + 100, N0 + 100),
                    (E0 + 100, N0 + 200),
                    (E0, N0 + 200),
                ]
            )
        ],
        index=pd.Index([1], name="neighbourhood_id"),
        crs="EPSG:27700",
    )
    pts = pd.DataFrame([rec(10, 10, "burglary", 60.0, "2024-01", "On or near A Road", "E1")])
    out = micro_places(pts, nb, cell_size=100.0)
    assert out["overlap_share"].tolist() == [0.6]
    assert out.geometry.iloc[0].equals(shapely.box(E0, N0, E0 + 60, N0 + 100))
    assert out.geometry.iloc[0].geom_type == "Polygon"


def test_generic_location_labels():
    reviewer = [
        "Police Station",
        "Hospital",
        "Supermarket",
        "Shopping Area",
        "Petrol Station",
        "Bus/Coach Station",
        "Further/Higher Educational Building",
        "Sports/Recreation Area",
        "Nightclub",
        "Parking Area",
    ]
    assert set(reviewer) <= GENERIC_LOCATIONS
    texts = [
        "On or near Supermarket",
        "on or near  SUPERMARKET ",
        "Parking Area",
        "On or near Theatre/Concert Hall",
        "On or near Supermarket Road",
        "On or near High Street",
        "On or near Hospital Lane",
        "No Location",
        "",
        None,
        np.nan,
    ]
    assert is_generic_location(texts).tolist() == [True] * 4 + [False] * 7
    assert is_generic_location(pd.Series([], dtype="string")).tolist() == []


def test_generic_location_flagged_not_dropped(points, neighbourhoods):
    pts = points.copy()
    pts.loc[pts["location"] == "On or near Church Lane", "location"] = "On or near Petrol Station"
    out = micro_places(pts, neighbourhoods, cell_size=100.0)
    assert out["generic_location"].dtype == bool
    flagged = out.loc[out["generic_location"], ["cell_id", "top_location", "patrol_rank"]]
    assert flagged.values.tolist() == [["E530100N160100", "On or near Petrol Station", 1]]
    assert len(out) == len(micro_places(points, neighbourhoods, cell_size=100.0))


def crime_mix() -> pd.DataFrame:
    """One cell with five crime groups; theft has the most records but little harm."""
    rows = [
        rec(10, 10, "violence", 400.0, "2024-01", "On or near A Road", "E1"),
        rec(10, 10, "robbery", 365.0, "2024-01", "On or near A Road", "E1"),
        *[rec(10, 10, "burglary", 60.0, "2024-01", "On or near A Road", "E1") for _ in range(2)],
        *[rec(10, 10, "theft", 10.0, "2024-01", "On or near A Road", "E1") for _ in range(9)],
        *[rec(10, 10, "asb", 0.0, "2024-01", "On or near A Road", "E1") for _ in range(4)],
    ]
    return pd.DataFrame(rows)


def test_crime_types_top_three_and_all(neighbourhoods):
    out = micro_places(crime_mix(), neighbourhoods, cell_size=100.0)
    assert out["crime_types"].tolist() == [
        "Violence Against the Person 1; Robbery 1; Burglary 2; +2 more"
    ]
    assert out["crime_types_all"].tolist() == [
        "Violence Against the Person 1; Robbery 1; Burglary 2; Theft 9; Anti-social Behaviour 4"
    ]
    five = micro_places(crime_mix(), neighbourhoods, cell_size=100.0, max_crime_types=5)
    assert five["crime_types"].tolist() == five["crime_types_all"].tolist()
    four = micro_places(crime_mix(), neighbourhoods, cell_size=100.0, max_crime_types=4)
    assert four["crime_types"].str.endswith("; Theft 9; +1 more").all()
    one = micro_places(crime_mix(), neighbourhoods, cell_size=100.0, max_crime_types=1)
    assert one["crime_types"].tolist() == ["Violence Against the Person 1; +4 more"]
    with pytest.raises(ValueError, match="max_crime_types"):
        micro_places(crime_mix(), neighbourhoods, max_crime_types=0)


def test_new_options_leave_the_empty_frame_well_formed(points, neighbourhoods):
    far = neighbourhoods.copy()
    far.geometry = far.geometry.translate(10000, 0)
    out = micro_places(points, far, min_records=3, min_overlap=0.5)
    assert len(out) == 0 and tuple(out.columns) == MICRO_COLUMNS
    assert out["generic_location"].dtype == bool and out["overlap_share"].dtype == np.float64
    assert out.attrs["left_out"]["places"] == 0
    assert [r["qualifying"] for r in out.attrs["left_out"]["by_neighbourhood"]] == [0, 0]


def test_segment_places_overlap_min_records_and_min_overlap(
    street_points, neighbourhoods, segments
):
    out = segment_places(street_points, neighbourhoods, segments)
    share = out.set_index("cell_id")["overlap_share"]
    # High Street east runs from x = 266.7 to 400; its midpoint (333) is in N2, 100 m of its
    # 133.3 m lie in N2. Every other listed segment lies wholly in its neighbourhood.
    assert share["E530333N160100-1"] == 0.75
    assert (share.drop("E530333N160100-1") == 1.0).all()
    # segments are not clipped: records snap to the whole line
    hs_east = out.set_index("cell_id").loc["E530333N160100-1", "geometry"]
    assert local(hs_east) == [(266.666667, 100), (400, 100)]
    kept = segment_places(street_points, neighbourhoods, segments, min_overlap=0.8)
    n2 = kept[kept["neighbourhood_id"] == "N2"]
    assert list(n2["cell_id"]) == ["E530450N160050-1", "E530450N160150-1"]
    assert list(n2["patrol_rank"]) == [1, 2]
    np.testing.assert_allclose(n2["harm_share"], np.array([75.0, 25.0]) / 135.0)
    two = segment_places(street_points, neighbourhoods, segments, min_records=2)
    assert "E530200N160150-1" not in set(two["cell_id"])  # Back Lane: one record
    assert two.loc[two["neighbourhood_id"] == "N1", "patrol_rank"].tolist() == [1, 2, 3]
    assert two.attrs["left_out"]["too_few_records"] == 1
    assert "snap_summary" in two.attrs  # the snap account is unchanged by the listing rules
    assert two.attrs["snap_summary"] == out.attrs["snap_summary"]
    assert out["crime_types_all"].tolist() == out["crime_types"].tolist()  # three groups at most
    assert not out["generic_location"].any()


def test_points_note():
    assert points_note(
        ["burglary", "burglary", None], "2024/25", all_groups=["burglary", "theft"]
    ) == ("Micro-places and density: police.uk Burglary points only, 2024/25")
    assert points_note(["burglary", "robbery"], None) == (
        "Micro-places and density: police.uk Burglary and Robbery points"
    )
    groups = ["burglary", "robbery", "theft", "violence", "asb"]
    assert points_note(groups, "2020", all_groups=groups) == (
        "Micro-places and density: police.uk 5 crime groups points, 2020"
    )
    assert points_note([], "2020") == "Micro-places and density: no point data"
