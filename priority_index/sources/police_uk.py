"""police.uk street-level crime and ASB files: folders, globs or the downloaded zip.

Files are read in order (one month of one force each), with Arrow's CSV reader, checked row by
row in vectorised form, and reduced to the points of the study area, so memory is bounded by
the study area's records, not by the archive. Every row is either used or quarantined with a
reason.

Speed: the columns stay Arrow text while they are checked (``pyarrow.compute``); months, crime
types, LSOA codes and coordinates are read dictionary-encoded and tested once per distinct value;
positions are projected and measured against their LSOA once per distinct map point (police.uk
snaps records to shared points) and remembered across files; Crime IDs kept before are found by
64-bit fingerprints, every hit then compared as text. Rows become Python objects only when
quarantined one by one, and records of other areas are quarantined as one summary per file.
Two worker threads unzip, parse and check the next files (every test but the Crime ID one:
zlib, Arrow, numpy and GEOS release the GIL) while the reader's thread tests Crime IDs file by
file in order; small files are parsed and checked a few at a time as one CSV (each file's
share found again by the row numbers of separator lines) to spread the fixed cost of a check.
Zip members are inflated from one listing of the archive; plain files are memory-mapped; Arrow
allocates from jemalloc during the read, which keeps freed memory for the next file where
Arrow's default (mimalloc) hands it back to the system to be faulted in again. The points are
joined once, their text columns as chunked Arrow arrays (no copy), and the rejected records go
to the quarantine in bulk. On two cores: about a million rows a second or more, whether every
row is in the study area or most belong to other areas (``make bench``). :func:`_parse` and
:func:`_validate` (used file by file by the Dask engine) give the same results on pandas frames.
"""

from __future__ import annotations

import glob
import io
import re
import struct
import threading
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from .quarantine import COLUMNS as _REJECTED_COLUMNS
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
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class MonthFile:
    """One CSV of the input: a display name and a way to get its bytes (``path``: the file
    itself, when it is a plain file the reader may memory-map; ``size`` its bytes, when
    known without reading)."""

    name: str
    read: Callable[[], bytes]
    path: Path | None = None
    size: int | None = None  # bytes, when known without reading (zip members)


def list_files(path: Path) -> list[MonthFile]:
    """The street-level CSVs behind a folder, a glob, a zip, or a single file, in name order."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        names = sorted(glob.glob(text, recursive=True))
        if not names:
            raise InputError(path, "the glob matches no file", expected="police.uk CSV files")
        return [MonthFile(n, (lambda n=n: Path(n).read_bytes()), Path(n)) for n in names]
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
        return [MonthFile(str(n), (lambda n=n: n.read_bytes()), n) for n in names]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            infos = {m: zf.getinfo(m) for m in names}  # as ``ZipFile.read(name)`` finds them
        members = sorted(m for m in names if m.lower().endswith(".csv"))
        street = [m for m in members if m.endswith("-street.csv")] or members
        if not street:
            raise InputError(
                path,
                "the zip holds no CSV file",
                expected="YYYY-MM/YYYY-MM-<force>-street.csv members",
            )
        return [
            MonthFile(
                f"{path}!{m}",
                (lambda m=m: _read_member(path, infos[m])),
                size=infos[m].file_size,
            )
            for m in street
        ]
    return [MonthFile(str(path), path.read_bytes, path)]


def _read_member(path: Path, info: zipfile.ZipInfo) -> bytes:
    """One member of a zip, from the archive's listing read once (``ZipFile.read`` would read
    the central directory again for every member): its bytes are inflated in one call and their
    CRC-32 checked, as ``zipfile`` does. Other compressions and encrypted members go through
    ``zipfile``."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 1:
        with zipfile.ZipFile(path) as zf:
            return zf.read(info)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        head = fh.read(30)
        if len(head) < 30 or head[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"Bad magic number for file header of {info.filename!r}")
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        fh.seek(name_len + extra_len, io.SEEK_CUR)
        raw = fh.read(info.compress_size)
    if info.compress_type == zipfile.ZIP_STORED:
        data = raw
    else:
        data = zlib.decompress(raw, -15, max(info.file_size, 1))
    if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    return data


