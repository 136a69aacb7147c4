"""Benchmark data L: England-and-Wales scale, from the fictional generator (nothing real).

About 35,000 generated LSOA polygons and 6 million police.uk records over 12 months
(:func:`priority_index.examples.fictional.generate_borough` with ``n_lsoas=35_000`` and about
14 records per LSOA a month, the England-and-Wales average), with its IoD2025 File 7 table and
Census 2021 population. The outline is 125 km wide: every LSOA is urban-sized, so the 50 m
density grid is 2,500 x 2,500 cells (6 times London's). The whole of England and Wales at 50 m
would be 144 million cells; a national surface needs a coarser cell, which is a setting, not a
scale problem of the index.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from priority_index.examples.fictional import generate_borough, write_borough

from .realdata import COMMON_METHOD

N_LSOAS = 35_000
MONTHS = 12
RECORDS_PER_LSOA_MONTH = 14.0
SEED = 35
_VERSION = 1


def build(out: Path, *, n_lsoas: int = N_LSOAS, force: bool = False) -> dict:
    """Write the fictional data under ``out/data`` and ``out/pipeline.toml`` (reused when the
    same parameters were written before).

    Returns
    -------
    dict
        ``records`` (street-file rows), ``lsoas``, ``seconds`` (0 when reused), ``toml``.
    """
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    stamp = out / "data.json"
    params = {
        "version": _VERSION,
        "n_lsoas": n_lsoas,
        "months": MONTHS,
        "records_per_lsoa_month": RECORDS_PER_LSOA_MONTH,
        "seed": SEED,
    }
    toml = out / "pipeline.toml"
    _write_toml(toml, n_lsoas)
    if stamp.exists() and not force:
        info = json.loads(stamp.read_text())
        if info.get("params") == params and (data / "police_uk").exists():
            return {**info, "seconds": 0.0, "toml": str(toml)}
    t0 = time.perf_counter()
    borough = generate_borough(
        n_lsoas=n_lsoas,
        months=MONTHS,
        start="2025-01",
        seed=SEED,
        records_per_lsoa_month=RECORDS_PER_LSOA_MONTH,
    )
    write_borough(borough, data)
    info = {
        "params": params,
        "rows": int(len(borough.records)),
        "lsoas": int(len(borough.lsoas)),
        "extent_m": borough.params.get("extent_m"),
        "generated_seconds": round(time.perf_counter() - t0, 2),
        "note": "fictional, generated (priority_index.examples.fictional)",
    }
    stamp.write_text(json.dumps(info, indent=2))
    return {**info, "seconds": info["generated_seconds"], "toml": str(toml)}


def _write_toml(path: Path, n_lsoas: int) -> None:
    path.write_text(
        f"""# Benchmark L: England-and-Wales scale ({n_lsoas:,} LSOAs, 12 months). FICTIONAL:
# every record is generated (benchmarks/scale.py, priority_index/examples/fictional.py).

[pipeline]
name = "bench_L"
title = "Benchmark L: England-and-Wales scale (fictional, generated data)"
seed = 35

[study_area]
boundaries = "data/boundaries/fictional_lsoa21.gpkg"
code_column = "LSOA21CD"
name_column = "LSOA21NM"
lad_code_column = "LAD22CD"
lad_codes = ["E09999999"]

[study_area.wards]
path = "data/lsoa_ward_lookup.csv"
boundaries = "data/boundaries/fictional_wards.gpkg"

[[periods]]
name = "2025 H1"
start = "2025-01"
end = "2025-06"

[[periods]]
name = "2025 H2"
start = "2025-07"
end = "2025-12"

[[sources.police_uk]]
path = "data/police_uk"
label = "police.uk format (fictional)"
lsoa_tolerance_m = 150.0
points_are_generated = true

[sources.deprivation]
path = "data/iod2025_file7.csv"
format = "iod_file7"

[sources.population]
path = "data/census2021_residents_by_age.csv"
format = "census_age_long"

{COMMON_METHOD}"""
    )
