"""The police.uk reader's fast paths give what the plain file-by-file path gives.

:func:`police_uk.read_police_uk` parses small files in groups, checks them in worker threads,
hands rejected records to the quarantine in bulk and joins the points once; ``_parse`` and
``_validate`` (the Dask engine's path) read file by file and call the quarantine once per
reason. Both must give the same points, rejected records and tallies, value for value and
dtype for dtype, whatever the files hold.
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer
from shapely.geometry import box

from priority_index.crime_groups import source_mapping
from priority_index.errors import InputError
from priority_index.sources import police_uk
from priority_index.sources.quarantine import Quarantine

TO_WGS = Transformer.from_crs("EPSG:27700", "EPSG:4326", always_xy=True)
HEADER = ",".join(police_uk.COLUMNS)
CODES = ["E01000001", "E01000002", "E01000003", "E01000004"]
PERIODS = {f"2025-{m:02d}": "2025" for m in range(1, 13)}
CRIME_TYPES = list(source_mapping("police_uk"))[:12]


class PlainQuarantine(Quarantine):
    """A quarantine the reader hands records to one call at a time (not in bulk)."""


@pytest.fixture(scope="module")
def study() -> gpd.GeoDataFrame:
    geoms = [
        box(530000 + i * 1000, 160000 + j * 1000, 531000 + i * 1000, 161000 + j * 1000)
        for j in range(2)
        for i in range(2)
    ]
    return gpd.GeoDataFrame(
        {"lsoa_name": [f"Test {k}" for k in range(4)]},
        geometry=geoms,
        index=pd.Index(CODES, name="lsoa_code"),
        crs="EPSG:27700",
    )


def random_row(rng: random.Random, month: str, ids: list[str]) -> str:
    """A row, good or bad in one of the ways the reader checks."""
    if rng.random() < 0.3:
        cid = ""
    elif ids and rng.random() < 0.2:
        cid = rng.choice(ids)  # a repeat, in this file or an earlier one
    else:
        cid = f"{rng.getrandbits(256):064x}"
        ids.append(cid)
    if rng.random() < 0.1:
        cid = f" {cid} "
    if rng.random() < 0.04:
        month = rng.choice(["2025-13", "2024-12", "2025-02", f" {month}"])
    x = rng.choice([530100, 530500, 531500, 531900, 540000, 530999, 532100])
    y = rng.choice([160100, 160500, 161500, 161900, 170000])
    lon, lat = (f"{v:.6f}" for v in TO_WGS.transform(x + rng.choice([0, 0, 60, 130]), y))
    if rng.random() < 0.05:
        lon = lat = ""
    elif rng.random() < 0.03:
        lon = rng.choice(["abc", "1e-3", "0.000000", " -0.1", "-0.10"])
    code = rng.choice(CODES + ["E01099998", ""])
    if rng.random() < 0.03:
        code = rng.choice(["X0100001", "E0100000", f" {CODES[1]}"])
    ctype = rng.choice(CRIME_TYPES)
    if rng.random() < 0.03:
        ctype = rng.choice(["", "Shoplifting and stuff"])
    location = rng.choice(["On or near High Street", "No Location", "caf\u00e9", " spaced "])
    return ",".join([cid, month, "Police", "Police", lon, lat, location, code, "", ctype, "", ""])


def write_files(rng: random.Random, folder: Path, n_files: int) -> None:
    """Small monthly files: some empty, some with a BOM, CRLF line endings, malformed or empty
    lines, a quoted newline, or no newline at the end."""
    ids: list[str] = []
    for i in range(n_files):
        month = rng.choice([f"2025-{m:02d}" for m in range(1, 13)] + ["2024-12"])
        rows = [random_row(rng, month, ids) for _ in range(rng.choice([0, 1, 20, 300, 2000]))]
        if rows and rng.random() < 0.15:
            rows.insert(rng.randrange(len(rows)), "only,three,fields")
        if rows and rng.random() < 0.05:
            rows.insert(rng.randrange(len(rows)), "")
        if rows and rng.random() < 0.05:
            k = rng.randrange(len(rows))
            fields = rows[k].split(",")
            fields[6] = '"On or near\nSomewhere"'
            rows[k] = ",".join(fields)
        text = HEADER + "\n" + "\n".join(rows) + ("\n" if rows and rng.random() < 0.9 else "")
        data = text.encode("utf-8")
        if rng.random() < 0.3:
            data = data.replace(b"\n", b"\r\n")
        if rng.random() < 0.1:
            data = b"\xef\xbb\xbf" + data
        path = folder / month / f"{month}-force{i}-street.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read(path: Path, study, q: Quarantine, **kw) -> pd.DataFrame:
    return police_uk.read_police_uk(
        path,
        study=study,
        period_of_month=PERIODS,
        crime_groups=source_mapping("police_uk"),
        quarantine=q,
        source="police.uk",
        **kw,
    )


def read_file_by_file(path: Path, study, q: Quarantine, **kw) -> pd.DataFrame:
    """As the Dask engine reads: ``_parse`` and ``_validate`` file by file."""
    return police_uk.read_file_by_file(
        path,
        study=study,
        period_of_month=PERIODS,
        crime_groups=source_mapping("police_uk"),
        quarantine=q,
        source="police.uk",
        **kw,
    )


def assert_same(got: pd.DataFrame, q_got: Quarantine, want: pd.DataFrame, q_want: Quarantine):
    assert dict(got.dtypes) == dict(want.dtypes)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    rej_got, rej_want = q_got.frame(), q_want.frame()
    assert list(rej_got.columns) == list(rej_want.columns)
    assert dict(rej_got.dtypes) == dict(rej_want.dtypes)
    pd.testing.assert_frame_equal(rej_got, rej_want, check_exact=True)
    for source, tally in q_want.tallies.items():
        assert q_got.tallies[source].as_dict() == tally.as_dict()
        assert list(q_got.tallies[source].rejected) == list(tally.rejected)


OPTIONS = [
    {},
    {"tolerance_m": 0.0},
    {"tolerance_m": -1.0},
    {"known_codes": set(CODES) | {"E01099998"}},
    {"code_map": {"E01099998": "E01000003"}},
]


@pytest.mark.parametrize("seed", range(8))
def test_reader_equals_file_by_file(tmp_path, study, seed):
    rng = random.Random(seed)
    folder = tmp_path / "tree"
    write_files(rng, folder, rng.choice([1, 3, 9, 16]))
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*.csv")):
            zf.write(p, p.relative_to(folder).as_posix())
    kw = OPTIONS[seed % len(OPTIONS)]
    for path in (folder, archive):
        q_want = Quarantine()
        want = read_file_by_file(path, study, q_want, **kw)
        for q_got in (Quarantine(), PlainQuarantine()):
            got = read(path, study, q_got, **kw)
            assert_same(got, q_got, want, q_want)


def lonlat(x: float, y: float) -> tuple[str, str]:
    lon, lat = TO_WGS.transform(x, y)
    return f"{lon:.6f}", f"{lat:.6f}"


def test_points_dtypes_follow_concat(tmp_path, study):
    """Text columns are pandas' text when every file has points kept, Python strings once a
    file has none; the file name too once a file has no rows at all."""
    month = tmp_path / "2025-01"
    month.mkdir()
    row = ",".join(["", "2025-01", "P", "P", *lonlat(530500, 160500), "On or near X"])
    kept, elsewhere = row + ",E01000001,,Burglary,,", row + ",E01099999,,Burglary,,"
    (month / "2025-01-a-street.csv").write_text(f"{HEADER}\n{kept}\n{kept}\n")
    (month / "2025-01-b-street.csv").write_text(f"{HEADER}\n{kept}\n")
    steps = [
        ("2025-01-c-street.csv", f"{HEADER}\n{elsewhere}\n", object, "str"),
        ("2025-01-d-street.csv", f"{HEADER}\n", object, object),
    ]
    text, files = "str", "str"
    for name, content, next_text, next_files in [(None, None, "str", "str"), *steps]:
        if name is not None:
            (month / name).write_text(content)
            text, files = next_text, next_files
        q_got, q_want = Quarantine(), Quarantine()
        got = read(tmp_path, study, q_got)
        assert got["month"].dtype == text and got["crime_id"].dtype == text
        assert got["source_file"].dtype == files
        assert_same(got, q_got, read_file_by_file(tmp_path, study, q_want), q_want)


def test_rejected_records_start_with_a_summary(tmp_path, study):
    """The first file has only other areas' rows (one summary), the next a bad month: the
    rejected records' columns come in the order the quarantine gives them."""
    month = tmp_path / "2025-01"
    month.mkdir()
    row = ",".join(["", "2025-01", "P", "P", *lonlat(530500, 160500), "On or near X"])
    (month / "2025-01-a-street.csv").write_text(f"{HEADER}\n{row},E01099999,,Burglary,,\n")
    bad_month = row.replace("2025-01", "2025-13") + ",E01000001,,Burglary,,"
    (month / "2025-01-b-street.csv").write_text(f"{HEADER}\n{bad_month}\n")
    q_got, q_want = Quarantine(), Quarantine()
    got = read(tmp_path, study, q_got)
    assert_same(got, q_got, read_file_by_file(tmp_path, study, q_want), q_want)
    assert list(q_got.frame()["reason"]) == ["outside_study_area", "malformed_month"]


