"""Face validity: do the places residents call unsafe show up in the index and the nine?

A partnership board's first question of any index is whether it agrees with what residents say.
The partnership's 2021 surveys named places where people feel unsafe; this module lines each
named place up against the index and the priority neighbourhoods and says, in plain words, why
the place is or is not one of the nine. The answer is often *not* that the index is wrong: a
town centre with a bad reputation may carry less harm per resident than its reputation, or a
high-ranking LSOA may sit right next to a neighbourhood that was already chosen (neighbourhoods
are kept apart).

It is a weak test and the table says so in its numbers: a place counts as "in" when any one LSOA
of its wards is selected, however many are not (hence ``n_selected``, ``share_of_lsoas_selected``
and ``median_rank`` beside ``in_priority``); two places can share a ward, so one neighbourhood can
"confirm" both (``shared_with``); and the survey that named the places may be years older than
the index's data (``source``).

The places arrive as data (``data/croydon/unsafe_places_2021_survey.csv`` for the Croydon
example), never as code, so another partnership supplies its own list. Places are matched to
LSOAs through ward names; ward names are compared case-insensitively, with ``&`` read as
``and`` and punctuation ignored, so ``"Thornton Heath"`` and ``"thornton heath"`` match.

:func:`face_validity` is pure: it reads and writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ADJACENT_WARD_COLUMNS",
    "FACE_VALIDITY_COLUMNS",
    "WARD_COLUMNS",
    "driver_names",
    "face_validity",
    "normalise_ward",
    "ordinal",
]

#: Accepted names of the places table's ward column, in order of preference. Failing these, the
#: first column named like ``wards_2024`` or ``ward_names_2024`` is used.
WARD_COLUMNS: tuple[str, ...] = ("wards", "ward_names", "wards_2024", "ward_name", "ward")
#: Accepted names of the optional column of wards *next to* the place (``"; "``-separated), e.g.
#: where a district centre sits on a ward boundary.
ADJACENT_WARD_COLUMNS: tuple[str, ...] = ("adjacent_wards", "adjacent_wards_2024")
_WARD_PATTERN = r"wards?(_names?)?(_\d{4})?"
_ADJACENT_PATTERN = r"adjacent_wards?(_names?)?(_\d{4})?"

#: Columns of the frame returned by :func:`face_validity`, in order.
FACE_VALIDITY_COLUMNS: tuple[str, ...] = (
    "place",
    "wards",
    "n_lsoas",
    "n_selected",
    "in_priority",
    "neighbourhoods",
    "share_of_lsoas_selected",
    "best_rank",
    "median_rank",
    "gi_hot_share",
    "main_drivers",
    "unmatched_wards",
    "adjacent_neighbourhoods",
    "shared_with",
    "source",
    "explanation",
)

_LSOA_COLUMNS = ("ward_name", "rank", "neighbourhood_id")
# One driver in a ``top_drivers`` string: "Violence harm 41%" or "Violence harm (41%)".
_DRIVER = re.compile(r"\s*(.+?)\s*\(?\s*-?\d+(?:\.\d+)?\s*%\s*\)?\s*(?:[,;]|$)")


# --------------------------------------------------------------------------------------------
# Small helpers


def normalise_ward(name: Any) -> str:
    """Comparable form of a ward name: lower case, ``&`` as ``and``, no punctuation.

    Parameters
    ----------
    name : object
        A ward name (anything else gives ``""``).

    Returns
    -------
    str
        E.g. ``"Selhurst & Thornton Heath"`` -> ``"selhurst and thornton heath"``.
    """
    if not isinstance(name, str):
        return ""
    text = name.casefold().replace("&", " and ")
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def ordinal(n: int) -> str:
    """English ordinal of a positive integer: 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st ...

    Parameters
    ----------
    n : int
        The number.

    Returns
    -------
    str
        The number with its suffix.
    """
    n = int(n)
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _rank_text(value: float) -> str:
    """A median rank as text: ``38``, or ``38.5`` between two ranks."""
    v = float(value)
    return f"{v:.0f}" if v.is_integer() else f"{v:.1f}"


def driver_names(text: Any) -> list[str]:
    """Names of the drivers listed in a ``top_drivers`` string, in the order given.

    Accepts the index's format (``"Violence harm 41%, Income deprivation 22%"``), the
    neighbourhood summary's (``"Violence Against the Person (52%), ..."``) and plain lists
    separated by commas or semicolons.

    Parameters
    ----------
    text : object
        The driver text (missing values give ``[]``).

    Returns
    -------
    list of str
        Driver names without their percentages.
    """
    if not isinstance(text, str) or not text.strip():
        return []
    text = text.strip()
    if "%" in text:
        names = [m.group(1).strip() for m in _DRIVER.finditer(text)]
        names = [n for n in names if n]
        if names:
            return names
    return [part.strip() for part in re.split(r"[;,]", text) if part.strip()]


def _split_wards(value: Any) -> list[str]:
    if not isinstance(value, str):
        return []
    return [w.strip() for w in value.split(";") if w.strip()]


def _find_column(places: pd.DataFrame, preferred: Sequence[str], pattern: str) -> str | None:
    for name in preferred:
        if name in places.columns:
            return name
    regex = re.compile(pattern)
    for name in places.columns:
        if isinstance(name, str) and regex.fullmatch(name.casefold()):
            return name
    return None


def _ward_column(places: pd.DataFrame) -> str:
    found = _find_column(places, WARD_COLUMNS, _WARD_PATTERN)
    if found is None:
        raise ValueError(
            f"places needs a ward column (one of {list(WARD_COLUMNS)}, optionally with a year "
            f"suffix such as 'wards_2024'); it has {[str(c) for c in places.columns]}"
        )
    return found


def _main_drivers(ranked: pd.DataFrame, n: int = 2) -> list[str]:
    """Most common first driver among ``ranked`` (sorted best rank first), then the next.

    Drivers are ordered by how many of the LSOAs list them first, then by how many list them at
    all, then by the best rank at which they appear.
    """
    if "top_drivers" not in ranked.columns:
        return []
    first: dict[str, int] = {}
    anywhere: dict[str, int] = {}
    seen_at: dict[str, int] = {}
    for position, text in enumerate(ranked["top_drivers"]):
        names = driver_names(text)
        if names:
            first[names[0]] = first.get(names[0], 0) + 1
        for name in dict.fromkeys(names):
            anywhere[name] = anywhere.get(name, 0) + 1
            seen_at.setdefault(name, position)
    order = sorted(anywhere, key=lambda d: (-first.get(d, 0), -anywhere[d], seen_at[d]))
    return order[:n]


def _quoted_names(names: Sequence[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _touching(
    codes: Sequence[str],
    neighbours: Mapping[str, Sequence[str]],
    nb_of: Mapping[str, int],
) -> dict[str, list[int]]:
    """For each code, the neighbourhood ids of its neighbours (in order, unique)."""
    out: dict[str, list[int]] = {}
    for code in codes:
        ids = [nb_of.get(str(other), 0) for other in neighbours.get(str(code), ())]
        ids = list(dict.fromkeys(i for i in ids if i))
        if ids:
            out[str(code)] = ids
    return out


# --------------------------------------------------------------------------------------------
# The table


def face_validity(
    places: pd.DataFrame,
    lsoas: pd.DataFrame,
    neighbourhoods: pd.DataFrame,
    *,
    neighbours: Mapping[str, Sequence[str]] | None = None,
    top_share: float = 0.2,
    top_ranked: int = 3,
) -> pd.DataFrame:
    """Compare the places residents named as unsafe with the index and the priority neighbourhoods.

    Parameters
    ----------
    places : pandas.DataFrame
        One row per named place: ``place`` and the wards it lies in, ``wards`` (or
        ``ward_names``, ``wards_2024``, ...; see :data:`WARD_COLUMNS`; several separated by
        ``";"``). An optional ``adjacent_wards`` (or ``adjacent_wards_2024``) column names
        wards next to the place, e.g. where a district centre sits on a ward boundary. An
        optional ``source`` column (e.g. ``"Safer Croydon Partnership 2021 surveys"``) is
        carried through; other columns (``ward_codes_2024``, ``notes``) are ignored.
    lsoas : pandas.DataFrame
        Per LSOA, indexed by LSOA code (or with an ``lsoa_code`` column): ``ward_name``,
        ``rank`` (1 = highest priority), ``neighbourhood_id`` (0 = in none) and optionally
        ``lsoa_name``, ``score``, ``top_drivers`` (text such as ``"Violence harm 41%, ..."``)
        and ``gi_bin`` (-3..3).
    neighbourhoods : pandas.DataFrame
        Indexed by ``neighbourhood_id`` (or with that column), with ``name``.
    neighbours : mapping, optional
        LSOA code -> codes of the LSOAs it touches (e.g.
        :func:`priority_index.selection.queen_neighbours`). When given, a place whose
        high-ranking LSOA touches a priority neighbourhood it is not part of is explained by
        the rule that keeps neighbourhoods apart.
    top_share : float, optional
        Share of LSOAs at the top of the index from which neighbourhoods grow (the selection
        rule's growth threshold; 0.2 = the top 20%, the default rule).
    top_ranked : int, optional
        How many of a place's best-ranked LSOAs give its ``main_drivers`` when none of its
        LSOAs is in a neighbourhood or the top share.

    Returns
    -------
    pandas.DataFrame
        One row per place, in input order, with the columns of
        :data:`FACE_VALIDITY_COLUMNS`: ``place``; ``wards`` (as given, ``"; "``-joined);
        ``n_lsoas`` (LSOAs in those wards); ``n_selected`` (how many of them are in a priority
        neighbourhood); ``in_priority`` (any of them is: a weak test, one LSOA suffices);
        ``neighbourhoods`` (their names, ``"; "``); ``share_of_lsoas_selected``;
        ``best_rank``; ``median_rank``; ``gi_hot_share`` (share with ``gi_bin >= 2``, NaN without
        Gi* bins); ``main_drivers`` (up to two driver names, ``"; "``, most common first driver
        among the place's top-ranked LSOAs: those in a neighbourhood if any, else those in the
        top share, else its ``top_ranked`` best); ``unmatched_wards`` (ward names matching no
        LSOA); ``adjacent_neighbourhoods`` (other priority neighbourhoods with LSOAs in the
        adjacent wards, ``"; "``); ``shared_with`` (other places of the list sharing a ward
        with this one, ``"; "``: their LSOAs are counted for both); ``source`` (the places'
        ``source`` column, ``""`` without one); ``explanation`` (plain words, with the
        median rank of the place's LSOAs; for a place outside the neighbourhoods it also
        names those next door). Places whose wards match no LSOA have ``n_lsoas`` 0,
        missing ranks and an explanation saying so.

    Raises
    ------
    ValueError
        Missing columns, or ``top_share`` outside (0, 1].
    """
    if not 0 < top_share <= 1:
        raise ValueError(f"top_share must be in (0, 1], got {top_share!r}")
    if "place" not in places.columns:
        raise ValueError(f"places needs a 'place' column; it has {list(places.columns)}")
    ward_col = _ward_column(places)
    adjacent_col = _find_column(places, ADJACENT_WARD_COLUMNS, _ADJACENT_PATTERN)

    table = lsoas.copy()
    if "lsoa_code" in table.columns:
        table = table.set_index("lsoa_code")
    missing = [c for c in _LSOA_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"lsoas lacks column(s) {missing}")
    table.index = table.index.astype(str)
    table["rank"] = pd.to_numeric(table["rank"], errors="coerce")
    nb_ids = pd.to_numeric(table["neighbourhood_id"], errors="coerce").fillna(0).astype(int)
    table["neighbourhood_id"] = nb_ids
    table["_ward_key"] = [normalise_ward(w) for w in table["ward_name"]]
    table = table.sort_values("rank", kind="stable", na_position="last")

    nbhd = neighbourhoods
    if "neighbourhood_id" in nbhd.columns:
        nbhd = nbhd.set_index("neighbourhood_id")
    nb_names: dict[int, str] = {}
    for key, row in nbhd.iterrows():
        name = row.get("name") if "name" in nbhd.columns else None
        nb_names[int(key)] = str(name) if isinstance(name, str) and name else f"neighbourhood {key}"

    n_total = len(table)
    top_n = max(1, int(np.floor(top_share * n_total + 1e-9)))
    top_pct = f"{100 * top_share:g}%"
    n_nine = sum(1 for i in nb_names if i > 0) or int(nb_ids[nb_ids > 0].nunique())
    the_n = "the nine" if n_nine == 9 else f"the {n_nine} priority neighbourhoods"
    nb_of = {code: int(i) for code, i in nb_ids.items() if i}
    has_gi = "gi_bin" in table.columns
    source_col = "source" if "source" in places.columns else None

    names_in_order = [str(p).strip() if not pd.isna(p) else "" for p in places["place"].tolist()]
    ward_keys = [
        {normalise_ward(w) for w in _split_wards(value)} for value in places[ward_col].tolist()
    ]

    rows: list[dict[str, Any]] = []
    for position, (_, place) in enumerate(places.iterrows()):
        name = names_in_order[position]
        wards = _split_wards(place[ward_col])
        keys = {normalise_ward(w): w for w in wards}
        shared = [
            other
            for j, other in enumerate(names_in_order)
            if j != position and ward_keys[j] & ward_keys[position] and other != name
        ]
        source = place[source_col] if source_col is not None else ""
        mine = table[table["_ward_key"].isin(list(keys))]
        found = set(mine["_ward_key"])
        unmatched = [w for k, w in keys.items() if k not in found]
        row: dict[str, Any] = {
            "place": name,
            "wards": "; ".join(wards),
            "n_lsoas": len(mine),
            "n_selected": 0,
            "in_priority": False,
            "neighbourhoods": "",
            "share_of_lsoas_selected": np.nan,
            "best_rank": pd.NA,
            "median_rank": np.nan,
            "gi_hot_share": np.nan,
            "main_drivers": "",
            "unmatched_wards": "; ".join(unmatched),
            "adjacent_neighbourhoods": "",
            "shared_with": "; ".join(dict.fromkeys(shared)),
            "source": str(source).strip() if isinstance(source, str) else "",
            "explanation": "",
        }
        next_door = table.iloc[:0]
        if adjacent_col is not None:
            adjacent = {normalise_ward(w) for w in _split_wards(place[adjacent_col])}
            next_door = table[table["_ward_key"].isin(adjacent - set(keys))]
            next_door = next_door[
                (next_door["neighbourhood_id"] > 0) & ~next_door.index.isin(mine.index)
            ]
        own_ids = {int(i) for i in mine["neighbourhood_id"] if i > 0}
        next_door = next_door[~next_door["neighbourhood_id"].isin(own_ids)]
        adjacent_note = ""
        if not next_door.empty:
            adj_ids = list(dict.fromkeys(int(i) for i in next_door["neighbourhood_id"]))
            adj_names = [nb_names.get(i, f"neighbourhood {i}") for i in adj_ids]
            adj_wards = list(dict.fromkeys(str(w) for w in next_door["ward_name"]))
            row["adjacent_neighbourhoods"] = "; ".join(adj_names)
            verb = "has" if len(adj_wards) == 1 else "have"
            adjacent_note = (
                f" Next door, {_quoted_names(adj_wards)} {verb} LSOAs in "
                f"{_quoted_names(adj_names)}."
            )
        if mine.empty:
            if wards:
                row["explanation"] = (
                    f"No LSOA matched: ward(s) {_quoted_names(wards)} are not among the index's "
                    "wards (check the spelling or the ward boundaries' year)."
                )
            else:
                row["explanation"] = "No LSOA matched: no ward is given for this place."
            row["explanation"] += adjacent_note
            rows.append(row)
            continue

        ranks = mine["rank"]
        selected = mine[mine["neighbourhood_id"] > 0]
        in_top = mine[ranks <= top_n]
        ids = list(dict.fromkeys(int(i) for i in selected["neighbourhood_id"]))
        names = [nb_names.get(i, f"neighbourhood {i}") for i in ids]
        if not selected.empty:
            ranked = selected
        elif not in_top.empty:
            ranked = in_top
        else:
            ranked = mine.head(top_ranked)
        drivers = _main_drivers(ranked)
        best = ranks.min()
        row.update(
            n_selected=len(selected),
            in_priority=not selected.empty,
            neighbourhoods="; ".join(names),
            share_of_lsoas_selected=len(selected) / len(mine),
            best_rank=int(best) if pd.notna(best) else pd.NA,
            median_rank=float(ranks.median()) if ranks.notna().any() else np.nan,
            main_drivers="; ".join(drivers),
        )
        if has_gi:
            gi = pd.to_numeric(mine["gi_bin"], errors="coerce")
            row["gi_hot_share"] = float((gi >= 2).sum() / len(mine))
        driven = f"; driven by {' and '.join(drivers)}" if drivers else ""
        of_n = f"of {n_total}"
        median_note = (
            f"; the median rank of its LSOAs is {_rank_text(ranks.median())} {of_n}"
            if ranks.notna().any()
            else ""
        )
        if not selected.empty:
            verb = "forms" if len(selected) == 1 else "form"
            row["explanation"] = (
                f"In {the_n}: {len(selected)} of its {len(mine)} LSOAs {verb} part of "
                f"{_quoted_names(names)}{driven}{median_note}."
            )
        else:
            touching = _touching(list(in_top.index), neighbours, nb_of) if neighbours else {}
            if touching:
                code = next(iter(touching))
                touched = [nb_names.get(i, f"neighbourhood {i}") for i in touching[code]]
                word = "neighbourhood" if len(touched) == 1 else "neighbourhoods"
                row["explanation"] = (
                    f"Not in {the_n} although its LSOA ranked {ordinal(mine.loc[code, 'rank'])} "
                    f"{of_n}: it touches {word} {_quoted_names(touched)} and neighbourhoods are "
                    f"kept apart{driven}."
                )
            elif not in_top.empty:
                verb = "is" if len(in_top) == 1 else "are"
                row["explanation"] = (
                    f"Not in {the_n} although {len(in_top)} of its {len(mine)} LSOAs {verb} in "
                    f"the top {top_pct} (the best {ordinal(best)} {of_n}): {the_n} were filled by "
                    "higher-scoring areas first, or they have too few high-scoring neighbours to "
                    f"grow a neighbourhood{driven}."
                )
            elif pd.notna(best):
                row["explanation"] = (
                    f"Not in {the_n}: its best LSOA ranks {ordinal(best)} {of_n} ({the_n} "
                    f"take LSOAs in the top {top_pct}); its recorded harm and need are lower "
                    "than its reputation."
                )
            else:
                row["explanation"] = f"Not in {the_n}: its LSOAs have no rank."
        if unmatched:
            row["explanation"] += f" Ward(s) not found: {_quoted_names(unmatched)}."
        if selected.empty:
            row["explanation"] += adjacent_note
        rows.append(row)

    out = pd.DataFrame(rows, columns=list(FACE_VALIDITY_COLUMNS))
    out["n_lsoas"] = out["n_lsoas"].astype("int64")
    out["n_selected"] = out["n_selected"].astype("int64")
    out["in_priority"] = out["in_priority"].astype(bool)
    out["best_rank"] = out["best_rank"].astype("Int64")
    for col in ("share_of_lsoas_selected", "median_rank", "gi_hot_share"):
        out[col] = out[col].astype(float)
    return out
