"""Ingest equivalence and speed on the real four-forces police.uk archive (Sheffield study area).

``python -m benchmarks.ingest_check snapshot DIR`` saves what :func:`read_police_uk` returns
(points, rejected records, tallies) for Sheffield (LAD E08000019, 2011 LSOAs) from
``police_uk/four-forces-2019-01_to_2020-12.zip``; ``python -m benchmarks.ingest_check compare
DIR`` reads again with the current code and checks that points, rejected records and tallies are
identical (value for value, dtype for dtype), printing the read time, rows per second, the CPU
seconds of the read (all threads) and the load average before it: a wall time far above half
the CPU time means other processes had the cores (``--repeat N``: N reads, the best reported,
all listed; ``--json``: one JSON line; ``--via-parse``: file by file through ``_parse`` and
``_validate``, as the Dask engine reads). The snapshot in ``outputs/bench/ingest_baseline`` was
taken with the reader before the Arrow rewrite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

from priority_index.crime_groups import source_mapping
from priority_index.sources import boundaries, police_uk
from priority_index.sources.quarantine import Quarantine

ZIP = Path("police_uk") / "four-forces-2019-01_to_2020-12.zip"
LSOAS = Path("england_wales") / "lsoa11_ew_bgc.gpkg"
SHEFFIELD = "E08000019"


def sheffield_study(raw: Path):
    study, _ = boundaries.load_study_area(
        raw / LSOAS,
        layer=None,
        code_column="LSOA11CD",
        name_column="LSOA11NM",
        lad_code_column="LADCD_ACTIVE",
        lad_name_column=None,
        lad_codes=[SHEFFIELD],
        lad_names=[],
    )
    return study


def periods() -> dict[str, str]:
    out = {}
    for year in (2019, 2020):
        out.update({f"{year}-{m:02d}": str(year) for m in range(1, 13)})
    return out


def read(raw: Path, study, *, via_parse: bool = False) -> tuple[pd.DataFrame, Quarantine, float]:
    """Read the archive with :func:`read_police_uk` (or file by file with ``_parse`` and
    ``_validate``, as the Dask engine does): points, quarantine and wall seconds."""
    pts, q, sec, _ = timed_read(raw, study, via_parse=via_parse)
    return pts, q, sec


def timed_read(
    raw: Path, study, *, via_parse: bool = False
) -> tuple[pd.DataFrame, Quarantine, float, float]:
    """:func:`read`, with the CPU seconds of the process (every thread) during the read."""
    q = Quarantine()
    c0 = time.process_time()
    t0 = time.perf_counter()
    if via_parse:
        pts = _read_via_parse(raw / ZIP, study, q)
    else:
        pts = police_uk.read_police_uk(
            raw / ZIP,
            study=study,
            period_of_month=periods(),
            crime_groups=source_mapping("police_uk"),
            quarantine=q,
            source="police.uk",
            tolerance_m=150.0,
        )
    return pts, q, time.perf_counter() - t0, time.process_time() - c0


def _read_via_parse(path: Path, study, q: Quarantine) -> pd.DataFrame:
    return police_uk.read_file_by_file(
        path,
        study=study,
        period_of_month=periods(),
        crime_groups=source_mapping("police_uk"),
        quarantine=q,
        source="police.uk",
    )


def _relative(frame: pd.DataFrame, raw: str) -> pd.DataFrame:
    frame = frame.copy()
    for col in ("file", "source_file"):
        if col in frame and len(frame):
            frame[col] = frame[col].str.replace(raw, "<raw>", regex=False)
    return frame


def _dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {c: str(t) for c, t in frame.dtypes.items()}


def snapshot(raw: Path, out: Path) -> None:
    study = sheffield_study(raw)
    pts, q, sec = read(raw, study)
    out.mkdir(parents=True, exist_ok=True)
    pd.to_pickle(pts, out / "points.pkl")
    pd.to_pickle(q.frame(), out / "rejected.pkl")
    meta = {
        "raw": str(raw),
        "seconds": sec,
        "tallies": {k: v.as_dict() for k, v in q.tallies.items()},
        "points_dtypes": _dtypes(pts),
        "rejected_dtypes": _dtypes(q.frame()),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    rows = q.tally("police.uk").rows_read
    print(
        f"snapshot: {rows:,} rows in {sec:.2f} s ({rows / sec:,.0f} rows/s); "
        f"{len(pts):,} points, {len(q.frame()):,} rejected"
    )


def compare(raw: Path, ref: Path | None, repeat: int = 1, via_parse: bool = False) -> dict:
    """Read (best of ``repeat``) and, when a snapshot is in ``ref``, compare with it."""
    study = sheffield_study(raw)
    runs = []
    for _ in range(max(repeat, 1)):
        load = os.getloadavg()[0]
        pts, q, sec, cpu = timed_read(raw, study, via_parse=via_parse)
        runs.append({"seconds": sec, "cpu_s": cpu, "load_before": round(load, 2)})
    best = min(runs, key=lambda r: r["seconds"])
    rows = q.tally("police.uk").rows_read
    out = {
        "rows": rows,
        "seconds": best["seconds"],
        "rows_per_s": rows / best["seconds"],
        "cpu_s": best["cpu_s"],
        "load_before": best["load_before"],
        "runs": runs,
        "points": len(pts),
    }
    if ref is None or not (ref / "meta.json").exists():
        return out
    meta = json.loads((ref / "meta.json").read_text())
    # file names carry the folder the data was read from: compare them relative to it
    want_pts = _relative(pd.read_pickle(ref / "points.pkl"), meta.get("raw", "../shared/data/raw"))
    want_rej = _relative(
        pd.read_pickle(ref / "rejected.pkl"), meta.get("raw", "../shared/data/raw")
    )
    pts = _relative(pts, str(raw))
    got_rej = _relative(q.frame(), str(raw))
    # fields added to the tally after the snapshot are left out of the comparison
    tallies = {
        k: {f: x for f, x in v.as_dict().items() if f in meta["tallies"].get(k, {})}
        for k, v in q.tallies.items()
    }
    problems = []
    if tallies != meta["tallies"]:
        problems.append(f"tallies differ: {tallies} != {meta['tallies']}")
    for label, got, want in (("points", pts, want_pts), ("rejected", got_rej, want_rej)):
        if _dtypes(got) != _dtypes(want):
            problems.append(f"{label}: dtypes differ: {_dtypes(got)} != {_dtypes(want)}")
        try:
            pd.testing.assert_frame_equal(got, want, check_exact=True)
        except AssertionError as exc:
            problems.append(f"{label} differ: {exc}")
    ok = not problems
    out.update(
        {
            "identical_to_snapshot": ok,
            "problems": problems,
            "snapshot_seconds": meta["seconds"],
            "snapshot_rows_per_s": rows / meta["seconds"],
        }
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["snapshot", "compare"])
    p.add_argument("dir", type=Path)
    p.add_argument("--raw", type=Path, default=Path("../shared/data/raw"))
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--via-parse", action="store_true", help="use _parse and _validate")
    p.add_argument("--json", action="store_true", help="one JSON line on stdout")
    a = p.parse_args(argv)
    if a.action == "snapshot":
        snapshot(a.raw, a.dir)
        return 0
    res = compare(a.raw, a.dir, a.repeat, a.via_parse)
    if a.json:
        print(json.dumps(res))
        return 0
    else:
        for problem in res.get("problems", []):
            print(problem)
        if len(res["runs"]) > 1:
            print("runs: " + ", ".join(f"{r['seconds']:.2f} s" for r in res["runs"]))
        print(
            f"compare: {res['rows']:,} rows in {res['seconds']:.2f} s "
            f"({res['rows_per_s']:,.0f} rows/s; {res['cpu_s']:.2f} s CPU, load "
            f"{res['load_before']:.2f} before); identical to the snapshot: "
            f"{res.get('identical_to_snapshot', 'no snapshot')}"
            + (f" (snapshot: {res['snapshot_seconds']:.2f} s)" if "snapshot_seconds" in res else "")
        )
    return 0 if res.get("identical_to_snapshot", True) else 1


if __name__ == "__main__":
    sys.exit(main())