def test_error_in_a_group_is_raised_for_its_file_after_the_files_before(tmp_path, study):
    rng = random.Random(3)
    write_files(rng, tmp_path, 6)
    files = sorted(tmp_path.rglob("*.csv"))
    bad = files[3]
    bad.write_bytes(bad.read_bytes() + "x,2025-01,P,P,0,51,caf\xe9,,,,,\n".encode("latin-1"))
    q_got, q_want = Quarantine(), Quarantine()
    with pytest.raises(InputError, match="encoding") as got:
        read(tmp_path, study, q_got)
    with pytest.raises(InputError, match="encoding") as want:
        read_file_by_file(tmp_path, study, q_want)
    assert got.value.file == want.value.file == str(bad)
    assert q_got.tallies["police.uk"].files == 3
    empty = pd.DataFrame()
    assert_same(empty, q_got, empty, q_want)  # what the files before it gave


def test_memo_giving_up_changes_nothing(tmp_path, study, monkeypatch):
    """Projections and distances are remembered across files unless few are found again; the
    points are the same either way."""
    write_files(random.Random(5), tmp_path, 9)
    q_want = Quarantine()
    want = read(tmp_path, study, q_want)
    monkeypatch.setattr(police_uk._Memo, "TRIAL", 1)
    monkeypatch.setattr(police_uk._Memo, "FEW", 2.0)
    q_got = Quarantine()
    assert_same(read(tmp_path, study, q_got), q_got, want, q_want)


def test_groups_keep_file_order_and_size_limit():
    part, whole = police_uk._GROUP_BYTES * 2 // 5, police_uk._GROUP_BYTES * 5
    files = [
        police_uk.MonthFile(f"f{i}", bytes, size=size)
        for i, size in enumerate([part, part, part, whole, 1, None, 1, 1])
    ]
    groups = police_uk._groups(files)
    assert [[mf.name for mf in g] for g in groups] == [
        ["f0", "f1"],
        ["f2"],
        ["f3"],
        ["f4"],
        ["f5"],
        ["f6", "f7"],
    ]
    assert np.concatenate([[mf.name for mf in g] for g in groups]).tolist() == [
        mf.name for mf in files
    ]
