"""Ingest equivalence and speed on the real four-forces police.uk archive (Sheffield study area).

``python -m benchmarks.ingest_check snapshot DIR`` saves what :func:`read_police_uk` returns
(points, rejected records, tallies) for Sheffield (LAD E08000019, 2011 LSOAs) from
``police_uk/four-forces-2019-01_to_2020-12.zip``; ``python -m benchmarks.ingest_check compare
DIR`` reads again with the current code and checks that points, rejected records and tallies are
identical (value for value, dtype for dtype), printing the read time and rows per second.
"""

from __future__ import annotations

import argparse
import json
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


def read(raw: Path, study) -> tuple[pd.DataFrame, Quarantine, float]:
    q = Quarantine()
    t0 = time.perf_counter()
    pts = police_uk.read_police_uk(
        raw / ZIP,
        study=study,
        period_of_month=periods(),
        crime_groups=source_mapping("police_uk"),
        quarantine=q,
        source="police.uk",
        tolerance_m=150.0,
    )
    return pts, q, time.perf_counter() - t0


def _dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {c: str(t) for c, t in frame.dtypes.items()}


def snapshot(raw: Path, out: Path) -> None:
    study = sheffield_study(raw)
    pts, q, sec = read(raw, study)
    out.mkdir(parents=True, exist_ok=True)
    pd.to_pickle(pts, out / "points.pkl")
    pd.to_pickle(q.frame(), out / "rejected.pkl")
    meta = {
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


def compare(raw: Path, ref: Path, repeat: int = 1) -> bool:
    study = sheffield_study(raw)
    best = None
    for _ in range(repeat):
        pts, q, sec = read(raw, study)
        best = sec if best is None else min(best, sec)
    meta = json.loads((ref / "meta.json").read_text())
    ok = True
    want_pts = pd.read_pickle(ref / "points.pkl")
    want_rej = pd.read_pickle(ref / "rejected.pkl")
    got_rej = q.frame()
    tallies = {k: v.as_dict() for k, v in q.tallies.items()}
    if tallies != meta["tallies"]:
        print("tallies differ:", tallies, meta["tallies"])
        ok = False
    for label, got, want in (("points", pts, want_pts), ("rejected", got_rej, want_rej)):
        if _dtypes(got) != _dtypes(want):
            print(f"{label}: dtypes differ: {_dtypes(got)} != {_dtypes(want)}")
            ok = False
        try:
            pd.testing.assert_frame_equal(got, want, check_exact=True)
        except AssertionError as exc:
            print(f"{label} differ: {exc}")
            ok = False
    rows = tallies["police.uk"]["rows_read"]
    print(
        f"compare: {rows:,} rows in {best:.2f} s ({rows / best:,.0f} rows/s) "
        f"vs {meta['seconds']:.2f} s at snapshot; identical: {ok}"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["snapshot", "compare"])
    p.add_argument("dir", type=Path)
    p.add_argument("--raw", type=Path, default=Path("../shared/data/raw"))
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args(argv)
    if a.action == "snapshot":
        snapshot(a.raw, a.dir)
        return 0
    return 0 if compare(a.raw, a.dir, a.repeat) else 1


if __name__ == "__main__":
    sys.exit(main())
