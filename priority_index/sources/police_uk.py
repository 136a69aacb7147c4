"""police.uk street-level crime and ASB files: folders, globs or the downloaded zip.

Files are read one by one (one month of one force; the next one or two are read ahead), with
Arrow's CSV reader, checked row by row in vectorised form, and reduced to the points of the study
area, so memory is bounded by the study area's records, not by the archive. Every row is either
used or quarantined with a reason.

Speed: the columns stay Arrow text while they are checked (``pyarrow.compute``); months, crime
types, LSOA codes and coordinates are read dictionary-encoded and tested once per distinct value;
positions are projected and measured against their LSOA once per distinct map point (police.uk
snaps records to shared points) and remembered across files; Crime IDs kept before are found by
64-bit fingerprints, every hit then compared as text. Rows become Python objects only when
quarantined one by one, and records of other areas are quarantined as one summary per file. The
next files are unzipped and parsed in background threads while one is checked. On two cores:
0.6 to 1 million rows a second when every row is in the study area, about 1.5 million when most
belong to other areas (``make bench``). :func:`_parse` and :func:`_validate` (used file by file
by the Dask engine) give the same results on pandas frames.
"""

from __future__ import annotations

import glob
import io
import re
import zipfile
from collections import deque
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
_DICT_TEXT = pa.dictionary(pa.int32(), pa.string())


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
    name: str, data: bytes, columns: list[str], *, encoded: Iterable[str] = ()
) -> tuple[pa.Table, np.ndarray, list[tuple[int, str]]]:
    """Parse one CSV into Arrow text: (table, 1-based line numbers, malformed lines).

    ``columns`` are the columns of :data:`COLUMNS` to keep (those the header has); those in
    ``encoded`` are read dictionary-encoded.
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
                column_types={c: _DICT_TEXT if c in encoded else pa.string() for c in header_cols},
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


def _read_parsed(mf: MonthFile) -> tuple[pa.Table, np.ndarray, list[tuple[int, str]]]:
    return _read_table(mf.name, mf.read(), REQUIRED, encoded=_ENCODED)


#: Files read ahead of the one being checked: two while files are small (one month of one
#: force: most of the time goes to unzipping and parsing), one when they are large (memory).
_AHEAD_SMALL, _AHEAD_LARGE, _LARGE_ROWS = 2, 1, 200_000


def _prefetched(
    files: list[MonthFile],
) -> Iterator[tuple[MonthFile, tuple[pa.Table, np.ndarray, list[tuple[int, str]]]]]:
    """Each file, read (unzipped) and parsed; the next files are read and parsed in threads
    while one is checked (Arrow, zlib and most checks release the GIL: two cores work)."""
    if len(files) < 2:
        for mf in files:
            yield mf, _read_parsed(mf)
        return
    with ThreadPoolExecutor(max_workers=_AHEAD_SMALL) as pool:
        pending: deque = deque([pool.submit(_read_parsed, files[0])])
        nxt = 1
        for mf in files:
            parsed = pending.popleft().result()
            ahead = _AHEAD_LARGE if parsed[0].num_rows >= _LARGE_ROWS else _AHEAD_SMALL
            while nxt < len(files) and len(pending) < ahead:
                pending.append(pool.submit(_read_parsed, files[nxt]))
                nxt += 1
            yield mf, parsed
            del parsed


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
    seen = _SeenIds()  # Crime IDs kept so far
    parts: list[pd.DataFrame] = []
    for mf, (table, lines, malformed) in _prefetched(files):
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
            seen=seen,
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
    table = pa.table(
        {
            c: pc.dictionary_encode(_text_array(frame[c]))
            if c in _ENCODED
            else _text_array(frame[c])
            for c in REQUIRED
        }
    )
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
        seen=_SeenIds(exact=seen_ids),
    )


# --------------------------------------------------------------------------- vectorised checks
#: pandas' default text dtype (``str``: Arrow-backed in pandas 3); points and rejected rows
#: carry their text in it, as building frames from Python strings would.
_STR_DTYPE = pd.Series(np.array(["a"], dtype=object)).dtype
_ARROW_TEXT = isinstance(_STR_DTYPE, pd.StringDtype) and _STR_DTYPE.storage == "pyarrow"
_MONTH_PATTERN = r"\d{4}-(0[1-9]|1[0-2])"
_CODE_PATTERN = r"[EWS]0[1-9]\d{6}"
#: Coordinates that Arrow's cast reads exactly as pandas' ``to_numeric`` does (plain decimals
#: of at most 15 digits: both round correctly); anything else goes to ``to_numeric`` itself.
_PLAIN_DECIMAL = r"^-?[0-9]{1,3}\.[0-9]{1,12}$"
#: Columns read dictionary-encoded: few distinct values (months, codes, snapped map points).
_ENCODED = ["Month", "Longitude", "Latitude", "Location", "LSOA code", "Crime type"]


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


def _repeat_text(text: str, n: int) -> pa.Array:
    """``n`` copies of ``text`` as one Arrow string array, built from its buffers."""
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    offsets = np.arange(n + 1, dtype=np.int64) * len(raw)
    return pa.Array.from_buffers(
        pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(np.tile(raw, n))]
    )


def _np_bool(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow booleans as numpy (nulls as False)."""
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _np_index(arr: pa.Array) -> np.ndarray:
    """Arrow positions (``index_in``) as int64, -1 where null."""
    return pc.fill_null(arr, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _factorize(values: np.ndarray) -> np.ndarray:
    """Dense integer codes of equal values (int64)."""
    return pd.factorize(values)[0].astype(np.int64, copy=False)


def _representatives(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One position per distinct key, and each element's distinct key: ``keys[rep][back]``
    equals ``keys``."""
    back, uniques = pd.factorize(keys)
    rep = np.empty(len(uniques), dtype=np.int64)
    rep[back] = np.arange(len(keys))
    return rep, back


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
    other = np.flatnonzero(~plain_np & ~_np_bool(pc.equal(arr, "")))  # empty text: NaN
    if len(other):
        text = pd.Series(_pandas_text(arr.take(pa.array(other))), dtype=_STR_DTYPE)
        out[other] = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    return out


@dataclass(frozen=True)
class _Text:
    """A text column as its distinct values and each row's position among them (``codes``), or
    as one value per row (``codes`` None). Tests run once per distinct value."""

    values: pa.Array  # large_string
    codes: np.ndarray | None

    @classmethod
    def of(cls, column: pa.Array | pa.ChunkedArray, *, strip: bool = True) -> _Text:
        arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if pa.types.is_dictionary(arr.type):
            values, codes = arr.dictionary, arr.indices.to_numpy(zero_copy_only=False)
        else:
            values, codes = arr, None
        values = values.cast(pa.large_string())
        if strip:
            values = pc.utf8_trim_whitespace(values)
        return cls(values, codes)

    def per_row(self, per_value: np.ndarray) -> np.ndarray:
        """An array over the distinct values, spread to the rows."""
        return per_value if self.codes is None else per_value[self.codes]

    def rows(self, which: np.ndarray) -> pa.Array:
        """The text of the rows ``which`` (positions)."""
        pos = which if self.codes is None else self.codes[which]
        return self.values.take(pa.array(pos))


_MIX = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)


def _mix(columns: np.ndarray) -> np.ndarray:
    """One 64-bit hash (int64) per row of an ``(n, k)`` integer array (k <= 4)."""
    h = np.zeros(len(columns), dtype=np.uint64)
    for j in range(columns.shape[1]):
        v = columns[:, j].astype(np.uint64, copy=False) * _MIX[j]
        h ^= v ^ (v >> np.uint64(29))
    return h.view(np.int64)


class _Memo:
    """Results kept per exact key across files: rows of int64 key columns are hashed to one
    int64 and every hit is checked against the stored key, so a hash collision is a miss."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.table = _new_hashtable()
        self.keys = np.empty((0, 0), dtype=np.int64)
        self.values = np.empty((0, width))

    def get(self, keys: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Values of distinct ``keys`` rows; ``compute(mask)`` gives those of the missing."""
        out = np.empty((len(keys), self.width))
        hit = np.zeros(len(keys), dtype=bool)
        if self.table is not None and len(self.keys):
            h = _mix(keys)
            loc = self.table.lookup(h)
            found = np.flatnonzero(loc >= 0)
            same = (self.keys[loc[found]] == keys[found]).all(axis=1)
            found = found[same]
            out[found] = self.values[loc[found]]
            hit[found] = True
        miss = ~hit
        if miss.any():
            new = np.asarray(compute(miss), dtype=float).reshape(-1, self.width)
            out[miss] = new
            if self.table is not None:
                # a hash shared with an older key replaces it; look-ups compare keys anyway
                base = len(self.values)
                stored = keys[miss]
                self.table.map_keys_to_values(
                    _mix(stored), np.arange(base, base + len(stored), dtype=np.int64)
                )
                self.keys = stored if not len(self.keys) else np.concatenate([self.keys, stored])
                self.values = np.concatenate([self.values, new])
        return out


def _new_hashtable():
    """pandas' int64 hash table (fast look-ups across files), or None when unavailable."""
    try:
        from pandas._libs.hashtable import Int64HashTable
    except ImportError:  # pragma: no cover - other pandas builds
        return None
    return Int64HashTable()


def _fingerprints(arr: pa.Array) -> np.ndarray:
    """A 64-bit hash (int64) of each string: its length and its first and last 8 bytes."""
    arr = arr.cast(pa.large_string())
    n = len(arr)
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.empty(0)
    start, length = offsets[:-1], np.diff(offsets)
    parts = [length]
    width = int(length[0]) if n else 0
    if n and width >= 8 and (length == width).all():  # police.uk: 64 hex digits each
        block = data[offsets[0] : offsets[0] + n * width].reshape(n, width)
        for b in (block[:, :8], block[:, width - 8 :]):
            parts.append(np.ascontiguousarray(b).view(np.uint64).ravel())
    elif len(data):
        j = np.arange(8)
        for pos, valid in (
            (start[:, None] + j, j < length[:, None]),
            (start[:, None] + length[:, None] - 8 + j, (length[:, None] - 8 + j) >= 0),
        ):
            b = np.where(valid, data[np.clip(pos, 0, len(data) - 1)], 0).astype(np.uint8)
            parts.append(np.ascontiguousarray(b).view(np.uint64).ravel())
    return _mix(np.column_stack([p.astype(np.int64, copy=False).view(np.int64) for p in parts]))


class _SeenIds:
    """Crime IDs kept from earlier files. With ``exact`` (a caller's set) membership is tested
    on Python strings; otherwise on 64-bit fingerprints, every hit then compared as text (and a
    fingerprint shared by different IDs falls back to an exact test on all kept IDs)."""

    def __init__(self, exact: set[str] | None = None) -> None:
        self.table = None if exact is not None else _new_hashtable()
        self.exact = exact if exact is not None or self.table is not None else set()
        self.chunks: list[pa.Array] = []
        self.n = 0

    def repeats(self, ids: pa.Array) -> np.ndarray:
        """True for IDs kept before, or repeating an earlier row of ``ids``; :meth:`add` then
        takes the rows of ``ids`` that were kept."""
        self._last = ids
        if self.table is None:
            return self._repeats_exact(ids)
        fp = self._last_fp = _fingerprints(ids)
        codes, uniq = pd.factorize(fp)
        self._last_codes = codes
        dup = np.zeros(len(ids), dtype=bool)
        if len(uniq) < len(ids):  # shared fingerprints: find the true repeats among them
            cand = np.flatnonzero(np.bincount(codes)[codes] > 1)
            dup[cand] = _later_repeats(ids.take(pa.array(cand)))
        if self.n:
            loc = self.table.lookup(fp)
            hit = np.flatnonzero(loc >= 0)
            if len(hit):
                before = pa.chunked_array(self.chunks, pa.large_string())
                found = before.take(pa.array(loc[hit])).combine_chunks()
                same = _np_bool(pc.equal(ids.take(pa.array(hit)), found))
                dup[hit[same]] = True
                other = hit[~same]
                if len(other):  # a fingerprint shared by different IDs: test exactly
                    everything = before.combine_chunks()
                    dup[other] |= _np_bool(
                        pc.is_in(ids.take(pa.array(other)), value_set=everything)
                    )
        return dup

    def add(self, kept: np.ndarray) -> None:
        """Remember the rows ``kept`` (boolean) of the IDs last given to :meth:`repeats`."""
        ids = self._last.filter(pa.array(kept)).cast(pa.large_string())
        if self.table is None:
            self.exact.update(ids.to_numpy(zero_copy_only=False).tolist())
            return
        fp, codes = self._last_fp[kept], self._last_codes[kept]
        first = np.full(int(codes.max()) + 1 if len(codes) else 0, -1, dtype=np.int64)
        first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # first row of each code
        first = first[first >= 0]
        fresh = self.table.lookup(fp[first]) < 0
        self.table.map_keys_to_values(fp[first][fresh], self.n + first[fresh])
        self.chunks.append(ids)
        self.n += len(ids)

    def _repeats_exact(self, ids: pa.Array) -> np.ndarray:
        enc = pc.dictionary_encode(ids)
        dup = np.zeros(len(ids), dtype=bool)
        if len(enc.dictionary) < len(ids):
            dup = _later_repeats(ids)
        if self.exact:
            before = self.exact.intersection(enc.dictionary.to_numpy(zero_copy_only=False))
            if before:
                dup |= _np_bool(pc.is_in(ids, value_set=pa.array(sorted(before))))
        return dup


def _later_repeats(ids: pa.Array) -> np.ndarray:
    """True for every occurrence of a text after its first (in order)."""
    first_seen = pc.dictionary_encode(ids).indices.to_numpy(zero_copy_only=False)
    first_seen = first_seen.astype(np.int64)
    dup = np.zeros(len(ids), dtype=bool)
    if len(ids) > 1:  # indices number the texts in order of first appearance
        dup[1:] = first_seen[1:] <= np.maximum.accumulate(first_seen)[:-1]
    return dup


def _lookup(keys: Iterable[str], values: Iterable[str] | None = None) -> tuple[pa.Array, ...]:
    k = pa.array([str(v) for v in keys], pa.large_string())
    if values is None:
        return (k,)
    return k, pa.array([str(v) for v in values], pa.large_string())


@dataclass(frozen=True)
class _Lookups:
    """What every file is checked against, built once per read."""

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
    projected: _Memo  # (lon, lat) bits -> (x, y), across files
    distances: _Memo  # (lon, lat) bits and polygon -> distance to it, across files

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
            projected=_Memo(2),
            distances=_Memo(1),
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
    seen: _SeenIds,
) -> pd.DataFrame:
    """The checks of :func:`_validate` on Arrow text columns, in the same order.

    Tests on months, crime types, coordinates and LSOA codes run once per distinct value and
    are spread to the rows with numpy; rows become Python objects only when quarantined one by
    one. Coordinates are projected and tested against polygons only for the rows still alive.
    """
    n = table.num_rows
    if n == 0:
        return _empty_points()
    cid = _Text.of(table.column("Crime ID"))
    month = _Text.of(table.column("Month"))
    ctype = _Text.of(table.column("Crime type"))
    lon_t = _Text.of(table.column("Longitude"))
    lat_t = _Text.of(table.column("Latitude"))
    code = _Text.of(table.column("LSOA code"))
    location = _Text.of(table.column("Location"), strip=False)
    rec = {
        "crime_id": cid,
        "month": month,
        "crime_type": ctype,
        "longitude": lon_t,
        "latitude": lat_t,
        "lsoa_code": code,
        "location": location,
    }
    alive = np.ones(n, dtype=bool)

    def reject(mask: np.ndarray, reason: str, detail: Any = "") -> None:
        """Quarantine the alive rows of ``mask`` one by one. ``detail``: one text, a text per
        row (array, or a function of the mask giving the rows' texts), or a tuple of texts and
        columns joined row by row."""
        nonlocal alive
        mask = mask & alive
        if not mask.any():
            return
        which = np.flatnonzero(mask)
        rows = pd.DataFrame({k: _pandas_text(v.rows(which)) for k, v in rec.items()})
        d: str | np.ndarray
        if isinstance(detail, str):
            d = detail
        elif isinstance(detail, np.ndarray):
            d = detail[mask]
        elif callable(detail):
            d = detail(mask)
        else:
            pieces = [_large(p) if isinstance(p, str) else p.rows(which) for p in detail]
            d = pc.binary_join_element_wise(*pieces, _large("")).to_numpy(zero_copy_only=False)
        quarantine.reject(source, name, reason, rows, lines=lines[mask], detail=d)
        alive &= ~mask

    reject(
        month.per_row(~_fullmatch(month.values, _MONTH_PATTERN)),
        "malformed_month",
        ("Month=", month),
    )
    fm = _FILE_MONTH.search(name.replace("\\", "/"))
    if fm:
        reject(
            month.per_row(_np_bool(pc.not_equal(month.values, fm.group(1)))),
            "month_mismatch",
            (f"file is for {fm.group(1)}; Month=", month),
        )
    reject(ctype.per_row(_np_bool(pc.equal(ctype.values, ""))), "missing_crime_type")
    group_idx = ctype.per_row(_np_index(pc.index_in(ctype.values, value_set=ctx.group_keys)))
    reject(group_idx < 0, "unknown_crime_type", ("Crime type=", ctype))

    no_xy = lon_t.per_row(_np_bool(pc.equal(lon_t.values, ""))) | lat_t.per_row(
        _np_bool(pc.equal(lat_t.values, ""))
    )
    has_code = code.per_row(_np_bool(pc.not_equal(code.values, "")))
    # one call for both kinds (the quarantine orders rows by line): no LSOA code either, or
    # "LSOA stated but no coordinates"
    reject(
        no_xy,
        "no_coordinates",
        lambda m: np.where(has_code[m], "LSOA stated but no coordinates", "").astype(object),
    )
    lon = lon_t.per_row(_to_float(lon_t.values))
    lat = lat_t.per_row(_to_float(lat_t.values))
    coords = ("Longitude=", lon_t, " Latitude=", lat_t)
    reject(np.isnan(lon) | np.isnan(lat), "bad_coordinates", coords)
    with np.errstate(invalid="ignore"):
        out_gb = ~((lon > -8.7) & (lon < 1.9) & (lat > 49.8) & (lat < 60.9))
    reject(out_gb, "coordinates_out_of_range", coords)
    x = np.zeros(n)
    y = np.zeros(n)
    projected = np.zeros(n, dtype=bool)
    # police.uk snaps records to shared map points: project (and test) each position once
    position = _factorize(_factorize(lon.view(np.int64)) * (n + 1) + _factorize(lat.view(np.int64)))

    lon_bits, lat_bits = lon.view(np.int64), lat.view(np.int64)

    def project(mask: np.ndarray) -> None:
        todo = np.flatnonzero(mask & ~projected)
        if len(todo):
            rep, back = _representatives(position[todo])
            r = todo[rep]
            xy = ctx.projected.get(
                np.column_stack([lon_bits[r], lat_bits[r]]),
                lambda m: np.column_stack(_TO_BNG.transform(lon[r[m]], lat[r[m]])),
            )
            x[todo] = xy[back, 0]
            y[todo] = xy[back, 1]
            projected[todo] = True

    # LSOA: stated code (converted from the other vintage when needed), or located by polygon.
    reject(
        has_code & ~code.per_row(_fullmatch(code.values, _CODE_PATTERN)),
        "malformed_lsoa_code",
        ("LSOA code=", code),
    )
    stated_values = code.values  # stated code per distinct code (converted when mapped)
    if ctx.map_keys is not None:
        conv = pc.take(ctx.map_values, pc.index_in(code.values, value_set=ctx.map_keys))
        moved = pc.and_(pc.not_equal(code.values, ""), pc.is_valid(conv))
        stated_values = pc.if_else(moved, conv, code.values)
    n_stated = len(stated_values)
    stated_values = pa.concat_arrays([stated_values, ctx.study_arrow])  # + codes located
    stated_pos = code.per_row(np.arange(n_stated, dtype=np.int64))
    in_study = code.per_row(
        _np_index(pc.index_in(stated_values.slice(0, n_stated), value_set=ctx.study_arrow))
    )
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
        stated_pos = np.where(found, n_stated + located, stated_pos)
    reject(missing_code & (located < 0), "outside_study_area", "no LSOA code; point outside")
    if ctx.known is not None:
        unknown = has_code & (in_study < 0) & alive
        if unknown.any():
            known_u = _np_bool(pc.is_in(stated_values, value_set=ctx.known))
            unknown &= ~known_u[stated_pos]
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

    period_idx = month.per_row(_np_index(pc.index_in(month.values, value_set=ctx.period_keys)))
    reject(period_idx < 0, "outside_period", ("Month=", month))

    has_id = cid.per_row(_np_bool(pc.not_equal(cid.values, "")))
    check = np.flatnonzero(alive & has_id)
    if len(check):
        dup = seen.repeats(cid.rows(check))
        dup_mask = np.zeros(n, dtype=bool)
        dup_mask[check[dup]] = True
        reject(dup_mask, "duplicate_crime_id", ("Crime ID=", cid))

    idx = np.flatnonzero(alive)
    if len(idx):
        project(alive)
        # each distinct (position, polygon) once
        rep, back = _representatives(position[idx] * len(ctx.polys) + in_study[idx])
        r = idx[rep]

        def distances(m: np.ndarray) -> np.ndarray:
            xi, yi, target = x[r[m]], y[r[m]], ctx.polys[in_study[r[m]]]
            out = np.zeros((len(xi), 1))
            # a point on or in its polygon is at distance 0: measure only the others
            away = ~shapely.intersects_xy(target, xi, yi)
            if away.any():
                pts = shapely.points(xi[away], yi[away])
                out[away, 0] = shapely.distance(pts, target[away])
            return out

        keys = np.column_stack([lon_bits[r], lat_bits[r], in_study[r]])
        if tolerance_m >= 0:
            dist = ctx.distances.get(keys, distances)[back, 0]
        else:  # every distance is compared (none skipped as zero)
            dist = shapely.distance(shapely.points(x[r], y[r]), ctx.polys[in_study[r]])[back]
        far_i = dist > tolerance_m
        if far_i.any():
            far = np.zeros(n, dtype=bool)
            far[idx[far_i]] = True
            detail = np.full(n, "", dtype=object)
            stated_far = stated_values.take(pa.array(stated_pos[idx[far_i]])).to_pylist()
            detail[idx[far_i]] = [
                f"{d:.0f} m from {s}" for d, s in zip(dist[far_i], stated_far, strict=True)
            ]
            reject(far, "lsoa_mismatch", detail)
    keep = np.flatnonzero(alive)
    if len(check):
        seen.add(alive[check])
    if not len(keep):
        empty = np.array([], dtype=object)
        texts = dict.fromkeys(
            ["month", "period", "crime_group", "crime_type", "crime_id", "lsoa_code", "location"],
            empty,
        )
    else:
        texts = {
            "month": month.rows(keep),
            "period": ctx.period_values.take(pa.array(period_idx[keep])),
            "crime_group": ctx.group_values.take(pa.array(group_idx[keep])),
            "crime_type": ctype.rows(keep),
            "crime_id": cid.values if cid.codes is None and len(keep) == n else cid.rows(keep),
            "lsoa_code": stated_values.take(pa.array(stated_pos[keep])),
            "location": location.rows(keep),
        }
        texts = {k: _pandas_text(v) for k, v in texts.items()}
    # the file name on every row (as a broadcast text would be), built by Arrow
    source_file = _pandas_text(_repeat_text(name, len(keep))) if len(keep) else name
    return pd.DataFrame(
        {
            "x": x[keep],
            "y": y[keep],
            **texts,
            "source_file": source_file,
            "line": lines[keep],
        }
    )
