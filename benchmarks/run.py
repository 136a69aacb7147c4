"""``make bench``: the Priority Localities Index at three scales, against the off-the-shelf way.

Workloads (``--only`` picks some, by name):

``S``
    Croydon: its 220 real 2011 LSOAs, real IoD2019 and mid-2020 population, and police.uk-format
    points placed inside the real LSOAs from the Met's real annual counts of 2019 and 2020
    (positions generated; :mod:`benchmarks.realdata`). Needs ``SHARED/data/raw``.
``M``
    All of London the same way: 4,835 LSOAs, about 880,000 records a year.
``L``
    England-and-Wales scale: 35,000 fictional LSOAs, 5.9 million records over 12 months
    (:mod:`benchmarks.scale`; no shared data needed).
``stream``
    The streaming-ingest memory check: 12 monthly files of about 1,000,000 rows read for one
    borough (:mod:`benchmarks.streaming`). Needs the shared data.
``sheffield``
    The real four-forces police.uk archive (999,407 rows) read for Sheffield, compared with the
    snapshot of the reader before the Arrow rewrite when ``outputs/bench/ingest_baseline``
    holds one (:mod:`benchmarks.ingest_check`). Needs the shared data.

Each of S, M and L is run end to end as users run it (``priority-index run TOML --out DIR
--quiet`` in a child process: wall time, peak RSS, output sizes) and stage by stage in a fresh
process (:mod:`benchmarks.stages`), then the off-the-shelf way on the same inputs
(:mod:`benchmarks.reference`, unless ``--skip-reference``). Every child process runs alone, one
after the other. Results go to ``OUT/results.json`` and a table on stdout, with each target
stated as pass or fail.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from . import measure, realdata, scale, streaming

ALL = ("S", "M", "L", "stream", "sheffield")
REAL = {
    "S": dict(name="S", title="Croydon (real LSOAs and counts, generated positions)",
              lad_codes=["E09000008"]),
    "M": dict(name="M", title="London (real LSOAs and counts, generated positions)",
              lad_codes=None),
}  # fmt: skip


#: Reads smaller than this are reported, not held to the rows-per-second target.
_THROUGHPUT_ROWS = 500_000


def _verdict(passed: bool | None) -> str:
    return "info" if passed is None else "PASS" if passed else "FAIL"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _pipeline_workload(name: str, toml: Path, out: Path, *, reference: bool, timeout: float):
    res: dict = {"toml": str(toml)}
    cli_out = out / "cli"
    _say(f"[{name}] priority-index run (end to end, child process) ...")
    cmd = [measure.venv_bin("priority-index"), "run", str(toml), "--out", str(cli_out), "--quiet"]
    cli = measure.run_child(cmd, timeout=timeout)
    res["cli"] = cli
    if cli.get("returncode") == 0:
        res["cli"]["outputs"] = measure.output_sizes(cli_out)
        manifest = json.loads((cli_out / "manifest.json").read_text())
        res["cli"]["manifest_timings_s"] = manifest.get("run_info", {}).get("timings_s")
        _say(f"[{name}]   {cli['wall_s']:.1f} s, peak {cli['peak_rss_mb']:,.0f} MB")
    else:
        _say(f"[{name}]   FAILED: {cli.get('stderr_tail', '')[-600:]}")
    _say(f"[{name}] stage by stage (fresh process) ...")
    st = measure.run_module("benchmarks.stages", str(toml), str(out / "stages"), timeout=timeout)
    res["stages"] = st
    if st.get("returncode") != 0:
        _say(f"[{name}]   FAILED: {st.get('stderr_tail', '')[-600:]}")
    if reference:
        _say(f"[{name}] the off-the-shelf way (pandas, geopandas, esda, scikit-learn) ...")
        ref = measure.run_module("benchmarks.reference", str(toml), timeout=timeout)
        res["reference"] = ref
        if ref.get("returncode") != 0:
            _say(f"[{name}]   FAILED: {ref.get('stderr_tail', '')[-600:]}")
        else:
            res["ratios"] = _ratios(st, ref)
    return res


def _ratios(st: dict, ref: dict) -> dict:
    """How many times faster ours is (reference seconds / our seconds) and the differences."""
    out: dict = {}
    reads = st.get("police_uk") or []
    ours_read = sum(r["seconds"] for r in reads)
    if ours_read and "pandas_read_csv" in ref:
        out["ingest_vs_pandas_read_csv"] = ref["pandas_read_csv"]["seconds"] / ours_read
    if st.get("check_and_join_s") and "geopandas_join" in ref:
        out["join_vs_geopandas_sjoin"] = ref["geopandas_join"]["seconds"] / st["check_and_join_s"]
        out["join_vs_sjoin_alone"] = ref["geopandas_join"]["sjoin_s"] / st["check_and_join_s"]
    if "gi_star" in ref:
        out["gi_star_vs_esda"] = ref["gi_star"]["ratio_esda_over_ours"]
        out["gi_star_max_abs_z_difference"] = ref["gi_star"]["max_abs_z_difference"]
    kde = ref.get("kde", {})
    for kernel in ("gaussian", "epanechnikov"):
        if "ratio_sklearn_over_ours" in kde.get(kernel, {}):
            out[f"kde_{kernel}_vs_sklearn"] = kde[kernel]["ratio_sklearn_over_ours"]
            out[f"kde_{kernel}_max_rel_error"] = kde[kernel]["max_rel_error"]
    return out


def _targets(results: dict, startup: float) -> list[dict]:
    w = results["workloads"]
    out: list[dict] = []

    def add(target: str, value, passed, note: str = "") -> None:
        out.append({"target": target, "value": value, "pass": passed, "note": note})

    def cli(name: str) -> dict | None:
        c = w.get(name, {}).get("cli")
        return c if c and c.get("returncode") == 0 else None

    if c := cli("M"):
        add("M end to end < 30 s (2 cores)", f"{c['wall_s']:.1f} s", c["wall_s"] < 30)
    if c := cli("L"):
        add("L end to end < 180 s", f"{c['wall_s']:.1f} s", c["wall_s"] < 180)
        add("L peak memory < 8 GB", f"{c['peak_rss_mb'] / 1024:.2f} GB", c["peak_rss_mb"] < 8192)
    if c := cli("S"):
        after = c["wall_s"] - startup
        add("S < 5 s after start-up", f"{after:.1f} s (wall {c['wall_s']:.1f} - start-up "
            f"{startup:.1f})", after < 5)  # fmt: skip
    for name in ("sheffield", "M", "L", "stream", "S"):
        r = w.get(name, {})
        if name == "sheffield" and "rows_per_s" in r:
            rate, what = r["rows_per_s"], "real 4-force zip, Sheffield"
        elif name == "stream" and "rows_per_s" in r:
            rate, what = r["rows_per_s"], "12 x 1M rows, one borough"
        elif r.get("stages", {}).get("police_uk"):
            reads = r["stages"]["police_uk"]
            rate = sum(x["rows_read"] for x in reads) / sum(x["seconds"] for x in reads)
            what = f"{name}, every row in the study area"
        else:
            continue
        rows = sum(x["rows_read"] for x in r["stages"]["police_uk"]) if name == "S" else 0
        if name == "S" and rows < _THROUGHPUT_ROWS:
            # a throughput target: a 70,000-row read is mostly fixed start-up costs
            add(f"ingest rows/s ({what}; information)", f"{rate:,.0f} rows/s", None,
                f"{rows:,} rows: fixed costs dominate below {_THROUGHPUT_ROWS:,} rows")  # fmt: skip
            continue
        add(f"ingest >= 1,000,000 police.uk rows/s ({what})", f"{rate:,.0f} rows/s",
            rate >= 1_000_000)  # fmt: skip
    if (s := w.get("stream", {})).get("peak_rss_mb"):
        add("streaming check: 12 x 1M rows read under 2 GB", f"{s['peak_rss_mb']:,.0f} MB peak",
            s["peak_rss_mb"] < 2048)  # fmt: skip
    ratios = w.get("M", {}).get("ratios", {})
    if "kde_gaussian_vs_sklearn" in ratios:
        r, e = ratios["kde_gaussian_vs_sklearn"], ratios["kde_gaussian_max_rel_error"]
        add("KDE >= 1000x faster than scikit-learn on the M grid", f"{r:,.0f}x", r >= 1000)
        add("KDE equal to scikit-learn within 1% (M, cells >= 5% of peak)", f"{e:.2%}", e <= 0.01)
    for name in ("S", "M", "L"):
        ratios = w.get(name, {}).get("ratios", {})
        if "gi_star_vs_esda" in ratios:
            r = ratios["gi_star_vs_esda"]
            add(f"Gi* no slower than esda ({name})", f"{r:.1f}x faster", r >= 1.0,
                f"max |z diff| {ratios['gi_star_max_abs_z_difference']:.1e}; esda without "
                "numba")  # fmt: skip
    for name in ("S", "M", "L"):
        if c := cli(name):
            o = c["outputs"]
            n_area = o.get("n_area_maps", 0)
            note = (
                f"by authority, {n_area} authority maps beside it"
                if n_area
                else "by grid square"
                if o.get("overview_aggregated")
                else "every LSOA drawn"
            )
            add(f"{name} overview map < 2 MB", f"{o['overview_map_mb']:.2f} MB",
                o["overview_map_mb"] < 2.0, note)  # fmt: skip
            if n_area:
                add(f"{name} authority maps < 2 MB each", f"{o['largest_area_map_mb']:.2f} MB",
                    o["largest_area_map_mb"] < 2.0, f"largest of {n_area}")  # fmt: skip
            add(f"{name} neighbourhood maps < 1 MB", f"{o['largest_neighbourhood_map_mb']:.2f} MB",
                o["largest_neighbourhood_map_mb"] < 1.0)  # fmt: skip
    return out


# --------------------------------------------------------------------------- printing
def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(wd) for h, wd in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * wd for wd in widths)]
    for r in rows:
        out.append("  ".join(str(c).ljust(wd) for c, wd in zip(r, widths, strict=True)))
    return "\n".join(out)


def _report(results: dict) -> str:
    parts = []
    w = results["workloads"]
    for name in ("S", "M", "L"):
        r = w.get(name)
        if not r or "skipped" in r:
            continue
        d = r.get("data", {})
        parts.append(
            f"\n== {name}: {d.get('lsoas', '?'):,} LSOAs, {d.get('rows', 0):,} police.uk rows "
            f"({d.get('note', '')})"
        )
        c = r.get("cli", {})
        if c.get("returncode") == 0:
            o = c["outputs"]
            parts.append(
                f"end to end (priority-index run): {c['wall_s']:.1f} s wall, {c['cpu_s']:.1f} s "
                f"CPU, peak {c['peak_rss_mb']:,.0f} MB; outputs {o['n_files']} files, "
                f"{o['total_mb']:.1f} MB (GeoPackage {o['gpkg_mb']:.1f}, rasters "
                f"{o['rasters_mb']:.1f}, report {o['report_mb']:.2f}, overview map "
                f"{o['overview_map_mb']:.2f}, largest neighbourhood map "
                f"{o['largest_neighbourhood_map_mb']:.2f} MB"
                + (
                    f", {o['n_area_maps']} authority maps, largest "
                    f"{o['largest_area_map_mb']:.2f} MB)"
                    if o.get("n_area_maps")
                    else ")"
                )
            )
        st = r.get("stages", {})
        if st.get("returncode") == 0:
            rows = [
                [s["stage"], f"{s['seconds']:.2f}", f"{s['cpu_s']:.2f}", f"{s['peak_rss_mb']:,.0f}"]
                for s in st["stages"]
            ]
            rows.append(["other (harm table, concentration...)", f"{st['other_s']:.2f}", "", ""])
            rows.append(["total (in process)", f"{st['total_s']:.2f}", "",
                         f"{st['peak_rss_mb']:,.0f}"])  # fmt: skip
            parts.append(_table(rows, ["stage", "wall s", "CPU s", "peak RSS MB"]))
            for rd in st.get("police_uk", []):
                parts.append(
                    f"police.uk read: {rd['rows_read']:,} rows in {rd['seconds']:.2f} s = "
                    f"{rd['rows_per_s']:,.0f} rows/s (check and join {st['check_and_join_s']:.2f}"
                    " s of it)"
                )
        ref = r.get("reference", {})
        if ref.get("returncode") == 0:
            ra = r.get("ratios", {})
            k = ref["kde"]
            g = k.get("gaussian", {})
            rows = [
                ["read CSVs", f"ours {sum(x['seconds'] for x in st.get('police_uk', [])):.2f} s "
                 "(read, check, join)", f"pandas read_csv {ref['pandas_read_csv']['seconds']:.2f}"
                 " s (read only)", f"{ra.get('ingest_vs_pandas_read_csv', float('nan')):.2f}x"],
                ["point in polygon", f"ours {st.get('check_and_join_s', 0):.2f} s (all checks)",
                 f"points_from_xy+to_crs+sjoin {ref['geopandas_join']['seconds']:.2f} s (sjoin "
                 f"{ref['geopandas_join']['sjoin_s']:.2f})",
                 f"{ra.get('join_vs_geopandas_sjoin', float('nan')):.2f}x"],
                ["Gi* 999 perms", f"ours {ref['gi_star']['ours_s']:.3f} s",
                 f"esda G_Local {ref['gi_star']['esda_s']:.3f} s",
                 f"{ra.get('gi_star_vs_esda', float('nan')):.1f}x; max|dz| "
                 f"{ref['gi_star']['max_abs_z_difference']:.1e}"],
                ["KDE gaussian", f"ours {g.get('ours_s', 0):.3f} s ({k['cells']:,} cells, "
                 f"h {g.get('bandwidth_m', 0):.0f} m)",
                 f"sklearn {g.get('sklearn_extrapolated_s', 0):,.0f} s (extrapolated from "
                 f"{g.get('sklearn_sample_cells', 0)} cells)",
                 f"{ra.get('kde_gaussian_vs_sklearn', float('nan')):,.0f}x; max rel err "
                 f"{g.get('max_rel_error', float('nan')):.2%}"],
                ["KDE quartic (pipeline)", f"ours {k['quartic']['ours_s']:.3f} s", "sklearn: no "
                 "quartic kernel; Epanechnikov (compact) "
                 f"{k['epanechnikov'].get('sklearn_extrapolated_s', 0):,.1f} s vs ours "
                 f"{k['epanechnikov']['ours_s']:.3f} s",
                 f"{ra.get('kde_epanechnikov_vs_sklearn', float('nan')):,.0f}x"],
            ]  # fmt: skip
            parts.append(_table(rows, ["task", "ours", "off the shelf", "ours faster by"]))
    if (s := w.get("stream")) and "rows_read" in s:
        parts.append(
            f"\n== streaming check: {s['rows_read']:,} rows in {s['files']} files read for one "
            f"borough in {s['seconds']:.1f} s ({s['rows_per_s']:,.0f} rows/s), peak RSS "
            f"{s['peak_rss_mb']:,.0f} MB"
        )
    if (s := w.get("sheffield")) and "rows_per_s" in s:
        before = (
            f"; before the rewrite {s['snapshot_seconds']:.2f} s "
            f"({s['snapshot_rows_per_s']:,.0f} rows/s), identical results: "
            f"{s['identical_to_snapshot']}"
            if "snapshot_seconds" in s
            else ""
        )
        parts.append(
            f"\n== real police.uk archive (4 forces, zip) for Sheffield: {s['rows']:,} rows in "
            f"{s['seconds']:.2f} s = {s['rows_per_s']:,.0f} rows/s{before}"
        )
    for name, r in w.items():
        if isinstance(r, dict) and "skipped" in r:
            parts.append(f"\n== {name}: skipped ({r['skipped']})")
    rows = [[t["target"], t["value"], _verdict(t["pass"]), t["note"]] for t in results["targets"]]
    parts.append("\n== targets\n" + _table(rows, ["target", "value", "", "note"]))
    m = results["machine"]
    parts.append(
        f"\nstart-up (Python + imports) {results['startup_s']:.1f} s; {m['cpus']} CPUs; load "
        f"average at start {m['load_start']}, at end {m['load_end']}; bench took "
        f"{results['bench_seconds']:.0f} s"
    )
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Benchmarks S, M, L (see benchmarks/run.py)")
    p.add_argument("--shared", type=Path, default=Path("../shared"),
                   help="the shared folder holding data/raw (S, M, stream, sheffield)")  # fmt: skip
    p.add_argument("--only", default=",".join(ALL), help=f"comma list of {', '.join(ALL)}")
    p.add_argument("--skip-reference", action="store_true", help="no off-the-shelf comparison")
    p.add_argument("--out", type=Path, default=Path("outputs/bench"))
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per child process")
    a = p.parse_args(argv)
    wanted = [x.strip() for x in a.only.split(",") if x.strip()]
    lower = {x.lower(): x for x in ALL}
    unknown = [x for x in wanted if x.lower() not in lower]
    if unknown:
        p.error(f"unknown workload(s) {unknown}; choose from {', '.join(ALL)}")
    wanted = [lower[x.lower()] for x in wanted]
    raw = (a.shared / "data" / "raw").resolve()
    have_raw = realdata.available(raw)
    t_bench = time.perf_counter()
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_start": [round(x, 2) for x in os.getloadavg()],
        },
        "workloads": {},
        "only": wanted,
        "skip_reference": a.skip_reference,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    results["startup_s"] = measure.startup_seconds(sys.executable)
    for name in wanted:
        needs_raw = name in ("S", "M", "stream", "sheffield")
        if needs_raw and not have_raw:
            msg = f"{raw} not found (or incomplete): {name} needs the shared open data"
            _say(f"[{name}] skipped: {msg}")
            results["workloads"][name] = {"skipped": msg}
            continue
        folder = a.out / name
        if name in REAL:
            _say(f"[{name}] data ...")
            data = realdata.build(raw, folder, **REAL[name])
            res = _pipeline_workload(
                name, Path(data["toml"]), folder, reference=not a.skip_reference,
                timeout=a.timeout)  # fmt: skip
            res["data"] = data
        elif name == "L":
            _say("[L] data (fictional generator; about 40 s the first time) ...")
            data = scale.build(folder)
            res = _pipeline_workload(
                name, Path(data["toml"]), folder, reference=not a.skip_reference,
                timeout=a.timeout)  # fmt: skip
            res["data"] = data
        elif name == "stream":
            _say("[stream] data (12 x 1M rows; about 25 s the first time) ...")
            data = streaming.build(raw, folder)
            _say("[stream] reading for one borough (fresh process) ...")
            res = measure.run_module("benchmarks.streaming", "read", str(raw), str(folder),
                                     timeout=a.timeout)  # fmt: skip
            res["data"] = data
        else:  # sheffield
            zip_path = raw / "police_uk" / "four-forces-2019-01_to_2020-12.zip"
            if not zip_path.exists():
                results["workloads"][name] = {"skipped": f"{zip_path} not found"}
                continue
            _say("[sheffield] the real four-forces archive (fresh process) ...")
            res = measure.run_module(
                "benchmarks.ingest_check", "compare", str(a.out / "ingest_baseline"), "--raw",
                str(raw), "--repeat", "2", "--json", timeout=a.timeout)  # fmt: skip
        results["workloads"][name] = res
        (a.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    results["machine"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = _targets(results, results["startup_s"])
    results["bench_seconds"] = time.perf_counter() - t_bench
    (a.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(_report(results))
    print(f"\nresults: {a.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
