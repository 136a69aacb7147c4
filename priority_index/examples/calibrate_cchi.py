"""Derive the packaged CCHI table (``priority_index/data/cchi_groups.csv``) from the raw files.

Run from the project root::

    python -m priority_index.examples.calibrate_cchi --shared ../shared

It reads the Safer Croydon Partnership's published Crime Harm table
(``shared/reference/croydon_crime_harm_2019_2020.csv``) and the Met's annual LSOA counts
(``shared/data/raw/london/crime_lsoa_annual/``), sums Croydon's 220 LSOAs (LAD11CD E09000008) for
2019 and 2020, and divides harm by count pooled over the two years. Sexual offences (no LSOA
counts) and police.uk's combined "Violence and sexual offences" group are derived as documented
in ``priority_index/data/CCHI_DERIVATION.md``. It prints the table, the reproduction of the
published figures and a check on the Met's monthly 2024-26 table, and writes the CSV.

This is an example script (I/O by nature); the arithmetic it relies on lives in
:mod:`priority_index.harm`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from priority_index.crime_groups import GROUP_LABELS, source_mapping
from priority_index.harm import calibrate_days_per_offence, harm_table

CROYDON_LAD = "E09000008"
PERIODS = ("2019", "2020")

#: Share of sexual offences in violence against the person + sexual offences, police recorded
#: crime, England and Wales, year ending March 2020 (ONS): about 163,000 sexual offences against
#: about 1.76 million violence against the person offences. See CCHI_DERIVATION.md.
SEXUAL_SHARE = 0.085

REFERENCE_CSV = Path("reference") / "croydon_crime_harm_2019_2020.csv"
ANNUAL_DIR = Path("data") / "raw" / "london" / "crime_lsoa_annual"
MONTHLY_CSV = (
    Path("data")
    / "raw"
    / "london"
    / "crime_lsoa_monthly"
    / "MPS_LSOA_Level_Crime_2024-02_to_2026-02.csv"
)
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "cchi_groups.csv"

_LABEL_TO_GROUP = {label: group for group, label in GROUP_LABELS.items()}


def published_harm(shared: Path) -> pd.DataFrame:
    """Croydon's published CCHI totals, long: crime_group, period, harm, met_lsoa_table_file."""
    ref = pd.read_csv(shared / REFERENCE_CSV, dtype={"met_lsoa_table_file": "string"})
    ref = ref[ref["crime_type"] != "Total Notifiable Offences"]
    unknown = sorted(set(ref["crime_type"]) - set(_LABEL_TO_GROUP))
    if unknown:
        raise ValueError(f"reference crime types without a canonical group: {unknown}")
    ref = ref.assign(crime_group=ref["crime_type"].map(_LABEL_TO_GROUP))
    long = ref.melt(
        id_vars=["crime_group", "met_lsoa_table_file"],
        value_vars=[f"harm_{p}" for p in PERIODS],
        var_name="period",
        value_name="harm",
    )
    long["period"] = long["period"].str.removeprefix("harm_")
    return long


def croydon_annual_counts(shared: Path, files: pd.Series) -> pd.DataFrame:
    """Met annual counts summed over Croydon's LSOAs: long crime_group, lsoa_code, period, count.

    ``files`` maps crime group -> file name in ``crime_lsoa_annual``.
    """
    frames = []
    for group, name in files.items():
        table = pd.read_csv(shared / ANNUAL_DIR / name, dtype={"LSOA11CD": "string"})
        croydon = table[table["LAD11CD"] == CROYDON_LAD]
        long = croydon.melt(
            id_vars=["LSOA11CD"], value_vars=list(PERIODS), var_name="period", value_name="count"
        ).rename(columns={"LSOA11CD": "lsoa_code"})
        frames.append(long.assign(crime_group=group))
    return pd.concat(frames, ignore_index=True)


