"""Canonical crime groups and the mapping from each source's own crime types.

police.uk publishes 14 crime types, the Metropolitan Police's LSOA tables 10 published major
categories (sexual offences are withheld at LSOA level), and the partnership's Strategic
Assessment reports harm by the Met's major categories. Every stage works on the canonical group
identifiers below; the mapping from source values lives in ``data/crime_groups.csv`` so a force
with other labels can extend it without touching code.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import pandas as pd

#: Canonical group id -> label used in tables and maps (the Strategic Assessment's wording).
GROUP_LABELS: dict[str, str] = {
    "arson_criminal_damage": "Arson and Criminal Damage",
    "burglary": "Burglary",
    "drugs": "Drug Offences",
    "misc_crimes": "Misc. Crimes Against Society",
    "weapons": "Possession of Weapons",
    "public_order": "Public Order Offences",
    "robbery": "Robbery",
    "sexual_offences": "Sexual Offences",
    "theft": "Theft",
    "vehicle_offences": "Vehicle Offences",
    "violence": "Violence Against the Person",
    "violence_and_sexual": "Violence and Sexual Offences",
    "asb": "Anti-social Behaviour",
}

#: Groups counted as crime (everything but anti-social behaviour).
CRIME_GROUPS: tuple[str, ...] = tuple(g for g in GROUP_LABELS if g != "asb")


@cache
def source_mapping(source: str) -> dict[str, str]:
    """Return ``{source value: canonical group}`` for one source vocabulary.

    Parameters
    ----------
    source
        ``"police_uk"`` (the ``Crime type`` column of street-level files) or ``"met_major"``
        (the ``Major Category`` column of the Met's LSOA tables).

    Returns
    -------
    dict
        Mapping from the source's exact label to a key of :data:`GROUP_LABELS`.
    """
    path = resources.files("priority_index") / "data" / "crime_groups.csv"
    with path.open("r", encoding="utf-8") as fh:
        table = pd.read_csv(fh, dtype=str)
    rows = table[table["source"] == source]
    if rows.empty:
        raise KeyError(f"no crime-group mapping for source {source!r}")
    return dict(zip(rows["source_value"], rows["crime_group"], strict=True))
