"""police.uk street-level crime and ASB files: folders, globs or the downloaded zip.

Files are read one at a time (one month of one force), with Arrow's CSV reader, checked row by
row in vectorised form, and reduced to the points of the study area, so memory is bounded by the
study area's records, not by the archive. Every row is either used or quarantined with a reason.
"""

from __future__ import annotations

import glob
import io
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import shapely
from pyproj import Transformer

from ..errors import InputError
from .quarantine import Quarantine

COLUMNS = [
    "Crime ID",
    "Month",
    "Reported by",
    "Falls within",
    "Longitude",
    "Latitude",
    "Location",
    "LSOA code",
    "LSOA name",
    "Crime type",
    "Last outcome category",
    "Context",
]
REQUIRED = ["Crime ID", "Month", "Longitude", "Latitude", "Location", "LSOA code", "Crime type"]
_FILE_MONTH = re.compile(r"(\d{4}-\d{2})-[^/\\]*street\.csv$")
_TO_BNG = Transformer.from_crs("EPSG:4326", "EPSG:27700", always_xy=True)


@dataclass(frozen=True)
class MonthFile:
    """One CSV of the input: a display name and a way to get its bytes."""

    name: str
    read: Callable[[], bytes]


def list_files(path: Path) -> list[MonthFile]:
    """The street-level CSVs behind a folder, a glob, a zip, or a single file, in name order."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        names = sorted(glob.glob(text, recursive=True))
        if not names:
            raise InputError(path, "the glob matches no file", expected="police.uk CSV files")
        return [MonthFile(n, (lambda n=n: Path(n).read_bytes())) for n in names]
    if not path.exists():
        raise InputError(path, "file or folder not found")
    if path.is_dir():
        names = sorted(path.rglob("*-street.csv")) or sorted(path.rglob("*.csv"))
        if not names:
            raise InputError(
                path,
                "the folder holds no CSV file",
                expected="YYYY-MM/YYYY-MM-<force>-street.csv files",
            )
        return [MonthFile(str(n), (lambda n=n: n.read_bytes())) for n in names]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = sorted(m for m in zf.namelist() if m.lower().endswith(".csv"))
        street = [m for m in members if m.endswith("-street.csv")] or members
        if not street:
            raise InputError(
                path,
                "the zip holds no CSV file",
                expected="YYYY-MM/YYYY-MM-<force>-street.csv members",
            )

        def reader(member: str) -> Callable[[], bytes]:
            def read() -> bytes:
                with zipfile.ZipFile(path) as zf:
                    return zf.read(member)

            return read

        return [MonthFile(f"{path}!{m}", reader(m)) for m in street]
    return [MonthFile(str(path), path.read_bytes)]


def _parse(name: str, data: bytes) -> tuple[pd.DataFrame, np.ndarray, list[tuple[int, str]]]:
    """Parse one CSV: (rows as strings, their 1-based line numbers, malformed lines)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    header_end = data.find(b"\n")
    header = data[: header_end if header_end >= 0 else len(data)].decode("utf-8", "replace")
    header_cols = [c.strip().strip('"') for c in header.rstrip("\r").split(",")]
    for col in REQUIRED:
        if col not in header_cols:
            raise InputError(
                name,
                "missing required column",
                row=1,
                column=col,
                expected="the police.uk street-level header " + ",".join(COLUMNS),
            )
    bad: list[str] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append(row.text)
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(block_size=1 << 24),
            parse_options=pacsv.ParseOptions(
                invalid_row_handler=on_invalid, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header_cols},
                strings_can_be_null=False,
                include_columns=[c for c in COLUMNS if c in header_cols],
            ),
        )
    except pa.ArrowInvalid as exc:
        msg = str(exc)
        if "UTF8" in msg or "utf8" in msg.lower():
            raise InputError(
                name,
                "unreadable encoding: not UTF-8 text",
                expected="UTF-8 CSV as police.uk publishes",
            ) from None
        raise InputError(name, f"unreadable CSV: {msg}") from None
    frame = table.to_pandas(types_mapper=pd.ArrowDtype).astype(object)
    n_lines = len(frame) + len(bad)
    # Line numbers: physical lines (police.uk never quotes newlines). Malformed lines are found
    # by their text; the valid rows take the remaining line numbers in order.
    malformed: list[tuple[int, str]] = []
    if bad:
        lines = data.decode("utf-8", "replace").split("\n")
        lines = [ln.rstrip("\r") for ln in lines[1:]]
        if lines and lines[-1] == "":
            lines = lines[:-1]
        used: set[int] = set()
        for text in bad:
            for i, ln in enumerate(lines):
                if i not in used and ln == text:
                    used.add(i)
                    malformed.append((i + 2, text))
                    break
        taken = {ln for ln, _ in malformed}
        valid_lines = np.array([i for i in range(2, n_lines + 2) if i not in taken], dtype=np.int64)
    else:
        valid_lines = np.arange(2, len(frame) + 2, dtype=np.int64)
    for col in COLUMNS:
        if col not in frame:
            frame[col] = ""
    return frame, valid_lines[: len(frame)], malformed


