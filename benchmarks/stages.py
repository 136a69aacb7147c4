"""One pipeline run, stage by stage, in this process: ``python -m benchmarks.stages TOML OUT``.

The stages are the pipeline's own (``pipeline.run`` calls them by name, so they are wrapped in
place): ingest, indicators and index, hot spots, priority neighbourhoods, exports; whatever
``run`` does between them (harm table, concentration, face validity) is reported as "other".
Each stage gets its wall and CPU seconds and its peak RSS; the police.uk reader inside ingest
gets its seconds and rows per second, and the per-file check and join (``_validate_table``)
its summed seconds. Prints one JSON line.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from priority_index import pipeline
from priority_index.config import load_settings
from priority_index.sources import police_uk

from .measure import StageTimer, output_sizes, peak_rss_mb

STAGES = [
    ("ingest", "ingest"),
    ("build_index", "indicators and index"),
    ("find_hotspots", "hot spots"),
    ("choose_neighbourhoods", "priority neighbourhoods"),
    ("write_outputs", "exports"),
]


def main(argv: list[str] | None = None) -> int:
    args = list(argv or sys.argv[1:])
    toml, out = (Path(a) for a in args)
    timer = StageTimer()
    for attr, label in STAGES:
        setattr(pipeline, attr, timer.wrap(label, getattr(pipeline, attr)))
    reads: list[dict] = []
    checks = {"seconds": 0.0, "files": 0}
    read, validate = police_uk.read_police_uk, police_uk._validate_table

    def timed_read(*args, **kwargs):
        q = kwargs["quarantine"]
        before = q.tally(kwargs["source"]).rows_read
        t0 = time.perf_counter()
        c0 = time.process_time()
        pts = read(*args, **kwargs)
        sec = time.perf_counter() - t0
        rows = q.tally(kwargs["source"]).rows_read - before
        reads.append(
            {
                "source": kwargs["source"],
                "seconds": sec,
                "cpu_s": time.process_time() - c0,
                "rows_read": rows,
                "rows_used": len(pts),
                "rows_per_s": rows / sec if sec > 0 else None,
            }
        )
        return pts

    def timed_validate(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return validate(*args, **kwargs)
        finally:
            checks["seconds"] += time.perf_counter() - t0
            checks["files"] += 1

    police_uk.read_police_uk = timed_read
    police_uk._validate_table = timed_validate
    settings = load_settings(toml)
    t0 = time.perf_counter()
    result = pipeline.run(settings, out_dir=out, write=True)
    total = time.perf_counter() - t0
    staged = sum(s["seconds"] for s in timer.stages)
    inputs = result.inputs
    sizes = output_sizes(out)
    print(
        json.dumps(
            {
                "stages": timer.stages,
                "other_s": total - staged,
                "total_s": total,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "final_hwm_mb": peak_rss_mb(),
                "per_stage_peaks": timer.resettable,
                "police_uk": reads,
                "check_and_join_s": checks["seconds"],
                "lsoas": len(inputs.study),
                "points": len(inputs.points),
                "outputs": sizes,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
