"""police.uk street-level crime and ASB files: folders, globs or the downloaded zip.

Files are read one at a time (one month of one force), with Arrow's CSV reader, checked row by
row in vectorised form, and reduced to the points of the study area, so memory is bounded by the
study area's records, not by the archive. Every row is either used or quarantined with a reason.

Speed: the columns stay Arrow text while they are checked (``pyarrow.compute``: trimming, regular
expressions, look-ups, joins of text); rows become Python objects only when quarantined one by
one, and coordinates are parsed, projected and tested against polygons only for the rows still
alive at each step. Records of other areas are quarantined as one summary per file. The next
file is unzipped in a background thread while one is checked. About 1 million rows a second on
two cores; :func:`_parse` and :func:`_validate` give the same results on pandas frames.
"""

from __future__ import annotations

import glob
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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


def _read_table(
    name: str, data: bytes, columns: list[str]
) -> tuple[pa.Table, np.ndarray, list[tuple[int, str]]]:
    """Parse one CSV into Arrow strings: (table, 1-based line numbers, malformed lines).

    ``columns`` are the columns of :data:`COLUMNS` to keep (those the header has).
    """
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
                include_columns=[c for c in columns if c in header_cols],
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
    n_rows = table.num_rows
    n_lines = n_rows + len(bad)
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
        valid_lines = np.arange(2, n_rows + 2, dtype=np.int64)
    return table, valid_lines[:n_rows], malformed


def _parse(name: str, data: bytes) -> tuple[pd.DataFrame, np.ndarray, list[tuple[int, str]]]:
    """Parse one CSV: (rows as strings, their 1-based line numbers, malformed lines)."""
    table, lines, malformed = _read_table(name, data, COLUMNS)
    frame = table.to_pandas(types_mapper=pd.ArrowDtype).astype(object)
    for col in COLUMNS:
        if col not in frame:
            frame[col] = ""
    return frame, lines, malformed


def _reject_malformed(
    quarantine: Quarantine, source: str, name: str, malformed: list[tuple[int, str]]
) -> None:
    if malformed:
        quarantine.reject(
            source,
            name,
            "malformed_row",
            pd.DataFrame(index=range(len(malformed))),
            lines=[ln for ln, _ in malformed],
            detail=[f"{len(t.split(','))} fields: {t[:120]}" for _, t in malformed],
        )


def _prefetched(files: list[MonthFile]) -> Iterator[tuple[MonthFile, bytes]]:
    """Each file with its bytes; the next file is read (unzipped) in a thread meanwhile."""
    if len(files) < 2:
        for mf in files:
            yield mf, mf.read()
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(files[0].read)
        for i, mf in enumerate(files):
            data = pending.result()
            if i + 1 < len(files):
                pending = pool.submit(files[i + 1].read)
            yield mf, data
            del data


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
    polys = study.geometry.to_numpy()
    ctx = _Lookups.build(
        study_codes=pd.Index(study.index),
        polys=polys,
        tree=shapely.STRtree(polys),
        period_of_month=period_of_month,
        crime_groups=crime_groups,
        code_map=code_map or {},
        known_codes=known_codes,
    )
    seen_ids: set[str] = set()  # Crime IDs kept so far
    parts: list[pd.DataFrame] = []
    for mf, data in _prefetched(files):
        table, lines, malformed = _read_table(mf.name, data, REQUIRED)
        del data
        n_read = table.num_rows + len(malformed)
        tally.files += 1
        tally.rows_read += n_read
        _reject_malformed(quarantine, source, mf.name, malformed)
        kept = _validate_table(
            table,
            lines,
            mf.name,
            source=source,
            quarantine=quarantine,
            ctx=ctx,
            tolerance_m=tolerance_m,
            seen_ids=seen_ids,
        )
        tally.rows_used += len(kept)
        parts.append(kept)
        if progress:
            progress(f"{Path(mf.name.split('!')[-1]).name}: {n_read:,} rows, {len(kept):,} used")
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
    """Check one file's rows in order of precedence; return the rows kept as points.

    ``frame`` is :func:`_parse`'s frame (text columns named as in :data:`COLUMNS`); missing
    values count as empty text. Crime IDs of the rows kept are added to ``seen_ids``.
    """
    if len(frame) == 0:
        return _empty_points()
    table = pa.table({c: _text_array(frame[c]) for c in REQUIRED})
    ctx = _Lookups.build(
        study_codes=pd.Index(study_codes),
        polys=polys,
        tree=tree,
        period_of_month=period_of_month,
        crime_groups=crime_groups,
        code_map=code_map or {},
        known_codes=known_codes,
    )
    return _validate_table(
        table,
        np.asarray(lines),
        name,
        source=source,
        quarantine=quarantine,
        ctx=ctx,
        tolerance_m=tolerance_m,
        seen_ids=seen_ids,
    )