def read_police_uk(
    path: Path,
    *,
    study: gpd.GeoDataFrame,
    period_of_month: Mapping[str, str],
    crime_groups: Mapping[str, str],
    quarantine: Quarantine,
    source: str,
    tolerance_m: float = 150.0,
    code_map: Mapping[str, str] | None = None,
    known_codes: set[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Read police.uk street-level files into study-area points.

    Parameters
    ----------
    path
        A folder tree of months, a glob, a downloaded zip, or one CSV.
    study
        Study-area LSOAs (index ``lsoa_code``, EPSG:27700).
    period_of_month
        ``{"YYYY-MM": period name}`` for every month of the analysis periods.
    crime_groups
        police.uk crime type -> canonical crime group.
    quarantine
        Collects rejected rows and the tally of this source.
    source
        The source's label in the tallies.
    tolerance_m
        Largest distance between a point and its stated LSOA polygon (police.uk assigns codes
        on full-resolution boundaries; generalised polygons are up to ~100 m off).
    code_map
        Codes of the other LSOA vintage -> study-area code (best fit), when vintages differ.
    known_codes
        Every valid LSOA code (both vintages) when a national lookup is available: a well-formed
        code outside this set is ``unknown_lsoa_code`` rather than ``outside_study_area``.
    progress
        Called with a short line per file.

    Returns
    -------
    pandas.DataFrame
        Columns x, y, month, period, crime_group, crime_type, crime_id, lsoa_code,
        location, source_file, line.
    """
    tally = quarantine.tally(source)
    files = list_files(path)
    study_codes = pd.Index(study.index)
    polys = study.geometry.to_numpy()
    tree = shapely.STRtree(polys)
    seen_ids: set[str] = set()  # Crime IDs kept so far
    parts: list[pd.DataFrame] = []
    for mf in files:
        frame, lines, malformed = _parse(mf.name, mf.read())
        tally.files += 1
        tally.rows_read += len(frame) + len(malformed)
        if malformed:
            quarantine.reject(
                source,
                mf.name,
                "malformed_row",
                pd.DataFrame(index=range(len(malformed))),
                lines=[ln for ln, _ in malformed],
                detail=[f"{len(t.split(','))} fields: {t[:120]}" for _, t in malformed],
            )
        kept = _validate(
            frame,
            lines,
            mf.name,
            source=source,
            quarantine=quarantine,
            study_codes=study_codes,
            polys=polys,
            tree=tree,
            period_of_month=period_of_month,
            crime_groups=crime_groups,
            tolerance_m=tolerance_m,
            code_map=code_map or {},
            known_codes=known_codes,
            seen_ids=seen_ids,
        )
        tally.rows_used += len(kept)
        parts.append(kept)
        if progress:
            progress(
                f"{Path(mf.name.split('!')[-1]).name}: {len(frame) + len(malformed):,} rows, "
                f"{len(kept):,} used"
            )
    if not parts:
        return _empty_points()
    out = pd.concat(parts, ignore_index=True)
    return out


def _empty_points() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": pd.Series(dtype=float),
            "y": pd.Series(dtype=float),
            **{
                c: pd.Series(dtype=object)
                for c in [
                    "month",
                    "period",
                    "crime_group",
                    "crime_type",
                    "crime_id",
                    "lsoa_code",
                    "location",
                    "source_file",
                ]
            },
            "line": pd.Series(dtype="int64"),
        }
    )


def _validate(
    frame: pd.DataFrame,
    lines: np.ndarray,
    name: str,
    *,
    source: str,
    quarantine: Quarantine,
    study_codes: pd.Index,
    polys: np.ndarray,
    tree: shapely.STRtree,
    period_of_month: Mapping[str, str],
    crime_groups: Mapping[str, str],
    tolerance_m: float,
    code_map: Mapping[str, str],
    known_codes: set[str] | None,
    seen_ids: set[str],
) -> pd.DataFrame:
    """Check one file's rows in order of precedence; return the rows kept as points."""
    n = len(frame)
    if n == 0:
        return _empty_points()
    rec = pd.DataFrame(
        {
            "crime_id": frame["Crime ID"].astype(str).str.strip().to_numpy(),
            "month": frame["Month"].astype(str).str.strip().to_numpy(),
            "crime_type": frame["Crime type"].astype(str).str.strip().to_numpy(),
            "longitude": frame["Longitude"].astype(str).str.strip().to_numpy(),
            "latitude": frame["Latitude"].astype(str).str.strip().to_numpy(),
            "lsoa_code": frame["LSOA code"].astype(str).str.strip().to_numpy(),
            "location": frame["Location"].astype(str).to_numpy(),
        }
    )
    alive = np.ones(n, dtype=bool)

    def reject(mask: np.ndarray, reason: str, detail: str | np.ndarray = "") -> None:
        nonlocal alive
        mask = mask & alive
        if mask.any():
            d = detail if isinstance(detail, str) else np.asarray(detail)[mask]
            quarantine.reject(source, name, reason, rec[mask], lines=lines[mask], detail=d)
            alive &= ~mask

    month = rec["month"]
    reject(
        ~month.str.fullmatch(r"\d{4}-(0[1-9]|1[0-2])").to_numpy(),
        "malformed_month",
        "Month=" + month,
    )
    fm = _FILE_MONTH.search(name.replace("\\", "/"))
    if fm:
        reject(
            (month != fm.group(1)).to_numpy(),
            "month_mismatch",
            f"file is for {fm.group(1)}; Month=" + month,
        )
    ctype = rec["crime_type"]
    reject((ctype == "").to_numpy(), "missing_crime_type")
    group = ctype.map(crime_groups)
    reject(group.isna().to_numpy(), "unknown_crime_type", "Crime type=" + ctype)

    lon_s, lat_s = rec["longitude"], rec["latitude"]
    no_xy = ((lon_s == "") | (lat_s == "")).to_numpy()
    code = rec["lsoa_code"]
    reject(no_xy & (code == "").to_numpy(), "no_coordinates")
    reject(no_xy, "no_coordinates", "LSOA stated but no coordinates")
    lon = pd.to_numeric(lon_s, errors="coerce").to_numpy(dtype=float)
    lat = pd.to_numeric(lat_s, errors="coerce").to_numpy(dtype=float)
    reject(
        np.isnan(lon) | np.isnan(lat),
        "bad_coordinates",
        "Longitude=" + lon_s + " Latitude=" + lat_s,
    )
    with np.errstate(invalid="ignore"):
        out_gb = ~((lon > -8.7) & (lon < 1.9) & (lat > 49.8) & (lat < 60.9))
    reject(out_gb, "coordinates_out_of_range", "Longitude=" + lon_s + " Latitude=" + lat_s)

    x, y = _TO_BNG.transform(np.where(alive, lon, 0.0), np.where(alive, lat, 51.5))
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)

    # LSOA: stated code (converted from the other vintage when needed), or located by polygon.
    stated = code.to_numpy(dtype=object).copy()
    has_code = stated != ""
    reject(
        has_code & ~code.str.fullmatch(r"[EWS]0[1-9]\d{6}").to_numpy(),
        "malformed_lsoa_code",
        "LSOA code=" + code,
    )
    if code_map:
        conv = pd.Series(stated).map(code_map).to_numpy(dtype=object)
        moved = has_code & pd.notna(conv) & alive
        stated = np.where(moved, conv, stated)
    in_study = pd.Index(study_codes).get_indexer(stated)
    located = np.full(n, -1)
    missing_code = ~has_code & alive
    if missing_code.any():
        pts = shapely.points(x[missing_code], y[missing_code])
        hit_pt, hit_poly = tree.query(pts, predicate="within")
        loc = np.full(missing_code.sum(), -1)
        loc[hit_pt] = hit_poly
        located[missing_code] = loc
        in_study = np.where(missing_code, located, in_study)
        stated = np.where(
            missing_code & (located >= 0), study_codes.to_numpy()[np.maximum(located, 0)], stated
        )
    reject(missing_code & (located < 0), "outside_study_area", "no LSOA code; point outside")
    if known_codes is not None:
        reject(
            has_code & (in_study < 0) & ~pd.Series(stated).isin(known_codes).to_numpy(),
            "unknown_lsoa_code",
            "LSOA code=" + code,
        )
    # another area's records in a force-wide file: counted exactly, summarised per file
    elsewhere = (in_study < 0) & alive
    if elsewhere.any():
        quarantine.reject_summary(
            source,
            name,
            "outside_study_area",
            lines[elsewhere],
            detail="LSOA codes outside the study area",
        )
        alive &= ~elsewhere

    per = month.map(period_of_month)
    reject(per.isna().to_numpy(), "outside_period", "Month=" + month)

    cid = rec["crime_id"].to_numpy(dtype=object)
    has_id = cid != ""
    check = np.where(alive & has_id)[0]
    if len(check):
        ids = pd.Series(cid[check], dtype=object)
        dup = ids.duplicated().to_numpy() | ids.isin(seen_ids).to_numpy()
        dup_mask = np.zeros(n, dtype=bool)
        dup_mask[check[dup]] = True
        reject(dup_mask, "duplicate_crime_id", "Crime ID=" + rec["crime_id"])

    idx = np.where(alive)[0]
    if len(idx):
        pts = shapely.points(x[idx], y[idx])
        dist = shapely.distance(pts, polys[in_study[idx]])
        far = np.zeros(n, dtype=bool)
        far[idx] = dist > tolerance_m
        if far.any():
            detail = np.full(n, "", dtype=object)
            fi = np.where(far)[0]
            dist_all = np.zeros(n)
            dist_all[idx] = dist
            detail[fi] = [f"{dist_all[i]:.0f} m from {stated[i]}" for i in fi]
            reject(far, "lsoa_mismatch", detail)
    seen_ids.update(cid[alive & has_id].tolist())
    keep = np.where(alive)[0]
    return pd.DataFrame(
        {
            "x": x[keep],
            "y": y[keep],
            "month": month.to_numpy(dtype=object)[keep],
            "period": per.to_numpy(dtype=object)[keep],
            "crime_group": group.to_numpy(dtype=object)[keep],
            "crime_type": ctype.to_numpy(dtype=object)[keep],
            "crime_id": cid[keep],
            "lsoa_code": stated[keep],
            "location": rec["location"].to_numpy(dtype=object)[keep],
            "source_file": name,
            "line": lines[keep],
        }
    )
