"""Area-level tables: the Met's LSOA crime counts, Indices of Deprivation, population.

Crime-count rows are records: each is used or quarantined with a reason. Deprivation and
population are national reference tables: rows of LSOAs outside the study area are counted in
the tally (reason ``outside_study_area``) but not listed one by one; a study LSOA missing from
them stops the run, because an index built on invented values could not be defended.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .quarantine import Quarantine

MET_MONTHLY_TEXT = ["LSOA Code", "LSOA Name", "Borough", "Major Category", "Minor Category"]
MET_ANNUAL_TEXT = ["LSOA11CD", "LSOA11NM", "MSOA11CD", "MSOA11NM", "LAD11CD", "LAD11NM"]

#: IoD domains in a fixed order: name -> (File 7 header, humaniverse column stem)
IOD_DOMAINS: dict[str, tuple[str, str]] = {
    "income": ("Income Score (rate)", "Income"),
    "employment": ("Employment Score (rate)", "Employment"),
    "education": ("Education, Skills and Training Score", "Education"),
    "health": ("Health Deprivation and Disability Score", "Health"),
    "crime": ("Crime Score", "Crime"),
    "housing": ("Barriers to Housing and Services Score", "Housing_and_Services"),
    "environment": ("Living Environment Score", "Environment"),
}
_HUMANIVERSE_ALT = {"Housing_and_Services": ["Housing_and_Access"]}


def read_csv_checked(path: Path, *, required: Sequence[str] = (), dtype=str) -> pd.DataFrame:
    """Read a CSV (plain or gzip) with structural checks on file, encoding and columns."""
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        frame = pd.read_csv(path, dtype=dtype, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            path, f"unreadable encoding: not UTF-8 (byte {exc.start})", expected="UTF-8 CSV"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, f"unreadable CSV: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    for col in required:
        if col not in frame.columns:
            raise InputError(
                path,
                "missing required column",
                row=1,
                column=col,
                expected=f"a column {col!r} (columns found: {list(frame.columns)[:12]})",
            )
    return frame


def _month_columns(frame: pd.DataFrame, pattern: str) -> list[str]:
    return [c for c in frame.columns if re.fullmatch(pattern, c)]


def _counts_from_wide(
    frame: pd.DataFrame,
    *,
    path: Path,
    source: str,
    quarantine: Quarantine,
    code_col: str,
    group: pd.Series,
    time_cols: Sequence[str],
    period_of_col: Mapping[str, str],
    study_codes: pd.Index,
    code_map: Mapping[str, Mapping[str, float]] | None,
    key_cols: Sequence[str],
) -> pd.DataFrame:
    """Validate a wide table (one column per month or year) and return long period counts."""
    tally = quarantine.tally(source)
    tally.files += 1
    n = len(frame)
    tally.rows_read += n
    lines = np.arange(2, n + 2)
    rec = pd.DataFrame(
        {
            "lsoa_code": frame[code_col].astype(str).str.strip().to_numpy(dtype=object),
            "crime_type": frame[key_cols[-1]].astype(str).to_numpy(dtype=object),
        }
    )
    alive = np.ones(n, dtype=bool)

    def reject(mask: np.ndarray, reason: str, detail="") -> None:
        nonlocal alive
        mask = mask & alive
        if mask.any():
            d = detail if isinstance(detail, str) else np.asarray(detail, dtype=object)[mask]
            quarantine.reject(source, str(path), reason, rec[mask], lines=lines[mask], detail=d)
            alive &= ~mask

    values = frame[list(time_cols)].apply(lambda s: pd.to_numeric(s.str.strip(), errors="coerce"))
    raw = frame[list(time_cols)]
    blank = raw.apply(lambda s: s.str.strip() == "")
    bad = values.isna() & ~blank
    first_bad = bad.idxmax(axis=1).where(bad.any(axis=1), "")
    reject(
        bad.any(axis=1).to_numpy(),
        "bad_count",
        (
            "column "
            + first_bad
            + " = "
            + pd.Series(
                [raw.at[i, c] if c else "" for i, c in zip(raw.index, first_bad, strict=True)],
                index=raw.index,
                dtype=object,
            ).astype(str)
        ).to_numpy(dtype=object),
    )
    values = values.fillna(0.0)
    neg = (values < 0).any(axis=1).to_numpy()
    reject(neg, "negative_count")
    codes = rec["lsoa_code"]
    reject(
        ~codes.str.fullmatch(r"[EW]01\d{6}").to_numpy(), "malformed_lsoa_code", "LSOA code=" + codes
    )
    reject(group.isna().to_numpy(), "unknown_crime_type", "category=" + rec["crime_type"])
    if code_map:
        convertible = codes.isin(list(code_map)).to_numpy()
    else:
        convertible = np.zeros(n, dtype=bool)
    # other areas' rows of a London-wide table: counted exactly, summarised in one row per file
    elsewhere = ~codes.isin(study_codes).to_numpy() & ~convertible & alive
    if elsewhere.any():
        quarantine.reject_summary(
            source,
            str(path),
            "outside_study_area",
            lines[elsewhere],
            detail="LSOA codes outside the study area",
        )
        alive &= ~elsewhere
    dup = frame[list(key_cols)].astype(str).duplicated().to_numpy()
    reject(dup, "duplicate_area_row")
    tally.rows_used += int(alive.sum())
    tally.codes_converted += int((alive & convertible & ~codes.isin(study_codes).to_numpy()).sum())
    tally.offences_read = (tally.offences_read or 0.0) + float(values.to_numpy().sum())

    used = values[alive]
    used_codes = codes[alive].to_numpy(dtype=object)
    used_group = group[alive].to_numpy(dtype=object)
    in_period = [c for c in time_cols if c in period_of_col]
    long = pd.DataFrame(
        {
            "lsoa_code": np.repeat(used_codes, len(in_period)),
            "crime_group": np.repeat(used_group, len(in_period)),
            "period": np.tile([period_of_col[c] for c in in_period], len(used_codes)),
            "count": used[in_period].to_numpy(dtype=float).reshape(-1),
        }
    )
    long = long.groupby(["lsoa_code", "crime_group", "period"], as_index=False, sort=True)[
        "count"
    ].sum()
    if code_map:
        long = apportion_long(long, code_map, study_codes)
    tally.offences_used = (tally.offences_used or 0.0) + float(long["count"].sum())
    return long


def apportion_long(
    long: pd.DataFrame, code_map: Mapping[str, Mapping[str, float]], study_codes: pd.Index
) -> pd.DataFrame:
    """Carry counts from codes of another LSOA vintage to study codes by lookup shares."""
    pairs = pd.DataFrame(
        [(a, b, s) for a, targets in code_map.items() for b, s in targets.items()],
        columns=["lsoa_code", "to_code", "share"],
    )
    native = long[long["lsoa_code"].isin(study_codes)]
    other = long[~long["lsoa_code"].isin(study_codes)].merge(pairs, on="lsoa_code", how="inner")
    other = other.assign(lsoa_code=other["to_code"], count=other["count"] * other["share"])
    other = other[other["lsoa_code"].isin(study_codes)]
    out = pd.concat([native, other[native.columns]], ignore_index=True)
    return out.groupby(["lsoa_code", "crime_group", "period"], as_index=False, sort=True)[
        "count"
    ].sum()


def read_met_monthly(
    path: Path,
    *,
    study_codes: pd.Index,
    period_of_month: Mapping[str, str],
    major_groups: Mapping[str, str],
    quarantine: Quarantine,
    source: str,
    code_map: Mapping[str, Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """The Met's current LSOA table: one row per LSOA x minor category, one column per month.

    Returns
    -------
    pandas.DataFrame
        Long counts: lsoa_code, crime_group, period, count (months outside every period are
        read and reconciled in the offence tally but not used).
    """
    frame = read_csv_checked(path, required=MET_MONTHLY_TEXT)
    months = _month_columns(frame, r"\d{6}")
    if not months:
        raise InputError(
            path, "no month columns", row=1, expected="columns named YYYYMM, e.g. 202402"
        )
    col_period = {
        c: period_of_month[f"{c[:4]}-{c[4:]}"]
        for c in months
        if f"{c[:4]}-{c[4:]}" in period_of_month
    }
    group = frame["Major Category"].str.strip().map(major_groups)
    return _counts_from_wide(
        frame,
        path=path,
        source=source,
        quarantine=quarantine,
        code_col="LSOA Code",
        group=group,
        time_cols=months,
        period_of_col=col_period,
        study_codes=study_codes,
        code_map=code_map,
        key_cols=["LSOA Code", "Minor Category"],
    )


def read_met_annual(
    path: Path,
    *,
    crime_group: str,
    study_codes: pd.Index,
    periods: Sequence[tuple[str, str, str]],
    quarantine: Quarantine,
    source: str,
    code_map: Mapping[str, Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """The Met's annual LSOA table for one crime group (columns 2011 ... 2021).

    A year counts towards a period only when the period spans the whole calendar year.
    """
    frame = read_csv_checked(path, required=MET_ANNUAL_TEXT[:1])
    years = _month_columns(frame, r"(19|20)\d{2}")
    if not years:
        raise InputError(path, "no year columns", row=1, expected="columns named like 2019")
    col_period = {}
    for y in years:
        for name, start, end in periods:
            if start <= f"{y}-01" and f"{y}-12" <= end:
                col_period[y] = name
    group = pd.Series(crime_group, index=frame.index, dtype=object)
    frame = frame.assign(_category=crime_group)
    return _counts_from_wide(
        frame,
        path=path,
        source=source,
        quarantine=quarantine,
        code_col="LSOA11CD",
        group=group,
        time_cols=years,
        period_of_col=col_period,
        study_codes=study_codes,
        code_map=code_map,
        key_cols=["LSOA11CD", "_category"],
    )


def _reference_rows(
    frame: pd.DataFrame,
    codes: pd.Series,
    *,
    path: Path,
    source: str,
    quarantine: Quarantine,
    study_codes: pd.Index,
    what: str,
) -> np.ndarray:
    """Tally a reference table and check it covers the study area; return the rows kept."""
    tally = quarantine.tally(source)
    tally.files += 1
    tally.rows_read += len(frame)
    keep = codes.isin(study_codes).to_numpy()
    dup = keep & codes.duplicated().to_numpy()
    if dup.any():
        raise InputError(
            path,
            f"LSOA {codes[dup].iloc[0]!r} appears twice",
            row=int(np.where(dup)[0][0]) + 2,
            expected=f"one {what} row per LSOA",
        )
    if (~keep).any():  # a national table: the other areas' rows, summarised in one row
        quarantine.reject_summary(
            source,
            str(path),
            "outside_study_area",
            np.where(~keep)[0] + 2,
            detail=f"{what} rows of LSOAs outside the study area",
        )
    tally.rows_used += int(keep.sum())
    missing = study_codes.difference(codes[keep])
    if len(missing):
        raise InputError(
            path,
            f"{len(missing)} study-area LSOAs have no {what}, e.g. {missing[0]!r}",
            expected=f"a {what} row for every LSOA of the study area (check the LSOA vintage)",
        )
    return keep


def read_deprivation(
    path: Path,
    *,
    format: str,
    study_codes: pd.Index,
    quarantine: Quarantine,
    source: str,
    code_column: str | None = None,
    columns: Mapping[str, str] | None = None,
    measure: str = "score",
) -> pd.DataFrame:
    """Deprivation domains per LSOA, higher = more deprived.

    Parameters
    ----------
    format
        ``iod_file7`` (official File 7 headers), ``humaniverse`` (``<Domain>_score`` /
        ``<Domain>_rank`` columns, as the IMD R package) or ``columns`` (``columns`` maps domain
        -> header, ``code_column`` names the LSOA code column).
    measure
        ``score`` uses domain scores; ``rank`` converts ranks (1 = most deprived) to a
        0-1 deprivation percentile, for tables without scores (IoD2019 in the R package).

    Returns
    -------
    pandas.DataFrame
        Indexed by lsoa_code, columns ``dep_<domain>`` in IoD order.
    """
    head = read_csv_checked(path)
    if format == "iod_file7":
        code_col = next((c for c in head.columns if c.startswith("LSOA code")), None)
        if code_col is None:
            raise InputError(
                path,
                "missing required column",
                row=1,
                column="LSOA code (2021)",
                expected="IoD File 7 headers",
            )
        mapping = {d: h for d, (h, _) in IOD_DOMAINS.items()}
        if measure == "rank":
            mapping = {
                d: h.replace(" Score (rate)", " Rank (where 1 is most deprived)").replace(
                    " Score", " Rank (where 1 is most deprived)"
                )
                for d, h in mapping.items()
            }
    elif format == "humaniverse":
        code_col = next((c for c in head.columns if re.fullmatch(r"lsoa\d\d_code", c)), None)
        if code_col is None:
            raise InputError(
                path,
                "missing required column",
                row=1,
                column="lsoa21_code",
                expected="an lsoa11_code or lsoa21_code column",
            )
        mapping = {}
        for d, (_, stem) in IOD_DOMAINS.items():
            for s in [stem, *_HUMANIVERSE_ALT.get(stem, [])]:
                if f"{s}_{measure}" in head.columns:
                    mapping[d] = f"{s}_{measure}"
                    break
            else:
                mapping[d] = f"{stem}_{measure}"
    else:
        if not code_column or not columns:
            raise InputError(
                path,
                "format 'columns' needs code_column and columns",
                expected="sources.deprivation.code_column and .columns",
            )
        code_col, mapping = code_column, dict(columns)
    for col in [code_col, *mapping.values()]:
        if col not in head.columns:
            raise InputError(
                path,
                "missing required column",
                row=1,
                column=col,
                expected="the deprivation column named in the pipeline",
            )
    codes = head[code_col].astype(str).str.strip()
    keep = _reference_rows(
        head,
        codes,
        path=path,
        source=source,
        quarantine=quarantine,
        study_codes=study_codes,
        what="deprivation",
    )
    rows = head[keep]
    out = pd.DataFrame(index=pd.Index(codes[keep].to_numpy(), name="lsoa_code"))
    n_all = len(head)
    for d, col in mapping.items():
        vals = pd.to_numeric(rows[col].str.strip(), errors="coerce")
        if vals.isna().any():
            i = int(np.where(vals.isna().to_numpy())[0][0])
            raise InputError(
                path,
                f"not a number: {rows[col].iloc[i]!r}",
                row=int(rows.index[i]) + 2,
                column=col,
                expected="a numeric score",
            )
        v = vals.to_numpy(dtype=float)
        if measure == "rank":
            v = 1.0 - (v - 1.0) / max(n_all - 1, 1)  # 1 = most deprived in the country
        out[f"dep_{d}"] = v
    return out.sort_index()


def read_population(
    path: Path,
    *,
    format: str,
    study_codes: pd.Index,
    quarantine: Quarantine,
    source: str,
    code_column: str | None = None,
    total_column: str | None = None,
    young_columns: Sequence[str] = (),
    code_map: Mapping[str, Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """Residents and young residents per LSOA.

    Parameters
    ----------
    format
        ``census_age_long`` (rows of lsoa code, age_group, usual_residents),
        ``ons_mid_year`` (``Persons_All-Ages`` and age-band columns) or ``columns``.
    young_columns
        Age-band columns (or age_group labels) counted as young residents; defaults:
        "Aged 16 to 24 years" (census) and "Persons_16-29" (mid-year).
    code_map
        Codes of another LSOA vintage -> {study code: share}, to carry population across.

    Returns
    -------
    pandas.DataFrame
        Indexed by lsoa_code: ``residents``, ``young`` (NaN if no young columns).
    """
    frame = read_csv_checked(path)
    if format == "census_age_long":
        code_col = code_column or next(
            (c for c in frame.columns if re.fullmatch(r"lsoa\d\d_code", c)), "lsoa21_code"
        )
        for col in [code_col, "age_group", "usual_residents"]:
            if col not in frame.columns:
                raise InputError(
                    path,
                    "missing required column",
                    row=1,
                    column=col,
                    expected="census long layout: lsoa21_code, age_group, usual_residents",
                )
        vals = pd.to_numeric(frame["usual_residents"], errors="coerce")
        if vals.isna().any():
            i = int(np.where(vals.isna().to_numpy())[0][0])
            raise InputError(
                path,
                f"not a number: {frame['usual_residents'].iloc[i]!r}",
                row=i + 2,
                column="usual_residents",
                expected="a count",
            )
        young_labels = list(young_columns) or ["Aged 16 to 24 years"]
        frame = frame.assign(_v=vals, _young=vals.where(frame["age_group"].isin(young_labels), 0))
        wide = frame.groupby(frame[code_col].str.strip(), sort=True).agg(
            residents=("_v", "sum"), young=("_young", "sum")
        )
        wide.index.name = "lsoa_code"
    else:
        if format == "ons_mid_year":
            code_col = code_column or next(
                (c for c in frame.columns if re.fullmatch(r"LSOA\d\dCD", c)), "LSOA11CD"
            )
            total = total_column or "Persons_All-Ages"
            young_cols = list(young_columns) or ["Persons_16-29"]
        else:
            if not code_column or not total_column:
                raise InputError(
                    path,
                    "format 'columns' needs code_column and total_column",
                    expected="sources.population.code_column and .total_column",
                )
            code_col, total, young_cols = code_column, total_column, list(young_columns)
        for col in [code_col, total, *young_cols]:
            if col not in frame.columns:
                raise InputError(
                    path,
                    "missing required column",
                    row=1,
                    column=col,
                    expected="the population column named in the pipeline",
                )
        num = frame[[total, *young_cols]].apply(
            lambda s: pd.to_numeric(s.str.replace(",", ""), errors="coerce")
        )
        if num.isna().any().any():
            r, c = np.argwhere(num.isna().to_numpy())[0]
            raise InputError(
                path, "not a number", row=int(r) + 2, column=num.columns[c], expected="a count"
            )
        wide = pd.DataFrame(
            {
                "residents": num[total].to_numpy(),
                "young": num[young_cols].sum(axis=1).to_numpy() if young_cols else np.nan,
            },
            index=pd.Index(frame[code_col].str.strip().to_numpy(), name="lsoa_code"),
        )
    if code_map:
        pairs = pd.DataFrame(
            [(a, b, s) for a, targets in code_map.items() for b, s in targets.items()],
            columns=["from_code", "to_code", "share"],
        )
        pairs = pairs[pairs["to_code"].isin(study_codes)]
        native = wide[wide.index.isin(study_codes)]
        moved = wide.rename_axis("from_code").join(pairs.set_index("from_code"), how="inner")
        moved = moved.assign(
            residents=moved["residents"] * moved["share"], young=moved["young"] * moved["share"]
        )
        carried = moved.groupby("to_code")[["residents", "young"]].sum().rename_axis("lsoa_code")
        carried = carried[~carried.index.isin(native.index)]
        tally = quarantine.tally(source)
        tally.files += 1
        tally.rows_read += len(wide)
        used = wide.index.isin(study_codes) | wide.index.isin(pairs["from_code"])
        tally.rows_used += int(used.sum())
        if (~used).any():  # counted per LSOA of the table (a long table has one row per band)
            quarantine.reject_summary(
                source,
                str(path),
                "outside_study_area",
                np.where(~used)[0] + 2,
                detail="LSOAs outside the study area (counted per LSOA; line = LSOA number)",
            )
        wide = pd.concat([native, carried]).sort_index()
        missing = study_codes.difference(wide.index)
        if len(missing):
            raise InputError(
                path,
                f"{len(missing)} study-area LSOAs have no population, e.g. {missing[0]!r}",
                expected="population for every LSOA",
            )
        return wide.loc[study_codes.sort_values()]
    keep = _reference_rows(
        wide,
        pd.Series(wide.index, dtype=str),
        path=path,
        source=source,
        quarantine=quarantine,
        study_codes=study_codes,
        what="population",
    )
    return wide[keep].sort_index()
