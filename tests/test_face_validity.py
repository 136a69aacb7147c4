"""Tests of the face-validity table: places residents call unsafe against the index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from priority_index.face_validity import (
    FACE_VALIDITY_COLUMNS,
    driver_names,
    face_validity,
    normalise_ward,
    ordinal,
)

REAL_PLACES = (
    Path(__file__).resolve().parents[1] / "data" / "croydon" / "unsafe_places_2021_survey.csv"
)


# --------------------------------------------------------------------------------------------
# Hand-made borough: 20 LSOAs in a 5 x 4 grid, 5 wards of 4 LSOAs, 2 neighbourhoods.
#
# codes L00..L19, row-major (L00 bottom-left). Wards: "North & East" (L00-L03),
# "Central" (L04-L07), "Westside" (L08-L11), "Hill" (L12-L15), "Vale" (L16-L19).


def _lsoas() -> pd.DataFrame:
    codes = [f"L{i:02d}" for i in range(20)]
    wards = ["North & East"] * 4 + ["Central"] * 4 + ["Westside"] * 4 + ["Hill"] * 4 + ["Vale"] * 4
    # ranks chosen by hand: 1..20
    rank = [1, 2, 5, 9, 3, 4, 12, 13, 6, 15, 16, 17, 7, 8, 10, 11, 14, 18, 19, 20]
    nb = [1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 0, 0]
    drivers = {
        1: "Violence harm 41%, Income deprivation 22%",
        2: "Violence harm 38%, ASB 20%",
        3: "Income deprivation 35%, Violence harm 30%",
        4: "Violence harm 50%, Income deprivation 10%",
        7: "Robbery harm 45%, ASB 25%",
        8: "Robbery harm 40%, Violence harm 20%",
    }
    gi = [3, 3, 2, 0, 2, 2, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, -1, -2, -3, -3]
    return pd.DataFrame(
        {
            "lsoa_name": [f"Testham {i:03d}" for i in range(20)],
            "ward_name": wards,
            "score": [10.0 - r / 2 for r in rank],
            "rank": rank,
            "neighbourhood_id": nb,
            "top_drivers": [drivers.get(r, "ASB 30%, Income deprivation 20%") for r in rank],
            "gi_bin": gi,
        },
        index=pd.Index(codes, name="lsoa_code"),
    )


def _neighbourhoods() -> pd.DataFrame:
    return pd.DataFrame(
        {"name": ["North End & Central", "Hill Top"]},
        index=pd.Index([1, 2], name="neighbourhood_id"),
    )


def _grid_neighbours(nx: int = 5, ny: int = 4) -> dict[str, list[str]]:
    """Queen neighbours of a grid laid out row by row, 4 LSOAs per row (ward = row)."""
    out = {}
    for j in range(nx):  # rows = wards
        for i in range(ny):
            me = f"L{j * ny + i:02d}"
            out[me] = [
                f"L{jj * ny + ii:02d}"
                for jj in range(j - 1, j + 2)
                for ii in range(i - 1, i + 2)
                if (jj, ii) != (j, i) and 0 <= jj < nx and 0 <= ii < ny
            ]
    return out


def _places(rows: list[tuple[str, str]], column: str = "wards") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "place": [p for p, _ in rows],
            column: [w for _, w in rows],
            "source": "2021 survey",
            "notes": "",
        }
    )


# --------------------------------------------------------------------------------------------
# Helpers


def test_helpers() -> None:
    assert normalise_ward("Selhurst & Thornton Heath") == "selhurst and thornton heath"
    assert normalise_ward("  Crystal Palace and Upper  Norwood ") == normalise_ward(
        "Crystal Palace & Upper Norwood"
    )
    assert normalise_ward(None) == ""
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 41, 101, 111, 229)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "41st",
        "101st", "111th", "229th",
    ]  # fmt: skip
    assert driver_names("Violence harm 41%, Income deprivation 22%") == [
        "Violence harm",
        "Income deprivation",
    ]
    assert driver_names("Violence Against the Person (52%), Robbery (30%)") == [
        "Violence Against the Person",
        "Robbery",
    ]
    assert driver_names("Misc. Crimes Against Society 12%") == ["Misc. Crimes Against Society"]
    assert driver_names("Violence; ASB") == ["Violence", "ASB"]
    assert driver_names(np.nan) == [] and driver_names("") == []


# --------------------------------------------------------------------------------------------
# The table


def test_place_in_a_neighbourhood() -> None:
    out = face_validity(
        _places([("North End", "North & East; Central")]), _lsoas(), _neighbourhoods()
    )
    assert list(out.columns) == list(FACE_VALIDITY_COLUMNS)
    row = out.iloc[0]
    assert row["n_lsoas"] == 8
    assert row["n_selected"] == 4
    assert bool(row["in_priority"]) is True
    assert row["neighbourhoods"] == "North End & Central"
    assert row["share_of_lsoas_selected"] == pytest.approx(4 / 8)
    assert row["best_rank"] == 1
    assert row["median_rank"] == pytest.approx(np.median([1, 2, 5, 9, 3, 4, 12, 13]))
    assert row["gi_hot_share"] == pytest.approx(5 / 8)  # 3, 3, 2, 2, 2
    # selected LSOAs have first drivers Violence x3 and Income x1
    assert row["main_drivers"] == "Violence harm; Income deprivation"
    assert row["explanation"] == (
        "In the 2 priority neighbourhoods: 4 of its 8 LSOAs form part of 'North End & Central'; "
        "driven by Violence harm and Income deprivation; the median rank of its LSOAs is 4.5 "
        "of 20."
    )
    assert row["shared_with"] == "" and row["source"] == "2021 survey"


def test_one_lsoa_forms_part_and_shared_wards_are_named() -> None:
    lsoas = _lsoas()
    lsoas.loc[["L13"], "neighbourhood_id"] = 0  # Hill keeps one selected LSOA (L12)
    places = _places([("Hill Top", "Hill"), ("Hill Market", "Hill; Vale"), ("Vale", "Vale")])
    out = face_validity(places, lsoas, _neighbourhoods())
    first = out.iloc[0]
    assert first["n_selected"] == 1
    assert first["explanation"].startswith(
        "In the 2 priority neighbourhoods: 1 of its 4 LSOAs forms part of 'Hill Top'"
    )
    assert "LSOAs form part" not in first["explanation"]
    assert first["explanation"].endswith("the median rank of its LSOAs is 9 of 20.")
    assert first["shared_with"] == "Hill Market"
    assert out.loc[1, "shared_with"] == "Hill Top; Vale"
    assert out.loc[2, "shared_with"] == "Hill Market"
    # no source column: an empty source
    out = face_validity(places.drop(columns="source"), lsoas, _neighbourhoods())
    assert (out["source"] == "").all()


def test_nine_named_as_the_nine() -> None:
    nb = pd.DataFrame(
        {"name": [f"N{i}" for i in range(1, 10)]},
        index=pd.Index(range(1, 10), name="neighbourhood_id"),
    )
    out = face_validity(_places([("Hill", "Hill")]), _lsoas(), nb)
    assert out.loc[0, "explanation"].startswith("In the nine: 2 of its 4 LSOAs form part of 'N2'")


def test_ward_names_compared_loosely_and_column_name_variants() -> None:
    for column in ("wards", "ward_names", "wards_2024"):
        out = face_validity(
            _places([("North End", "north and east")], column=column), _lsoas(), _neighbourhoods()
        )
        assert out.loc[0, "n_lsoas"] == 4, column
        assert out.loc[0, "wards"] == "north and east"


def test_place_outside_the_top_share_is_explained_by_its_rank() -> None:
    out = face_validity(_places([("Vale Parade", "Vale")]), _lsoas(), _neighbourhoods())
    row = out.iloc[0]
    assert not row["in_priority"]
    assert row["best_rank"] == 14
    assert row["neighbourhoods"] == ""
    assert row["share_of_lsoas_selected"] == 0
    assert row["gi_hot_share"] == 0
    assert row["explanation"] == (
        "Not in the 2 priority neighbourhoods: its best LSOA ranks 14th of 20 (the 2 priority "
        "neighbourhoods take LSOAs in the top 20%); its recorded harm and need are lower than "
        "its reputation."
    )


def test_high_ranking_place_touching_a_neighbourhood_is_explained_by_separation() -> None:
    # Westside (L08..L11) holds the 6th-ranked LSOA (L08), in the top 20% (4 of 20 -> ranks
    # 1..4)? No: top 20% of 20 is ranks 1..4, so widen the share to 0.3 (ranks 1..6).
    places = _places([("Westside Market", "Westside")])
    nbrs = _grid_neighbours()
    out = face_validity(places, _lsoas(), _neighbourhoods(), neighbours=nbrs, top_share=0.3)
    row = out.iloc[0]
    assert not row["in_priority"]
    # L08 touches L04, L05 (neighbourhood 1) and L12, L13 (neighbourhood 2)
    assert row["explanation"].startswith(
        "Not in the 2 priority neighbourhoods although its LSOA ranked 6th of 20: it touches "
        "neighbourhoods 'North End & Central' and 'Hill Top' and neighbourhoods are kept apart"
    )
    # without the adjacency the explanation falls back to the top-share wording
    out = face_validity(places, _lsoas(), _neighbourhoods(), top_share=0.3)
    text = out.loc[0, "explanation"]
    assert "touches" not in text
    assert text.startswith(
        "Not in the 2 priority neighbourhoods although 1 of its 4 LSOAs is in the top 30% "
        "(the best 6th of 20)"
    )
    # and with the default 20% it is simply ranked too low
    out = face_validity(places, _lsoas(), _neighbourhoods(), neighbours=nbrs)
    assert "its best LSOA ranks 6th of 20" in out.loc[0, "explanation"]
    assert "touches" not in out.loc[0, "explanation"]


def test_unmatched_place_gets_a_row_saying_so() -> None:
    places = _places([("Nowhere", "Atlantis; Lyonesse"), ("Blank", np.nan), ("Half", "Hill; Oz")])
    out = face_validity(places, _lsoas(), _neighbourhoods())
    assert list(out["place"]) == ["Nowhere", "Blank", "Half"]
    row = out.iloc[0]
    assert row["n_lsoas"] == 0 and not row["in_priority"]
    assert pd.isna(row["best_rank"]) and np.isnan(row["median_rank"])
    assert row["unmatched_wards"] == "Atlantis; Lyonesse"
    assert row["explanation"].startswith(
        "No LSOA matched: ward(s) 'Atlantis' and 'Lyonesse' are not among the index's wards"
    )
    assert out.loc[1, "explanation"] == "No LSOA matched: no ward is given for this place."
    half = out.iloc[2]
    assert half["n_lsoas"] == 4 and half["in_priority"]
    assert half["unmatched_wards"] == "Oz"
    assert half["explanation"].endswith("Ward(s) not found: 'Oz'.")


def test_adjacent_wards_named_for_a_place_outside() -> None:
    places = pd.DataFrame(
        {
            "place": ["Vale Junction", "Central Station"],
            "wards_2024": ["Vale", "Central"],
            "adjacent_wards_2024": ["Hill", "Hill"],
        }
    )
    out = face_validity(places, _lsoas(), _neighbourhoods())
    assert out.loc[0, "adjacent_neighbourhoods"] == "Hill Top"
    assert out.loc[0, "explanation"].endswith("Next door, 'Hill' has LSOAs in 'Hill Top'.")
    # a place already in a neighbourhood lists the other neighbourhood but does not dwell on it
    assert out.loc[1, "adjacent_neighbourhoods"] == "Hill Top"
    assert "Next door" not in out.loc[1, "explanation"]


def test_without_gi_bins_and_with_lsoa_code_column() -> None:
    lsoas = _lsoas().drop(columns="gi_bin").reset_index()
    nb = _neighbourhoods().reset_index()
    out = face_validity(_places([("Hill", "Hill")]), lsoas, nb)
    assert np.isnan(out.loc[0, "gi_hot_share"])
    assert out.loc[0, "neighbourhoods"] == "Hill Top"
    assert out.loc[0, "main_drivers"] == "Robbery harm; ASB"


def test_dtypes_and_order_are_stable() -> None:
    places = _places([("B", "Vale"), ("A", "Hill"), ("C", "Nowhere")])
    out = face_validity(places, _lsoas(), _neighbourhoods())
    assert list(out["place"]) == ["B", "A", "C"]
    assert out["n_lsoas"].dtype == "int64" and out["n_selected"].dtype == "int64"
    assert out["in_priority"].dtype == bool
    assert str(out["best_rank"].dtype) == "Int64"
    again = face_validity(places, _lsoas(), _neighbourhoods())
    pd.testing.assert_frame_equal(out, again)


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="ward column"):
        face_validity(pd.DataFrame({"place": ["X"], "area": ["Y"]}), _lsoas(), _neighbourhoods())
    with pytest.raises(ValueError, match="'place'"):
        face_validity(pd.DataFrame({"wards": ["Hill"]}), _lsoas(), _neighbourhoods())
    with pytest.raises(ValueError, match="neighbourhood_id"):
        face_validity(
            _places([("Hill", "Hill")]),
            _lsoas().drop(columns="neighbourhood_id"),
            _neighbourhoods(),
        )
    with pytest.raises(ValueError, match="top_share"):
        face_validity(_places([("Hill", "Hill")]), _lsoas(), _neighbourhoods(), top_share=0)


@pytest.mark.skipif(not REAL_PLACES.exists(), reason="Croydon places file not present")
def test_real_croydon_places_file_reads() -> None:
    places = pd.read_csv(REAL_PLACES)
    wards = sorted(
        {
            w.strip()
            for text in places.filter(like="ward").iloc[:, 0].dropna()
            for w in text.split(";")
        }
    )
    lsoas = pd.DataFrame(
        {
            "ward_name": wards,
            "rank": range(1, len(wards) + 1),
            "neighbourhood_id": [1] + [0] * (len(wards) - 1),
        },
        index=[f"E0{i:07d}" for i in range(len(wards))],
    )
    nb = pd.DataFrame({"name": ["First"]}, index=pd.Index([1], name="neighbourhood_id"))
    out = face_validity(places, lsoas, nb)
    assert len(out) == len(places)
    assert (out["n_lsoas"] > 0).all()  # every ward named in the file matched
    assert (out["unmatched_wards"] == "").all()