def calibrate(shared: Path, *, sexual_share: float = SEXUAL_SHARE) -> pd.DataFrame:
    """Build the CCHI table exactly as shipped in ``priority_index/data/cchi_groups.csv``.

    Parameters
    ----------
    shared
        The ``shared`` folder (holding ``reference/`` and ``data/raw/``).
    sexual_share
        Assumed share of sexual offences in violence against the person + sexual offences.

    Returns
    -------
    pandas.DataFrame
        Columns crime_group, label, days, days_2019, days_2020, source (days rounded to 0.01).
    """
    pub = published_harm(shared)
    files = pub.drop_duplicates("crime_group").set_index("crime_group")["met_lsoa_table_file"]
    counts = croydon_annual_counts(shared, files)
    cal = calibrate_days_per_offence(pub, counts, periods=PERIODS).set_index("crime_group")

    rows: dict[str, dict[str, object]] = {}
    for group in cal.index:
        if group == "sexual_offences":
            continue
        r = cal.loc[group]
        rows[group] = {
            "days": round(float(r["days"]), 2),
            "days_2019": round(float(r["days_2019"]), 2),
            "days_2020": round(float(r["days_2020"]), 2),
            "source": (
                "calibrated: Croydon published CCHI 2019+2020 / Met LSOA counts 2019+2020 "
                f"(220 LSOAs; {files[group]})"
            ),
        }

    # Sexual offences: no LSOA counts. Estimated count = violence count x s / (1 - s).
    sex = cal.loc["sexual_offences"]
    n_vap = counts[counts["crime_group"] == "violence"].groupby("period")["count"].sum()
    h_sex = pub[pub["crime_group"] == "sexual_offences"].set_index("period")["harm"]
    odds = sexual_share / (1.0 - sexual_share)
    sex_days = {p: float(h_sex[p]) / (float(n_vap[p]) * odds) for p in PERIODS}
    if float(sex["count"]) != 0.0:  # pragma: no cover - the Met does not publish them
        raise ValueError("sexual offences now have LSOA counts: calibrate them directly")
    rows["sexual_offences"] = {
        "days": round(sex_days["2019"], 2),
        "days_2019": round(sex_days["2019"], 2),
        "days_2020": round(sex_days["2020"], 2),
        "source": (
            "derived: Croydon published sexual-offence CCHI 2019 / estimated 2019 count "
            f"(violence count x s/(1-s); s={sexual_share} ONS E&W year ending Mar 2020); "
            "not published at LSOA level; see CCHI_DERIVATION.md"
        ),
    }
    # police.uk's combined group: expected days of one offence of the mix.
    blended = {
        k: round(
            (1 - sexual_share) * rows["violence"][k] + sexual_share * rows["sexual_offences"][k], 2
        )
        for k in ("days", "days_2019", "days_2020")
    }
    rows["violence_and_sexual"] = {
        **blended,
        "source": (
            f"blended: (1-s) x violence + s x sexual_offences with s={sexual_share} "
            "(ONS E&W year ending Mar 2020 share of sexual offences in violence+sexual)"
        ),
    }
    rows["asb"] = {
        "days": 0.0,
        "days_2019": float("nan"),
        "days_2020": float("nan"),
        "source": "not a crime: no CCHI value; the pipeline sets its weight (asb_weight)",
    }
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(list(GROUP_LABELS))
    table.index.name = "crime_group"
    table = table.reset_index()
    table.insert(1, "label", table["crime_group"].map(GROUP_LABELS))
    return table[["crime_group", "label", "days", "days_2019", "days_2020", "source"]]


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write the table with fixed formatting (two decimals, LF line ends)."""
    table.to_csv(path, index=False, float_format="%.2f", lineterminator="\n")


def reproduction(shared: Path, table: pd.DataFrame) -> pd.DataFrame:
    """Published harm against calibrated days x Croydon counts, per group and year."""
    pub = published_harm(shared)
    files = pub.drop_duplicates("crime_group").set_index("crime_group")["met_lsoa_table_file"]
    counts = croydon_annual_counts(shared, files)
    counts = counts[counts["crime_group"] != "sexual_offences"]
    weights = dict(zip(table["crime_group"], table["days"], strict=True))
    mine = harm_table(counts, weights, periods=list(PERIODS)).set_index("crime_group")
    published = pub.pivot(index="crime_group", columns="period", values="harm")
    published.loc["total_notifiable"] = published.drop(index="sexual_offences").sum()
    out = pd.DataFrame(index=mine.index)
    for p in PERIODS:
        out[f"published_{p}"] = published[p].reindex(out.index)
        out[f"calibrated_{p}"] = mine[p]
        out[f"diff_{p}_pct"] = 100 * (mine[p] / out[f"published_{p}"] - 1)
    both_pub = out[[f"published_{p}" for p in PERIODS]].sum(axis=1)
    both_cal = out[[f"calibrated_{p}" for p in PERIODS]].sum(axis=1)
    out["diff_pooled_pct"] = 100 * (both_cal / both_pub - 1)
    return out


def monthly_check(shared: Path, table: pd.DataFrame) -> pd.DataFrame:
    """Harm in Croydon from the Met's monthly minor-category table with these weights.

    Returns harm and counts by group for the financial year 2024-25 (April 2024 to March 2025)
    and the calendar year 2025.
    """
    monthly = pd.read_csv(shared / MONTHLY_CSV, dtype={"LSOA Code": "string"})
    croydon = monthly[monthly["Borough"] == CROYDON_LAD]
    groups = croydon["Major Category"].map(source_mapping("met_major"))
    if groups.isna().any():
        raise ValueError(
            f"unmapped Met categories: {sorted(croydon['Major Category'][groups.isna()].unique())}"
        )
    windows = {
        "2024-25": [f"2024{m:02d}" for m in range(4, 13)] + [f"2025{m:02d}" for m in range(1, 4)],
        "2025": [f"2025{m:02d}" for m in range(1, 13)],
    }
    frames = [
        pd.DataFrame(
            {
                "lsoa_code": croydon["LSOA Code"],
                "crime_group": groups,
                "period": name,
                "count": croydon[cols].sum(axis=1),
            }
        )
        for name, cols in windows.items()
    ]
    weights = dict(zip(table["crime_group"], table["days"], strict=True))
    return harm_table(pd.concat(frames), weights, periods=list(windows))


def main(argv: list[str] | None = None) -> int:
    """Command line: derive, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, required=True, help="the shared/ folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV to write")
    parser.add_argument("--sexual-share", type=float, default=SEXUAL_SHARE)
    args = parser.parse_args(argv)

    table = calibrate(args.shared, sexual_share=args.sexual_share)
    write_table(table, args.out)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.drop(columns="source").to_string(index=False))
        print("\nReproduction of the published Croydon figures (sexual offences excluded):")
        print(reproduction(args.shared, table).round(1).to_string())
        print("\nMet monthly table, Croydon, with these weights:")
        print(monthly_check(args.shared, table).round(1).to_string(index=False))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
