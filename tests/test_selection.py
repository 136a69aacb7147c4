"""Tests for priority_index.selection: worked examples with hand-known answers."""

from __future__ import annotations

import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from priority_index import selection as S

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"


# ------------------------------------------------------------------------------------ helpers


def lattice(rows: int, cols: int, *, extra: dict[str, shapely.Geometry] | None = None):
    """Unit squares coded ``r{row:02d}c{col:02d}`` in EPSG:27700 (row 0 at the top)."""
    codes, geoms = [], []
    for r in range(rows):
        for c in range(cols):
            codes.append(f"r{r:02d}c{c:02d}")
            geoms.append(shapely.box(c, rows - r - 1, c + 1, rows - r))
    for code, geom in (extra or {}).items():
        codes.append(code)
        geoms.append(geom)
    idx = pd.Index(codes, name="lsoa_code")
    return gpd.GeoDataFrame(
        {"lsoa_name": [f"Test {c}" for c in codes]}, geometry=geoms, index=idx, crs=27700
    )


def cell(r: int, c: int) -> str:
    return f"r{r:02d}c{c:02d}"


def line_example():
    """Seven squares in a row c0..c6 plus a far-away island with the top score."""
    g = lattice(1, 7, extra={"island": shapely.box(100, 100, 101, 101)})
    score = pd.Series([9, 8, 1, 7, 2, 6, 5, 100], index=g.index, dtype=float)
    return g, score


def groups(assignment: pd.Series) -> dict[int, set[str]]:
    sel = assignment[assignment > 0]
    return {int(k): set(v) for k, v in sel.groupby(sel).groups.items()}


def assert_valid_selection(g, assignment, graph, *, min_lsoas, max_lsoas, separate=True):
    pos = {c: i for i, c in enumerate(g.index)}
    found = groups(assignment)
    assert sorted(found) == list(range(1, len(found) + 1))
    for members in found.values():
        assert min_lsoas <= len(members) <= max_lsoas
        assert graph.is_connected([pos[c] for c in members])
    if separate:
        lab = assignment.to_numpy()
        for i, nbrs in enumerate(graph.adjacency):
            for j in nbrs:
                if lab[i] > 0 and lab[j] > 0:
                    assert lab[i] == lab[j], "two neighbourhoods touch"


# ---------------------------------------------------------------------------------- contiguity


def test_queen_neighbours_counts_corners_and_islands():
    g = lattice(3, 3, extra={"island": shapely.box(50, 50, 51, 51)})
    nb = S.queen_neighbours(g)
    assert len(nb[cell(1, 1)]) == 8
    assert nb[cell(0, 0)] == [cell(0, 1), cell(1, 0), cell(1, 1)]  # corner touch counts
    assert len(nb[cell(0, 1)]) == 5
    assert nb["island"] == []
    # symmetric
    assert all(a in nb[b] for a, bs in nb.items() for b in bs)
    # a sliver gap of 0.01 between two squares: neighbours only with a tolerance
    gap = gpd.GeoDataFrame(
        geometry=[shapely.box(0, 0, 1, 1), shapely.box(1.01, 0, 2, 1)],
        index=pd.Index(["a", "b"], name="lsoa_code"),
        crs=27700,
    )
    assert S.queen_neighbours(gap) == {"a": [], "b": []}
    assert S.queen_neighbours(gap, tolerance=0.05) == {"a": ["b"], "b": ["a"]}


# ----------------------------------------------------------------------------------- selection


def test_line_example_threshold_borrowing_island_and_separation():
    g, score = line_example()
    a = S.select_neighbourhoods(g, score, n=2, min_lsoas=2, max_lsoas=3, threshold=4)
    assert a.name == "neighbourhood_id" and a.index.equals(g.index)
    # island (100) is discarded (no neighbour); c0 takes c1 (8 >= 4) and stops at c2 (1 < 4);
    # c2 is set aside as it touches; c3 borrows c4 (2) to reach 2 LSOAs, then adds c5 (6 >= 4)
    # and stops at the maximum of 3.
    assert a.to_dict() == {
        cell(0, 0): 1,
        cell(0, 1): 1,
        cell(0, 2): 0,
        cell(0, 3): 2,
        cell(0, 4): 2,
        cell(0, 5): 2,
        cell(0, 6): 0,
        "island": 0,
    }
    # asking for 3: no room for a third (c6 and c2 are hemmed in), no crash
    a3 = S.select_neighbourhoods(g, score, n=3, min_lsoas=2, max_lsoas=3, threshold=4)
    assert a3.equals(a)
    # with min_lsoas=1 the island stands alone and, with the highest mean, is neighbourhood 1
    a1 = S.select_neighbourhoods(g, score, n=1, min_lsoas=1, max_lsoas=3, threshold=4)
    assert groups(a1) == {1: {"island"}}


def test_line_example_resident_bounds():
    g, score = line_example()
    res = pd.Series(100.0, index=g.index)
    res[cell(0, 1)] = 500.0
    # c0 cannot take c1 (600 > 300) and has nothing else: discarded; c1 alone is too big;
    # c3 borrows c4 then adds c5.
    a = S.select_neighbourhoods(
        g, score, n=2, min_lsoas=2, max_lsoas=3, threshold=4, residents=res, max_residents=300
    )
    assert groups(a) == {1: {cell(0, 3), cell(0, 4), cell(0, 5)}}
    # minimum residents forces borrowing c2 (score 1) after c0, c1; then c3 (7) clears 4
    res = pd.Series(100.0, index=g.index)
    a = S.select_neighbourhoods(
        g, score, n=1, min_lsoas=1, max_lsoas=5, threshold=4, residents=res, min_residents=250
    )
    assert groups(a) == {1: {cell(0, 0), cell(0, 1), cell(0, 2), cell(0, 3)}}
    with pytest.raises(ValueError):
        S.select_neighbourhoods(g, score, min_residents=10)


