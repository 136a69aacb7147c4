"""A deterministic fictional borough, written in the exact formats the real downloads come in.

Everything here is **fictional and generated**: the borough, its areas, streets, crimes,
deprivation and population are drawn from ``numpy.random.default_rng(seed)``. The same seed and
parameters give byte-identical files. The generator feeds the tests, ``pipelines/example.toml``
and the England-and-Wales-scale benchmark (``n_lsoas=35_000``, about 6 million records).

What :func:`write_borough` writes under ``out_dir`` (``parts`` selects the groups):

``boundaries`` -- ``boundaries/fictional_lsoa21.gpkg`` (layer ``fictional_lsoa21``) and
``boundaries/fictional_wards.gpkg`` (layer ``wards``), EPSG:27700, MultiPolygon.
    LSOA fields as the ONS/London Datastore 2021 LSOA boundaries: ``LSOA21CD, LSOA21NM, MSOA21CD,
    MSOA21NM, LAD22CD, LAD22NM``. Ward fields as ONS's May 2024 ward boundaries:
    ``WD24CD, WD24NM, WD24NMW`` (a single space, as ONS publishes it for English wards),
    ``BNG_E, BNG_N, LONG, LAT`` (an inside point) and ``GlobalID`` (``{GUID}``). LSOAs are Voronoi
    cells of seeds placed by a density-weighted Lloyd relaxation (smaller LSOAs near the town
    centres, about equal populations), clipped to a wobbly borough outline; wards are dissolved
    groups of about ten LSOAs, MSOAs groups of about five.
``lookups`` -- ``lsoa_ward_lookup.csv``: the layout of ONS's ``LSOA21_to_WD24_to_LAD24_best_fit``
    file, UTF-8 with a byte-order mark, columns ``LSOA21CD, LSOA21NM, LSOA21NMW, WD24CD, WD24NM,
    WD24NMW, LAD24CD, LAD24NM, LAD24NMW, ObjectId`` (the Welsh-name columns empty).
``police_uk`` -- ``police_uk/YYYY-MM/YYYY-MM-fictional-street.csv``, one per month, exactly as the
    police.uk archive unpacks: header ``Crime ID,Month,Reported by,Falls within,Longitude,
    Latitude,Location,LSOA code,LSOA name,Crime type,Last outcome category,Context``, CRLF line
    ends, no quoting, 64-hex Crime IDs (empty for anti-social behaviour), ``Fictional
    Constabulary`` as Reported by and Falls within, WGS84 longitude/latitude with 6 decimals,
    ``On or near <street or public place>``, the LSOA containing the point, all 14 crime types,
    police.uk outcome categories (empty for ASB; ``Under investigation`` for part of the last
    months) and an empty Context. Rows are ordered as police.uk orders them: by LSOA name, then
    crime type in police.uk's order (:data:`CRIME_TYPES`), rows without a location last.
``iod`` -- ``iod2025_file7.csv``: the English Indices of Deprivation 2025 File 7 ("All ranks,
    deciles and scores for the indices of deprivation, and population denominators") layout, 56
    columns (listed below: the IoD2019 File 7 naming, which IoD2025 kept, with the
    2021/2024 geography years and mid-2022 denominators).
    The Children and Young People decile header is cut at 80 characters ("...10% of LSO") in the
    published IoD2025 CSV; it is reproduced as published. Ranks are national (1 to 33,755, or to
    ``n_lsoas`` when that is larger), deciles national, and scores follow the national
    distribution of IoD2025 scores (the sub-domain and IDACI/IDAOPI distributions are
    approximations). Deprivation is spatially smooth, higher near the centres, and correlated
    with the generated crime.
``census`` -- ``census2021_residents_by_age.csv``: the long layout of the Census 2021 usual
    residents by six age bands (``lsoa21_code, lsoa21_name, age_group, usual_residents``, values
    written as ``125.0``), about 1,500 to 2,000 residents per LSOA.
``README.md`` -- always written: says the data are fictional and generated, with the seed and
    parameters.

The IoD2025 File 7 header written, in order::

  LSOA code (2021)
  LSOA name (2021)
  Local Authority District code (2024)
  Local Authority District name (2024)
  Index of Multiple Deprivation (IMD) Score
  Index of Multiple Deprivation (IMD) Rank (where 1 is most deprived)
  Index of Multiple Deprivation (IMD) Decile (where 1 is most deprived 10% of LSOAs)
  Income Score (rate)
  Income Rank (where 1 is most deprived)
  Income Decile (where 1 is most deprived 10% of LSOAs)
  Employment Score (rate)
  Employment Rank (where 1 is most deprived)
  Employment Decile (where 1 is most deprived 10% of LSOAs)
  Education, Skills and Training Score
  Education, Skills and Training Rank (where 1 is most deprived)
  Education, Skills and Training Decile (where 1 is most deprived 10% of LSOAs)
  Health Deprivation and Disability Score
  Health Deprivation and Disability Rank (where 1 is most deprived)
  Health Deprivation and Disability Decile (where 1 is most deprived 10% of LSOAs)
  Crime Score
  Crime Rank (where 1 is most deprived)
  Crime Decile (where 1 is most deprived 10% of LSOAs)
  Barriers to Housing and Services Score
  Barriers to Housing and Services Rank (where 1 is most deprived)
  Barriers to Housing and Services Decile (where 1 is most deprived 10% of LSOAs)
  Living Environment Score
  Living Environment Rank (where 1 is most deprived)
  Living Environment Decile (where 1 is most deprived 10% of LSOAs)
  Income Deprivation Affecting Children Index (IDACI) Score (rate)
  Income Deprivation Affecting Children Index (IDACI) Rank (where 1 is most deprived)
  Income Deprivation Affecting Children Index (IDACI) Decile (where 1 is most deprived 10% of LSOAs)
  Income Deprivation Affecting Older People (IDAOPI) Score (rate)
  Income Deprivation Affecting Older People (IDAOPI) Rank (where 1 is most deprived)
  Income Deprivation Affecting Older People (IDAOPI) Decile (where 1 is most deprived 10% of LSOAs)
  Children and Young People Sub-domain Score
  Children and Young People Sub-domain Rank (where 1 is most deprived)
  Children and Young People Sub-domain Decile (where 1 is most deprived 10% of LSO
  Adult Skills Sub-domain Score
  Adult Skills Sub-domain Rank (where 1 is most deprived)
  Adult Skills Sub-domain Decile (where 1 is most deprived 10% of LSOAs)
  Geographical Barriers Sub-domain Score
  Geographical Barriers Sub-domain Rank (where 1 is most deprived)
  Geographical Barriers Sub-domain Decile (where 1 is most deprived 10% of LSOAs)
  Wider Barriers Sub-domain Score
  Wider Barriers Sub-domain Rank (where 1 is most deprived)
  Wider Barriers Sub-domain Decile (where 1 is most deprived 10% of LSOAs)
  Indoors Sub-domain Score
  Indoors Sub-domain Rank (where 1 is most deprived)
  Indoors Sub-domain Decile (where 1 is most deprived 10% of LSOAs)
  Outdoors Sub-domain Score
  Outdoors Sub-domain Rank (where 1 is most deprived)
  Outdoors Sub-domain Decile (where 1 is most deprived 10% of LSOAs)
  Total population: mid 2022
  Dependent Children aged 0-15: mid 2022
  Older population aged 60 and over: mid 2022
  Working age population 18-66 (for use with Employment Deprivation Domain): mid 2022

Codes look like ONS codes but cannot collide with real ones: the highest real English LSOA21
code is E01035762 (``LSOA21_to_WD24_to_LAD24_best_fit_EW.csv``), so LSOAs are ``E01999001`` ...
``E01999999`` for up to 999 LSOAs and ``E01900000`` + index beyond (up to 99,999 LSOAs);
MSOAs ``E02999xxx`` / ``E029xxxxx`` and wards ``E05999xxx`` / ``E059xxxxx``, far above the real
ranges (the highest ward code in that lookup is E05015926), and the borough ``E09999999``
"Fictional Borough (generated)" (real London boroughs end at E09000033). Records placed outside
the borough carry codes of a fictional neighbour, ``E01800001`` ..., "Fictional Neighbour 001A".

The point pattern is a Cox process discretised onto "map points", as police.uk anonymises every
record to a street centre or public place: 15 to 25 map points per LSOA, each with a fictional
street name or a public-place label. A crime type's intensity at a map point is a mix of the
resident population, Gaussian kernels around the town centres, a night-time-economy strip
through the main centres, and a Thomas (Neyman-Scott) cluster field (Gaussian offspring around
parent points, snapped to map points), times ``exp(beta * deprivation)``, a persistent
micro-place effect and place multipliers (shoplifting at supermarkets, vehicle crime at car
parks, violence at night clubs). Violence, robbery, public order and ASB concentrate near the
centres; burglary and vehicle crime follow the residential population.

``defects=True`` adds realistic record defects, each row with exactly one reason (keys of
``FictionalBorough.defect_counts``, named as the police.uk reader's quarantine reasons):

``no_coordinates``
    crime rows with empty Longitude, Latitude, LSOA code and name and Location ``No Location``.
``duplicate_crime_id``
    a second row in the same month file with the Crime ID, month and crime type of a clean row
    (another map point of the same LSOA, sometimes another outcome); the count is of the later
    row of each pair in file order.
``outside_study_area``
    extra rows at points outside the borough outline, stating a neighbour LSOA (``E01800xxx``).
``malformed_month``
    the Month field written ``MM/YYYY`` (as a spreadsheet re-save does).
``unknown_crime_type``
    ``Public disorder and weapons``, a police.uk crime type retired in 2013.
``lsoa_mismatch``
    the stated LSOA is another borough LSOA at least :data:`FAR_M` metres from the point.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyogrio
import shapely
from pyproj import Transformer
from scipy.spatial import cKDTree

from ..sources.police_uk import COLUMNS as _POLICE_UK_HEADER

__all__ = [
    "AGE_GROUPS",
    "CRIME_TYPES",
    "DEFECT_REASONS",
    "FAR_M",
    "FORCE",
    "IOD_COLUMNS",
    "LAD_CODE",
    "LAD_NAME",
    "PARTS",
    "POLICE_UK_COLUMNS",
    "FictionalBorough",
    "generate_borough",
    "main",
    "write_borough",
]

# ----------------------------------------------------------------------------- constants

#: police.uk street-level header, in order (the reader's own definition).
POLICE_UK_COLUMNS: tuple[str, ...] = tuple(_POLICE_UK_HEADER)

#: police.uk's 14 crime types in the order police.uk lists them within an LSOA.
CRIME_TYPES: tuple[str, ...] = (
    "Anti-social behaviour",
    "Bicycle theft",
    "Burglary",
    "Criminal damage and arson",
    "Drugs",
    "Other theft",
    "Possession of weapons",
    "Public order",
    "Robbery",
    "Shoplifting",
    "Theft from the person",
    "Vehicle crime",
    "Violence and sexual offences",
    "Other crime",
)
ASB = 0
UNKNOWN_CRIME_TYPE = "Public disorder and weapons"

FORCE = "Fictional Constabulary"
LAD_CODE = "E09999999"
LAD_NAME = "Fictional Borough (generated)"
NEIGHBOUR_NAME = "Fictional Neighbour"
NO_LOCATION = "No Location"

#: Census 2021 six age bands, as ONS labels them.
AGE_GROUPS: tuple[str, ...] = (
    "Aged 15 years and under",
    "Aged 16 to 24 years",
    "Aged 25 to 34 years",
    "Aged 35 to 49 years",
    "Aged 50 to 64 years",
    "Aged 65 years and over",
)
_AGE_SHARES = np.array([0.185, 0.106, 0.135, 0.193, 0.195, 0.186])

#: Defect reasons (the police.uk reader's quarantine reason codes).
DEFECT_REASONS: tuple[str, ...] = (
    "no_coordinates",
    "duplicate_crime_id",
    "outside_study_area",
    "malformed_month",
    "unknown_crime_type",
    "lsoa_mismatch",
)
_DEFECT_RATES = {
    "no_coordinates": 0.02,
    "duplicate_crime_id": 0.003,
    "outside_study_area": 0.005,
    "malformed_month": 0.0005,
    "unknown_crime_type": 0.0005,
    "lsoa_mismatch": 0.002,
}
#: A ``lsoa_mismatch`` defect states an LSOA at least this far (m) from the point.
FAR_M = 1000.0

#: What :func:`write_borough` can write.
PARTS: tuple[str, ...] = ("boundaries", "lookups", "police_uk", "iod", "census")

_RANK = "Rank (where 1 is most deprived)"
_DECILE = "Decile (where 1 is most deprived 10% of LSOAs)"
# domain key, score header, stem of the rank/decile headers
_IOD_DOMAINS: tuple[tuple[str, str, str], ...] = (
    ("imd", "Index of Multiple Deprivation (IMD) Score", "Index of Multiple Deprivation (IMD)"),
    ("income", "Income Score (rate)", "Income"),
    ("employment", "Employment Score (rate)", "Employment"),
    ("education", "Education, Skills and Training Score", "Education, Skills and Training"),
    (
        "health",
        "Health Deprivation and Disability Score",
        "Health Deprivation and Disability",
    ),
    ("crime", "Crime Score", "Crime"),
    ("barriers", "Barriers to Housing and Services Score", "Barriers to Housing and Services"),
    ("living_env", "Living Environment Score", "Living Environment"),
    (
        "idaci",
        "Income Deprivation Affecting Children Index (IDACI) Score (rate)",
        "Income Deprivation Affecting Children Index (IDACI)",
    ),
    (
        "idaopi",
        "Income Deprivation Affecting Older People (IDAOPI) Score (rate)",
        "Income Deprivation Affecting Older People (IDAOPI)",
    ),
    (
        "cyp",
        "Children and Young People Sub-domain Score",
        "Children and Young People Sub-domain",
    ),
    ("adult_skills", "Adult Skills Sub-domain Score", "Adult Skills Sub-domain"),
    (
        "geo_barriers",
        "Geographical Barriers Sub-domain Score",
        "Geographical Barriers Sub-domain",
    ),
    ("wider_barriers", "Wider Barriers Sub-domain Score", "Wider Barriers Sub-domain"),
    ("indoors", "Indoors Sub-domain Score", "Indoors Sub-domain"),
    ("outdoors", "Outdoors Sub-domain Score", "Outdoors Sub-domain"),
)
_IOD_POPULATION = (
    "Total population: mid 2022",
    "Dependent Children aged 0-15: mid 2022",
    "Older population aged 60 and over: mid 2022",
    "Working age population 18-66 (for use with Employment Deprivation Domain): mid 2022",
)
# The published IoD2025 File 7 CSV cuts this one header at 80 characters.
_TRUNCATED = {"cyp": f"Children and Young People Sub-domain {_DECILE}"[:80]}


def _iod_columns() -> tuple[str, ...]:
    cols = [
        "LSOA code (2021)",
        "LSOA name (2021)",
        "Local Authority District code (2024)",
        "Local Authority District name (2024)",
    ]
    for key, score, stem in _IOD_DOMAINS:
        cols += [score, f"{stem} {_RANK}", _TRUNCATED.get(key, f"{stem} {_DECILE}")]
    return (*cols, *_IOD_POPULATION)


#: IoD2025 File 7 header, in order (56 columns).
IOD_COLUMNS: tuple[str, ...] = _iod_columns()
_IOD_NATIONAL_N = 33_755

# National score distributions at these probabilities (IoD2025, England): from the published
# scores for the IMD and the seven domains; approximations for IDACI, IDAOPI and sub-domains.
_Q_PROBS = np.array([0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1])
_Z_KNOTS = [
    -3.0,
    -1.9,
    -1.37,
    -1.09,
    -0.74,
    -0.48,
    -0.25,
    -0.02,
    0.21,
    0.46,
    0.74,
    1.13,
    1.44,
    2.0,
    3.4,
]
_Q_KNOTS: dict[str, list[float]] = {
    "imd": [0.165, 1.951, 3.769, 5.462, 8.379, 11.135, 14.14, 17.45, 21.539, 26.604, 33.51,
            44.912, 54.256, 68.773, 94.223],
    "income": [0.002, 0.028, 0.05, 0.067, 0.093, 0.118, 0.149, 0.184, 0.231, 0.289, 0.362,
               0.464, 0.544, 0.666, 0.998],
    "employment": [0.002, 0.027, 0.041, 0.051, 0.064, 0.078, 0.092, 0.11, 0.132, 0.161, 0.199,
                   0.257, 0.306, 0.391, 0.978],
    "education": [0.004, 0.459, 1.694, 3.178, 6.071, 9.077, 12.566, 16.545, 21.294, 27.497,
                  35.844, 49.269, 59.252, 74.799, 99.613],
    "health": [-3.1, -1.974, -1.409, -1.111, -0.755, -0.493, -0.261, -0.03, 0.202, 0.464,
               0.767, 1.173, 1.497, 2.05, 3.309],
    "crime": [-3.293, -1.824, -1.342, -1.078, -0.736, -0.479, -0.239, -0.007, 0.22, 0.458,
              0.722, 1.092, 1.387, 1.942, 3.545],
    "barriers": [1.49, 4.507, 7.652, 9.759, 12.816, 15.407, 17.728, 20.103, 22.743, 25.735,
                 29.742, 36.24, 41.591, 49.673, 63.502],
    "living_env": [0.055, 0.997, 2.632, 4.227, 7.08, 10.135, 13.664, 17.849, 22.584, 28.443,
                   35.371, 44.961, 53.007, 67.797, 85.733],
    "idaci": [0.0, 0.015, 0.03, 0.045, 0.07, 0.095, 0.12, 0.15, 0.19, 0.24, 0.3, 0.39, 0.46,
              0.58, 0.9],
    "idaopi": [0.0, 0.02, 0.04, 0.055, 0.075, 0.095, 0.115, 0.14, 0.17, 0.21, 0.26, 0.34,
               0.41, 0.56, 0.97],
    "cyp": _Z_KNOTS,
    "adult_skills": _Z_KNOTS,
    "geo_barriers": _Z_KNOTS,
    "wider_barriers": _Z_KNOTS,
    "indoors": _Z_KNOTS,
    "outdoors": _Z_KNOTS,
}  # fmt: skip
# IMD domain weights (income, employment, education, health, crime, barriers, living env.)
_IMD_WEIGHTS = {
    "income": 0.225,
    "employment": 0.225,
    "education": 0.135,
    "health": 0.135,
    "crime": 0.093,
    "barriers": 0.093,
    "living_env": 0.093,
}

# Per crime type (CRIME_TYPES order): share of all records, then the weight of the resident
# population, the town-centre kernels, the night-time-economy strips and the Thomas cluster
# field, the deprivation slope, the exponent of the micro-place effect, the seasonal amplitude
# and its peak month. Shares: ASB a quarter of records; crime types in the proportions of the
# four forces' 2019 street files (violence and sexual offences 35% of crime).
# The kernel weights put about 40% of violence, 50% of robbery, 75% of shoplifting and 20% of
# burglary in the top tenth of LSOAs (Croydon, Lambeth, Southwark 2025: violence 25-32%,
# robbery 37-46%, theft 47-56%, burglary 26-27%).
_TYPE_PARAMS = np.array(
    [
        # share  res   cen   nte   clu   beta  hot  s_amp peak
        [0.2500, 1.0, 0.20, 0.10, 0.25, 0.50, 1.0, 0.15, 7],  # ASB
        [0.0107, 0.6, 0.50, 0.10, 0.15, 0.00, 1.0, 0.25, 7],  # Bicycle theft
        [0.0591, 1.0, 0.02, 0.00, 0.15, 0.35, 0.5, 0.08, 12],  # Burglary
        [0.0840, 1.0, 0.06, 0.03, 0.20, 0.55, 0.8, 0.03, 7],  # Criminal damage and arson
        [0.0312, 0.8, 0.15, 0.10, 0.35, 0.60, 1.0, 0.03, 7],  # Drugs
        [0.0679, 0.6, 0.50, 0.10, 0.15, 0.20, 1.0, 0.03, 12],  # Other theft
        [0.0069, 0.9, 0.15, 0.15, 0.25, 0.60, 1.0, 0.03, 7],  # Possession of weapons
        [0.0788, 1.0, 0.20, 0.20, 0.20, 0.50, 1.0, 0.06, 7],  # Public order
        [0.0089, 0.7, 0.35, 0.20, 0.30, 0.60, 1.0, 0.03, 12],  # Robbery
        [0.0512, 0.3, 0.80, 0.05, 0.10, 0.20, 1.2, 0.05, 12],  # Shoplifting
        [0.0109, 0.3, 0.80, 0.40, 0.10, 0.10, 1.0, 0.05, 12],  # Theft from the person
        [0.0591, 1.0, 0.06, 0.02, 0.10, 0.35, 0.6, 0.03, 12],  # Vehicle crime
        [0.2655, 1.0, 0.15, 0.15, 0.20, 0.60, 1.0, 0.08, 7],  # Violence and sexual offences
        [0.0158, 1.0, 0.10, 0.05, 0.15, 0.45, 0.8, 0.03, 7],  # Other crime
    ]
)

#: police.uk public-place labels used as locations ("On or near Supermarket").
PLACES: tuple[str, ...] = (
    "Supermarket",
    "Parking Area",
    "Shopping Area",
    "Petrol Station",
    "Sports/Recreation Area",
    "Pedestrian Subway",
    "Nightclub",
    "Hospital",
    "Park/Open Space",
    "Further/Higher Educational Building",
    "Police Station",
    "Bus/Coach Station",
    "Theatre/Concert Hall",
    "Conference/Exhibition Centre",
)
# probability of each place at a central / a suburban map point that is a public place
_PLACE_P_CENTRAL = np.array([20, 10, 25, 3, 2, 5, 12, 2, 2, 4, 3, 8, 3, 1], dtype=float)
_PLACE_P_SUBURB = np.array([15, 20, 3, 15, 20, 8, 0.5, 2, 15, 5, 1, 2, 0.5, 0.2], dtype=float)
# place multipliers: crime type -> {place: multiplier}; streets are 1
_PLACE_MULT: dict[str, dict[str, float]] = {
    "Anti-social behaviour": {
        "Park/Open Space": 3,
        "Sports/Recreation Area": 3,
        "Shopping Area": 2,
        "Bus/Coach Station": 2,
    },
    "Bicycle theft": {
        "Bus/Coach Station": 4,
        "Further/Higher Educational Building": 4,
        "Shopping Area": 2,
        "Sports/Recreation Area": 2,
    },
    "Burglary": dict.fromkeys(PLACES, 0.3),
    "Criminal damage and arson": {"Parking Area": 2, "Sports/Recreation Area": 1.5},
    "Drugs": {"Park/Open Space": 2, "Police Station": 3, "Pedestrian Subway": 2},
    "Other theft": {"Shopping Area": 3, "Hospital": 3, "Supermarket": 2, "Parking Area": 1.5},
    "Possession of weapons": {"Police Station": 2, "Nightclub": 2},
    "Public order": {"Nightclub": 3, "Police Station": 3, "Hospital": 2},
    "Robbery": {"Pedestrian Subway": 4, "Bus/Coach Station": 3, "Shopping Area": 2},
    "Shoplifting": {
        **dict.fromkeys(PLACES, 0.5),
        "Supermarket": 25,
        "Shopping Area": 20,
        "Petrol Station": 6,
    },
    "Theft from the person": {
        "Nightclub": 5,
        "Shopping Area": 4,
        "Bus/Coach Station": 4,
        "Theatre/Concert Hall": 3,
    },
    "Vehicle crime": {"Parking Area": 8, "Petrol Station": 2},
    "Violence and sexual offences": {
        "Nightclub": 4,
        "Hospital": 4,
        "Police Station": 3,
        "Shopping Area": 1.5,
    },
    "Other crime": {"Police Station": 4, "Hospital": 2},
}

# Last outcome category by crime type (police.uk, four forces 2019; small categories pooled).
_OUTCOMES_RAW: dict[str, dict[str, float]] = {
    "Bicycle theft": {
        "Investigation complete; no suspect identified": 0.471,
        "Status update unavailable": 0.465,
        "Unable to prosecute suspect": 0.044,
        "Court result unavailable": 0.012,
        "Local resolution": 0.008,
    },
    "Burglary": {
        "Investigation complete; no suspect identified": 0.616,
        "Status update unavailable": 0.244,
        "Unable to prosecute suspect": 0.072,
        "Court result unavailable": 0.05,
        "Offender sent to prison": 0.01,
        "Local resolution": 0.008,
    },
    "Criminal damage and arson": {
        "Investigation complete; no suspect identified": 0.459,
        "Status update unavailable": 0.26,
        "Unable to prosecute suspect": 0.187,
        "Court result unavailable": 0.049,
        "Local resolution": 0.018,
        "Offender given a caution": 0.011,
        "Further investigation is not in the public interest": 0.008,
        "Formal action is not in the public interest": 0.008,
    },
    "Drugs": {
        "Court result unavailable": 0.297,
        "Offender given a drugs possession warning": 0.186,
        "Offender given a caution": 0.112,
        "Unable to prosecute suspect": 0.094,
        "Local resolution": 0.064,
        "Status update unavailable": 0.055,
        "Offender given penalty notice": 0.051,
        "Further action is not in the public interest": 0.037,
        "Formal action is not in the public interest": 0.034,
        "Investigation complete; no suspect identified": 0.02,
        "Further investigation is not in the public interest": 0.019,
        "Offender fined": 0.011,
        "Offender sent to prison": 0.01,
        "Offender given community sentence": 0.01,
    },
    "Other crime": {
        "Unable to prosecute suspect": 0.419,
        "Status update unavailable": 0.183,
        "Court result unavailable": 0.135,
        "Investigation complete; no suspect identified": 0.119,
        "Further investigation is not in the public interest": 0.05,
        "Action to be taken by another organisation": 0.039,
        "Formal action is not in the public interest": 0.015,
        "Offender given a caution": 0.012,
        "Local resolution": 0.012,
        "Offender given suspended prison sentence": 0.008,
        "Offender given community sentence": 0.008,
    },
    "Other theft": {
        "Investigation complete; no suspect identified": 0.504,
        "Status update unavailable": 0.318,
        "Unable to prosecute suspect": 0.131,
        "Court result unavailable": 0.02,
        "Local resolution": 0.015,
        "Offender given a caution": 0.006,
        "Suspect charged as part of another case": 0.006,
    },
    "Possession of weapons": {
        "Court result unavailable": 0.335,
        "Unable to prosecute suspect": 0.271,
        "Status update unavailable": 0.121,
        "Investigation complete; no suspect identified": 0.117,
        "Offender given a caution": 0.041,
        "Local resolution": 0.032,
        "Further investigation is not in the public interest": 0.021,
        "Formal action is not in the public interest": 0.021,
        "Offender given community sentence": 0.01,
        "Offender sent to prison": 0.009,
        "Offender given suspended prison sentence": 0.008,
        "Awaiting court outcome": 0.006,
        "Offender fined": 0.004,
        "Defendant found not guilty": 0.004,
    },
    "Public order": {
        "Unable to prosecute suspect": 0.395,
        "Status update unavailable": 0.266,
        "Investigation complete; no suspect identified": 0.185,
        "Court result unavailable": 0.076,
        "Further investigation is not in the public interest": 0.027,
        "Formal action is not in the public interest": 0.018,
        "Local resolution": 0.011,
        "Offender given a caution": 0.008,
        "Action to be taken by another organisation": 0.008,
        "Offender given penalty notice": 0.006,
    },
    "Robbery": {
        "Investigation complete; no suspect identified": 0.355,
        "Status update unavailable": 0.295,
        "Unable to prosecute suspect": 0.226,
        "Court result unavailable": 0.1,
        "Offender sent to prison": 0.012,
        "Suspect charged as part of another case": 0.006,
        "Awaiting court outcome": 0.006,
    },
    "Shoplifting": {
        "Investigation complete; no suspect identified": 0.352,
        "Status update unavailable": 0.222,
        "Court result unavailable": 0.183,
        "Unable to prosecute suspect": 0.126,
        "Local resolution": 0.031,
        "Further investigation is not in the public interest": 0.015,
        "Suspect charged as part of another case": 0.012,
        "Offender sent to prison": 0.011,
        "Formal action is not in the public interest": 0.011,
        "Offender given a caution": 0.01,
        "Offender given penalty notice": 0.008,
        "Offender given community sentence": 0.008,
        "Offender fined": 0.006,
        "Offender given conditional discharge": 0.005,
    },
    "Theft from the person": {
        "Investigation complete; no suspect identified": 0.648,
        "Status update unavailable": 0.244,
        "Unable to prosecute suspect": 0.086,
        "Court result unavailable": 0.015,
        "Local resolution": 0.007,
    },
    "Vehicle crime": {
        "Investigation complete; no suspect identified": 0.617,
        "Status update unavailable": 0.304,
        "Unable to prosecute suspect": 0.051,
        "Court result unavailable": 0.021,
        "Local resolution": 0.007,
    },
    "Violence and sexual offences": {
        "Unable to prosecute suspect": 0.564,
        "Status update unavailable": 0.182,
        "Investigation complete; no suspect identified": 0.105,
        "Court result unavailable": 0.081,
        "Local resolution": 0.014,
        "Action to be taken by another organisation": 0.013,
        "Formal action is not in the public interest": 0.011,
        "Further investigation is not in the public interest": 0.011,
        "Offender given a caution": 0.011,
        "Offender sent to prison": 0.004,
        "Awaiting court outcome": 0.004,
    },
}
UNDER_INVESTIGATION = "Under investigation"
# share of crime rows still "Under investigation" in the last, second-last, third-last month
_RECENT = (0.45, 0.25, 0.10)

# Syllables for fictional place and street names.
_NAME_A = (
    "Amber", "Ash", "Bram", "Brock", "Carra", "Cinder", "Corm", "Dapple", "Dun", "Elder",
    "Ember", "Fen", "Fallow", "Gorse", "Hazel", "Heron", "Holm", "Ivy", "Juni", "Kestrel",
    "Lark", "Linden", "Marl", "Moss", "Nettle", "Oriel", "Otter", "Pebble", "Quill", "Rook",
    "Rowan", "Sable", "Sorrel", "Tansy", "Thistle", "Umber", "Vetch", "Wren", "Yarrow", "Zeal",
)  # fmt: skip
_NAME_B = (
    "bury", "combe", "dale", "den", "field", "ford", "gate", "ham", "hithe", "holt", "hurst",
    "ley", "mere", "more", "ridge", "shaw", "stead", "stow", "thorpe", "ton", "wick", "worth",
    "wold", "brook", "croft",
)  # fmt: skip
_WARD_QUALIFIERS = (
    "", " North", " South", " East", " West", " Park", " Green", " Vale", " Central", " Hill",
)  # fmt: skip
_STREET_TYPES = (
    "Road", "Street", "Avenue", "Close", "Way", "Lane", "Gardens", "Crescent", "Drive", "Grove",
    "Place", "Terrace", "Rise", "Walk", "Mews", "Court", "Row", "Hill", "Parade", "Square",
)  # fmt: skip
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_UPPER = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


@cache
def _to_wgs84() -> Transformer:
    return Transformer.from_crs("EPSG:27700", "EPSG:4326", always_xy=True)


@cache
def _to_bng() -> Transformer:
    return Transformer.from_crs("EPSG:4326", "EPSG:27700", always_xy=True)


# ----------------------------------------------------------------------------- the result


@dataclass(eq=False)
class FictionalBorough:
    """A generated borough: boundaries, map points, records, deprivation and population.

    Attributes
    ----------
    params
        The arguments of :func:`generate_borough` (and derived sizes), as written to README.md.
    months
        ``YYYY-MM`` labels, in order.
    outline
        The borough outline (EPSG:27700).
    centres
        Town centres: ``name, x, y, weight, sigma_m, nte`` (``nte``: has a night-time-economy
        strip from ``nte_x0, nte_y0`` to ``nte_x1, nte_y1``).
    lsoas
        The LSOA layer, in code order: ``LSOA21CD, LSOA21NM, MSOA21CD, MSOA21NM, LAD22CD,
        LAD22NM, geometry``.
    wards
        The ward layer: ``WD24CD, WD24NM, WD24NMW, BNG_E, BNG_N, LONG, LAT, GlobalID, geometry``.
    ward_lookup
        The LSOA-to-ward lookup, as written.
    areas
        Every LSOA code a record can state: the borough's (first, in code order) and the
        fictional neighbour's; columns ``code, name, in_borough``.
    map_points
        The anonymised locations: ``x, y`` (EPSG:27700, recovered from the 6-decimal
        longitude/latitude), ``Longitude, Latitude`` (the text written), ``location`` (the text
        after "On or near "), ``place`` (a public-place label or ""), ``area`` (row of
        :attr:`areas`).
    lsoa_truth
        Per borough LSOA: ``LSOA21CD, population, deprivation`` (the latent deprivation, mean 0,
        sd 1), ``centrality`` (0 to 1) and ``expected_per_month`` (expected records a month
        before seasonality).
    deprivation
        The IoD2025 File 7 table, as written.
    population
        The Census 2021 long age table, as written.
    records
        One row per street-file row, all months, in file order: ``month`` (the true month),
        ``crime_type`` (the text written), ``outcome`` (NaN when empty), ``lsoa_code`` (the
        stated code, NaN when none), ``true_lsoa_code`` (the area containing the point),
        ``map_point`` (row of :attr:`map_points`, -1 when none), ``x, y`` (EPSG:27700, NaN
        when none) and ``defect`` (a key of :data:`DEFECT_REASONS`, or "").
    crime_id_bytes
        ``(len(records), 32)`` uint8: the bytes behind each Crime ID (zero for ASB).
    month_offsets
        Row offsets of each month in :attr:`records` (``len(months) + 1`` values).
    defect_counts
        Defect reason -> number of rows (all reasons present, zero without defects).
    """

    params: dict[str, Any]
    months: tuple[str, ...]
    outline: shapely.Polygon
    centres: pd.DataFrame
    lsoas: gpd.GeoDataFrame
    wards: gpd.GeoDataFrame
    ward_lookup: pd.DataFrame
    areas: pd.DataFrame
    map_points: pd.DataFrame
    lsoa_truth: pd.DataFrame
    deprivation: pd.DataFrame
    population: pd.DataFrame
    records: pd.DataFrame
    crime_id_bytes: np.ndarray
    month_offsets: np.ndarray
    defect_counts: dict[str, int] = field(default_factory=dict)

    def street_table(self, month: str) -> pa.Table:
        """One month's police.uk street file as an Arrow table of strings (nulls = empty).

        Parameters
        ----------
        month
            A ``YYYY-MM`` label of :attr:`months`.

        Returns
        -------
        pyarrow.Table
            The columns of :data:`POLICE_UK_COLUMNS`, in file order.
        """
        k = self.months.index(month)
        lo, hi = int(self.month_offsets[k]), int(self.month_offsets[k + 1])
        rec = self.records.iloc[lo:hi]
        n = hi - lo
        mp = rec["map_point"].to_numpy()
        has_loc = mp >= 0
        mp_idx = pa.array(mp, mask=~has_loc)
        lon = pa.array(self.map_points["Longitude"].to_numpy(dtype=object), pa.string())
        lat = pa.array(self.map_points["Latitude"].to_numpy(dtype=object), pa.string())
        loc_text = np.append(
            ("On or near " + self.map_points["location"]).to_numpy(dtype=object), NO_LOCATION
        )
        loc = pa.array(loc_text, pa.string()).take(
            pa.array(np.where(has_loc, mp, len(loc_text) - 1))
        )
        area = rec["lsoa_code"].cat.codes.to_numpy()
        area_idx = pa.array(area, mask=area < 0)
        codes = pa.array(self.areas["code"].to_numpy(dtype=object), pa.string())
        names = pa.array(self.areas["name"].to_numpy(dtype=object), pa.string())
        malformed = (rec["defect"] == "malformed_month").to_numpy()
        month_text = pa.array([month, f"{month[5:]}/{month[:4]}"], pa.string())
        outcome = rec["outcome"].cat.codes.to_numpy()
        outcomes = pa.array(rec["outcome"].cat.categories.to_numpy(dtype=object), pa.string())
        ctype = rec["crime_type"].cat.codes.to_numpy()
        ctypes = pa.array(rec["crime_type"].cat.categories.to_numpy(dtype=object), pa.string())
        force = pa.array([FORCE], pa.string()).take(pa.array(np.zeros(n, dtype=np.int8)))
        columns = [
            _hex_ids(self.crime_id_bytes[lo:hi], ctype != ASB),
            month_text.take(pa.array(malformed.astype(np.int8))),
            force,
            force,
            lon.take(mp_idx),
            lat.take(mp_idx),
            loc,
            codes.take(area_idx),
            names.take(area_idx),
            ctypes.take(pa.array(ctype)),
            outcomes.take(pa.array(outcome, mask=outcome < 0)),
            pa.nulls(n, pa.string()),
        ]
        return pa.Table.from_arrays(columns, names=list(POLICE_UK_COLUMNS))

    def street(self, month: str | None = None) -> pd.DataFrame:
        """The police.uk rows as text, as ``pd.read_csv(dtype=str, keep_default_na=False)`` reads
        the written files (empty fields are "").

        Parameters
        ----------
        month
            One ``YYYY-MM`` label, or None for all months in order.

        Returns
        -------
        pandas.DataFrame
            The columns of :data:`POLICE_UK_COLUMNS`.
        """
        months = self.months if month is None else (month,)
        table = pa.concat_tables([self.street_table(m) for m in months])
        frame = table.to_pandas()
        return frame.fillna("").astype(str)


def _hex_ids(raw: np.ndarray, valid: np.ndarray) -> pa.Array:
    """64-character lower-case hex strings of 32-byte rows, null where not ``valid``."""
    n = len(valid)
    sel = raw[valid]
    text = np.empty((sel.shape[0], 64), dtype=np.uint8)
    text[:, 0::2] = _HEX[sel >> 4]
    text[:, 1::2] = _HEX[sel & 15]
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(valid.astype(np.int64) * 64)
    bitmap = np.packbits(valid, bitorder="little")
    return pa.Array.from_buffers(
        pa.large_string(),
        n,
        [pa.py_buffer(bitmap), pa.py_buffer(offsets), pa.py_buffer(text.ravel())],
        null_count=int(n - valid.sum()),
    ).cast(pa.string())


# ----------------------------------------------------------------------------- helpers


def _fmt(fmt: str, values: np.ndarray) -> np.ndarray:
    """Vectorised printf-style formatting to an object array of str."""
    return np.char.mod(fmt, values).astype(object)


def _month_labels(start: str, months: int) -> tuple[str, ...]:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", start):
        raise ValueError(f"start must be YYYY-MM, not {start!r}")
    y, m = int(start[:4]), int(start[5:])
    first = y * 12 + m - 1
    return tuple(f"{(first + k) // 12:04d}-{(first + k) % 12 + 1:02d}" for k in range(months))


def _standardise(v: np.ndarray) -> np.ndarray:
    sd = v.std()
    return (v - v.mean()) / (sd if sd > 0 else 1.0)


def _unique_names(rng: np.random.Generator, n: int, *, qualifiers: Sequence[str]) -> np.ndarray:
    """``n`` distinct fictional place names (syllable pairs, then qualifiers, then numbers)."""
    a = np.array(_NAME_A, dtype=object)
    b = np.array(_NAME_B, dtype=object)
    q = np.array(qualifiers, dtype=object)
    base = (a[:, None] + b[None, :]).ravel()
    pool = (base[:, None] + q[None, :]).T.ravel()  # every base name before any qualifier
    n_plain = base.size
    first = rng.permutation(n_plain)
    rest = n_plain + rng.permutation(pool.size - n_plain)
    order = np.concatenate([first, rest])
    if n <= pool.size:
        return pool[order[:n]]
    extra = pool[order[np.arange(n - pool.size) % pool.size]] + _fmt(
        " %d", np.arange(n - pool.size) // pool.size + 2
    )
    return np.concatenate([pool[order], extra])


def _kmeans(
    rng: np.random.Generator,
    pts: np.ndarray,
    k: int,
    *,
    iters: int = 12,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Lloyd's k-means; returns the label of each point (labels 0..k'-1, no empty clusters)."""
    k = max(1, min(k, len(pts)))
    centres = pts[rng.choice(len(pts), k, replace=False)].copy()
    w = np.ones(len(pts)) if weights is None else weights
    labels = np.zeros(len(pts), dtype=np.int64)
    for _ in range(iters):
        _, labels = cKDTree(centres).query(pts)
        mass = np.bincount(labels, w, minlength=k)
        ok = mass > 0
        for d in range(2):
            s = np.bincount(labels, w * pts[:, d], minlength=k)
            centres[ok, d] = s[ok] / mass[ok]
    _, labels = cKDTree(centres).query(pts)
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def _seg_distance(x: np.ndarray, y: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Distance from points to the segment ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = seg
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(x - (x0 + t * dx), y - (y0 + t * dy))


def _kernels(x: np.ndarray, y: np.ndarray, centres: pd.DataFrame, *, scale: float = 1.0):
    """Town-centre and night-time-economy kernel values at points (loop per centre)."""
    kc = np.zeros(x.shape)
    kn = np.zeros(x.shape)
    for c in centres.itertuples():
        s = c.sigma_m * scale
        kc += c.weight * np.exp(-((x - c.x) ** 2 + (y - c.y) ** 2) / (2 * s * s))
        if c.nte:
            d = _seg_distance(x, y, np.array([c.nte_x0, c.nte_y0, c.nte_x1, c.nte_y1]))
            kn += c.weight * np.exp(-(d**2) / (2 * (120.0 * scale) ** 2))
    return kc, kn


def _uniform_in(
    rng: np.random.Generator, poly: shapely.Geometry, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform points inside one polygon (rejection from its bounding box)."""
    x0, y0, x1, y1 = poly.bounds
    shapely.prepare(poly)
    xs, ys = [], []
    got = 0
    while got < n:
        m = max(64, int((n - got) * 1.6))
        x = x0 + rng.random(m) * (x1 - x0)
        y = y0 + rng.random(m) * (y1 - y0)
        ok = shapely.contains_xy(poly, x, y)
        xs.append(x[ok])
        ys.append(y[ok])
        got += int(ok.sum())
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def _lonlat_text(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = _to_wgs84().transform(x, y)
    return _fmt("%.6f", np.asarray(lon)), _fmt("%.6f", np.asarray(lat))


def _roundtrip(x: np.ndarray, y: np.ndarray):
    """Text longitude/latitude of BNG points and the BNG point they read back as."""
    lon_s, lat_s = _lonlat_text(x, y)
    bx, by = _to_bng().transform(lon_s.astype(float), lat_s.astype(float))
    return lon_s, lat_s, np.asarray(bx), np.asarray(by)


def _points_in_polygons(
    rng: np.random.Generator, polys: np.ndarray, owner: np.ndarray, *, margin: float = 3.0
):
    """One uniform point per ``owner`` entry inside ``polys[owner]``, ``margin`` m from the edge,
    whose 6-decimal longitude/latitude still read back inside. Returns x, y, lon text, lat text.
    """
    inner = shapely.buffer(polys, -margin)
    bad = shapely.is_empty(inner)
    inner[bad] = polys[bad]
    shapely.prepare(inner)
    bounds = shapely.bounds(inner)
    n = owner.size
    x = np.zeros(n)
    y = np.zeros(n)
    lon = np.empty(n, dtype=object)
    lat = np.empty(n, dtype=object)
    todo = np.arange(n)
    for _ in range(500):
        if todo.size == 0:
            break
        o = owner[todo]
        b = bounds[o]
        cx = b[:, 0] + rng.random(todo.size) * (b[:, 2] - b[:, 0])
        cy = b[:, 1] + rng.random(todo.size) * (b[:, 3] - b[:, 1])
        inside = shapely.contains_xy(inner[o], cx, cy)
        lo, la, bx, by = _roundtrip(cx[inside], cy[inside])
        ok_rt = shapely.contains_xy(inner[o[inside]], bx, by)
        done = todo[inside][ok_rt]
        x[done], y[done] = bx[ok_rt], by[ok_rt]
        lon[done], lat[done] = lo[ok_rt], la[ok_rt]
        keep = np.ones(todo.size, dtype=bool)
        keep[np.flatnonzero(inside)[ok_rt]] = False
        todo = todo[keep]
    if todo.size:  # pathological slivers: fall back to a point on the surface
        p = shapely.point_on_surface(polys[owner[todo]])
        lo, la, bx, by = _roundtrip(shapely.get_x(p), shapely.get_y(p))
        x[todo], y[todo], lon[todo], lat[todo] = bx, by, lo, la
    return x, y, lon, lat


def _choice_cdf(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
    c = np.cumsum(probs / probs.sum())
    return np.minimum(np.searchsorted(c, u, side="right"), len(probs) - 1)


def _outcome_tables() -> tuple[tuple[str, ...], np.ndarray]:
    labels: list[str] = [UNDER_INVESTIGATION]
    for table in _OUTCOMES_RAW.values():
        labels += [k for k in table if k not in labels]
    probs = np.zeros((len(CRIME_TYPES), len(labels)))
    for t, name in enumerate(CRIME_TYPES):
        for k, p in _OUTCOMES_RAW.get(name, {}).items():
            probs[t, labels.index(k)] = p
    return tuple(labels), probs


# ----------------------------------------------------------------------------- geography


def _outline(rng: np.random.Generator, origin: tuple[float, float], extent: float):
    theta = np.linspace(0.0, 2 * np.pi, 721)[:-1]
    k = np.arange(2, 8)
    amp = rng.uniform(0.02, 0.08, k.size) / np.sqrt(k - 1)
    phase = rng.uniform(0, 2 * np.pi, k.size)
    rad = 1 + (amp[:, None] * np.cos(k[:, None] * theta + phase[:, None])).sum(0)
    r = extent / 2 / rad.max()
    ox, oy = origin
    poly = shapely.Polygon(
        np.column_stack([ox + r * rad * np.cos(theta), oy + r * rad * np.sin(theta)])
    )

    def radius(angle: np.ndarray) -> np.ndarray:
        return r * (1 + (amp[:, None] * np.cos(k[:, None] * angle + phase[:, None])).sum(0))

    return poly, r, radius


def _place_centres(
    rng: np.random.Generator,
    outline: shapely.Polygon,
    origin: tuple[float, float],
    radius: float,
    n_centres: int,
    names: np.ndarray,
) -> pd.DataFrame:
    cx, cy = _uniform_in(rng, outline.buffer(-0.1 * radius), 40 * n_centres)
    main = np.array(origin) + rng.normal(0, 0.08 * radius, 2)
    chosen = [main]
    sep = 1.1 * radius * math.sqrt(math.pi / n_centres)
    cand = np.column_stack([cx, cy])
    while len(chosen) < n_centres and sep > 1.0:  # loop per centre
        d = np.min(np.hypot(*(cand[:, None, :] - np.array(chosen)[None]).transpose(2, 0, 1)), 1)
        far = np.flatnonzero(d >= sep)
        if far.size == 0:
            sep *= 0.8
            continue
        chosen.append(cand[far[0]])
    xy = np.array(chosen)
    weight = np.concatenate(
        [[1.0], np.clip(rng.lognormal(np.log(0.45), 0.4, len(xy) - 1), 0.15, 0.9)]
    )
    sigma = 250.0 + 350.0 * weight
    n_nte = max(1, n_centres // 4)
    nte = np.zeros(len(xy), dtype=bool)
    nte[np.argsort(-weight, kind="stable")[:n_nte]] = True
    ang = rng.uniform(0, np.pi, len(xy))
    half = 500.0 + 400.0 * weight
    off = rng.normal(0, 80.0, (len(xy), 2))
    mx, my = xy[:, 0] + off[:, 0], xy[:, 1] + off[:, 1]
    return pd.DataFrame(
        {
            "name": names[: len(xy)],
            "x": xy[:, 0],
            "y": xy[:, 1],
            "weight": weight,
            "sigma_m": sigma,
            "nte": nte,
            "nte_x0": mx - half * np.cos(ang),
            "nte_y0": my - half * np.sin(ang),
            "nte_x1": mx + half * np.cos(ang),
            "nte_y1": my + half * np.sin(ang),
        }
    )


def _lsoa_seeds(
    rng: np.random.Generator, outline: shapely.Polygon, centres: pd.DataFrame, n: int
) -> np.ndarray:
    """Seeds whose Voronoi cells hold about equal population (density-weighted Lloyd)."""
    m = max(12 * n, 3000)
    n_uniform = int(m * 0.35)
    ux, uy = _uniform_in(rng, outline, n_uniform)
    # the rest around the centres (population kernel ~ 4 x the centre's sigma + 1 km)
    prefs = centres["weight"].to_numpy()
    need = m - n_uniform
    xs, ys = [ux], [uy]
    shapely.prepare(outline)
    while need > 0:
        k = max(256, int(need * 1.5))
        c = _choice_cdf(rng.random(k), prefs)
        s = 4 * centres["sigma_m"].to_numpy()[c] + 1000.0
        x = centres["x"].to_numpy()[c] + rng.normal(0, 1, k) * s
        y = centres["y"].to_numpy()[c] + rng.normal(0, 1, k) * s
        ok = np.flatnonzero(shapely.contains_xy(outline, x, y))[:need]
        xs.append(x[ok])
        ys.append(y[ok])
        need -= ok.size
    cand = np.column_stack([np.concatenate(xs), np.concatenate(ys)])
    seeds = cand[rng.choice(len(cand), n, replace=False)].copy()
    for _ in range(10):
        _, lab = cKDTree(seeds).query(cand)
        cnt = np.bincount(lab, minlength=n)
        ok = cnt > 0
        for d in range(2):
            seeds[ok, d] = np.bincount(lab, cand[:, d], minlength=n)[ok] / cnt[ok]
    # a mean can fall outside a non-convex outline: move such seeds to their nearest candidate
    out = ~shapely.contains_xy(outline, seeds[:, 0], seeds[:, 1])
    if out.any():
        _, j = cKDTree(cand).query(seeds[out])
        seeds[out] = cand[j]
    return seeds


def _voronoi_cells(seeds: np.ndarray, outline: shapely.Polygon) -> np.ndarray:
    pts = shapely.points(seeds)
    env = shapely.buffer(shapely.envelope(outline), outline.length * 0.1)
    vor = shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=env, ordered=True)
    parts = shapely.get_parts(vor)
    if not shapely.contains(parts, pts).all():  # older GEOS: recover the order by containment
        tree = shapely.STRtree(parts)
        i_pt, i_poly = tree.query(pts, predicate="within")
        order = np.empty(len(pts), dtype=np.int64)
        order[i_pt] = i_poly
        parts = parts[order]
    cells = shapely.intersection(parts, outline)
    pieces, owner = shapely.get_parts(cells, return_index=True)
    poly = shapely.get_type_id(pieces) == 3
    pieces, owner = pieces[poly], owner[poly]
    out = shapely.multipolygons(pieces, indices=owner)
    if len(out) != len(seeds) or shapely.is_empty(out).any():
        raise RuntimeError("Voronoi tessellation lost a cell")
    return out


def _codes(prefix: str, n: int) -> np.ndarray:
    """Fictional ONS-like codes: ``prefix999001``.. up to 999, else ``prefix900000`` + i."""
    if n <= 999:
        return _fmt(prefix + "999%03d", np.arange(1, n + 1))
    if n > 99_999:
        raise ValueError(f"at most 99,999 {prefix} areas can be coded, not {n}")
    return _fmt(prefix + "%06d", 900_000 + np.arange(n))


# ----------------------------------------------------------------------------- the generator


def generate_borough(
    *,
    n_lsoas: int = 200,
    months: int = 12,
    start: str = "2025-01",
    seed: int = 0,
    records_per_lsoa_month: float = 14.0,
    centres: int | None = None,
    extent_m: float | None = None,
    origin: tuple[float, float] = (520000.0, 160000.0),
    defects: bool = False,
) -> FictionalBorough:
    """Generate a fictional borough deterministically from ``seed``.

    Parameters
    ----------
    n_lsoas
        Number of LSOAs (at least 10; at most 99,999).
    months
        Number of monthly police.uk files.
    start
        First month, ``YYYY-MM``.
    seed
        Seed of ``numpy.random.default_rng``; the same seed and parameters give byte-identical
        files.
    records_per_lsoa_month
        Expected clean records (crime and ASB) per LSOA per month, before seasonality (police.uk
        England and Wales: about 14).
    centres
        Number of town centres; default ``max(3, round(sqrt(n_lsoas) / 3.5))``. The main one
        (largest) is near ``origin``; the largest quarter carry night-time-economy strips.
    extent_m
        Width of the borough outline in metres; default ``2 * sqrt(n_lsoas * 0.35 km2 / pi)``
        (a dense urban borough, ~0.35 km2 per LSOA). Pass a larger value (e.g. 600 km with
        ``n_lsoas=35_000``) for an England-and-Wales-sized extent.
    origin
        Centre of the outline in British National Grid metres.
    defects
        Add record defects (see the module docstring); counted in ``defect_counts``.

    Returns
    -------
    FictionalBorough
        Frames and arrays behind every file :func:`write_borough` writes.
    """
    if not 10 <= n_lsoas <= 99_999:
        raise ValueError(f"n_lsoas must be between 10 and 99,999, not {n_lsoas}")
    if months < 1:
        raise ValueError("months must be at least 1")
    if records_per_lsoa_month <= 0:
        raise ValueError("records_per_lsoa_month must be positive")
    labels = _month_labels(start, months)
    n_centres = max(3, round(math.sqrt(n_lsoas) / 3.5)) if centres is None else int(centres)
    if n_centres < 1:
        raise ValueError("centres must be at least 1")
    extent = 2 * math.sqrt(n_lsoas * 0.35e6 / math.pi) if extent_m is None else float(extent_m)
    params = {
        "generator": "priority_index.examples.fictional.generate_borough",
        "seed": int(seed),
        "n_lsoas": int(n_lsoas),
        "months": int(months),
        "start": start,
        "records_per_lsoa_month": float(records_per_lsoa_month),
        "centres": n_centres,
        "extent_m": round(extent, 3),
        "origin": [float(origin[0]), float(origin[1])],
        "defects": bool(defects),
    }
    rng = np.random.default_rng(seed)
    r_geo, r_names, r_pop, r_map, r_dep, r_crime, r_defect, r_iod = rng.spawn(8)

    # --- outline, centres, LSOAs
    outline, radius, radius_at = _outline(r_geo, origin, extent)
    place_names = _unique_names(r_names, n_centres, qualifiers=[""])
    cen = _place_centres(r_geo, outline, origin, radius, n_centres, place_names)
    seeds = _lsoa_seeds(r_geo, outline, cen, n_lsoas)
    cells = _voronoi_cells(seeds, outline)

    # MSOAs (~5 LSOAs) numbered north to south; LSOA letters west to east within an MSOA
    msoa = _kmeans(r_geo, seeds, max(1, round(n_lsoas / 5)))
    n_msoa = int(msoa.max()) + 1
    my = np.bincount(msoa, seeds[:, 1]) / np.bincount(msoa)
    mx = np.bincount(msoa, seeds[:, 0]) / np.bincount(msoa)
    msoa_num = np.empty(n_msoa, dtype=np.int64)
    msoa_num[np.lexsort((mx, -my))] = np.arange(1, n_msoa + 1)
    num = msoa_num[msoa]
    order = np.lexsort((seeds[:, 1], seeds[:, 0], num))
    seeds, cells, num = seeds[order], cells[order], num[order]
    first = np.r_[True, num[1:] != num[:-1]]
    start_idx = np.maximum.accumulate(np.where(first, np.arange(n_lsoas), 0))
    letter_idx = np.arange(n_lsoas) - start_idx
    letters = np.where(
        letter_idx < 26,
        _LETTERS[np.minimum(letter_idx, 25)],
        _LETTERS[np.minimum(letter_idx // 26 - 1, 25)] + _LETTERS[letter_idx % 26],
    ).astype(object)
    width = max(3, len(str(n_msoa)))
    msoa_names = _fmt(f"Fictional %0{width}d", num)
    lsoa_codes = _codes("E01", n_lsoas)
    lsoa_names = msoa_names + letters
    msoa_codes = _codes("E02", n_msoa)[num - 1]

    lsoas = gpd.GeoDataFrame(
        {
            "LSOA21CD": pd.array(lsoa_codes, dtype="str"),
            "LSOA21NM": pd.array(lsoa_names, dtype="str"),
            "MSOA21CD": pd.array(msoa_codes, dtype="str"),
            "MSOA21NM": pd.array(msoa_names, dtype="str"),
            "LAD22CD": LAD_CODE,
            "LAD22NM": LAD_NAME,
        },
        geometry=gpd.GeoSeries(cells, crs="EPSG:27700"),
    )

    # --- wards (~10 LSOAs)
    ward_lab = _kmeans(r_geo, seeds, max(2, round(n_lsoas / 10)))
    n_wards = int(ward_lab.max()) + 1
    ward_names = _unique_names(r_names, n_wards, qualifiers=_WARD_QUALIFIERS)
    name_order = np.argsort(ward_names.astype(str), kind="stable")
    ward_rank = np.empty(n_wards, dtype=np.int64)
    ward_rank[name_order] = np.arange(n_wards)
    ward_codes = _codes("E05", n_wards)
    ward_of_lsoa = ward_rank[ward_lab]
    wards = _ward_layer(r_names, cells, ward_of_lsoa, ward_codes, ward_names[name_order])
    ward_lookup = pd.DataFrame(
        {
            "LSOA21CD": lsoa_codes,
            "LSOA21NM": lsoa_names,
            "LSOA21NMW": "",
            "WD24CD": ward_codes[ward_of_lsoa],
            "WD24NM": ward_names[name_order][ward_of_lsoa],
            "WD24NMW": "",
            "LAD24CD": LAD_CODE,
            "LAD24NM": LAD_NAME,
            "LAD24NMW": "",
        }
    )
    ward_lookup = ward_lookup.iloc[np.lexsort((lsoa_codes.astype(str), ward_of_lsoa))].reset_index(
        drop=True
    )
    ward_lookup["ObjectId"] = np.arange(1, n_lsoas + 1)
    ward_lookup = ward_lookup.astype({c: "str" for c in ward_lookup.columns[:-1]})

    # --- population (Census 2021 six bands)
    kc_seed, _ = _kernels(seeds[:, 0], seeds[:, 1], cen, scale=4.0)
    centrality = kc_seed / kc_seed.max()
    pop_total = np.clip(np.rint(r_pop.normal(1700, 230, n_lsoas)), 1050, 3200)
    tilt = np.array([-0.05, 0.35, 0.35, 0.05, -0.15, -0.35])
    alpha = 120 * _AGE_SHARES[None, :] * np.exp(np.outer(centrality - 0.3, tilt))
    shares = r_pop.gamma(alpha)
    shares /= shares.sum(1, keepdims=True)
    age_counts = np.rint(shares * pop_total[:, None])
    population = pd.DataFrame(
        {
            "lsoa21_code": np.repeat(lsoa_codes, 6),
            "lsoa21_name": np.repeat(lsoa_names, 6),
            "age_group": np.tile(np.array(AGE_GROUPS, dtype=object), n_lsoas),
            "usual_residents": age_counts.ravel().astype(float),
        }
    ).astype({"lsoa21_code": "str", "lsoa21_name": "str", "age_group": "str"})
    residents = age_counts.sum(1)

    # --- latent deprivation: inner-urban gradient + estates (smooth bumps) + noise
    n_bumps = max(4, n_lsoas // 20)
    bx, by = _uniform_in(r_dep, outline, n_bumps)
    bs = r_dep.uniform(400, 1200, n_bumps)
    bw = r_dep.normal(0, 1, n_bumps)
    tree = cKDTree(seeds)
    field_ = np.zeros(n_lsoas)
    for j in range(n_bumps):  # loop per bump, vectorised over the LSOAs within 4 sigma
        near = np.asarray(tree.query_ball_point([bx[j], by[j]], 4 * bs[j]), dtype=np.int64)
        if near.size:
            d2 = (seeds[near, 0] - bx[j]) ** 2 + (seeds[near, 1] - by[j]) ** 2
            field_[near] += bw[j] * np.exp(-d2 / (2 * bs[j] ** 2))
    depriv = _standardise(
        0.8 * _standardise(centrality)
        + 0.7 * _standardise(field_)
        + 0.5 * r_dep.normal(0, 1, n_lsoas)
    )

    # --- map points (15-25 per LSOA) with streets and public places
    per_lsoa = r_map.integers(15, 26, n_lsoas)
    mp_lsoa = np.repeat(np.arange(n_lsoas), per_lsoa)
    mx_, my_, mlon, mlat = _points_in_polygons(r_map, cells, mp_lsoa)
    kc, kn = _kernels(mx_, my_, cen)
    kc_norm = kc / kc.max()
    is_place = r_map.random(mp_lsoa.size) < 0.06 + 0.3 * kc_norm
    central = r_map.random(mp_lsoa.size) < kc_norm * 1.5
    u = r_map.random(mp_lsoa.size)
    place_idx = np.where(central, _choice_cdf(u, _PLACE_P_CENTRAL), _choice_cdf(u, _PLACE_P_SUBURB))
    place = np.where(is_place, np.array(PLACES, dtype=object)[place_idx], "").astype(object)
    streets_per = r_map.integers(6, 11, n_lsoas)
    street_start = np.concatenate([[0], np.cumsum(streets_per)[:-1]])
    street_pool = (
        (
            np.array(_NAME_A, dtype=object)[:, None] + np.array(_NAME_B, dtype=object)[None, :]
        ).ravel()[:, None]
        + (" " + np.array(_STREET_TYPES, dtype=object))[None, :]
    ).ravel()
    street_name = street_pool[r_map.integers(0, street_pool.size, streets_per.sum())]
    # one street with police.uk's title-casing quirk after an apostrophe ("Queen'S Road")
    street_name[r_map.integers(0, street_name.size)] = "St Wendreda'S Road"
    mp_street = street_start[mp_lsoa] + np.floor(
        r_map.random(mp_lsoa.size) * streets_per[mp_lsoa]
    ).astype(np.int64)
    location = np.where(is_place, place, street_name[mp_street]).astype(object)

    # neighbour areas and their map points, outside the outline
    n_nb = int(np.clip(n_lsoas // 15, 3, 999))
    per_nb = 8
    sector = np.repeat(np.arange(n_nb), per_nb)
    nb_x = np.empty(sector.size)
    nb_y = np.empty(sector.size)
    todo = np.arange(sector.size)
    shapely.prepare(outline)
    while todo.size:  # a few rounds of rejection
        ang = (sector[todo] + r_map.random(todo.size)) * (2 * np.pi / n_nb)
        rr = radius_at(ang) * r_map.uniform(1.03, 1.25, todo.size) + 30.0
        cx = origin[0] + rr * np.cos(ang)
        cy = origin[1] + rr * np.sin(ang)
        ok = ~shapely.contains_xy(outline, cx, cy)
        lo, la, rx, ry = _roundtrip(cx[ok], cy[ok])
        ok2 = ~shapely.contains_xy(outline, rx, ry)
        idx = todo[ok][ok2]
        nb_x[idx], nb_y[idx] = rx[ok2], ry[ok2]
        keep = np.ones(todo.size, dtype=bool)
        keep[np.flatnonzero(ok)[ok2]] = False
        todo = todo[keep]
    nb_lon, nb_lat = _lonlat_text(nb_x, nb_y)
    nb_loc = street_pool[r_map.integers(0, street_pool.size, sector.size)]
    nb_codes = _fmt("E01800%03d", np.arange(1, n_nb + 1))
    nb_names = _fmt(f"{NEIGHBOUR_NAME} %03dA", np.arange(1, n_nb + 1))
    areas = pd.DataFrame(
        {
            "code": np.concatenate([lsoa_codes, nb_codes]),
            "name": np.concatenate([lsoa_names, nb_names]),
            "in_borough": np.r_[np.ones(n_lsoas, bool), np.zeros(n_nb, bool)],
        }
    ).astype({"code": "str", "name": "str"})
    n_mp = mp_lsoa.size
    map_points = pd.DataFrame(
        {
            "x": np.concatenate([mx_, nb_x]),
            "y": np.concatenate([my_, nb_y]),
            "Longitude": np.concatenate([mlon, nb_lon]),
            "Latitude": np.concatenate([mlat, nb_lat]),
            "location": np.concatenate([location, nb_loc]),
            "place": np.concatenate([place, np.full(sector.size, "", dtype=object)]),
            "area": np.concatenate([mp_lsoa, n_lsoas + sector]),
        }
    ).astype({"Longitude": "str", "Latitude": "str", "location": "str", "place": "str"})

    # --- crime intensity at map points
    # Thomas cluster field: parents near centres or anywhere, Gaussian offspring snapped to
    # the nearest map point
    n_par = max(10, n_lsoas // 2)
    near_c = r_crime.random(n_par) < 0.7
    pc = _choice_cdf(r_crime.random(n_par), cen["weight"].to_numpy())
    ux, uy = _uniform_in(r_crime, outline, n_par)
    ps = 3 * cen["sigma_m"].to_numpy()[pc]
    px = np.where(near_c, cen["x"].to_numpy()[pc] + r_crime.normal(0, 1, n_par) * ps, ux)
    py = np.where(near_c, cen["y"].to_numpy()[pc] + r_crime.normal(0, 1, n_par) * ps, uy)
    n_off = r_crime.poisson(r_crime.lognormal(np.log(15), 0.7, n_par))
    parent = np.repeat(np.arange(n_par), n_off)
    osig = r_crime.uniform(80, 200, n_par)[parent]
    ox = px[parent] + r_crime.normal(0, 1, parent.size) * osig
    oy = py[parent] + r_crime.normal(0, 1, parent.size) * osig
    _, snap = cKDTree(np.column_stack([mx_, my_])).query(np.column_stack([ox, oy]))
    kclu = np.bincount(snap, minlength=n_mp).astype(float)

    within = r_crime.gamma(2.0, 1.0, n_mp)
    wsum = np.bincount(mp_lsoa, within, minlength=n_lsoas)
    pop_mp = residents[mp_lsoa] * within / wsum[mp_lsoa]
    hot = r_crime.lognormal(0.0, 0.8, n_mp)
    feats = [f / f.mean() if f.mean() > 0 else f for f in (pop_mp, kc, kn, kclu)]
    place_mult = np.ones((len(CRIME_TYPES), n_mp))
    place_code = pd.Index(PLACES).get_indexer(place)  # -1 for streets
    for t, name in enumerate(CRIME_TYPES):  # loop per crime type
        table = np.ones(len(PLACES) + 1)
        for p, mult in _PLACE_MULT.get(name, {}).items():
            table[PLACES.index(p)] = mult
        place_mult[t] = table[place_code]  # code -1 (street) -> last entry, 1
    z_mp = depriv[mp_lsoa]
    tp = _TYPE_PARAMS
    weights = np.empty((len(CRIME_TYPES), n_mp))
    for t in range(len(CRIME_TYPES)):
        base = tp[t, 1] * feats[0] + tp[t, 2] * feats[1] + tp[t, 3] * feats[2]
        base = base + tp[t, 4] * feats[3] + 0.05
        weights[t] = base * np.exp(tp[t, 5] * z_mp) * hot ** tp[t, 6] * place_mult[t]
    shares_t = tp[:, 0] / tp[:, 0].sum()
    cdfs = np.cumsum(weights, axis=1)
    # expected per LSOA (for the truth table and the IoD crime domain)
    lsoa_w = np.stack(
        [
            np.bincount(mp_lsoa, weights[t], minlength=n_lsoas) / cdfs[t, -1]
            for t in range(len(CRIME_TYPES))
        ]
    )
    mean_total = records_per_lsoa_month * n_lsoas
    expected = (shares_t[:, None] * lsoa_w).sum(0) * mean_total
    crime_only = (shares_t[1:, None] * lsoa_w[1:]).sum(0) * mean_total
    lsoa_truth = pd.DataFrame(
        {
            "LSOA21CD": pd.array(lsoa_codes, dtype="str"),
            "population": residents,
            "deprivation": depriv,
            "centrality": centrality,
            "expected_per_month": expected,
        }
    )

    # --- IoD2025 File 7
    deprivation = _iod_table(
        r_iod,
        lsoa_codes,
        lsoa_names,
        depriv=depriv,
        centrality=centrality,
        crime_rate=np.log(crime_only / residents),
        ages=age_counts,
    )

    # --- records, month by month
    outcome_labels, outcome_p = _outcome_tables()
    area_rank = np.argsort(
        np.argsort(areas["name"].to_numpy(dtype=str), kind="stable"), kind="stable"
    )
    lsoa_first = np.concatenate([[0], np.cumsum(per_lsoa)[:-1]])
    ctx = _MonthContext(
        cdfs=cdfs,
        shares=shares_t,
        mean_total=mean_total,
        outcome_p=outcome_p,
        mp_area=map_points["area"].to_numpy(),
        mp_xy=map_points[["x", "y"]].to_numpy(),
        n_mp=n_mp,
        n_nb_mp=sector.size,
        lsoa_first=lsoa_first,
        per_lsoa=per_lsoa,
        cells=cells,
        area_rank=area_rank,
    )
    month_parts = []
    id_parts = []
    counts = dict.fromkeys(DEFECT_REASONS, 0)
    children = r_crime.spawn(months)
    d_children = r_defect.spawn(months)
    for k in range(months):  # loop per month
        recent = months - 1 - k
        ui = _RECENT[recent] if recent < len(_RECENT) else 0.0
        part, ids = _month_records(
            children[k], ctx, month_index=int(labels[k][5:]), under_investigation=ui
        )
        if defects:
            part, ids = _add_defects(d_children[k], ctx, part, ids, force_each=k == 0)
        order = np.lexsort(
            (
                part["seq"],
                part["map_point"],
                part["ctype"],
                np.where(part["area"] >= 0, ctx.area_rank[np.maximum(part["area"], 0)], 1 << 40),
            )
        )
        part = {key: v[order] for key, v in part.items()}
        ids = ids[order]
        if defects:
            _label_duplicates(part)
        part["month"] = np.full(order.size, k, dtype=np.int16)
        month_parts.append(part)
        id_parts.append(ids)

    cat = {key: np.concatenate([p[key] for p in month_parts]) for key in month_parts[0]}
    offsets = np.concatenate([[0], np.cumsum([p["seq"].size for p in month_parts])])
    mp_all = cat["map_point"]
    has = mp_all >= 0
    xy = map_points[["x", "y"]].to_numpy()
    area_codes = areas["code"].to_numpy(dtype=object)
    records = pd.DataFrame(
        {
            "month": pd.Categorical.from_codes(cat["month"], categories=list(labels)),
            "crime_type": pd.Categorical.from_codes(
                cat["ctype"], categories=[*CRIME_TYPES, UNKNOWN_CRIME_TYPE]
            ),
            "outcome": pd.Categorical.from_codes(cat["outcome"], categories=list(outcome_labels)),
            "lsoa_code": pd.Categorical.from_codes(cat["area"], categories=list(area_codes)),
            "true_lsoa_code": pd.Categorical.from_codes(
                np.where(has, ctx.mp_area[np.maximum(mp_all, 0)], -1), categories=list(area_codes)
            ),
            "map_point": mp_all.astype(np.int32),
            "x": np.where(has, xy[np.maximum(mp_all, 0), 0], np.nan),
            "y": np.where(has, xy[np.maximum(mp_all, 0), 1], np.nan),
            "defect": pd.Categorical.from_codes(cat["defect"], categories=["", *DEFECT_REASONS]),
        }
    )
    if defects:
        counts = {r: int((records["defect"] == r).sum()) for r in DEFECT_REASONS}
    params["records"] = len(records)
    return FictionalBorough(
        params=params,
        months=labels,
        outline=outline,
        centres=cen,
        lsoas=lsoas,
        wards=wards,
        ward_lookup=ward_lookup,
        areas=areas,
        map_points=map_points,
        lsoa_truth=lsoa_truth,
        deprivation=deprivation,
        population=population,
        records=records,
        crime_id_bytes=np.concatenate(id_parts),
        month_offsets=offsets,
        defect_counts=counts,
    )


def _ward_layer(
    rng: np.random.Generator,
    cells: np.ndarray,
    ward_of_lsoa: np.ndarray,
    codes: np.ndarray,
    names: np.ndarray,
) -> gpd.GeoDataFrame:
    n = len(codes)
    frame = gpd.GeoDataFrame({"w": ward_of_lsoa}, geometry=gpd.GeoSeries(cells, crs="EPSG:27700"))
    try:
        merged = frame.dissolve("w", method="coverage")
    except Exception:  # not a valid coverage: fall back to an overlay union
        merged = frame.dissolve("w")
    geoms = merged.geometry.reindex(np.arange(n)).to_numpy()
    pieces, owner = shapely.get_parts(geoms, return_index=True)
    geoms = shapely.multipolygons(pieces, indices=owner)
    inside = shapely.point_on_surface(geoms)
    e = np.rint(shapely.get_x(inside))
    nn = np.rint(shapely.get_y(inside))
    lon, lat = _to_wgs84().transform(e, nn)
    guid = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    text = np.full((n, 38), ord("-"), dtype=np.uint8)
    text[:, 0], text[:, 37] = ord("{"), ord("}")
    digits = np.r_[1:9, 10:14, 15:19, 20:24, 25:37]  # positions of the 32 hex digits
    text[:, digits[0::2]] = _HEX_UPPER[guid >> 4]
    text[:, digits[1::2]] = _HEX_UPPER[guid & 15]
    gid = text.view("S38").ravel().astype(str)
    return gpd.GeoDataFrame(
        {
            "WD24CD": pd.array(codes, dtype="str"),
            "WD24NM": pd.array(names, dtype="str"),
            "WD24NMW": " ",
            "BNG_E": e,
            "BNG_N": nn,
            "LONG": np.round(np.asarray(lon), 5),
            "LAT": np.round(np.asarray(lat), 5),
            "GlobalID": pd.array(gid, dtype="str"),
        },
        geometry=gpd.GeoSeries(geoms, crs="EPSG:27700"),
    )


def _iod_table(
    rng: np.random.Generator,
    codes: np.ndarray,
    names: np.ndarray,
    *,
    depriv: np.ndarray,
    centrality: np.ndarray,
    crime_rate: np.ndarray,
    ages: np.ndarray,
) -> pd.DataFrame:
    n = codes.size
    national = max(_IOD_NATIONAL_N, n)

    def eps() -> np.ndarray:
        return rng.normal(0, 1, n)

    cen = _standardise(centrality)
    lat: dict[str, np.ndarray] = {}
    lat["income"] = 0.92 * depriv + 0.39 * eps()
    lat["employment"] = 0.9 * depriv + 0.44 * eps()
    lat["education"] = 0.8 * depriv + 0.6 * eps()
    lat["health"] = 0.75 * depriv + 0.66 * eps()
    lat["crime"] = 0.45 * depriv + 0.6 * _standardise(crime_rate) + 0.4 * eps()
    lat["barriers"] = 0.25 * depriv + 0.97 * eps()
    lat["living_env"] = 0.3 * depriv + 0.5 * cen + 0.8 * eps()
    lat["idaci"] = 0.9 * lat["income"] + 0.44 * eps()
    lat["idaopi"] = 0.85 * lat["income"] + 0.5 * eps()
    lat["cyp"] = 0.9 * lat["education"] + 0.44 * eps()
    lat["adult_skills"] = 0.85 * lat["education"] + 0.5 * eps()
    lat["geo_barriers"] = -0.6 * cen + 0.8 * eps()
    lat["wider_barriers"] = 0.8 * lat["barriers"] + 0.6 * eps()
    lat["indoors"] = 0.8 * lat["living_env"] + 0.6 * eps()
    lat["outdoors"] = 0.5 * lat["living_env"] + 0.6 * cen + 0.6 * eps()
    lat["imd"] = sum(w * _standardise(lat[k]) for k, w in _IMD_WEIGHTS.items())
    out: dict[str, Any] = {
        "LSOA code (2021)": codes,
        "LSOA name (2021)": names,
        "Local Authority District code (2024)": LAD_CODE,
        "Local Authority District name (2024)": LAD_NAME,
    }
    cols = iter(IOD_COLUMNS[4:])
    for key, _, _ in _IOD_DOMAINS:
        positions = np.sort(rng.choice(national, n, replace=False)) + 1
        rank = np.empty(n, dtype=np.int64)
        rank[np.argsort(-lat[key], kind="stable")] = positions
        score = np.interp(1 - (rank - 0.5) / national, _Q_PROBS, np.array(_Q_KNOTS[key]))
        out[next(cols)] = np.round(score, 3)
        out[next(cols)] = rank
        out[next(cols)] = (rank * 10 + national - 1) // national
    factor = rng.uniform(0.97, 1.04, n)
    out[next(cols)] = np.rint(ages.sum(1) * factor).astype(np.int64)
    out[next(cols)] = np.rint(ages[:, 0] * factor).astype(np.int64)
    out[next(cols)] = np.rint((ages[:, 5] + ages[:, 4] / 3) * factor).astype(np.int64)
    out[next(cols)] = np.rint(
        (ages[:, 1] * 7 / 9 + ages[:, 2] + ages[:, 3] + ages[:, 4] + ages[:, 5] * 0.07) * factor
    ).astype(np.int64)
    frame = pd.DataFrame(out)
    return frame.astype({c: "str" for c in IOD_COLUMNS[:4]})


# ----------------------------------------------------------------------------- records


@dataclass
class _MonthContext:
    cdfs: np.ndarray
    shares: np.ndarray
    mean_total: float
    outcome_p: np.ndarray
    mp_area: np.ndarray
    mp_xy: np.ndarray
    n_mp: int
    n_nb_mp: int
    lsoa_first: np.ndarray
    per_lsoa: np.ndarray
    cells: np.ndarray
    area_rank: np.ndarray


def _draw_outcomes(
    rng: np.random.Generator, ctype: np.ndarray, ctx: _MonthContext, under_investigation: float
) -> np.ndarray:
    out = np.full(ctype.size, -1, dtype=np.int16)
    u = rng.random(ctype.size)
    for t in range(1, len(CRIME_TYPES)):  # loop per crime type
        sel = ctype == t
        out[sel] = _choice_cdf(u[sel], ctx.outcome_p[t])
    if under_investigation > 0:
        ui = (ctype != ASB) & (rng.random(ctype.size) < under_investigation)
        out[ui] = 0
    return out


def _month_records(
    rng: np.random.Generator, ctx: _MonthContext, *, month_index: int, under_investigation: float
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Clean records of one month: type, map point, outcome, Crime ID bytes."""
    amp, peak = _TYPE_PARAMS[:, 7], _TYPE_PARAMS[:, 8]
    season = 1 + amp * np.cos(2 * np.pi * (month_index - peak) / 12)
    n_t = rng.poisson(ctx.mean_total * ctx.shares * season)
    ctype = np.repeat(np.arange(len(CRIME_TYPES), dtype=np.int16), n_t)
    mp = np.empty(ctype.size, dtype=np.int64)
    u = rng.random(ctype.size)
    pos = np.concatenate([[0], np.cumsum(n_t)])
    for t in range(len(CRIME_TYPES)):  # loop per crime type
        c = ctx.cdfs[t]
        q = np.sort(u[pos[t] : pos[t + 1]]) * c[-1]  # sorted queries: cache-friendly search
        mp[pos[t] : pos[t + 1]] = np.minimum(np.searchsorted(c, q, side="right"), ctx.n_mp - 1)
    outcome = _draw_outcomes(rng, ctype, ctx, under_investigation)
    ids = np.frombuffer(rng.bytes(32 * ctype.size), dtype=np.uint8).reshape(-1, 32).copy()
    ids[ctype == ASB] = 0
    part = {
        "ctype": ctype,
        "map_point": mp,
        "area": ctx.mp_area[mp],
        "outcome": outcome,
        "defect": np.zeros(ctype.size, dtype=np.int8),
        "pair": np.full(ctype.size, -1, dtype=np.int64),
        "seq": np.arange(ctype.size, dtype=np.int64),
    }
    return part, ids


def _add_defects(
    rng: np.random.Generator,
    ctx: _MonthContext,
    part: dict[str, np.ndarray],
    ids: np.ndarray,
    *,
    force_each: bool,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Convert or add defective rows (one reason per row)."""
    code = {r: i + 1 for i, r in enumerate(DEFECT_REASONS)}
    n = part["ctype"].size
    is_crime = part["ctype"] != ASB
    used = np.zeros(n, dtype=bool)
    perm = rng.permutation(n)

    def draw(reason: str, base: int) -> int:
        k = int(rng.binomial(base, _DEFECT_RATES[reason]))
        return max(k, 1) if force_each else k

    def take(k: int, eligible: np.ndarray) -> np.ndarray:
        cand = perm[eligible[perm] & ~used[perm]][:k]
        used[cand] = True
        return cand

    # rows without a location
    rows = take(draw("no_coordinates", int(is_crime.sum())), is_crime)
    part["map_point"][rows] = -1
    part["area"][rows] = -1
    part["defect"][rows] = code["no_coordinates"]
    # a crime type police.uk no longer uses
    rows = take(draw("unknown_crime_type", n), is_crime)
    part["ctype"][rows] = len(CRIME_TYPES)
    part["defect"][rows] = code["unknown_crime_type"]
    # Month written MM/YYYY
    rows = take(draw("malformed_month", n), np.ones(n, dtype=bool))
    part["defect"][rows] = code["malformed_month"]
    # the stated LSOA is a borough LSOA far from the point
    rows = take(draw("lsoa_mismatch", n), np.ones(n, dtype=bool))
    n_lsoas = ctx.cells.size
    pts = shapely.points(ctx.mp_xy[part["map_point"][rows]])
    stated = np.full(rows.size, -1, dtype=np.int64)
    for _ in range(20):  # a few rounds of redrawing the stated LSOA
        todo = np.flatnonzero(stated < 0)
        if todo.size == 0:
            break
        cand = rng.integers(0, n_lsoas, todo.size)
        ok = shapely.distance(pts[todo], ctx.cells[cand]) >= FAR_M
        stated[todo[ok]] = cand[ok]
    failed = stated < 0
    used[rows[failed]] = False
    rows, stated = rows[~failed], stated[~failed]
    part["area"][rows] = stated
    part["defect"][rows] = code["lsoa_mismatch"]
    # duplicate Crime IDs: a second row for a clean crime row (same month, type and ID)
    src = take(draw("duplicate_crime_id", int(is_crime.sum())), is_crime & (part["defect"] == 0))
    lsoa = part["area"][src]
    same_point = rng.random(src.size) < 0.5
    other = ctx.lsoa_first[lsoa] + np.floor(rng.random(src.size) * ctx.per_lsoa[lsoa]).astype(
        np.int64
    )
    dup_mp = np.where(same_point, part["map_point"][src], other)
    new_outcome = rng.random(src.size) < 0.3
    dup_outcome = np.where(
        new_outcome, _draw_outcomes(rng, part["ctype"][src], ctx, 0.0), part["outcome"][src]
    )
    part["pair"][src] = np.arange(src.size)
    # records outside the borough, stating a neighbour's LSOA
    k_out = draw("outside_study_area", n)
    out_type = _choice_cdf(rng.random(k_out), ctx.shares).astype(np.int16)
    out_mp = ctx.n_mp + rng.integers(0, ctx.n_nb_mp, k_out)
    out_ids = np.frombuffer(rng.bytes(32 * k_out), dtype=np.uint8).reshape(-1, 32).copy()
    out_ids[out_type == ASB] = 0
    add = {
        "ctype": np.concatenate([part["ctype"][src], out_type]),
        "map_point": np.concatenate([dup_mp, out_mp]),
        "area": np.concatenate([lsoa, ctx.mp_area[out_mp]]),
        "outcome": np.concatenate([dup_outcome, _draw_outcomes(rng, out_type, ctx, 0.0)]).astype(
            np.int16
        ),
        "defect": np.concatenate(
            [
                np.full(src.size, code["duplicate_crime_id"], dtype=np.int8),
                np.full(k_out, code["outside_study_area"], dtype=np.int8),
            ]
        ),
        "pair": np.concatenate([np.arange(src.size), np.full(k_out, -1)]),
        "seq": n + np.arange(src.size + k_out, dtype=np.int64),
    }
    part = {key: np.concatenate([part[key], add[key].astype(part[key].dtype)]) for key in part}
    ids = np.concatenate([ids, ids[src], out_ids])
    return part, ids


def _label_duplicates(part: dict[str, np.ndarray]) -> None:
    """In file order, the later row of each Crime-ID pair is the duplicate; the earlier is clean."""
    pair = part["pair"]
    rows = np.flatnonzero(pair >= 0)
    if rows.size == 0:
        return
    dup = np.int8(DEFECT_REASONS.index("duplicate_crime_id") + 1)
    part["defect"][rows] = 0
    _, first = np.unique(pair[rows], return_index=True)
    later = np.ones(rows.size, dtype=bool)
    later[first] = False
    part["defect"][rows[later]] = dup


# ----------------------------------------------------------------------------- writing


@contextlib.contextmanager
def _gdal_date(value: str) -> Iterator[None]:
    """Fix GeoPackage ``last_change`` timestamps so files are byte-identical."""
    old = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": value})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": old})


def _write_gpkg(frame: gpd.GeoDataFrame, path: Path, layer: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    pyogrio.write_dataframe(frame, path, layer=layer, driver="GPKG", promote_to_multi=True)


def write_borough(
    borough: FictionalBorough,
    out_dir: Path,
    *,
    parts: Iterable[str] = PARTS,
) -> dict[str, Path]:
    """Write the borough's files in the formats of the real downloads.

    Parameters
    ----------
    borough
        From :func:`generate_borough`.
    out_dir
        Folder to write into (created; files of the same name are replaced).
    parts
        Any of :data:`PARTS`: ``"boundaries"`` (both GeoPackages), ``"lookups"``
        (``lsoa_ward_lookup.csv``), ``"police_uk"`` (the monthly street files), ``"iod"``
        (``iod2025_file7.csv``), ``"census"`` (``census2021_residents_by_age.csv``).
        ``README.md`` is always written.

    Returns
    -------
    dict
        ``"lsoas"``, ``"wards"``, ``"ward_lookup"``, ``"police_uk"`` (the folder) and
        ``"street:YYYY-MM"`` per month, ``"iod"``, ``"population"``, ``"readme"`` -> path, for
        the parts written.
    """
    wanted = tuple(parts)
    unknown = [p for p in wanted if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown parts {unknown}; choose from {PARTS}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if "boundaries" in wanted:
        with _gdal_date(f"{borough.months[-1]}-01T00:00:00.000Z"):
            p = out / "boundaries" / "fictional_lsoa21.gpkg"
            _write_gpkg(borough.lsoas, p, "fictional_lsoa21")
            paths["lsoas"] = p
            p = out / "boundaries" / "fictional_wards.gpkg"
            _write_gpkg(borough.wards, p, "wards")
            paths["wards"] = p
    if "lookups" in wanted:
        p = out / "lsoa_ward_lookup.csv"
        borough.ward_lookup.to_csv(p, index=False, encoding="utf-8-sig", lineterminator="\n")
        paths["ward_lookup"] = p
    if "police_uk" in wanted:
        root = out / "police_uk"
        paths["police_uk"] = root
        options = pa_csv.WriteOptions(
            quoting_style="none", quoting_header="none", eol="\r\n", batch_size=65536
        )
        for month in borough.months:  # loop per month
            p = root / month / f"{month}-fictional-street.csv"
            p.parent.mkdir(parents=True, exist_ok=True)
            pa_csv.write_csv(borough.street_table(month), p, write_options=options)
            paths[f"street:{month}"] = p
    if "iod" in wanted:
        p = out / "iod2025_file7.csv"
        borough.deprivation.to_csv(p, index=False, lineterminator="\n")
        paths["iod"] = p
    if "census" in wanted:
        p = out / "census2021_residents_by_age.csv"
        borough.population.to_csv(p, index=False, lineterminator="\n")
        paths["population"] = p
    p = out / "README.md"
    p.write_text(_readme(borough, wanted), encoding="utf-8")
    paths["readme"] = p
    return paths


def _readme(borough: FictionalBorough, parts: Sequence[str]) -> str:
    params = json.dumps(borough.params, indent=2, sort_keys=True)
    defects = json.dumps(borough.defect_counts, indent=2)
    return f"""# Fictional borough (generated data)

**Everything in this folder is fictional and generated.** No row describes a real place,
person, crime or area. The files only mimic the formats of real downloads (police.uk street-level
crime, ONS boundaries and lookups, the English Indices of Deprivation 2025 File 7, Census 2021
usual residents by age), so that software can be tested and demonstrated without real data.

- Generator: `priority_index.examples.fictional` (`generate_borough`, then `write_borough`).
- Seed {borough.params["seed"]}; the same seed and parameters reproduce these files byte for byte.
- Codes cannot collide with real ONS codes: LSOAs `E01999xxx` (or `E019xxxxx` above 999 LSOAs),
  MSOAs `E02999xxx`, wards `E05999xxx`, the borough `{LAD_CODE}` "{LAD_NAME}", records outside
  the borough `E01800xxx` ("{NEIGHBOUR_NAME}").
- Police force: "{FORCE}". Months {borough.months[0]} to {borough.months[-1]}.
- Parts written: {", ".join(parts) if parts else "(none)"}.

## Parameters

```json
{params}
```

## Defect rows in the street files (reason -> rows)

```json
{defects}
```
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m priority_index.examples.fictional OUT_DIR [options]``.

    Parameters
    ----------
    argv
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success.
    """
    parser = argparse.ArgumentParser(description="Write a fictional borough (generated data).")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n-lsoas", type=int, default=200)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--start", default="2025-01")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--records-per-lsoa-month", type=float, default=14.0)
    parser.add_argument("--centres", type=int, default=None)
    parser.add_argument("--extent-m", type=float, default=None)
    parser.add_argument("--defects", action="store_true")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    args = parser.parse_args(argv)
    borough = generate_borough(
        n_lsoas=args.n_lsoas,
        months=args.months,
        start=args.start,
        seed=args.seed,
        records_per_lsoa_month=args.records_per_lsoa_month,
        centres=args.centres,
        extent_m=args.extent_m,
        defects=args.defects,
    )
    paths = write_borough(borough, args.out_dir, parts=args.parts)
    print(f"{len(borough.records):,} records, {len(paths)} paths under {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
