"""Tests for priority_index.spatial_weights: hand-built polygon sets and real London LSOAs."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from libpysal.weights import KNN, DistanceBand, Queen, Rook, lat2W
from libpysal.weights import min_threshold_distance as lps_min_threshold

from priority_index.spatial_weights import WeightsReport, build_weights, min_threshold_distance

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"
LONDON_2021 = RAW / "london" / "boundaries" / "london-2021-lsoa-gen20.shp"
CROYDON = "E09000008"


def _grid_with_island(shuffle: bool = True) -> gpd.GeoDataFrame:
    """3 x 3 grid of 100 m squares (codes G<row><col>) plus a detached square ISL.

    ISL spans x 600-700, y 0-100: 300 m from cell G02 (x 200-300, y 0-100) and further from
    every other cell; its centroid is 400 m from G02's.
    """
    codes, geoms = [], []
    for r in range(3):
        for c in range(3):
            codes.append(f"G{r}{c}")
            geoms.append(shapely.box(c * 100, r * 100, c * 100 + 100, r * 100 + 100))
    codes.append("ISL")
    geoms.append(shapely.box(600, 0, 700, 100))
    frame = gpd.GeoDataFrame(
        {"lsoa_name": [f"Area {c}" for c in codes]}, geometry=geoms, index=codes, crs=27700
    )
    frame.index.name = "lsoa_code"
    if shuffle:
        frame = frame.iloc[np.random.default_rng(3).permutation(len(frame))]
    return frame


def _cards(w) -> dict[str, int]:
    return {k: len(v) for k, v in w.neighbors.items()}


def test_queen_grid_counts_islands_and_edges():
    frame = _grid_with_island()
    w, rep = build_weights(frame, method="queen")
    assert w.id_order == list(frame.index)  # weights ids follow the (shuffled) frame
    assert rep.islands == ["ISL"]
    assert rep.island_links == {"ISL": "G02"}
    cards = _cards(w)
    assert cards["G11"] == 8
    assert cards["G00"] == cards["G20"] == cards["G22"] == 3
    assert cards["G02"] == 4  # corner + the attached island
    assert cards["G01"] == cards["G10"] == 5
    assert w.neighbors["ISL"] == ["G02"] and "ISL" in w.neighbors["G02"]
    assert rep.min_neighbors == 1 and rep.max_neighbors == 8
    assert rep.mean_neighbors == pytest.approx((8 + 4 * 5 + 3 * 3 + 4 + 1) / 10)
    assert rep.n_components == 1
    assert sorted(rep.edge) == sorted(c for c in frame.index if c != "G11")
    # The grid part equals libpysal's queen lattice.
    ref = lat2W(3, 3, rook=False)
    for r in range(3):
        for c in range(3):
            mine = {n for n in w.neighbors[f"G{r}{c}"] if n != "ISL"}
            assert mine == {f"G{q // 3}{q % 3}" for q in ref.neighbors[r * 3 + c]}


def test_rook_grid_and_unfixed_island():
    frame = _grid_with_island(shuffle=False)
    w, rep = build_weights(frame, method="rook", fix_islands=False)
    cards = _cards(w)
    assert cards["G11"] == 4 and cards["G00"] == 2 and cards["G01"] == 3
    assert cards["ISL"] == 0
    assert rep.islands == ["ISL"] and rep.island_links == {}
    assert rep.min_neighbors == 0 and rep.n_components == 2
    ref = lat2W(3, 3, rook=True)
    for q in range(9):
        assert set(w.neighbors[f"G{q // 3}{q % 3}"]) == {
            f"G{p // 3}{p % 3}" for p in ref.neighbors[q]
        }


def test_distance_band_default_threshold_leaves_no_island():
    frame = _grid_with_island()
    w, rep = build_weights(frame, method="distance_band")
    assert rep.threshold_is_default
    assert rep.threshold == pytest.approx(400.0, rel=1e-8)  # ISL centroid to G02 centroid
    assert rep.islands == []
    cards = _cards(w)
    assert cards["ISL"] == 1 and w.neighbors["ISL"] == ["G02"]
    assert cards["G02"] == 9  # all other grid cells (<= 283 m) and ISL (400 m)
    assert all(cards[f"G{r}{c}"] == 8 for r in range(3) for c in range(3) if (r, c) != (0, 2))
    assert rep.min_neighbors == 1 and rep.max_neighbors == 9

    # A given, smaller band isolates ISL; fix_islands then attaches it to its nearest polygon.
    w2, rep2 = build_weights(frame, method="distance_band", threshold=150.0)
    assert rep2.threshold == 150.0 and not rep2.threshold_is_default
    assert rep2.islands == ["ISL"] and rep2.island_links == {"ISL": "G02"}
    assert _cards(w2)["G11"] == 8 and _cards(w2)["G00"] == 3  # diagonal 141 m < 150 m


def _scattered_points(n: int = 40, seed: int = 11) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 10_000, size=(n, 2)) + np.array([530_000, 160_000])
    codes = [f"E01{i:06d}" for i in range(n)]
    frame = gpd.GeoDataFrame(
        {"lsoa_name": codes}, geometry=shapely.buffer(shapely.points(xy), 20.0), crs=27700
    )
    frame.index = codes
    frame.index.name = "lsoa_code"
    return frame


def test_knn_and_distance_band_match_libpysal():
    frame = _scattered_points()
    coords = shapely.get_coordinates(frame.geometry.centroid.values)
    w, rep = build_weights(frame, method="knn", k=4, find_edges=False)
    ref = KNN.from_array(coords, k=4)
    for pos, code in enumerate(frame.index):
        assert set(w.neighbors[code]) == {frame.index[q] for q in ref.neighbors[pos]}
    assert rep.k == 4 and rep.min_neighbors == rep.max_neighbors == 4
    assert rep.islands == [] and rep.edge == []

    assert min_threshold_distance(coords) == pytest.approx(lps_min_threshold(coords))
    wd, repd = build_weights(frame, method="distance_band")
    assert repd.threshold == pytest.approx(lps_min_threshold(coords), rel=1e-8)
    refd = DistanceBand(coords, threshold=repd.threshold, silence_warnings=True)
    for pos, code in enumerate(frame.index):
        assert set(wd.neighbors[code]) == {frame.index[q] for q in refd.neighbors[pos]}
    assert repd.islands == [] and repd.min_neighbors >= 1


def test_report_as_dict_is_json_and_errors():
    frame = _grid_with_island()
    _, rep = build_weights(frame)
    d = rep.as_dict()
    assert isinstance(rep, WeightsReport)
    assert d["n_islands"] == 1 and d["n_edge"] == 9 and d["n"] == 10 and d["method"] == "queen"
    assert json.loads(json.dumps(d)) == d
    with pytest.raises(ValueError, match="projected"):
        build_weights(frame.to_crs(4326))
    with pytest.raises(ValueError, match="unique"):
        build_weights(frame.iloc[[0, 0, 1]])
    with pytest.raises(ValueError, match="method"):
        build_weights(frame, method="hexagons")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must"):
        build_weights(frame, method="knn", k=10)


@pytest.fixture(scope="module")
def croydon() -> gpd.GeoDataFrame:
    if not LONDON_2021.exists():
        pytest.skip("real data folder ../shared/data/raw not present")
    frame = gpd.read_file(LONDON_2021, where=f"LAD22CD = '{CROYDON}'")
    frame = frame.rename(columns={"LSOA21CD": "lsoa_code", "LSOA21NM": "lsoa_name"})
    return frame.set_index("lsoa_code")[["lsoa_name", "geometry"]]


@pytest.mark.realdata
def test_croydon_contiguity_matches_libpysal(croydon):
    assert len(croydon) == 229
    for method, ref_cls in (("queen", Queen), ("rook", Rook)):
        w, rep = build_weights(croydon, method=method)
        ref = ref_cls.from_dataframe(croydon, use_index=True, silence_warnings=True)
        assert w.id_order == list(croydon.index)
        assert all(set(w.neighbors[c]) == set(ref.neighbors[c]) for c in croydon.index)
        assert rep.islands == [] and rep.n_components == 1
        assert rep.mean_neighbors == pytest.approx(ref.mean_neighbors)
        assert rep.min_neighbors == ref.min_neighbors and rep.max_neighbors == ref.max_neighbors
        # Croydon borders five boroughs and Surrey: a sizeable ring of edge LSOAs, but not all.
        assert 30 < len(rep.edge) < 150


@pytest.mark.realdata
def test_croydon_distance_band_default(croydon):
    w, rep = build_weights(croydon, method="distance_band", find_edges=False)
    coords = shapely.get_coordinates(croydon.geometry.centroid.values)
    assert rep.threshold == pytest.approx(lps_min_threshold(coords), rel=1e-8)
    assert rep.islands == [] and rep.min_neighbors >= 1
    assert 500 < rep.threshold < 5_000  # metres: LSOA spacing in an outer London borough