# --------------------------------------------------------------------------- vectorised checks
#: pandas' default text dtype (``str``: Arrow-backed in pandas 3); points and rejected rows
#: carry their text in it, as building frames from Python strings would.
_STR_DTYPE = pd.Series(np.array(["a"], dtype=object)).dtype
_ARROW_TEXT = isinstance(_STR_DTYPE, pd.StringDtype) and _STR_DTYPE.storage == "pyarrow"
_MONTH_PATTERN = r"\d{4}-(0[1-9]|1[0-2])"
_CODE_PATTERN = r"[EWS]0[1-9]\d{6}"
#: Coordinates Arrow's cast reads exactly as pandas' ``to_numeric`` does (correctly rounded
#: plain decimals); anything else goes to ``to_numeric`` itself.
_PLAIN_DECIMAL = r"^-?[0-9]{1,3}\.[0-9]{1,15}$"


def _text_array(values: pd.Series) -> pa.Array:
    """A frame column as one Arrow string array (missing values as empty text)."""
    s = values.astype(str)
    arr = pa.array(s.array) if _ARROW_TEXT else pa.array(s.to_numpy(dtype=object), pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.fill_null(arr.cast(pa.large_string()), "")


def _pandas_text(arr: pa.Array) -> Any:
    """Arrow strings as the column pandas would infer from the same Python strings."""
    if _ARROW_TEXT and len(arr):
        return pd.arrays.ArrowStringArray(arr.cast(pa.large_string()), dtype=_STR_DTYPE)
    return arr.to_numpy(zero_copy_only=False).astype(object)


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _np_bool(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow booleans as numpy (nulls as False)."""
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _fullmatch(arr: pa.Array, pattern: str) -> np.ndarray:
    """``Series.str.fullmatch(pattern)`` of the same text: RE2 on plain ASCII text, else
    pandas itself (which then uses Python's ``re``, Unicode-aware for ``\\d``)."""
    if (
        pc.all(pc.string_is_ascii(arr)).as_py() is not False
        and not pc.any(pc.match_substring(arr, "\n")).as_py()
    ):
        return _np_bool(pc.match_substring_regex(arr, f"^({pattern})$"))
    series = pd.Series(_pandas_text(arr), dtype=_STR_DTYPE)
    return series.str.fullmatch(pattern).to_numpy(dtype=bool)


def _to_float(arr: pa.Array) -> np.ndarray:
    """``pandas.to_numeric(text, errors="coerce")`` as float64 (NaN where not a number)."""
    out = np.full(len(arr), np.nan)
    plain = pc.match_substring_regex(arr, _PLAIN_DECIMAL)
    plain_np = _np_bool(plain)
    if plain_np.any():
        out[plain_np] = pc.cast(arr.filter(plain), pa.float64()).to_numpy(zero_copy_only=False)
    other = np.flatnonzero(~plain_np)
    if len(other):
        text = pd.Series(_pandas_text(arr.take(pa.array(other))), dtype=_STR_DTYPE)
        out[other] = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    return out


def _lookup(keys: Iterable[str], values: Iterable[str] | None = None) -> tuple[pa.Array, ...]:
    k = pa.array([str(v) for v in keys], pa.large_string())
    if values is None:
        return (k,)
    return k, pa.array([str(v) for v in values], pa.large_string())


@dataclass(frozen=True)
class _Lookups:
    """What every file is checked against, built once per read."""

    study_codes: pd.Index
    study_arrow: pa.Array
    polys: np.ndarray
    tree: shapely.STRtree
    period_keys: pa.Array
    period_values: pa.Array
    group_keys: pa.Array
    group_values: pa.Array
    map_keys: pa.Array | None
    map_values: pa.Array | None
    known: pa.Array | None

    @classmethod
    def build(
        cls,
        *,
        study_codes: pd.Index,
        polys: np.ndarray,
        tree: shapely.STRtree,
        period_of_month: Mapping[str, str],
        crime_groups: Mapping[str, str],
        code_map: Mapping[str, str],
        known_codes: set[str] | None,
    ) -> _Lookups:
        shapely.prepare(polys)  # fast point-in-polygon for the distance check
        pk, pv = _lookup(period_of_month.keys(), period_of_month.values())
        gk, gv = _lookup(crime_groups.keys(), crime_groups.values())
        mk = mv = None
        if code_map:
            mk, mv = _lookup(code_map.keys(), code_map.values())
        return cls(
            study_codes=study_codes,
            study_arrow=_lookup(study_codes.astype(str))[0],
            polys=polys,
            tree=tree,
            period_keys=pk,
            period_values=pv,
            group_keys=gk,
            group_values=gv,
            map_keys=mk,
            map_values=mv,
            known=None if known_codes is None else _lookup(known_codes)[0],
        )


def _validate_table(
    table: pa.Table,
    lines: np.ndarray,
    name: str,
    *,
    source: str,
    quarantine: Quarantine,
    ctx: _Lookups,
    tolerance_m: float,
    seen_ids: set[str],
) -> pd.DataFrame:
    """The checks of :func:`_validate` on Arrow text columns, in the same order.

    Every test runs on whole Arrow or numpy columns; rows become Python objects only when they
    are quarantined one by one. Coordinates are projected and tested against polygons only for
    the rows still alive at that point.
    """
    n = table.num_rows
    if n == 0:
        return _empty_points()

    def column(c: str, strip: bool = True) -> pa.Array:
        arr = table.column(c).combine_chunks().cast(pa.large_string())
        return pc.utf8_trim_whitespace(arr) if strip else arr

    cid = column("Crime ID")
    month = column("Month")
    ctype = column("Crime type")
    lon_s = column("Longitude")
    lat_s = column("Latitude")
    code = column("LSOA code")
    location = column("Location", strip=False)
    rec = {
        "crime_id": cid,
        "month": month,
        "crime_type": ctype,
        "longitude": lon_s,
        "latitude": lat_s,
        "lsoa_code": code,
        "location": location,
    }
    alive = np.ones(n, dtype=bool)

    def reject(mask: np.ndarray, reason: str, detail: str | tuple | np.ndarray = "") -> None:
        """Quarantine the alive rows of ``mask`` one by one. ``detail``: one text, a text per
        row (array), or a tuple of texts and columns joined row by row."""
        nonlocal alive
        mask = mask & alive
        if not mask.any():
            return
        take = pa.array(np.flatnonzero(mask))
        rows = pd.DataFrame({k: _pandas_text(v.take(take)) for k, v in rec.items()})
        d: str | np.ndarray
        if isinstance(detail, str):
            d = detail
        elif isinstance(detail, np.ndarray):
            d = detail[mask]
        else:
            pieces = [_large(p) if isinstance(p, str) else p.take(take) for p in detail]
            d = pc.binary_join_element_wise(*pieces, _large("")).to_numpy(zero_copy_only=False)
        quarantine.reject(source, name, reason, rows, lines=lines[mask], detail=d)
        alive &= ~mask

    reject(~_fullmatch(month, _MONTH_PATTERN), "malformed_month", ("Month=", month))
    fm = _FILE_MONTH.search(name.replace("\\", "/"))
    if fm:
        reject(
            _np_bool(pc.not_equal(month, fm.group(1))),
            "month_mismatch",
            (f"file is for {fm.group(1)}; Month=", month),
        )
    reject(_np_bool(pc.equal(ctype, "")), "missing_crime_type")
    group_idx = pc.index_in(ctype, value_set=ctx.group_keys)
    reject(_np_bool(pc.is_null(group_idx)), "unknown_crime_type", ("Crime type=", ctype))

    no_xy = _np_bool(pc.or_(pc.equal(lon_s, ""), pc.equal(lat_s, "")))
    has_code = _np_bool(pc.not_equal(code, ""))
    reject(no_xy & ~has_code, "no_coordinates")
    reject(no_xy, "no_coordinates", "LSOA stated but no coordinates")
    # only rows still alive are parsed (dead rows get NaN, which no later test looks at)
    lon = np.full(n, np.nan)
    lat = np.full(n, np.nan)
    live = np.flatnonzero(alive)
    if len(live):
        take = pa.array(live)
        lon[live] = _to_float(lon_s.take(take))
        lat[live] = _to_float(lat_s.take(take))
    coords = ("Longitude=", lon_s, " Latitude=", lat_s)
    reject(np.isnan(lon) | np.isnan(lat), "bad_coordinates", coords)
    with np.errstate(invalid="ignore"):
        out_gb = ~((lon > -8.7) & (lon < 1.9) & (lat > 49.8) & (lat < 60.9))
    reject(out_gb, "coordinates_out_of_range", coords)
    x = np.zeros(n)
    y = np.zeros(n)
    projected = np.zeros(n, dtype=bool)

    def project(mask: np.ndarray) -> None:
        todo = np.flatnonzero(mask & ~projected)
        if len(todo):
            px, py = _TO_BNG.transform(lon[todo], lat[todo])
            x[todo] = np.asarray(px, dtype=float)
            y[todo] = np.asarray(py, dtype=float)
            projected[todo] = True

    # LSOA: stated code (converted from the other vintage when needed), or located by polygon.
    reject(
        has_code & ~_fullmatch(code, _CODE_PATTERN),
        "malformed_lsoa_code",
        ("LSOA code=", code),
    )
    stated = code
    if ctx.map_keys is not None:
        conv = pc.take(ctx.map_values, pc.index_in(code, value_set=ctx.map_keys))
        moved = has_code & _np_bool(pc.is_valid(conv)) & alive
        if moved.any():
            stated = pc.if_else(pa.array(moved), conv, stated)
    in_study = pc.fill_null(pc.index_in(stated, value_set=ctx.study_arrow), -1)
    in_study = in_study.to_numpy(zero_copy_only=False).astype(np.int64)
    missing_code = ~has_code & alive
    located = np.full(n, -1)
    if missing_code.any():
        project(missing_code)
        pts = shapely.points(x[missing_code], y[missing_code])
        hit_pt, hit_poly = ctx.tree.query(pts, predicate="within")
        loc = np.full(missing_code.sum(), -1)
        loc[hit_pt] = hit_poly
        located[missing_code] = loc
        in_study = np.where(missing_code, located, in_study)
        found = missing_code & (located >= 0)
        if found.any():
            codes_found = ctx.study_arrow.take(pa.array(np.maximum(located, 0)))
            stated = pc.if_else(pa.array(found), codes_found, stated)
    reject(missing_code & (located < 0), "outside_study_area", "no LSOA code; point outside")
    if ctx.known is not None:
        unknown = has_code & (in_study < 0)
        if (unknown & alive).any():
            unknown &= ~_np_bool(pc.is_in(stated, value_set=ctx.known))
        reject(unknown, "unknown_lsoa_code", ("LSOA code=", code))
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

    period_idx = pc.index_in(month, value_set=ctx.period_keys)
    reject(_np_bool(pc.is_null(period_idx)), "outside_period", ("Month=", month))

    has_id = _np_bool(pc.not_equal(cid, ""))
    check = np.flatnonzero(alive & has_id)
    if len(check):
        ids = cid.take(pa.array(check))
        codes = pc.dictionary_encode(ids).indices.to_numpy(zero_copy_only=False)
        dup = np.ones(len(check), dtype=bool)
        dup[np.unique(codes, return_index=True)[1]] = False  # later repeats within the file
        if seen_ids:
            before = seen_ids.intersection(ids.to_numpy(zero_copy_only=False))
            if before:
                dup |= _np_bool(pc.is_in(ids, value_set=pa.array(sorted(before))))
        dup_mask = np.zeros(n, dtype=bool)
        dup_mask[check[dup]] = True
        reject(dup_mask, "duplicate_crime_id", ("Crime ID=", cid))

    idx = np.flatnonzero(alive)
    if len(idx):
        project(alive)
        xi, yi = x[idx], y[idx]
        target = ctx.polys[in_study[idx]]
        dist = np.zeros(len(idx))
        # a point on or in its polygon is at distance 0: measure only the others
        away = ~shapely.intersects_xy(target, xi, yi) if tolerance_m >= 0 else np.ones_like(xi)
        away = away.astype(bool)
        if away.any():
            dist[away] = shapely.distance(shapely.points(xi[away], yi[away]), target[away])
        far_i = dist > tolerance_m
        if far_i.any():
            far = np.zeros(n, dtype=bool)
            far[idx[far_i]] = True
            detail = np.full(n, "", dtype=object)
            stated_far = stated.take(pa.array(idx[far_i])).to_pylist()
            detail[idx[far_i]] = [
                f"{d:.0f} m from {s}" for d, s in zip(dist[far_i], stated_far, strict=True)
            ]
            reject(far, "lsoa_mismatch", detail)
    keep = np.flatnonzero(alive)
    if len(check):
        kept_ids = cid.take(pa.array(np.flatnonzero(alive & has_id)))
        seen_ids.update(kept_ids.to_numpy(zero_copy_only=False).tolist())
    take = pa.array(keep)
    empty = np.array([], dtype=object)

    def text(arr: pa.Array, index: pa.Array | None = None) -> Any:
        if not len(keep):
            return empty
        return _pandas_text(arr.take(take) if index is None else arr.take(index.take(take)))

    return pd.DataFrame(
        {
            "x": x[keep],
            "y": y[keep],
            "month": text(month),
            "period": text(ctx.period_values, period_idx),
            "crime_group": text(ctx.group_values, group_idx),
            "crime_type": text(ctype),
            "crime_id": text(cid),
            "lsoa_code": text(stated),
            "location": text(location),
            "source_file": name,
            "line": lines[keep],
        }
    )
