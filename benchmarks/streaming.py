"""The streaming-ingest memory check: 12 monthly police.uk files of about 1,000,000 rows each.

``python -m benchmarks.streaming build RAW DIR`` writes the files (London's real 2011 LSOAs and
real 2019 counts, every count scaled by the same factor to 12 million records, positions
generated; reused when present); ``python -m benchmarks.streaming read RAW DIR`` reads them
with :func:`~priority_index.sources.police_uk.read_police_uk` for one borough (Croydon, as a
partnership would read a force-wide download) in a fresh process and prints one JSON line:
rows, seconds, rows per second and the process's peak resident memory (imports included).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from . import realdata

TARGET_ROWS = 12_000_000
BOROUGH = "E09000008"


def build(raw: Path, out: Path) -> dict:
    return realdata.build(
        raw,
        out,
        name="stream",
        title="Streaming check (real LSOAs, scaled real counts, generated positions)",
        lad_codes=None,
        years=(2019,),
        target_rows=TARGET_ROWS,
    )


def read(raw: Path, out: Path) -> dict:
    from priority_index.crime_groups import source_mapping
    from priority_index.sources import boundaries, police_uk
    from priority_index.sources.quarantine import Quarantine

    study, _ = boundaries.load_study_area(
        raw / realdata.LSOA_SHP,
        layer=None,
        code_column="LSOA11CD",
        name_column="LSOA11NM",
        lad_code_column="LAD11CD",
        lad_name_column=None,
        lad_codes=[BOROUGH],
        lad_names=[],
    )
    q = Quarantine()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    pts = police_uk.read_police_uk(
        out / "police_uk",
        study=study,
        period_of_month={f"2019-{m:02d}": "2019" for m in range(1, 13)},
        crime_groups=source_mapping("police_uk"),
        quarantine=q,
        source="stream",
    )
    sec = time.perf_counter() - t0
    t = q.tally("stream")
    return {
        "files": t.files,
        "rows_read": t.rows_read,
        "rows_used": t.rows_used,
        "points": len(pts),
        "rejected": t.rejected,
        "seconds": sec,
        "rows_per_s": t.rows_read / sec,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_read_mb": before,
        "study_lsoas": len(study),
    }


def main(argv: list[str] | None = None) -> int:
    action, raw, out = (argv or sys.argv[1:])[:3]
    fn = build if action == "build" else read
    print(json.dumps(fn(Path(raw), Path(out))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