def _read_table(
    name: str,
    data: bytes | pa.Buffer,
    columns: list[str],
    *,
    encoded: Iterable[str] = (),
    invalid: list[tuple[int, str]] | None = None,
) -> tuple[pa.Table, np.ndarray, list[tuple[int, str]]]:
    """Parse one CSV into Arrow text: (table, 1-based line numbers, malformed lines).

    ``data`` is the file's bytes (or an Arrow buffer of them); ``columns`` are the columns of
    :data:`COLUMNS` to keep (those the header has); those in ``encoded`` are read
    dictionary-encoded. With ``invalid`` (a list to fill), the CSV is parsed in one thread and
    the list gets the row number (header: 1) and text of every row of the wrong width; the
    line numbers and malformed lines are then left to the caller (empty).
    """
    buf = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    if buf.size >= 3 and buf.slice(0, 3).to_pybytes() == _BOM:
        buf = buf.slice(3)
    head = buf.slice(0, min(buf.size, 1 << 16)).to_pybytes()
    header_end = head.find(b"\n")
    if header_end < 0 and buf.size > len(head):  # a header longer than 64 kB
        head = buf.to_pybytes()
        header_end = head.find(b"\n")
    header = head[: header_end if header_end >= 0 else len(head)].decode("utf-8", "replace")
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
        if invalid is not None:
            invalid.append((row.number, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(buf),
            read_options=pacsv.ReadOptions(block_size=1 << 24, use_threads=invalid is None),
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
    if invalid is not None:
        return table, np.zeros(0, dtype=np.int64), []
    n_lines = n_rows + len(bad)
    # Line numbers: physical lines (police.uk never quotes newlines). Malformed lines are found
    # by their text; the valid rows take the remaining line numbers in order.
    malformed: list[tuple[int, str]] = []
    if bad:
        lines = buf.to_pybytes().decode("utf-8", "replace").split("\n")
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


def _malformed_detail(malformed: list[tuple[int, str]]) -> list[str]:
    return [f"{len(t.split(','))} fields: {t[:120]}" for _, t in malformed]


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
            detail=_malformed_detail(malformed),
        )


# --------------------------------------------------------------------------- memory
#: Arrow's allocator while files are read: jemalloc (or the system's) keeps freed memory for
#: the next file, where Arrow's default (mimalloc) returns it to the system soon after, so every
#: file's buffers would be faulted in afresh (costly on virtual machines).
try:
    _READ_POOL: pa.MemoryPool = pa.jemalloc_memory_pool()
except (NotImplementedError, AttributeError):  # pragma: no cover - builds without jemalloc
    _READ_POOL = pa.system_memory_pool()
_POOL_LOCK = threading.Lock()
_POOL_USERS = [0, None]  # readers in progress, the pool to restore after the last


@contextmanager
def _read_pool() -> Iterator[None]:
    """Arrow allocates from :data:`_READ_POOL` inside the block (process-wide: the default
    pool is global; restored when the last concurrent reader leaves). Buffers remember their
    pool, so arrays made inside stay valid outside."""
    with _POOL_LOCK:
        if _POOL_USERS[0] == 0:
            _POOL_USERS[1] = pa.default_memory_pool()
            pa.set_memory_pool(_READ_POOL)
        _POOL_USERS[0] += 1
    try:
        yield
    finally:
        with _POOL_LOCK:
            _POOL_USERS[0] -= 1
            if _POOL_USERS[0] == 0:
                pa.set_memory_pool(_POOL_USERS[1])
                _POOL_USERS[1] = None


# --------------------------------------------------------------------------- reading
#: Tasks in flight (files being unzipped, parsed and checked by the workers, or waiting for
#: the Crime ID test): up to three, of at most this many bytes of CSV together, but always one
#: (memory: a file of a million rows, 230 MB, takes some 400 MB while it is parsed).
_AHEAD, _AHEAD_BYTES = 3, 256 << 20
_WORKERS = 2
#: Consecutive small files are parsed and checked together, up to this many bytes (within
#: one block of Arrow's reader): each file costs a millisecond or two of fixed work, and
#: larger groups cost more in memory first touched than they save.
_GROUP_BYTES, _GROUP_FILES = 8 << 20, 16

_Outcome = tuple[list[tuple[int, str]], "_Checked"] | BaseException


def _file_bytes(mf: MonthFile) -> bytes | pa.Buffer:
    """The file's bytes: memory-mapped when it is a plain file (no copy, nothing to fault in
    but the page cache), else read."""
    if mf.path is not None:
        try:
            mapped = pa.memory_map(str(mf.path))
            if mapped.size() > 0:
                return mapped.read_buffer()
        except OSError:
            pass  # read below: it raises the error a plain read gives
    return mf.read()


def _file_size(mf: MonthFile) -> int | None:
    if mf.size is not None:
        return mf.size
    try:
        return mf.path.stat().st_size if mf.path is not None else None
    except OSError:
        return None


def _groups(files: list[MonthFile]) -> list[list[MonthFile]]:
    """Consecutive files in groups of at most :data:`_GROUP_BYTES` (a larger file, or one of
    unknown size, alone)."""
    out: list[list[MonthFile]] = []
    group: list[MonthFile] = []
    total = 0
    for mf in files:
        size = _file_size(mf)
        if size is None or size > _GROUP_BYTES:
            if group:
                out.append(group)
            out.append([mf])
            group, total = [], 0
            continue
        if group and (total + size > _GROUP_BYTES or len(group) >= _GROUP_FILES):
            out.append(group)
            group, total = [], 0
        group.append(mf)
        total += size
    if group:
        out.append(group)
    return out


def _checked_file(mf: MonthFile, ctx: _Lookups, tolerance_m: float) -> _Outcome:
    """One file unzipped (or mapped), parsed and checked (all but the Crime ID test)."""
    try:
        table, lines, malformed = _read_table(mf.name, _file_bytes(mf), REQUIRED, encoded=_ENCODED)
        files = [(mf.name, table.num_rows)]
        return malformed, _validate_table(table, lines, files, ctx=ctx, tolerance_m=tolerance_m)[0]
    except Exception as exc:  # noqa: BLE001 - raised by the reader's thread, in file order
        return exc


def _checked_group(group: list[MonthFile], ctx: _Lookups, tolerance_m: float) -> list[_Outcome]:
    """The files of a group parsed as one CSV (their bodies after the first's header, apart)
    and checked together, then split by file again; file by file (:func:`_checked_file`) when
    anything is out of the ordinary (headers that differ, a row of the wrong width, an error),
    so that line numbers, rejections and errors are those of each file alone."""
    if len(group) > 1:
        try:
            checked = _checked_joined(group, ctx, tolerance_m)
        except Exception:  # noqa: BLE001 - read again file by file, which raises it
            checked = None
        if checked is not None:
            return [([], c) for c in checked]
    out: list[_Outcome] = []
    for mf in group:
        out.append(_checked_file(mf, ctx, tolerance_m))
        if isinstance(out[-1], BaseException):
            break  # the reader stops there
    return out


#: A line between the files of a group: a row of the wrong width, which the CSV reader reports
#: with its row number (the files' counts of rows follow from those numbers).
_APART = "police.uk reader: next file"


def _checked_joined(
    group: list[MonthFile], ctx: _Lookups, tolerance_m: float
) -> list[_Checked] | None:
    """:func:`_checked_group` on the group parsed as one CSV; None when that cannot be."""
    header: bytes | None = None
    pieces: list[Any] = []
    for mf in group:
        view = memoryview(_file_bytes(mf))
        start = 3 if bytes(view[:3]) == _BOM else 0
        end = bytes(view[start : start + (1 << 16)]).find(b"\n")
        if end < 0:
            return None
        head = bytes(view[start : start + end + 1])
        if header is None:
            header = head
            pieces.append(head)
        elif head != header:
            return None
        else:
            pieces.append(_APART.encode() + b"\n")
        body = view[start + end + 1 :]
        pieces.append(body)
        if len(body) and body[-1] != ord("\n"):
            pieces.append(b"\n")
    invalid: list[tuple[int, str]] = []
    table, _, _ = _read_table(
        group[0].name, b"".join(pieces), REQUIRED, encoded=_ENCODED, invalid=invalid
    )
    numbers = [number for number, text in invalid if text == _APART]
    if len(numbers) != len(invalid) or len(numbers) != len(group) - 1:
        return None  # malformed rows, or a file whose last row swallowed the line between
    first = [2, *(k + 1 for k in numbers)]  # row number of each file's first row
    counts = [b - a for a, b in zip(first, numbers, strict=False)]
    counts.append(table.num_rows - sum(counts))
    if min(counts) < 0:
        return None
    files = [(mf.name, k) for mf, k in zip(group, counts, strict=True)]
    lines = np.concatenate([np.arange(2, k + 2, dtype=np.int64) for k in counts])
    return _validate_table(table, lines, files, ctx=ctx, tolerance_m=tolerance_m)


def _checked_files(
    files: list[MonthFile], ctx: _Lookups, tolerance_m: float
) -> Iterator[tuple[MonthFile, list[tuple[int, str]], _Checked]]:
    """Each file, read, parsed and checked, in order; the next files are read and checked in
    threads meanwhile (Arrow, zlib, numpy and GEOS release the GIL: both cores work). An error
    is raised when its file's turn comes, after the files before it."""
    groups = _groups(files)
    if len(files) < 2:
        outcomes: Iterable[list[_Outcome]] = ([_checked_file(mf, ctx, tolerance_m)] for mf in files)
        yield from _in_order(groups, outcomes)
        return
    sizes = [sum(_file_size(mf) or _AHEAD_BYTES for mf in g) for g in groups]
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        pending: deque = deque()  # (future, bytes)
        nxt = 0

        def submit() -> None:
            nonlocal nxt
            while nxt < len(groups) and len(pending) < _AHEAD:
                if pending and sum(b for _, b in pending) + sizes[nxt] > _AHEAD_BYTES:
                    break
                fut = pool.submit(_checked_group, groups[nxt], ctx, tolerance_m)
                pending.append((fut, sizes[nxt]))
                nxt += 1

        def results() -> Iterator[list[_Outcome]]:
            submit()
            while pending:
                got = pending.popleft()[0].result()
                submit()
                yield got

        try:
            yield from _in_order(groups, results())
        finally:
            for fut, _ in pending:
                fut.cancel()


def _in_order(
    groups: list[list[MonthFile]], outcomes: Iterable[list[_Outcome]]
) -> Iterator[tuple[MonthFile, list[tuple[int, str]], _Checked]]:
    for group, got in zip(groups, outcomes, strict=False):
        for mf, outcome in zip(group, got, strict=False):
            if isinstance(outcome, BaseException):
                raise outcome
            malformed, checked = outcome
            yield mf, malformed, checked


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
    rejected = _Rejections(quarantine, source, bulk=type(quarantine) is Quarantine)
    parts: list[_Kept] = []
    objects = not _ARROW_TEXT  # the points' texts as Python strings
    with _read_pool():
        try:
            for mf, malformed, checked in _checked_files(files, ctx, tolerance_m):
                n_read = checked.n + len(malformed)
                tally.files += 1
                tally.rows_read += n_read
                if malformed:
                    rejected.add(
                        mf.name,
                        _Reject(
                            "malformed_row",
                            np.array([ln for ln, _ in malformed], dtype=np.int64),
                            {},
                            _malformed_detail(malformed),
                        ),
                    )
                kept = _finish(checked, seen, rejected, objects=objects)
                tally.rows_used += kept.n_kept
                parts.append(kept)
                if kept.texts is None and not objects:
                    # the points' texts will be Python strings (as ``pd.concat`` makes them):
                    # made file by file from here on, from each file's distinct values
                    objects = True
                    for p in parts:
                        p.as_objects()
                if progress:
                    progress(
                        f"{Path(mf.name.split('!')[-1]).name}: {n_read:,} rows, "
                        f"{kept.n_kept:,} used"
                    )
        finally:
            rejected.flush()
        if not parts:
            return _empty_points()
        return _join_points(parts)


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


def read_file_by_file(
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
) -> pd.DataFrame:
    """Read as the Dask engine does, one file at a time through ``_parse`` and ``_validate``.

    The reference :func:`read_police_uk` must equal (tests and ``benchmarks.ingest_check``):
    the same parameters, the same points, rejected records and tallies, without threads or
    grouped files.
    """
    polys = study.geometry.to_numpy()
    tree = shapely.STRtree(polys)
    seen: set[str] = set()
    tally = quarantine.tally(source)
    parts = []
    for mf in list_files(path):
        frame, lines, malformed = _parse(mf.name, mf.read())
        tally.files += 1
        tally.rows_read += len(frame) + len(malformed)
        _reject_malformed(quarantine, source, mf.name, malformed)
        kept = _validate(
            frame,
            lines,
            mf.name,
            source=source,
            quarantine=quarantine,
            study_codes=pd.Index(study.index),
            polys=polys,
            tree=tree,
            period_of_month=period_of_month,
            crime_groups=crime_groups,
            tolerance_m=tolerance_m,
            code_map=code_map or {},
            known_codes=known_codes,
            seen_ids=seen,
        )
        tally.rows_used += len(kept)
        parts.append(kept)
    return pd.concat(parts, ignore_index=True) if parts else _empty_points()


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
    Rejected rows go to ``quarantine`` one call per reason, as they are found.
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
    files = [(name, table.num_rows)]
    checked = _validate_table(table, np.asarray(lines), files, ctx=ctx, tolerance_m=tolerance_m)[0]
    kept = _finish(checked, _SeenIds(exact=seen_ids), _Rejections(quarantine, source, bulk=False))
    return _points_frame(kept)


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
#: Columns read dictionary-encoded: few distinct values (months, codes, snapped map points;
#: not the location texts, needed only for the rows kept or rejected one by one).
_ENCODED = ["Month", "Longitude", "Latitude", "LSOA code", "Crime type"]
#: Text columns of a rejected record (as :class:`Quarantine` names them) and of a point.
_RECORD = ["crime_id", "month", "crime_type", "longitude", "latitude", "lsoa_code", "location"]
_POINT_TEXT = ["month", "period", "crime_group", "crime_type", "crime_id", "lsoa_code", "location"]


def _text_array(values: pd.Series) -> pa.Array:
    """A frame column as one Arrow string array (missing values as empty text)."""
    if values.dtype == object:  # Python strings (and missing values), as _parse gives
        try:
            arr = pa.array(values.to_numpy(), pa.large_string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # other objects: as text below
        else:
            return pc.fill_null(arr, _EMPTY)
    s = values.astype(str)
    arr = pa.array(s.array) if _ARROW_TEXT else pa.array(s.to_numpy(dtype=object), pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.fill_null(arr.cast(pa.large_string()), "")


def _pandas_text(arr: pa.Array | pa.ChunkedArray) -> Any:
    """Arrow strings as the column pandas would infer from the same Python strings."""
    if _ARROW_TEXT and len(arr):
        return pd.arrays.ArrowStringArray(arr.cast(pa.large_string()), dtype=_STR_DTYPE)
    return arr.to_numpy(zero_copy_only=False).astype(object)


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


# scalars made once (converting Python values costs more than most tests on a few values)
_EMPTY = _large("")
_FALSE = pa.scalar(False)
_NOT_FOUND = pa.scalar(-1, pa.int32())


def _repeat_text(text: str, n: int) -> pa.Array:
    """``n`` copies of ``text`` as one Arrow string array."""
    return pa.repeat(_large(text), n)


def _np_bool(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow booleans as numpy (nulls as False)."""
    return pc.fill_null(arr, _FALSE).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _np_index(arr: pa.Array) -> np.ndarray:
    """Arrow positions (``index_in``) as int64, -1 where null."""
    return pc.fill_null(arr, _NOT_FOUND).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


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
    other = np.flatnonzero(~plain_np & ~_np_bool(pc.equal(arr, _EMPTY)))  # empty text: NaN
    if len(other):
        text = pd.Series(_pandas_text(arr.take(pa.array(other))), dtype=_STR_DTYPE)
        out[other] = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    return out


#: First or last bytes of a text that may be (part of) white space: ASCII controls and space,
#: DEL and every byte of a multi-byte UTF-8 character.
_MAYBE_SPACE = np.zeros(256, dtype=bool)
_MAYBE_SPACE[:33] = _MAYBE_SPACE[127:] = True


def _strip(values: pa.Array) -> pa.Array:
    """``utf8_trim_whitespace`` (as ``str.strip``), skipped when no text begins or ends with a
    byte that could be white space (police.uk's IDs and codes: the common case)."""
    values = values.cast(pa.large_string())
    n = len(values)
    if n == 0:
        return values
    _, offsets_buf, data_buf = values.buffers()
    if data_buf is None or data_buf.size == 0:
        return values
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[values.offset : values.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)
    start, end = offsets[:-1], offsets[1:]
    full = start < end
    if not full.all():
        start, end = start[full], end[full]
    if _MAYBE_SPACE[data[start]].any() or _MAYBE_SPACE[data[end - 1]].any():
        return pc.utf8_trim_whitespace(values)
    return values


@dataclass(frozen=True)
class _Text:
    """A text column as its distinct values and each row's position among them (``codes``), or
    as one value per row (``codes`` None). Tests run once per distinct value."""

    values: pa.Array  # large_string (or string, for a column of values not yet stripped)
    codes: np.ndarray | None

    @classmethod
    def of(cls, column: pa.Array | pa.ChunkedArray, *, strip: bool = True) -> _Text:
        arr = column
        if isinstance(column, pa.ChunkedArray):
            arr = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        if pa.types.is_dictionary(arr.type):
            values, codes = arr.dictionary.cast(pa.large_string()), arr.indices.to_numpy()
            return cls(_strip(values) if strip else values, codes)
        # one value per row: cast (and stripped) when rows are taken
        return cls(_strip(arr) if strip else arr, None)

    def per_row(self, per_value: np.ndarray) -> np.ndarray:
        """An array over the distinct values, spread to the rows."""
        return per_value if self.codes is None else per_value[self.codes]

    def rows(self, which: np.ndarray) -> pa.Array:
        """The text of the rows ``which`` (positions), as large_string."""
        pos = which if self.codes is None else self.codes[which]
        return self.values.take(pa.array(pos)).cast(pa.large_string())

    def slice(self, a: int, b: int) -> _Text:
        """The rows ``a`` to ``b`` (exclusive) only."""
        if self.codes is None:
            return _Text(self.values.slice(a, b - a), None)
        return _Text(self.values, self.codes[a:b])

    def subset(self, which: np.ndarray) -> _Text:
        """The rows ``which`` (positions) only, as a column of their own."""
        if self.codes is None:
            return _Text(self.rows(which), None)
        return _Text(self.values, self.codes[which])

    def objects(self, which: np.ndarray | None = None) -> np.ndarray:
        """The text of the rows ``which`` (all when None) as Python strings (one object per
        distinct value when dictionary-encoded)."""
        if self.codes is None:
            values = self.values if which is None else self.values.take(pa.array(which))
            return values.to_numpy(zero_copy_only=False).astype(object, copy=False)
        distinct = self.values.to_numpy(zero_copy_only=False).astype(object, copy=False)
        return distinct[self.codes if which is None else self.codes[which]]


@dataclass
class _Reject:
    """Rows of one file rejected for one reason (one ``Quarantine.reject`` call: ``rows`` their
    record's texts as in :data:`_RECORD`, none for malformed lines; ``detail`` one text or one
    per row), or with ``summary`` many rows as one summary (``Quarantine.reject_summary``)."""

    reason: str
    lines: np.ndarray
    rows: dict[str, pa.Array]
    detail: str | list[str] | np.ndarray | pa.Array = ""
    summary: bool = False


@dataclass
class _Checked:
    """One file after every check but the Crime ID test (:func:`_validate_table`): the records
    rejected so far, and the rows still alive (``idx``), each with what the Crime ID test, the
    distance test and the points need."""

    name: str
    n: int  # rows parsed
    rejects: list[_Reject]
    idx: np.ndarray  # positions (in the file) of the rows alive
    lines: np.ndarray
    rec: dict[str, _Text]  # the alive rows' record texts (:data:`_RECORD`)
    ids: _Ids | None  # the Crime IDs to test (of the rows with one)
    has_id: np.ndarray
    x: np.ndarray
    y: np.ndarray
    far: np.ndarray  # farther than the tolerance from the stated (or found) LSOA
    far_detail: np.ndarray  # "<d> m from <code>" where far
    points: dict[str, _Text]  # the alive rows' point texts (:data:`_POINT_TEXT`)


@dataclass
class _Kept:
    """The rows of one file kept as points, as columns: ``texts`` Arrow arrays, or numpy arrays
    of Python strings (``objects``), None when no row is kept."""

    name: str
    n: int  # rows parsed
    x: np.ndarray
    y: np.ndarray
    texts: dict[str, Any] | None
    lines: np.ndarray
    objects: bool = False

    @property
    def n_kept(self) -> int:
        return len(self.lines)

    def as_objects(self) -> None:
        """The texts as numpy arrays of Python strings."""
        if self.texts is not None and not self.objects:
            self.texts = {
                k: v.to_numpy(zero_copy_only=False).astype(object, copy=False)
                for k, v in self.texts.items()
            }
        self.objects = True


class _Rejections:
    """Rejected records of one read on their way to the quarantine: passed on as they come
    (``bulk`` False: one ``reject`` or ``reject_summary`` call each, as the Dask engine records
    them), or kept and added at the end as two frames, one of records and one of summaries
    (``bulk``: the quarantine's own frames, built per call, cost milliseconds each). Both give
    the same :meth:`Quarantine.frame` and tallies."""

    def __init__(self, quarantine: Quarantine, source: str, *, bulk: bool) -> None:
        self.quarantine = quarantine
        self.source = source
        self.bulk = bulk
        self.records: list[tuple[str, _Reject]] = []

    def add(self, name: str, rej: _Reject) -> None:
        n = len(rej.lines)
        if n == 0:
            return
        q = self.quarantine
        if not self.bulk:
            if rej.summary:
                q.reject_summary(self.source, name, rej.reason, rej.lines, detail=rej.detail)
            else:
                rows = (
                    pd.DataFrame({k: _pandas_text(v) for k, v in rej.rows.items()})
                    if rej.rows
                    else pd.DataFrame(index=range(n))  # malformed lines: no record
                )
                detail = rej.detail
                if isinstance(detail, pa.Array):
                    detail = detail.to_numpy(zero_copy_only=False)
                q.reject(self.source, name, rej.reason, rows, lines=rej.lines, detail=detail)
            return
        t = q.tally(self.source)
        t.rejected[rej.reason] = t.rejected.get(rej.reason, 0) + n
        self.records.append((name, rej))

    def flush(self) -> None:
        """Add the records kept (``bulk``) to the quarantine."""
        records, self.records = self.records, []
        if not records:
            return
        one = [(name, r) for name, r in records if not r.summary]
        many = [(name, r) for name, r in records if r.summary]
        frames = [self._records_frame(one), self._summaries_frame(many)]
        if records[0][1].summary:  # the first call's frame gives the columns' order
            frames.reverse()
        self.quarantine.add_frames(f for f in frames if f is not None)

    def _records_frame(self, records: list[tuple[str, _Reject]]) -> pd.DataFrame | None:
        """What ``Quarantine.reject`` makes of each record, as one frame."""
        if not records:
            return None
        sizes = [len(r.lines) for _, r in records]
        n = sum(sizes)

        def repeated(texts: list[str]) -> Any:
            return _pandas_text(
                pa.chunked_array(
                    [_repeat_text(t, k) for t, k in zip(texts, sizes, strict=True)],
                    pa.large_string(),
                )
            )

        def detail(r: _Reject, k: int) -> pa.Array:
            d = r.detail
            if isinstance(d, str):
                return _repeat_text(d, k)
            if isinstance(d, pa.Array):
                return d.cast(pa.large_string())
            return pa.array(np.asarray(d, dtype=object).astype(str), pa.large_string())

        part = pd.DataFrame(index=range(n))
        part["source"] = self.source
        part["file"] = repeated([name for name, _ in records])
        part["line"] = np.concatenate([r.lines for _, r in records]).astype("int64")
        part["reason"] = repeated([r.reason for _, r in records])
        part["detail"] = _pandas_text(
            pa.chunked_array(
                [detail(r, k) for (_, r), k in zip(records, sizes, strict=True)],
                pa.large_string(),
            )
        )
        part["n_records"] = 1
        for col in _REJECTED_COLUMNS[6:]:
            if all(col in r.rows for _, r in records):
                part[col] = _pandas_text(
                    pa.chunked_array([r.rows[col] for _, r in records], pa.large_string())
                )
            else:  # malformed lines have no record: None, as the quarantine gives
                part[col] = np.concatenate(
                    [
                        r.rows[col].to_numpy(zero_copy_only=False).astype(object)
                        if col in r.rows
                        else np.full(len(r.lines), None, dtype=object)
                        for _, r in records
                    ]
                )
        return part

    def _summaries_frame(self, records: list[tuple[str, _Reject]]) -> pd.DataFrame | None:
        """What ``Quarantine.reject_summary`` makes of each record, as one frame."""
        if not records:
            return None
        part = pd.DataFrame({c: [None] * len(records) for c in _REJECTED_COLUMNS})
        part["source"] = self.source
        part["file"] = [name for name, _ in records]
        part["reason"] = [r.reason for _, r in records]
        part["line"] = [int(np.min(r.lines)) for _, r in records]
        part["n_records"] = [len(r.lines) for _, r in records]
        part["detail"] = [
            f"{len(r.lines):,} rows (lines {int(np.min(r.lines))}-{int(np.max(r.lines))})"
            + (f": {r.detail}" if r.detail else "")
            for _, r in records
        ]
        part["line"] = part["line"].astype("int64")
        part["n_records"] = part["n_records"].astype("int64")
        return part


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
    int64 and every hit is checked against the stored key, so a hash collision is a miss.
    Safe to share between threads (two threads may compute the same missing key: its values
    are the same)."""

    #: keys looked up before the memo may judge itself useless (too few found: generated
    #: positions, each its own), and stop
    TRIAL, FEW = 200_000, 0.05

    def __init__(self, width: int) -> None:
        self.width = width
        self.table = _new_hashtable()
        self.keys = np.empty((0, 0), dtype=np.int64)
        self.values = np.empty((0, width))
        self.n = 0  # rows of keys and values in use (the arrays grow by doubling)
        self.lock = threading.Lock()
        self.looked = self.found = 0

    def get(self, keys: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Values of distinct ``keys`` rows; ``compute(mask)`` gives those of the missing."""
        out = np.empty((len(keys), self.width))
        hit = np.zeros(len(keys), dtype=bool)
        with self.lock:
            if self.looked >= self.TRIAL and self.found < self.FEW * self.looked:
                self._drop()  # not worth it: every key computed (the same values)
            use = self.table is not None
        h = _mix(keys) if use else None
        if h is not None:
            with self.lock:
                if self.table is not None and self.n:
                    loc = self.table.lookup(h)
                    found = np.flatnonzero(loc >= 0)
                    same = (self.keys[loc[found]] == keys[found]).all(axis=1)
                    found = found[same]
                    out[found] = self.values[loc[found]]
                    hit[found] = True
                    self.looked += len(keys)
                    self.found += len(found)
        miss = ~hit
        if miss.any():
            new = np.asarray(compute(miss), dtype=float).reshape(-1, self.width)
            out[miss] = new
            if h is not None:
                self._store(keys[miss], h[miss], new)
        return out

    def _drop(self) -> None:
        self.table = None
        self.keys = np.empty((0, 0), dtype=np.int64)
        self.values = np.empty((0, self.width))
        self.n = 0

    def _store(self, keys: np.ndarray, h: np.ndarray, values: np.ndarray) -> None:
        # a hash shared with an older key replaces it; look-ups compare keys anyway
        with self.lock:
            if self.table is None:
                return
            base, end = self.n, self.n + len(keys)
            if end > len(self.values):
                size = max(end, 2 * len(self.values), 1024)
                grown_keys = np.empty((size, keys.shape[1]), dtype=np.int64)
                grown_values = np.empty((size, self.width))
                if base:
                    grown_keys[:base] = self.keys[:base]
                    grown_values[:base] = self.values[:base]
                self.keys, self.values = grown_keys, grown_values
            self.keys[base:end] = keys
            self.values[base:end] = values
            self.table.map_keys_to_values(h, np.arange(base, end, dtype=np.int64))
            self.n = end


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


@dataclass
class _Ids:
    """Crime IDs of one file to test, with what can be worked out before the test (in a worker
    thread): their fingerprints, and which repeat an earlier row of the same file."""

    ids: pa.Array  # large_string
    fp: np.ndarray | None = None
    repeats: np.ndarray | None = None

    @classmethod
    def of(cls, ids: pa.Array, *, fingerprints: bool = True) -> _Ids:
        ids = ids.cast(pa.large_string())
        if not fingerprints:
            return cls(ids)
        fp = _fingerprints(ids)
        codes, uniq = pd.factorize(fp)
        dup = np.zeros(len(ids), dtype=bool)
        if len(uniq) < len(ids):  # shared fingerprints: find the true repeats among them
            cand = np.flatnonzero(np.bincount(codes)[codes] > 1)
            dup[cand] = _later_repeats(ids.take(pa.array(cand)))
        return cls(ids, fp, dup)


class _SeenIds:
    """Crime IDs kept from earlier files. With ``exact`` (a caller's set) membership is tested
    on Python strings; otherwise on 64-bit fingerprints, every hit then compared as text (and a
    fingerprint shared by different IDs falls back to an exact test on all kept IDs)."""

    def __init__(self, exact: set[str] | None = None) -> None:
        self.table = None if exact is not None else _new_hashtable()
        self.exact = exact if exact is not None or self.table is not None else set()
        self.chunks: list[pa.Array] = []
        self.n = 0

    @property
    def fingerprints(self) -> bool:
        return self.table is not None

    def repeats(self, batch: _Ids) -> np.ndarray:
        """True for IDs kept before, or repeating an earlier row of the batch; :meth:`add`
        then takes the rows of the batch that were kept."""
        self._last = batch
        ids = batch.ids
        if self.table is None:
            return self._repeats_exact(ids)
        if batch.fp is None:
            batch = self._last = _Ids.of(ids)
        fp = batch.fp
        dup = batch.repeats.copy()
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
        """Remember the rows ``kept`` (boolean) of the batch last given to :meth:`repeats`."""
        batch = self._last
        ids = batch.ids if kept.all() else batch.ids.filter(pa.array(kept))
        if self.table is None:
            self.exact.update(ids.to_numpy(zero_copy_only=False).tolist())
            return
        # every ID kept is found by its fingerprint (a fingerprint shared by IDs leads to the
        # last of them: the text comparison in :meth:`repeats` then tests all exactly)
        fp = batch.fp if len(ids) == len(batch.ids) else batch.fp[kept]
        self.table.map_keys_to_values(fp, np.arange(self.n, self.n + len(ids), dtype=np.int64))
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
    #: held while GEOS works on the study's polygons (prepared geometries are not thread-safe)
    geos: threading.Lock = field(default_factory=threading.Lock)

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
    files: list[tuple[str, int]],
    *,
    ctx: _Lookups,
    tolerance_m: float,
) -> list[_Checked]:
    """Every check of :func:`_validate` but the Crime ID test, on Arrow text columns, in the
    same order; :func:`_finish` then tests the Crime IDs and drops the rows too far from their
    LSOA. Safe to run for several files at once (in threads).

    ``files`` names the files whose rows ``table`` holds, one after the other, with their
    counts of rows (one file, or a group parsed as one CSV); the result has one entry per
    file, as if each had been checked alone.

    Tests on months, crime types, coordinates and LSOA codes run once per distinct value and
    are spread to the rows with numpy; rows become Python objects only when quarantined one by
    one. Coordinates are projected and tested against polygons only for the rows still alive
    (their distance to the LSOA is measured before the Crime ID test, which does not need it:
    the same figures, the same rejections).
    """
    n = table.num_rows
    bounds = np.concatenate([[0], np.cumsum([k for _, k in files])]).astype(np.int64)
    rejects: list[list[_Reject]] = [[] for _ in files]
    if n == 0:
        return [_no_rows(name, []) for name, _ in files]
    cid = _Text.of(table.column("Crime ID"), strip=False)  # stripped when rows are taken
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

    def texts(which: np.ndarray) -> dict[str, pa.Array]:
        out = {k: v.rows(which) for k, v in rec.items()}
        out["crime_id"] = _strip(out["crime_id"])
        return out

    def reject(mask: np.ndarray, reason: str, detail: Any = "") -> None:
        """Quarantine the alive rows of ``mask`` one by one. ``detail``: one text, a text per
        row (array, or a function of the mask giving the rows' texts), or a tuple of texts and
        columns joined row by row."""
        nonlocal alive
        mask = mask & alive
        if not mask.any():
            return
        which = np.flatnonzero(mask)
        rows = texts(which)
        d: str | np.ndarray | pa.Array
        if isinstance(detail, str):
            d = detail
        elif isinstance(detail, np.ndarray):
            d = detail[mask]
        elif callable(detail):
            d = detail(mask)
        else:
            pieces = [_large(p) if isinstance(p, str) else _record_text(p, rows) for p in detail]
            d = pc.binary_join_element_wise(*pieces, _EMPTY)
        split(which, reason, rows, d)
        alive &= ~mask

    def split(
        which: np.ndarray, reason: str, rows: dict[str, pa.Array], d: Any, summary: bool = False
    ) -> None:
        """The rejected rows ``which`` (positions, ascending), file by file."""
        if len(files) == 1:
            rejects[0].append(_Reject(reason, lines[which], rows, d, summary))
            return
        cuts = np.searchsorted(which, bounds)
        for f in range(len(files)):
            a, b = int(cuts[f]), int(cuts[f + 1])
            if a < b:
                part = {k: v.slice(a, b - a) for k, v in rows.items()}
                df = d if isinstance(d, str) else d[a:b]
                rejects[f].append(_Reject(reason, lines[which[a:b]], part, df, summary))

    def _record_text(col: _Text, rows: dict[str, pa.Array]) -> pa.Array:
        return rows[next(k for k, v in rec.items() if v is col)]

    reject(
        month.per_row(~_fullmatch(month.values, _MONTH_PATTERN)),
        "malformed_month",
        ("Month=", month),
    )
    for f, (name, _) in enumerate(files):
        fm = _FILE_MONTH.search(name.replace("\\", "/"))
        if fm:
            other = _np_bool(pc.not_equal(month.values, _large(fm.group(1))))
            if len(files) == 1:
                mask = month.per_row(other)
            else:
                mask = np.zeros(n, dtype=bool)
                rows_f = slice(bounds[f], bounds[f + 1])
                mask[rows_f] = other[rows_f] if month.codes is None else other[month.codes[rows_f]]
            reject(mask, "month_mismatch", (f"file is for {fm.group(1)}; Month=", month))
    reject(ctype.per_row(_np_bool(pc.equal(ctype.values, _EMPTY))), "missing_crime_type")
    group_idx = ctype.per_row(_np_index(pc.index_in(ctype.values, value_set=ctx.group_keys)))
    reject(group_idx < 0, "unknown_crime_type", ("Crime type=", ctype))

    no_xy = lon_t.per_row(_np_bool(pc.equal(lon_t.values, _EMPTY))) | lat_t.per_row(
        _np_bool(pc.equal(lat_t.values, _EMPTY))
    )
    has_code = code.per_row(_np_bool(pc.not_equal(code.values, _EMPTY)))
    # one call for both kinds (the quarantine orders rows by line): no LSOA code either, or
    # "LSOA stated but no coordinates"
    reject(
        no_xy,
        "no_coordinates",
        lambda m: np.where(has_code[m], "LSOA stated but no coordinates", "").astype(object),
    )
    lon_v, lat_v = _to_float(lon_t.values), _to_float(lat_t.values)
    lon, lat = lon_t.per_row(lon_v), lat_t.per_row(lat_v)
    coords = ("Longitude=", lon_t, " Latitude=", lat_t)
    reject(np.isnan(lon) | np.isnan(lat), "bad_coordinates", coords)
    with np.errstate(invalid="ignore"):
        out_gb = ~((lon > -8.7) & (lon < 1.9) & (lat > 49.8) & (lat < 60.9))
    reject(out_gb, "coordinates_out_of_range", coords)
    x = np.zeros(n)
    y = np.zeros(n)
    projected = np.zeros(n, dtype=bool)
    # police.uk snaps records to shared map points: project (and test) each position once. A
    # position is a pair of distinct coordinate texts (or of values, for plain columns): one
    # value written two ways is two positions, projected alike.
    if (
        lon_t.codes is not None
        and lat_t.codes is not None
        and len(lon_t.values) * len(lat_t.values) * max(len(ctx.polys), 1) < 1 << 62
    ):
        position = lon_t.codes.astype(np.int64) * len(lat_t.values) + lat_t.codes
    else:
        position = _factorize(
            _factorize(lon.view(np.int64)) * (n + 1) + _factorize(lat.view(np.int64))
        )

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
        moved = pc.and_(pc.not_equal(code.values, _EMPTY), pc.is_valid(conv))
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
        with ctx.geos:
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
        split(
            np.flatnonzero(elsewhere),
            "outside_study_area",
            {},
            "LSOA codes outside the study area",
            summary=True,
        )
        alive &= ~elsewhere

    period_idx = month.per_row(_np_index(pc.index_in(month.values, value_set=ctx.period_keys)))
    reject(period_idx < 0, "outside_period", ("Month=", month))

    # what the Crime ID test, the distance test and the points need of the rows alive
    idx = np.flatnonzero(alive)
    m = len(idx)
    ids = _strip(cid.rows(idx)) if m < n or cid.codes is not None else _strip(cid.values)
    has_id = _np_bool(pc.not_equal(ids, _EMPTY)) if m else np.zeros(0, dtype=bool)
    far = np.zeros(m, dtype=bool)
    far_detail = np.full(m, "", dtype=object)
    if m:
        project(alive)
        # each distinct (position, polygon) once
        rep, back = _representatives(position[idx] * len(ctx.polys) + in_study[idx])
        r = idx[rep]

        def distances(sel: np.ndarray) -> np.ndarray:
            xi, yi, target = x[r[sel]], y[r[sel]], ctx.polys[in_study[r[sel]]]
            out = np.zeros((len(xi), 1))
            # a point on or in its polygon is at distance 0: measure only the others
            with ctx.geos:
                away = ~shapely.intersects_xy(target, xi, yi)
            if away.any():
                pts = shapely.points(xi[away], yi[away])
                with ctx.geos:
                    out[away, 0] = shapely.distance(pts, target[away])
            return out

        keys = np.column_stack([lon_bits[r], lat_bits[r], in_study[r]])
        if tolerance_m >= 0:
            dist = ctx.distances.get(keys, distances)[back, 0]
        else:  # every distance is compared (none skipped as zero)
            with ctx.geos:
                dist = shapely.distance(shapely.points(x[r], y[r]), ctx.polys[in_study[r]])
            dist = dist[back]
        far = dist > tolerance_m
        if far.any():
            stated_far = stated_values.take(pa.array(stated_pos[idx[far]])).to_pylist()
            far_detail[far] = [
                f"{d:.0f} m from {s}" for d, s in zip(dist[far], stated_far, strict=True)
            ]
    sub = {k: v.subset(idx) for k, v in rec.items() if k != "crime_id"}
    rec_alive = {"crime_id": _Text(ids, None), **sub}
    points = {
        "month": sub["month"],
        "period": _Text(ctx.period_values, period_idx[idx]),
        "crime_group": _Text(ctx.group_values, group_idx[idx]),
        "crime_type": sub["crime_type"],
        "crime_id": _Text(ids, None),
        "lsoa_code": _Text(stated_values, stated_pos[idx]),
        "location": sub["location"],
    }
    x_alive, y_alive, lines_alive = x[idx], y[idx], lines[idx]
    out = []
    cuts = np.searchsorted(idx, bounds)
    for f, (name, n_f) in enumerate(files):
        a, b = int(cuts[f]), int(cuts[f + 1])
        if n_f == 0:  # a file of a group with no rows
            out.append(_no_rows(name, rejects[f]))
            continue
        part = slice(a, b)
        ids_f = ids.slice(a, b - a)
        has_f = has_id[part]
        out.append(
            _Checked(
                name=name,
                n=n_f,
                rejects=rejects[f],
                idx=idx[part],
                lines=lines_alive[part],
                rec={k: v.slice(a, b) for k, v in rec_alive.items()},
                ids=(_Ids.of(ids_f if has_f.all() else ids_f.filter(pa.array(has_f))))
                if has_f.any()
                else None,
                has_id=has_f,
                x=x_alive[part],
                y=y_alive[part],
                far=far[part],
                far_detail=far_detail[part],
                points={k: v.slice(a, b) for k, v in points.items()},
            )
        )
    return out


def _no_rows(name: str, rejects: list[_Reject]) -> _Checked:
    empty = np.zeros(0, dtype=np.int64)
    none = pa.array([], pa.large_string())
    return _Checked(
        name=name,
        n=0,
        rejects=rejects,
        idx=empty,
        lines=empty,
        rec={k: _Text(none, None) for k in _RECORD},
        ids=None,
        has_id=np.zeros(0, dtype=bool),
        x=np.zeros(0),
        y=np.zeros(0),
        far=np.zeros(0, dtype=bool),
        far_detail=np.zeros(0, dtype=object),
        points={k: _Text(none, None) for k in _POINT_TEXT},
    )


def _finish(
    checked: _Checked, seen: _SeenIds, rejected: _Rejections, *, objects: bool = False
) -> _Kept:
    """The rest of :func:`_validate`, file by file in order: the records rejected so far go to
    the quarantine; Crime IDs kept before (or earlier in the file) are rejected as duplicates;
    then the rows too far from their LSOA; the rest are kept (and their IDs remembered), their
    texts as Arrow arrays or (``objects``) as Python strings."""
    c = checked
    name = c.name
    for rej in c.rejects:
        rejected.add(name, rej)
    m = len(c.idx)
    alive = np.ones(m, dtype=bool)

    def reject(mask: np.ndarray, reason: str, detail: Any) -> None:
        which = np.flatnonzero(mask)
        if not len(which):
            return
        rows = {k: v.rows(which) for k, v in c.rec.items()}
        d = detail(which, rows) if callable(detail) else detail[which]
        rejected.add(name, _Reject(reason, c.lines[which], rows, d))
        alive[which] = False

    check = np.flatnonzero(c.has_id)
    if len(check):
        batch = c.ids if seen.fingerprints else _Ids.of(c.ids.ids, fingerprints=False)
        dup_mask = np.zeros(m, dtype=bool)
        dup_mask[check[seen.repeats(batch)]] = True
        reject(
            dup_mask,
            "duplicate_crime_id",
            lambda _, rows: pc.binary_join_element_wise(
                _large("Crime ID="), rows["crime_id"], _EMPTY
            ),
        )
    reject(c.far & alive, "lsoa_mismatch", c.far_detail)
    if len(check):
        seen.add(alive[check])
    keep = np.flatnonzero(alive)
    if not len(keep):
        return _Kept(name, c.n, c.x[:0], c.y[:0], None, c.lines[:0], objects)
    which = None if len(keep) == m else keep
    if objects:
        texts = {k: v.objects(which) for k, v in c.points.items()}
    else:
        texts = {
            k: (v.values if v.codes is None else v.values.take(pa.array(v.codes)))
            if which is None
            else v.rows(which)
            for k, v in c.points.items()
        }
    if which is None:
        return _Kept(name, c.n, c.x, c.y, texts, c.lines, objects)
    return _Kept(name, c.n, c.x[keep], c.y[keep], texts, c.lines[keep], objects)


def _points_frame(kept: _Kept) -> pd.DataFrame:
    """One file's points as :func:`_validate` returns them."""
    if kept.n == 0:
        return _empty_points()
    if kept.texts is None:
        empty = np.array([], dtype=object)
        texts = dict.fromkeys(_POINT_TEXT, empty)
        source_file: Any = kept.name
    else:
        texts = {k: _pandas_text(v) for k, v in kept.texts.items()}
        source_file = _pandas_text(_repeat_text(kept.name, kept.n_kept))
    return pd.DataFrame(
        {"x": kept.x, "y": kept.y, **texts, "source_file": source_file, "line": kept.lines}
    )


def _join_points(parts: list[_Kept]) -> pd.DataFrame:
    """``pd.concat`` of the files' :func:`_points_frame`, without building them: each text
    column is one chunked Arrow array (no copy) when every file gives it as pandas' Arrow
    text, else Python strings (as ``concat`` gives when some file gives none: a file without
    rows kept has its text columns as objects, a file without rows its file name too)."""
    with_rows = [p for p in parts if p.texts is not None]
    arrow = _ARROW_TEXT and len(with_rows) == len(parts) and not any(p.objects for p in parts)
    texts: dict[str, Any] = {}
    for c in _POINT_TEXT:
        if arrow:
            texts[c] = _pandas_text(
                pa.chunked_array([p.texts[c] for p in parts], pa.large_string())
            )
        else:
            for p in with_rows:
                p.as_objects()
            values = np.concatenate([p.texts[c] for p in with_rows]) if with_rows else []
            texts[c] = pd.Series(values, dtype=object)  # as objects: no inference of text
    if _ARROW_TEXT and all(p.n > 0 for p in parts):
        files = [_repeat_text(p.name, p.n_kept) for p in with_rows]
        source_file = (
            _pandas_text(pa.chunked_array(files, pa.large_string()))
            if sum(len(f) for f in files)
            else pd.array([], dtype=_STR_DTYPE)
        )
    else:
        source_file = pd.Series(
            np.concatenate([np.full(p.n_kept, p.name, dtype=object) for p in parts]),
            dtype=object,
        )
    return pd.DataFrame(
        {
            "x": np.concatenate([p.x for p in parts]),
            "y": np.concatenate([p.y for p in parts]),
            **texts,
            "source_file": source_file,
            "line": np.concatenate([p.lines for p in parts]).astype(np.int64, copy=False),
        },
        copy=False,
    )
