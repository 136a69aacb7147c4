"""Build the real Croydon data bundle committed in the repository, from the raw open data.

Run from the project root::

    python -m priority_index.examples.croydon --raw ../shared/data/raw --repo .

It writes, under ``--repo``:

- ``boundaries/croydon_lsoa21.gpkg``: Croydon's 229 2021 LSOAs (ONS, generalised 20 m);
- ``boundaries/croydon_wards24.gpkg``: Croydon's 28 May-2024 electoral wards;
- ``boundaries/LICENCE.md``;
- ``data/croydon/``: the Met's monthly LSOA table rows for Croydon, the real police.uk burglary
  rows for Croydon (one file per month, as the archive unpacks), IoD2025, Census 2021 residents
  by age, the LSOA -> ward lookup, the places the partnership's 2021 surveys named as unsafe
  (with their 2024 wards), and ``LICENCE.md``.

Tables are cut from the raw files line by line, so every kept row is byte-for-byte the published
row (columns, order, number formatting); only the lookup and the survey list are written by
pandas, with no floats. GeoPackages are written as version 1.2 (opens cleanly in QGIS 3.22 LTR)
with GDAL's ``OGR_CURRENT_DATE`` fixed, so rebuilding gives identical bytes on the same GDAL.
This module is an example script: I/O by nature.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import re
import sys
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

CROYDON_LAD = "E09000008"
CRS = 27700

#: Fixed "last change" stamp written into gpkg_contents (GDAL config OGR_CURRENT_DATE).
BUNDLE_TIMESTAMP = "2026-04-01T00:00:00.000Z"

LSOA_SHP = Path("london") / "boundaries" / "london-2021-lsoa-gen20.shp"
WARD_GPKG = Path("london") / "boundaries" / "london-2024-ward.gpkg"
WARD_LOOKUP = Path("lookups") / "LSOA21_to_WD24_to_LAD24_best_fit_EW.csv"
MONTHLY_CSV = Path("london") / "crime_lsoa_monthly" / "MPS_LSOA_Level_Crime_2024-02_to_2026-02.csv"
POLICE_ZIP = Path("police_uk") / "met-burglary-only-2023-03_to_2025-02.zip"
IOD_CSV = Path("iod") / "imd2025_england_lsoa21.csv.gz"
AGE_CSV = Path("census2021") / "census2021_usual_residents_lsoa21_by_age6.csv.gz"

OUT_LSOA = Path("boundaries") / "croydon_lsoa21.gpkg"
OUT_WARDS = Path("boundaries") / "croydon_wards24.gpkg"
OUT_DATA = Path("data") / "croydon"

LSOA_FIELDS = ["LSOA21CD", "LSOA21NM", "MSOA21CD", "MSOA21NM", "LAD22CD", "LAD22NM"]
WARD_FIELDS = ["WD24CD", "WD24NM", "LAD24CD", "LAD24NM", "BNG_E", "BNG_N", "LONG", "LAT"]
LOOKUP_FIELDS = ["LSOA21CD", "LSOA21NM", "WD24CD", "WD24NM", "LAD24CD", "LAD24NM"]

SURVEY_SOURCE = "Safer Croydon Partnership 2021 surveys, Community Safety Strategy 2022-2024"

#: Places the 2021 surveys most often named as unsafe, with the 2024 wards they correspond to
#: (names as in the ONS lookup) and the reasoning. Ward positions were checked by placing the
#: approximate location of each named centre (a station or shopping centre) in the ward polygons.
UNSAFE_PLACES: list[dict[str, str]] = [
    {
        "place": "West Croydon",
        "wards_2024": "Fairfield; Broad Green",
        "adjacent_wards_2024": "",
        "notes": (
            "No ward is named West Croydon. West Croydon station and bus station lie at the "
            "north-west edge of Fairfield, close to its boundary with Broad Green; the London "
            "Road corridor usually meant by 'West Croydon' runs north from the station into "
            "Broad Green. Both wards are listed."
        ),
    },
    {
        "place": "Thornton Heath",
        "wards_2024": "Thornton Heath",
        "adjacent_wards_2024": "Bensham Manor",
        "notes": (
            "A ward carries the name. The district centre around Thornton Heath station lies on "
            "the ward's boundary with Bensham Manor, so Bensham Manor is given as adjacent."
        ),
    },
    {
        "place": "South Norwood",
        "wards_2024": "South Norwood",
        "adjacent_wards_2024": "Woodside",
        "notes": (
            "A ward carries the name. Norwood Junction station, at the centre of South Norwood, "
            "lies on the boundary with Woodside, given as adjacent."
        ),
    },
    {
        "place": "New Addington",
        "wards_2024": "New Addington North; New Addington South",
        "adjacent_wards_2024": "",
        "notes": (
            "The estate is split between two wards carrying its name (since the 2018 review); "
            "its shopping parade is in New Addington South. Both wards are listed."
        ),
    },
    {
        "place": "Croydon Town Centre",
        "wards_2024": "Fairfield",
        "adjacent_wards_2024": "",
        "notes": (
            "No ward is named after the town centre. Fairfield holds the shopping core (North "
            "End, the Whitgift and Centrale centres), East and West Croydon stations and the "
            "Town Hall: most of the Croydon Metropolitan Centre falls in Fairfield."
        ),
    },
]

OGL = "Contains public sector information licensed under the Open Government Licence v3.0."
OS_DATA = "Contains OS data © Crown copyright and database right 2022."

BOUNDARY_LICENCE = f"""# Croydon boundaries: licence and sources