def planted():
    """30x30 lattice with nine planted blobs (2x2 and 3x2) among uniform [0, 1) noise."""
    g = lattice(30, 30)
    rng = np.random.default_rng(7)
    score = pd.Series(rng.random(len(g)), index=g.index)
    blobs = []
    for k in range(9):
        r0, c0 = 3 + 10 * (k // 3), 3 + 10 * (k % 3)
        h = 2 if k % 2 == 0 else 3
        cells = {cell(r0 + dr, c0 + dc) for dr in range(h) for dc in range(2)}
        score[list(cells)] = 20.0 - k
        blobs.append(cells)
    return g, score, blobs


def test_planted_blobs_found_exactly():
    g, score, blobs = planted()
    nb = S.queen_neighbours(g)
    a = S.select_neighbourhoods(g, score, neighbours=nb, threshold=5.0)
    assert groups(a) == {k + 1: blobs[k] for k in range(9)}


def test_planted_blobs_with_default_quantile_threshold():
    g, score, blobs = planted()
    graph = S.neighbour_graph(g.index, S.queen_neighbours(g))
    a = S.select_neighbourhoods(g, score, neighbours=graph)
    found = groups(a)
    assert len(found) == 9
    for members in found.values():
        assert sum(b <= members for b in blobs) == 1  # holds exactly one whole blob
    assert_valid_selection(g, a, graph, min_lsoas=3, max_lsoas=8)
    # numbered by mean score, highest first
    means = [score[list(found[k])].mean() for k in range(1, 10)]
    assert means == sorted(means, reverse=True)


def test_random_scores_contiguous_bounded_separate_deterministic():
    g = lattice(20, 20, extra={"island": shapely.box(40, 40, 41, 41)})
    graph = S.neighbour_graph(g.index, S.queen_neighbours(g))
    rng = np.random.default_rng(3)
    for _ in range(20):
        score = pd.Series(rng.normal(size=len(g)), index=g.index)
        score["island"] = 10.0
        kw = dict(n=9, min_lsoas=3, max_lsoas=6)
        a = S.select_neighbourhoods(g, score, neighbours=graph, **kw)
        assert a["island"] == 0
        assert (a > 0).groupby(a).size().drop(0).size == 9
        assert_valid_selection(g, a, graph, min_lsoas=3, max_lsoas=6)
        # deterministic, and independent of row order (no ties in the scores)
        assert a.equals(S.select_neighbourhoods(g, score, neighbours=graph, **kw))
        perm = rng.permutation(len(g))
        b = S.select_neighbourhoods(g.iloc[perm], score, **kw)
        assert b.reindex(g.index).equals(a)
    # without separation neighbourhoods may touch but never overlap (one id per LSOA)
    a = S.select_neighbourhoods(g, score, neighbours=graph, separate=False, n=9)
    assert_valid_selection(g, a, graph, min_lsoas=3, max_lsoas=8, separate=False)


def test_rule_text_mentions_settings():
    assert "80th-percentile" in S.RULE_TEXT and "3 LSOAs" in S.RULE_TEXT
    text = S.describe_rule(n=5, max_lsoas=6, max_residents=12000, threshold_quantile=0.9)
    assert "Up to 5" in text and "6 LSOAs or 12,000 residents" in text and "top 10%" in text


# ------------------------------------------------------------------ roles and exclusion reasons


def test_roles_seed_grown_borrowed_and_reasons_on_the_line():
    g, score = line_example()
    kw = dict(n=2, min_lsoas=2, max_lsoas=3, threshold=4)
    r = S.selection_roles(g, score, **kw)
    assert r["neighbourhood_id"].equals(S.select_neighbourhoods(g, score, **kw))
    assert r.attrs["threshold"] == 4
    assert list(r.columns) == [
        "neighbourhood_id",
        "score",
        "at_or_above_threshold",
        "role",
        "join_order",
        "excluded_because",
        "blocked_by",
        "borders",
        "detail",
    ]
    # c0 seeds 1 and grows into c1; c3 seeds 2, borrows c4 (2 < 4) and grows into c5 (6)
    assert r["role"].to_dict() == {
        cell(0, 0): "seed",
        cell(0, 1): "grown",
        cell(0, 2): "",
        cell(0, 3): "seed",
        cell(0, 4): "borrowed",
        cell(0, 5): "grown",
        cell(0, 6): "",
        "island": "",
    }
    assert r.loc[[cell(0, 3), cell(0, 4), cell(0, 5)], "join_order"].tolist() == [1, 2, 3]
    assert "below the threshold" in r.loc[cell(0, 4), "detail"]
    # c6 (5 >= 4) was waiting to join 2 when it reached 3 LSOAs; the island has no neighbours;
    # c2 (1) is below the threshold, so it needs no reason
    assert r.loc[cell(0, 6), "excluded_because"] == "neighbourhood full (max_lsoas)"
    assert r.loc[cell(0, 6), "blocked_by"] == "2" and r.loc[cell(0, 6), "borders"] == "2"
    assert "cannot start a neighbourhood of its own" in r.loc[cell(0, 6), "detail"]
    assert r.loc["island", "excluded_because"] == "no room: could not reach the minimum size"
    assert "no neighbours" in r.loc["island", "detail"]
    assert r.loc[cell(0, 2), "excluded_because"] == "" and r.loc[cell(0, 2), "borders"] == "1, 2"
    # the borrowed LSOA is counted in the summary
    attrs = pd.DataFrame({"residents": 1.0, "total_harm": 1.0, "score": score})
    t = S.summarise_neighbourhoods(r["neighbourhood_id"], attrs, roles=r)
    assert t["n_borrowed"].to_dict() == {1: 0, 2: 1}
    assert t["n_below_threshold"].to_dict() == {1: 0, 2: 1}
    assert list(t.columns[:5]) == [
        "name",
        "lsoa_codes",
        "n_lsoas",
        "n_borrowed",
        "n_below_threshold",
    ]
    assert "n_borrowed" not in S.summarise_neighbourhoods(r["neighbourhood_id"], attrs).columns


def hemmed_line():
    """c0 c1 | c2 | c3 | c4 | c5 c6: 1 = c0+c1, 2 = c5+c6; c3 is caught between them."""
    g = lattice(1, 7)
    score = pd.Series([10, 9, 1, 8, 6, 9.5, 9.2], index=g.index, dtype=float)
    return g, score


def test_reasons_cap_and_separation():
    g, score = hemmed_line()
    kw = dict(n=3, min_lsoas=2, max_lsoas=2, threshold=5)
    r = S.selection_roles(g, score, **kw)
    assert groups(r["neighbourhood_id"]) == {
        1: {cell(0, 0), cell(0, 1)},
        2: {cell(0, 5), cell(0, 6)},
    }
    # c4 (6) was next in line for 2, full at 2 LSOAs (the cap)
    assert r.loc[cell(0, 4), "excluded_because"] == "neighbourhood full (max_lsoas)"
    assert r.loc[cell(0, 4), "blocked_by"] == "2"
    # c3 (8, the fourth-highest score) touches no neighbourhood, but both its neighbours do, so
    # it cannot reach 2 LSOAs: blocked by separation
    assert r.loc[cell(0, 3), "excluded_because"] == "hemmed in by neighbourhoods (separation)"
    assert r.loc[cell(0, 3), "blocked_by"] == "1, 2" and r.loc[cell(0, 3), "borders"] == ""
    assert "may not touch" in r.loc[cell(0, 3), "detail"]
    assert set(r["excluded_because"]) == {
        "",
        "neighbourhood full (max_lsoas)",
        "hemmed in by neighbourhoods (separation)",
    }
    # allowed to touch, c3 takes c4 and forms the third neighbourhood
    a = S.select_neighbourhoods(g, score, separate=False, **kw)
    assert {cell(0, 3), cell(0, 4)} in groups(a).values()
    # asking for two, c3's turn never comes
    r2 = S.selection_roles(g, score, **{**kw, "n": 2})
    assert r2.loc[cell(0, 3), "excluded_because"] == "the two were already chosen"
    r1 = S.selection_roles(g, score, **{**kw, "n": 1})
    assert r1.loc[cell(0, 5), "excluded_because"] == "the one was already chosen"


def test_reasons_with_resident_caps():
    g = lattice(1, 4, extra={"big": shapely.box(50, 0, 51, 1)})
    score = pd.Series([9, 8, 7, 1, 6], index=g.index, dtype=float)
    res = pd.Series([100, 100, 500, 100, 400], index=g.index, dtype=float)
    kw = dict(n=3, min_lsoas=2, max_lsoas=3, threshold=4, residents=res, max_residents=300)
    r = S.selection_roles(g, score, **kw)
    assert groups(r["neighbourhood_id"]) == {1: {cell(0, 0), cell(0, 1)}}
    assert r.loc[cell(0, 2), "excluded_because"] == "neighbourhood full (max_residents)"
    assert r.loc[cell(0, 2), "blocked_by"] == "1" and "300 residents" in r.loc[cell(0, 2), "detail"]
    assert r.loc["big", "excluded_because"] == "too many residents on its own (max_residents)"


def test_pad_drop_never_borrows():
    g, score = line_example()
    kw = dict(n=3, min_lsoas=2, max_lsoas=3, threshold=4)
    a = S.select_neighbourhoods(g, score, pad="drop", **kw)
    # c3 (7) cannot reach 2 LSOAs without borrowing c4 (2): dropped; c5 (6) takes c6 (5);
    # seeds below 4 are never tried, so only two neighbourhoods
    assert groups(a) == {1: {cell(0, 0), cell(0, 1)}, 2: {cell(0, 5), cell(0, 6)}}
    r = S.selection_roles(g, score, pad="drop", **kw)
    assert r["neighbourhood_id"].equals(a)
    assert r.loc[a > 0, "at_or_above_threshold"].all() and not (r["role"] == "borrowed").any()
    assert r.loc[cell(0, 3), "excluded_because"] == "no room: could not reach the minimum size"
    assert "at or above the threshold" in r.loc[cell(0, 3), "detail"]
    # the default still borrows
    assert S.select_neighbourhoods(g, score, **kw)[cell(0, 4)] == 2
    text = S.describe_rule(pad="drop")
    assert "no LSOA below the threshold is included" in text and "fewer than 9" in text
    assert "borrows" in S.RULE_TEXT and "set aside" in S.RULE_TEXT and "cap" in S.RULE_TEXT
    with pytest.raises(ValueError, match="pad"):
        S.select_neighbourhoods(g, score, pad="pad")
    # stability re-runs the same rule
    per_n, _ = S.selection_stability(
        np.atleast_2d(score.to_numpy()), a, lsoas=g, score=score, pad="drop", **kw
    )
    assert (per_n["selection_frequency"] == 1.0).all()


def test_roles_random_maps_agree_with_selection():
    g = lattice(15, 15)
    graph = S.neighbour_graph(g.index, S.queen_neighbours(g))
    rng = np.random.default_rng(5)
    for k in range(20):
        score = pd.Series(rng.normal(size=len(g)), index=g.index)
        kw = dict(n=int(rng.integers(2, 10)), max_lsoas=int(rng.integers(3, 8)))
        kw.update(separate=bool(k % 2), pad="drop" if k % 3 == 0 else "borrow")
        a = S.select_neighbourhoods(g, score, neighbours=graph, **kw)
        r = S.selection_roles(g, score, neighbours=graph, **kw)
        assert r["neighbourhood_id"].equals(a)
        above = r["at_or_above_threshold"]
        assert ((r["excluded_because"] != "") == ((a == 0) & above)).all()
        assert ((r["role"] == "borrowed") == ((a > 0) & ~above & (r["join_order"] > 1))).all()
        assert (r.loc[a > 0, "role"] == "seed").sum() == a.max()
        assert set(r["excluded_because"]) - {""} <= set(S.EXCLUSION_REASONS.values()) | {
            S.EXCLUSION_REASONS["chosen"].format(n=S._in_words(kw["n"]))
        }
        # a full neighbourhood leaves its waiting LSOAs touching it
        full = r["excluded_because"] == "neighbourhood full (max_lsoas)"
        for blocked, borders in zip(r.loc[full, "blocked_by"], r.loc[full, "borders"], strict=True):
            assert blocked and blocked in borders.split(", ")


# ------------------------------------------------------------------------- geometry and names


def test_dissolve_neighbourhoods():
    g, score, blobs = planted()
    a = S.select_neighbourhoods(g, score, threshold=5.0)
    d = S.dissolve_neighbourhoods(g, a)
    assert d.index.name == "neighbourhood_id" and list(d.index) == list(range(1, 10))
    assert d.crs.to_epsg() == 27700
    assert d.geometry.is_valid.all() and (d.geom_type == "Polygon").all()
    assert d.loc[1].geometry.equals(shapely.box(3, 25, 5, 27))  # the 2x2 blob at rows 3-4
    assert list(d["n_lsoas"]) == [4, 6] * 4 + [4]
    assert d.loc[2, "lsoa_codes"].split(", ") == sorted(blobs[1])


def test_names_from_wards_and_lsoa_names():
    idx = pd.Index([f"L{i}" for i in range(12)], name="lsoa_code")
    a = pd.Series([1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 0], index=idx)
    wards = pd.Series(
        [
            "Selhurst",
            "Thornton Heath",
            "Thornton Heath",  # 1: two wards
            "B",
            "A",
            "C",  # 2: three wards, tied: alphabetical
            "V",
            "W",
            "X",
            "Y",
            "Y",  # 3: four wards, Y has two
            "Z",
        ],
        index=idx,
    )
    names = S.name_neighbourhoods(a, ward_names=wards, lsoa_names=pd.Series("x", index=idx))
    assert names.to_dict() == {1: "Thornton Heath & Selhurst", 2: "A, B & C", 3: "Y, V & W +1"}
    # weighting by residents reorders
    res = pd.Series(1.0, index=idx)
    res["L0"] = 10.0
    names = S.name_neighbourhoods(a, ward_names=wards, lsoa_names=wards, residents=res)
    assert names[1] == "Selhurst & Thornton Heath"
    # from LSOA names, letter suffix stripped, shared prefix written once
    lsoa_names = pd.Series(["Croydon 012A", "Croydon 012B", "Croydon 013A"] * 4, index=idx)
    names = S.name_neighbourhoods(a, lsoa_names=lsoa_names)
    assert names[1] == "Croydon 012 & 013"


def test_clashing_names_are_made_unique():
    g = lattice(5, 1)  # a column of 5 squares, row 0 at the top (north)
    a = pd.Series([1, 0, 0, 0, 2], index=g.index)
    wards = pd.Series("Fairfield", index=g.index)
    with_geom = S.name_neighbourhoods(a, ward_names=wards, lsoa_names=g.lsoa_name, lsoas=g)
    assert with_geom.to_dict() == {1: "Fairfield (north)", 2: "Fairfield (south)"}
    without = S.name_neighbourhoods(a, ward_names=wards, lsoa_names=g.lsoa_name)
    assert without.to_dict() == {1: "Fairfield", 2: "Fairfield (2)"}


def test_summarise_neighbourhoods_hand_computed():
    idx = pd.Index(["A", "B", "C", "D", "E"], name="lsoa_code")
    a = pd.Series([1, 1, 2, 2, 0], index=idx)
    attrs = pd.DataFrame(
        {
            "residents": [1000, 2000, 1500, 1500, 4000],
            "total_harm": [30.0, 10.0, 20.0, 20.0, 20.0],
            "violence_harm": [20.0, 5.0, 10.0, 0.0, 1.0],
            "score": [1.0, 2.0, 4.0, 3.0, 0.0],
            "gi_bin": [3, 1, 2, -1, 0],
            "contrib_violence": [0.5, 1.0, 1.0, 0.5, 0.0],
            "contrib_robbery": [0.4, 0.6, 2.0, 2.0, 0.0],
            "contrib_imd_income": [0.1, 0.4, -1.0, -0.5, 0.0],
        },
        index=idx,
    )
    names = pd.Series({1: "North", 2: "South"})
    t = S.summarise_neighbourhoods(a, attrs, names=names, top_drivers=2)
    assert t.index.name == "neighbourhood_id"
    assert t.loc[1, "name"] == "North" and t.loc[1, "lsoa_codes"] == "A, B"
    assert t.loc[1, "n_lsoas"] == 2 and t.loc[1, "residents"] == 3000
    assert t.loc[1, "total_harm"] == 40 and t.loc[1, "violence_harm"] == 25
    assert t.loc[1, "share_of_borough_harm"] == pytest.approx(0.4)
    assert t.loc[1, "harm_per_1000_residents"] == pytest.approx(40 / 3)
    assert t.loc[1, "mean_score"] == 1.5 and t.loc[2, "mean_score"] == 3.5
    assert t["rank"].to_dict() == {1: 2, 2: 1}
    # 1: violence 1.5, robbery 1.0, income 0.5 of 3.0; 2: robbery 4.0, violence 1.5 (income < 0)
    assert t.loc[1, "drivers"] == "Violence Against the Person (50%), Robbery (33%)"
    assert t.loc[2, "drivers"] == "Robbery (73%), Violence Against the Person (27%)"
    assert t.loc[1, "gi_hot_share"] == 0.5 and t.loc[2, "gi_hot_share"] == 0.5
    t3 = S.summarise_neighbourhoods(a, attrs, names=names, driver_labels={"imd_income": "Income"})
    assert t3.loc[1, "drivers"].endswith("Income (17%)")


# --------------------------------------------------------------------- stability, persistence


def test_stability_is_one_when_draws_equal_base():
    g, score, _ = planted()
    graph = S.neighbour_graph(g.index, S.queen_neighbours(g))
    a = S.select_neighbourhoods(g, score, neighbours=graph, max_lsoas=6)
    draws = np.tile(score.to_numpy(), (5, 1))
    per_n, per_lsoa = S.selection_stability(
        draws, a, lsoas=g, score=score, neighbours=graph, max_lsoas=6
    )
    assert (per_n["selection_frequency"] == 1.0).all() and (per_n["mean_overlap"] == 1.0).all()
    assert not per_n["fragile"].any()
    assert per_lsoa.equals((a > 0).astype(float).rename("selection_frequency"))
    # neighbourhood 1 is blob 1 (3x2 at 19, fills the maximum of 6 with no noise; blob 0 at 20
    # is diluted by two noise cells); its core is its first cell (ties broken by order)
    assert per_n.loc[1, "core_lsoas"] == cell(3, 13)


def test_stability_half_the_draws():
    g, score = line_example()
    kw = dict(n=1, min_lsoas=2, max_lsoas=3, threshold=4)
    a = S.select_neighbourhoods(g, score, **kw)
    assert groups(a) == {1: {cell(0, 0), cell(0, 1)}}
    other = score.copy()
    other[[cell(0, 0), cell(0, 1)]] = -10.0  # then c3 + c4 + c5 are chosen
    draws = np.vstack([score.to_numpy(), other.to_numpy()])
    per_n, per_lsoa = S.selection_stability(draws, a, lsoas=g, score=score, fragile_below=0.6, **kw)
    assert per_n.loc[1, "selection_frequency"] == 0.5 and per_n.loc[1, "mean_overlap"] == 0.5
    assert bool(per_n.loc[1, "fragile"])
    assert per_lsoa.to_dict() == {
        cell(0, 0): 0.5,
        cell(0, 1): 0.5,
        cell(0, 2): 0.0,
        cell(0, 3): 0.5,
        cell(0, 4): 0.5,
        cell(0, 5): 0.5,
        cell(0, 6): 0.0,
        "island": 0.0,
    }


def test_persistence():
    idx = pd.Index(list("ABCDEFGH"))
    current = pd.Series([1, 1, 1, 2, 2, 3, 3, 0], index=idx)
    previous = pd.Series([4, 4, 0, 0, 0, 2, 1], index=idx[:7])  # H absent before
    p = S.persistence(current, previous)
    assert p.loc[1, "share_priority_before"] == pytest.approx(2 / 3)
    assert p.loc[1, "previous_ids"] == "4" and p.loc[1, "main_previous_id"] == 4
    assert p["also_priority_before"].to_dict() == {1: True, 2: False, 3: True}
    assert p.loc[2, "previous_ids"] == "" and p.loc[2, "main_previous_id"] == 0
    assert p.loc[3, "previous_ids"] == "1, 2" and p.loc[3, "main_previous_id"] == 1


# ------------------------------------------------------------------------ controls and trials


def test_controls_match_trend_and_are_not_adjacent():
    g = lattice(12, 12)
    score = pd.Series(0.0, index=g.index)
    trend = pd.Series(0.0, index=g.index)
    top = [cell(1, 1), cell(1, 2), cell(2, 1), cell(2, 2)]
    twin_a = [cell(8, 8), cell(8, 9), cell(9, 8), cell(9, 9)]  # same trend as the target
    twin_b = [cell(1, 8), cell(1, 9), cell(2, 8), cell(2, 9)]  # opposite trend
    score[top], score[twin_a], score[twin_b] = 10.0, 5.0, 5.0
    trend[top], trend[twin_a], trend[twin_b] = 1.0, 1.0, -1.0
    graph = S.neighbour_graph(g.index, S.queen_neighbours(g))
    a = S.select_neighbourhoods(g, score, n=1, neighbours=graph, threshold=1.0)
    assert groups(a) == {1: set(top)}
    c = S.propose_controls(g, a, score=score, pre_trend=trend, neighbours=graph)
    assert c.loc[1, "control_lsoa_codes"] == ", ".join(twin_a)
    assert c.loc[1, "control_mean_score"] == 5.0 and c.loc[1, "control_trend"] == 1.0
    assert c.loc[1, "target_mean_score"] == 10.0
    trend[twin_a], trend[twin_b] = -1.0, 1.0  # swap the twins' trends: the choice follows
    c2 = S.propose_controls(g, a, score=score, pre_trend=trend, neighbours=graph)
    assert c2.loc[1, "control_lsoa_codes"] == ", ".join(twin_b)


def test_controls_random_map_properties():
    g = lattice(25, 25)
    rng = np.random.default_rng(11)
    score = pd.Series(rng.normal(size=len(g)), index=g.index)
    res = pd.Series(rng.integers(1200, 2000, len(g)).astype(float), index=g.index)
    trend = pd.Series(rng.normal(size=len(g)), index=g.index)
    graph = S.neighbour_graph(g.index, S.queen_neighbours(g))
    a = S.select_neighbourhoods(g, score, neighbours=graph)
    c = S.propose_controls(g, a, score=score, residents=res, pre_trend=trend, neighbours=graph)
    ctrl = S.control_assignment(c, g.index)
    assert len(c) == 9 and (c["control_lsoa_codes"] != "").all()
    assert ((ctrl > 0) & (a > 0)).sum() == 0
    pos = {code: i for i, code in enumerate(g.index)}
    lab, clab = a.to_numpy(), ctrl.to_numpy()
    for i, nbrs in enumerate(graph.adjacency):  # no control LSOA touches a selected one
        assert not (clab[i] > 0 and any(lab[j] > 0 for j in nbrs))
    for k, codes in groups(ctrl).items():
        assert len(codes) == (a == k).sum()  # same size, no overlap between controls
        assert graph.is_connected([pos[x] for x in codes])
        assert c.loc[k, "control_residents"] == res[list(codes)].sum()
    assert (c["distance"] >= 0).all()
    d = S.dissolve_neighbourhoods(g, ctrl)
    assert d.geometry.is_valid.all() and len(d) == 9
    sep = S.propose_controls(g, a, score=score, neighbours=graph, separate=True)
    sl = S.control_assignment(sep, g.index).to_numpy()
    for i, nbrs in enumerate(graph.adjacency):
        assert all(sl[j] in (0, sl[i]) for j in nbrs) or sl[i] == 0


def test_allocate_trial_blocked_balanced_reproducible():
    units = pd.DataFrame(
        {"harm": np.arange(20.0)[::-1] * 3}, index=pd.Index([f"U{i:02d}" for i in range(20)])
    )
    alloc = S.allocate_trial(units, block_by="harm", block_size=2, seed=42)
    assert list(alloc.columns) == ["unit", "block", "arm", "seed", "harm"]
    assert (alloc["seed"] == 42).all()
    assert set(alloc.loc[alloc["block"] == 1, "unit"]) == {"U00", "U01"}  # highest harm first
    per_block = alloc.groupby("block")["arm"].value_counts().unstack()
    assert (per_block["treatment"] == 1).all() and (per_block["control"] == 1).all()
    again = S.allocate_trial(units.iloc[::-1], block_by="harm", block_size=2, seed=42)
    pd.testing.assert_frame_equal(alloc, again)
    other = S.allocate_trial(units, block_by="harm", block_size=2, seed=43)
    assert not other["arm"].equals(alloc["arm"])
    # odd blocks of 3: one or two treated in each, 7 blocks (last has 2)
    three = S.allocate_trial(units, block_by="harm", block_size=3, seed=1)
    counts = three.groupby("block")["arm"].apply(lambda s: (s == "treatment").sum())
    assert three["block"].max() == 7 and counts.between(1, 2).all() and counts[7] == 1
    assert set(counts[:6]) == {1, 2}  # the odd unit's arm is random too, not always control
    # no blocking: one block, equal arms
    simple = S.allocate_trial(units.reset_index(names="id"), unit_col="id", seed=5)
    assert (simple["arm"] == "treatment").sum() == 10 and (simple["block"] == 1).all()


def test_control_match_quality_and_gaps():
    g = lattice(12, 12)
    score = pd.Series(0.0, index=g.index)
    top = [cell(1, 1), cell(1, 2), cell(2, 1), cell(2, 2)]
    score[top] = 10.0
    score[[cell(8, 8), cell(8, 9), cell(9, 8), cell(9, 9)]] = 5.0
    graph = S.neighbour_graph(g.index, S.queen_neighbours(g))
    a = S.select_neighbourhoods(g, score, n=1, neighbours=graph, threshold=1.0)
    c = S.propose_controls(g, a, score=score, neighbours=graph)
    d = c.loc[1, "distance"]
    # only the score is used: the distance is the absolute standardised score gap
    assert c.loc[1, "score_gap_sd"] < 0 and d == pytest.approx(-c.loc[1, "score_gap_sd"])
    assert np.isnan(c.loc[1, "residents_gap_sd"]) and np.isnan(c.loc[1, "trend_gap_sd"])
    assert list(c.columns[-5:]) == [
        "distance",
        "match_quality",
        "score_gap_sd",
        "residents_gap_sd",
        "trend_gap_sd",
    ]

    def quality(cutoffs):
        out = S.propose_controls(g, a, score=score, neighbours=graph, quality_cutoffs=cutoffs)
        return out.loc[1, "match_quality"]

    assert quality((d + 0.01, d + 1)) == "good"
    assert quality((d, d + 1)) == "fair"  # a cut-off is the start of the worse grade
    assert quality((d / 2, d)) == "poor"
    assert c.loc[1, "match_quality"] == ("good" if d < 1 else "fair" if d < 2 else "poor")
    with pytest.raises(ValueError, match="quality_cutoffs"):
        quality((2.0, 1.0))
    # no candidate of the size left: "none"
    line = lattice(1, 4)
    s = pd.Series([5.0, 4.0, 0.0, 0.0], index=line.index)
    one = S.propose_controls(line, pd.Series([1, 1, 0, 0], index=line.index), score=s)
    assert one.loc[1, "match_quality"] == "none" and one.loc[1, "control_lsoa_codes"] == ""


def trial_units():
    """Two neighbourhoods of micro-places with interleaved harm; unit U3 has little harm."""
    ids = [f"U{i}" for i in range(9)]
    return pd.DataFrame(
        {
            "cell_id": ids,
            "neighbourhood_id": [1, 2, 1, 2, 1, 2, 1, 2, 1],
            "harm": [90.0, 80, 70, 5, 50, 40, 30, 20, 10],
        }
    )


def test_allocate_trial_blocks_within_groups_and_excludes_low_rates():
    units = trial_units()
    plain = S.allocate_trial(units, block_by="harm", seed=3, unit_col="cell_id")
    assert set(plain.loc[plain["block"] == 1, "unit"]) == {"U0", "U1"}  # crosses neighbourhoods
    t = S.allocate_trial(
        units, block_by="harm", seed=3, unit_col="cell_id", group_by="neighbourhood_id"
    )
    assert list(t.columns) == ["unit", "block", "arm", "seed", "harm", "neighbourhood_id", "reason"]
    # neighbourhood 1: (U0, U2), (U4, U6), (U8 alone); neighbourhood 2: (U1, U5), (U7, U3)
    blocks = t.groupby("block")["unit"].apply(set).to_dict()
    assert blocks == {
        1: {"U0", "U2"},
        2: {"U4", "U6"},
        3: {"U8"},
        4: {"U1", "U5"},
        5: {"U7", "U3"},
    }
    assert (t.groupby("block")["neighbourhood_id"].nunique() == 1).all()
    pairs = t[t["block"] != 3].groupby("block")["arm"].apply(sorted)
    assert all(p == ["control", "treatment"] for p in pairs)
    assert (t["reason"] == "").all()
    # a minimum rate: U3 (5) and U8 (10) are excluded, reported last with the reason
    m = S.allocate_trial(
        units,
        block_by="harm",
        seed=3,
        unit_col="cell_id",
        group_by="neighbourhood_id",
        min_value=15,
    )
    excl = m[m["arm"] == "excluded"]
    assert excl["unit"].tolist() == ["U3", "U8"] and (excl["block"] == 0).all()
    assert excl["reason"].tolist() == [
        "harm 5 below the minimum of 15",
        "harm 10 below the minimum of 15",
    ]
    assert m.index[-2:].tolist() == [7, 8] and len(m) == 9
    kept = m[m["arm"] != "excluded"]
    assert kept.groupby("block")["unit"].apply(set).to_dict() == {
        1: {"U0", "U2"},
        2: {"U4", "U6"},
        3: {"U1", "U5"},
        4: {"U7"},
    }
    # another column for the minimum, missing values excluded too
    units["records"] = [9, 9, 9, 9, 9, 1, 9, 9, np.nan]
    r = S.allocate_trial(
        units, block_by="harm", seed=3, unit_col="cell_id", min_value=2, min_column="records"
    )
    assert r.set_index("unit").loc[["U5", "U8"], "reason"].tolist() == [
        "records 1 below the minimum of 2",
        "records missing",
    ]
    assert "neighbourhood_id" not in r.columns
    # deterministic and independent of row order
    again = S.allocate_trial(
        units.iloc[::-1],
        block_by="harm",
        seed=3,
        unit_col="cell_id",
        group_by="neighbourhood_id",
        min_value=15,
    )
    pd.testing.assert_frame_equal(m, again)
    with pytest.raises(ValueError, match="min_value"):
        S.allocate_trial(units, seed=1, unit_col="cell_id", min_value=1)
    with pytest.raises(ValueError, match="group_by"):
        S.allocate_trial(units, block_by="harm", group_by="harm", seed=1, unit_col="cell_id")


def test_allocate_trial_buffer_keeps_touching_units_in_one_arm():
    # 150 m cells: A-B-C touch in a row, D touches C's corner; E and F are far apart
    def sq(x, y):
        return shapely.box(x, y, x + 150, y + 150)

    geoms = {
        "A": sq(0, 0),
        "B": sq(150, 0),
        "C": sq(300, 0),
        "D": sq(450, 150),
        "E": sq(3000, 0),
        "F": sq(6000, 0),
        "G": sq(6300, 0),  # one cell (150 m) away from F
    }
    harm = {"A": 100.0, "E": 90, "B": 80, "F": 70, "C": 60, "G": 50, "D": 40}
    units = gpd.GeoDataFrame(
        {"harm": [harm[k] for k in geoms]},
        geometry=list(geoms.values()),
        index=pd.Index(list(geoms), name="cell"),
        crs=27700,
    )
    plain = S.allocate_trial(units, block_by="harm", seed=11, geometry="geometry")
    assert plain.attrs["min_distance_between_arms"] == 0.0  # touching cells split across arms
    t = S.allocate_trial(units, block_by="harm", seed=11, geometry="geometry", buffer=0)
    assert list(t.columns) == ["unit", "block", "arm", "seed", "harm", "cluster", "reason"]
    arm = t.set_index("unit")["arm"]
    cl = t.set_index("unit")["cluster"]
    assert len({arm[k] for k in "ABCD"}) == 1 and len(set(cl[list("ABCD")])) == 1
    assert cl["F"] != cl["G"]  # 150 m apart: separate clusters with buffer 0
    assert t.attrs["min_distance_between_arms"] > 0
    # clusters blocked on total harm: ABCD (280), then E (90), F (70), G (50)
    assert t.groupby("cluster")["harm"].sum().tolist() == [280, 90, 70, 50]
    assert t.groupby("block")["cluster"].apply(set).to_dict() == {1: {1, 2}, 2: {3, 4}}
    assert (t.groupby("block")["arm"].nunique() == 2).all()
    # a 200 m buffer joins F and G too; treatment and control units are then > 200 m apart
    wide = S.allocate_trial(units, block_by="harm", seed=11, geometry="geometry", buffer=200)
    wcl = wide.set_index("unit")["cluster"]
    assert wcl["F"] == wcl["G"] and wide.attrs["min_distance_between_arms"] > 200
    # a GeoSeries indexed by unit id works the same; same seed, same result
    plain_units = pd.DataFrame({"harm": units["harm"]})
    again = S.allocate_trial(
        plain_units.iloc[::-1], block_by="harm", seed=11, geometry=units.geometry, buffer=0
    )
    pd.testing.assert_frame_equal(t, again)
    # far-apart units: the buffer changes nothing
    far = units.iloc[[0, 4, 5]]
    base = S.allocate_trial(far, block_by="harm", seed=2)
    guarded = S.allocate_trial(far, block_by="harm", seed=2, geometry="geometry", buffer=100)
    pd.testing.assert_frame_equal(base, guarded[base.columns])
    # missing geometry is reported, lat/lon refused, buffer needs geometry
    gs = units.geometry.drop("G")
    miss = S.allocate_trial(plain_units, block_by="harm", seed=1, geometry=gs, buffer=0)
    assert miss.set_index("unit").loc["G", ["arm", "reason"]].tolist() == [
        "excluded",
        "geometry missing",
    ]
    with pytest.raises(ValueError, match="projected"):
        S.allocate_trial(units.to_crs(4326), seed=1, geometry="geometry", buffer=0)
    with pytest.raises(ValueError, match="buffer"):
        S.allocate_trial(units, seed=1, buffer=10)


# -------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def london():
    shp = RAW / "london" / "boundaries" / "london-2021-lsoa-gen20.shp"
    if not shp.exists():
        pytest.skip("real data folder absent")
    g = gpd.read_file(shp).rename(columns={"LSOA21CD": "lsoa_code", "LSOA21NM": "lsoa_name"})
    return g.set_index("lsoa_code")


@pytest.mark.realdata
def test_real_london_queen_and_timing(london):
    nb = S.queen_neighbours(london)
    assert sum(map(len, nb.values())) == 29472  # libpysal Queen gives the same 29,472 links
    graph = S.neighbour_graph(london.index, nb)
    rng = np.random.default_rng(0)
    draws = rng.random((30, len(london)))
    t = time.perf_counter()
    S.selection_stability(
        draws,
        pd.Series(0, index=london.index),
        lsoas=london,
        score=pd.Series(draws[0], index=london.index),
        neighbours=graph,
    )
    per_draw = (time.perf_counter() - t) / len(draws)
    assert per_draw < 0.1  # measured about 1 ms per draw for 4,994 LSOAs

    croydon = london[london["LAD22NM"] == "Croydon"]
    assert len(croydon) == 229
    cgraph = S.neighbour_graph(croydon.index, S.queen_neighbours(croydon))
    draws = rng.random((300, len(croydon)))
    base = pd.Series(draws[0], index=croydon.index)
    a = S.select_neighbourhoods(croydon, base, neighbours=cgraph)
    assert_valid_selection(croydon, a, cgraph, min_lsoas=3, max_lsoas=8)
    assert a.max() == 9
    t = time.perf_counter()
    per_n, _ = S.selection_stability(draws, a, lsoas=croydon, score=base, neighbours=cgraph)
    per_draw = (time.perf_counter() - t) / len(draws)
    assert per_draw < 0.01  # measured about 0.15 ms per draw for 229 LSOAs
    assert per_n.loc[1, "selection_frequency"] > 0  # draw 0 equals the base
    d = S.dissolve_neighbourhoods(croydon, a)
    assert d.geometry.is_valid.all() and d.crs.to_epsg() == 27700


@pytest.mark.realdata
def test_real_croydon_names_from_wards(london):
    lookup = RAW / "lookups" / "LSOA21_to_WD24_to_LAD24_best_fit_EW.csv"
    imd = RAW / "iod" / "imd2025_england_lsoa21.csv.gz"
    if not (lookup.exists() and imd.exists()):
        pytest.skip("real data folder absent")
    croydon = london[london["LAD22NM"] == "Croydon"]
    wards = pd.read_csv(lookup, encoding="utf-8-sig", usecols=["LSOA21CD", "WD24NM"])
    wards = wards.set_index("LSOA21CD")["WD24NM"]
    score = pd.read_csv(imd, usecols=["lsoa21_code", "Crime_score"]).set_index("lsoa21_code")
    a = S.select_neighbourhoods(croydon, score["Crime_score"])
    names = S.name_neighbourhoods(
        a, ward_names=wards, lsoa_names=croydon["lsoa_name"], lsoas=croydon
    )
    assert len(names) == 9 and names.is_unique
    assert all(n and n[0].isupper() for n in names)


@pytest.mark.realdata
def test_real_croydon_roles_explain_every_top_lsoa(london):
    croydon = london[london["LAD22NM"] == "Croydon"]
    graph = S.neighbour_graph(croydon.index, S.queen_neighbours(croydon))
    rng = np.random.default_rng(2)
    for _ in range(5):
        score = pd.Series(rng.random(len(croydon)), index=croydon.index)
        a = S.select_neighbourhoods(croydon, score, neighbours=graph)
        t = time.perf_counter()
        r = S.selection_roles(croydon, score, neighbours=graph)
        assert time.perf_counter() - t < 0.5  # measured about 2 ms
        assert r["neighbourhood_id"].equals(a)
        left_out = r["at_or_above_threshold"] & (a == 0)
        assert (r.loc[left_out, "excluded_because"] != "").all()
        assert (r.loc[left_out, "detail"] != "").all()
        assert (r.loc[a > 0, "detail"] != "").all()