{OGL}
{OS_DATA}

Source: Office for National Statistics licensed under the Open Government Licence v3.0
(<https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/>).

- `croydon_lsoa21.gpkg`: Croydon's 229 2021 LSOAs (LAD22CD {CROYDON_LAD}), EPSG:27700,
  generalised 20 m; fields {", ".join(LSOA_FIELDS)}.
  Source: ONS Census 2021 geographies, `london-2021-lsoa-gen20.shp` as curated by
  jamesdamillington/london-data (`data/geographies/census/`).
- `croydon_wards24.gpkg`: Croydon's 28 May-2024 electoral wards, EPSG:27700; fields
  {", ".join(WARD_FIELDS)}.
  Source: ONS Open Geography, `london-2024-ward.gpkg`; the wards are those whose WD24CD the ONS
  lookup `LSOA21_to_WD24_to_LAD24_best_fit_EW.csv` gives for Croydon, which also supplies
  LAD24CD and LAD24NM.

Made by `priority_index/examples/croydon.py` from those files: geometries unchanged, rows sorted
by code, GeoPackage 1.2.
"""


def _data_licence(police_note: str) -> str:
    return f"""# Croydon data bundle: licence and sources

{OGL}
The Metropolitan Police Service tables are published under the Open Government Licence v2.0
(<https://www.nationalarchives.gov.uk/doc/open-government-licence/version/2/>); everything else
under v3.0 (<https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/>).

Every file here was made by `priority_index/examples/croydon.py` from the raw open data. Rows are
kept byte for byte as published (same columns, order and number formatting) unless said
otherwise. Croydon = the 229 2021 LSOAs of LAD {CROYDON_LAD} (London Borough of Croydon).

- `MPS_LSOA_Level_Crime_Croydon_2024-02_to_2026-02.csv`: the rows of Croydon's LSOAs in the
  published layout, one row per LSOA x minor category, one column per month 202402 to 202602
  (sexual offences are not published at LSOA level).
  Source: Metropolitan Police Service via the London Datastore, "Recorded Crime Summary Data for
  London: LSOA level" (OGL v2); April 2026 snapshot from fenneh/london-crime-data, whose
  lower-cased text headers were restored to the published Title Case.
- `police_uk/YYYY-MM/YYYY-MM-metropolitan-street.csv`: police.uk street-level crime,
  Metropolitan Police, **burglary only**, 2023-03 to 2025-02: the rows whose `LSOA code` is one
  of Croydon's 229 2021 LSOAs, police.uk column layout, original row order, one file per month as
  the archive unpacks. {police_note}
  Source: police.uk (Home Office, OGL v3); burglary-only subset kept by
  LidiyaStankova/CBL---group-23.
- `iod2025_croydon_lsoa21.csv`: English Indices of Deprivation 2025, IMD and its 7 domains:
  scores, ranks (1 = most deprived in England) and deciles.
  Source: Ministry of Housing, Communities and Local Government (OGL v3), converted from the R
  data of humaniverse/IMD (that package's column names).
- `census2021_residents_by_age_croydon_lsoa21.csv`: Census 2021 usual residents by 6 age bands,
  long layout.
  Source: ONS Census 2021 custom dataset (OGL v3; small cell-key perturbation), from the R data
  of cwthom/hack25usefuldata.
- `lsoa21_ward24_lookup_croydon.csv`: each Croydon 2021 LSOA's May-2024 ward and LAD, columns
  {", ".join(LOOKUP_FIELDS)}, sorted by LSOA21CD.
  Source: ONS, `LSOA21_to_WD24_to_LAD24_best_fit_EW.csv` (OGL v3).
- `unsafe_places_2021_survey.csv`: the places most often named as unsafe in the partnership's
  2021 surveys, with the 2024 ward(s) each corresponds to and the reasoning (`notes`).
  Source: Safer Croydon Partnership, Community Safety Strategy 2022-2024 (place names); ward
  assignment by this project from the ward names in the ONS lookup.
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _filter_lines(data: bytes, keep: Callable[[list[str]], bool], *, source: str) -> bytes:
    """Keep the header and the lines whose parsed fields satisfy ``keep``, bytes unchanged."""
    text = data.decode("utf-8")
    lines = text.splitlines(keepends=True)
    if not lines:
        raise ValueError(f"{source}: empty file")
    out = [lines[0]]
    for number, line in enumerate(lines[1:], start=2):
        if line.count('"') % 2:
            raise ValueError(f"{source}, line {number}: a quoted field spans lines")
        fields = next(csv.reader([line]))
        if keep(fields):
            out.append(line)
    return "".join(out).encode("utf-8")


def _column(data: bytes, name: str, *, source: str) -> int:
    header = next(csv.reader(io.StringIO(data.decode("utf-8").split("\n", 1)[0])))
    if name not in header:
        raise ValueError(f"{source}: no column {name!r} in {header}")
    return header.index(name)


def _cut_table(data: bytes, column: str, codes: set[str], *, source: str) -> bytes:
    i = _column(data, column, source=source)
    return _filter_lines(data, lambda f: len(f) > i and f[i] in codes, source=source)


def _write_gpkg(frame: gpd.GeoDataFrame, path: Path, *, layer: str, description: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal")):
        stale.unlink(missing_ok=True)
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": BUNDLE_TIMESTAMP})
    try:
        pyogrio.write_dataframe(
            frame,
            path,
            layer=layer,
            driver="GPKG",
            dataset_options={"VERSION": "1.2"},
            layer_options={"DESCRIPTION": description, "SPATIAL_INDEX": "YES"},
        )
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})


def croydon_lsoas(raw: Path) -> gpd.GeoDataFrame:
    """Croydon's 229 2021 LSOAs from the London generalised shapefile, sorted by code."""
    lsoa = gpd.read_file(raw / LSOA_SHP, engine="pyogrio")
    lsoa = lsoa[lsoa["LAD22CD"] == CROYDON_LAD].sort_values("LSOA21CD")
    lsoa = lsoa[[*LSOA_FIELDS, "geometry"]].set_crs(CRS, allow_override=True)
    if len(lsoa) != 229 or lsoa["LSOA21CD"].duplicated().any():
        raise ValueError(f"{LSOA_SHP}: expected 229 Croydon LSOAs, found {len(lsoa)}")
    return lsoa.reset_index(drop=True)


def croydon_lookup(raw: Path, codes: Iterable[str]) -> pd.DataFrame:
    """Croydon rows of the LSOA21 -> WD24 -> LAD24 lookup, checked against the LSOA codes."""
    table = pd.read_csv(raw / WARD_LOOKUP, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    table = table[table["LAD24CD"] == CROYDON_LAD].sort_values("LSOA21CD")[LOOKUP_FIELDS]
    if set(table["LSOA21CD"]) != set(codes) or table["LSOA21CD"].duplicated().any():
        raise ValueError(f"{WARD_LOOKUP}: Croydon LSOAs differ from the boundary file")
    return table.reset_index(drop=True)


def croydon_wards(raw: Path, lookup: pd.DataFrame) -> gpd.GeoDataFrame:
    """Croydon's 2024 wards: those whose WD24CD the lookup gives for Croydon."""
    wards = gpd.read_file(raw / WARD_GPKG, engine="pyogrio")
    names = lookup.drop_duplicates("WD24CD").set_index("WD24CD")
    wards = wards[wards["WD24CD"].isin(names.index)].sort_values("WD24CD")
    wards = wards.assign(
        LAD24CD=wards["WD24CD"].map(names["LAD24CD"]),
        LAD24NM=wards["WD24CD"].map(names["LAD24NM"]),
    )
    if len(wards) != names.shape[0] or len(wards) != 28:
        raise ValueError(f"{WARD_GPKG}: expected Croydon's 28 wards, found {len(wards)}")
    if not (wards["WD24NM"].to_numpy() == wards["WD24CD"].map(names["WD24NM"]).to_numpy()).all():
        raise ValueError(f"{WARD_GPKG}: ward names differ from the lookup")
    return (
        wards[[*WARD_FIELDS, "geometry"]].set_crs(CRS, allow_override=True).reset_index(drop=True)
    )


def unsafe_places(lookup: pd.DataFrame) -> pd.DataFrame:
    """The 2021 survey places with their 2024 ward names and codes (names must exist)."""
    code_of = dict(zip(lookup["WD24NM"], lookup["WD24CD"], strict=False))
    rows = []
    for place in UNSAFE_PLACES:
        names = [n for n in place["wards_2024"].split("; ") if n]
        adjacent = [n for n in place["adjacent_wards_2024"].split("; ") if n]
        unknown = [n for n in names + adjacent if n not in code_of]
        if unknown:
            raise ValueError(f"{place['place']}: not Croydon 2024 ward names: {unknown}")
        rows.append(
            {
                "place": place["place"],
                "source": SURVEY_SOURCE,
                "wards_2024": "; ".join(names),
                "ward_codes_2024": "; ".join(code_of[n] for n in names),
                "adjacent_wards_2024": "; ".join(adjacent),
                "notes": place["notes"],
            }
        )
    return pd.DataFrame(rows)


def _croydon_named_elsewhere(data: bytes, codes: set[str], *, source: str) -> list[tuple[str, str]]:
    """(month, LSOA code) of rows named 'Croydon ...' whose code is not a Croydon 2021 LSOA."""
    i = _column(data, "LSOA code", source=source)
    j = _column(data, "LSOA name", source=source)
    k = _column(data, "Month", source=source)
    rows = csv.reader(io.StringIO(data.decode("utf-8")))
    next(rows)
    return [(r[k], r[i]) for r in rows if r[j].startswith("Croydon ") and r[i] not in codes]


def _police_note(left_out: list[tuple[str, str]]) -> str:
    if not left_out:
        return "Every row named for a Croydon LSOA is included."
    months = sorted({m for m, _ in left_out})
    codes = sorted({c for _, c in left_out})
    return (
        f"Not included: {len(left_out)} rows of {', '.join(months)} named for Croydon LSOAs\n"
        f"  but carrying codes outside the 229 (the 2011 codes of LSOAs split in 2021:\n"
        f"  {', '.join(codes)})."
    )


def _police_members(archive: zipfile.ZipFile) -> list[str]:
    pattern = re.compile(r"^(\d{4}-\d{2})/\1-metropolitan-street\.csv$")
    members = sorted(n for n in archive.namelist() if pattern.match(n))
    if not members:
        raise ValueError(f"{POLICE_ZIP}: no monthly street files")
    return members


def build_bundle(raw: Path, repo: Path) -> dict[str, str]:
    """Write the Croydon bundle under ``repo`` from the raw open data under ``raw``.

    Parameters
    ----------
    raw
        The ``shared/data/raw`` folder.
    repo
        Root under which ``boundaries/`` and ``data/croydon/`` are written.

    Returns
    -------
    dict
        ``{path relative to repo (POSIX): sha256 hex digest}`` of every file written, sorted.
    """
    raw, repo = Path(raw), Path(repo)
    written: list[Path] = []

    lsoa = croydon_lsoas(raw)
    codes = set(lsoa["LSOA21CD"])
    lookup = croydon_lookup(raw, codes)
    wards = croydon_wards(raw, lookup)

    _write_gpkg(
        lsoa,
        repo / OUT_LSOA,
        layer="croydon_lsoa21",
        description=f"Croydon 2021 LSOAs (ONS, generalised 20 m). {OGL} {OS_DATA}",
    )
    _write_gpkg(
        wards,
        repo / OUT_WARDS,
        layer="croydon_wards24",
        description=f"Croydon electoral wards, May 2024 (ONS). {OGL} {OS_DATA}",
    )
    _write_bytes(repo / "boundaries" / "LICENCE.md", BOUNDARY_LICENCE.encode("utf-8"))
    written += [OUT_LSOA, OUT_WARDS, Path("boundaries") / "LICENCE.md"]

    data = repo / OUT_DATA
    monthly = (raw / MONTHLY_CSV).read_bytes()
    name = "MPS_LSOA_Level_Crime_Croydon_2024-02_to_2026-02.csv"
    _write_bytes(data / name, _cut_table(monthly, "LSOA Code", codes, source=str(MONTHLY_CSV)))
    written.append(OUT_DATA / name)

    left_out: list[tuple[str, str]] = []
    with zipfile.ZipFile(raw / POLICE_ZIP) as archive:
        for member in _police_members(archive):
            month = archive.read(member)
            cut = _cut_table(month, "LSOA code", codes, source=member)
            _write_bytes(data / "police_uk" / member, cut)
            written.append(OUT_DATA / "police_uk" / member)
            left_out += _croydon_named_elsewhere(month, codes, source=member)

    with gzip.open(raw / IOD_CSV, "rb") as fh:
        iod = _cut_table(fh.read(), "lsoa21_code", codes, source=str(IOD_CSV))
    _write_bytes(data / "iod2025_croydon_lsoa21.csv", iod)
    with gzip.open(raw / AGE_CSV, "rb") as fh:
        age = _cut_table(fh.read(), "lsoa21_code", codes, source=str(AGE_CSV))
    _write_bytes(data / "census2021_residents_by_age_croydon_lsoa21.csv", age)
    written += [
        OUT_DATA / "iod2025_croydon_lsoa21.csv",
        OUT_DATA / "census2021_residents_by_age_croydon_lsoa21.csv",
    ]

    for frame, file in (
        (lookup, "lsoa21_ward24_lookup_croydon.csv"),
        (unsafe_places(lookup), "unsafe_places_2021_survey.csv"),
    ):
        _write_bytes(data / file, frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        written.append(OUT_DATA / file)

    _write_bytes(data / "LICENCE.md", _data_licence(_police_note(left_out)).encode("utf-8"))
    written.append(OUT_DATA / "LICENCE.md")

    return {p.as_posix(): _sha256(repo / p) for p in sorted(written, key=lambda p: p.as_posix())}


def _police_summary(repo: Path) -> tuple[int, int, int]:
    files = sorted((repo / OUT_DATA / "police_uk").glob("*/*-metropolitan-street.csv"))
    frames = [pd.read_csv(f, dtype=str, keep_default_na=False) for f in files]
    rows = pd.concat(frames, ignore_index=True)
    no_xy = int(((rows["Longitude"] == "") | (rows["Latitude"] == "")).sum())
    return len(files), len(rows), no_xy


def main(argv: list[str] | None = None) -> int:
    """Command line: build the bundle and list its files, sizes and hashes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True, help="the shared/data/raw folder")
    parser.add_argument("--repo", type=Path, default=Path("."), help="repository root")
    args = parser.parse_args(argv)

    hashes = build_bundle(args.raw, args.repo)
    total = 0
    for rel, digest in hashes.items():
        size = (args.repo / rel).stat().st_size
        total += size
        print(f"{size:>10,}  {digest[:16]}  {rel}")
    months, rows, no_xy = _police_summary(args.repo)
    print(f"{total:>10,}  bytes in {len(hashes)} files")
    print(
        f"police.uk Croydon burglary: {rows:,} rows in {months} months, {no_xy} without coordinates"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
