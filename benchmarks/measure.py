"""Measuring: wall time and peak memory of a child process, of a stage, and output sizes.

Peak memory is the peak resident set size (RSS: Python objects, numpy, Arrow, GEOS, GDAL
alike). A stage's own peak is read by resetting the process's high-water mark
(``/proc/self/clear_refs``) before it and reading ``VmHWM`` after it; where that is not
possible (not Linux) the process-wide peak so far is reported instead.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_CHILD = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall_s": wall, "peak_rss_mb": ru.ru_maxrss / 1024, "cpu_s": ru.ru_utime
      + ru.ru_stime, "returncode": p.returncode, "stderr_tail": p.stderr[-2000:]}))
"""


def run_child(cmd: list[str], *, timeout: float = 1800.0, env: dict | None = None) -> dict:
    """Run ``cmd`` under a small Python parent of its own, so that the peak RSS measured
    (``RUSAGE_CHILDREN``) is that command's alone. Returns wall_s, peak_rss_mb, cpu_s,
    returncode and the end of stderr."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if out.returncode != 0 or not out.stdout.strip():
        return {"returncode": out.returncode, "stderr_tail": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_module(module: str, *args: str, timeout: float = 1800.0) -> dict:
    """``python -m module args`` as a measured child; its last stdout line is JSON."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).resolve().parents[1],
    )
    result: dict[str, Any] = {"returncode": out.returncode, "wall_s": time.perf_counter() - t0}
    lines = out.stdout.strip().splitlines()
    if out.returncode == 0 and lines:
        result.update(json.loads(lines[-1]))
    else:
        result["stderr_tail"] = out.stderr[-3000:]
    return result


def startup_seconds(python: str, repeat: int = 3) -> float:
    """Seconds to start Python and import what ``priority-index run`` imports (best of N)."""
    code = (
        "import priority_index.cli, priority_index.pipeline, priority_index.exports.bundle, "
        "priority_index.config"
    )
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([python, "-c", code], check=True)
        best = min(best, time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------- in-process peaks
def _read_hwm_kb() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak RSS of this process since the last :func:`reset_peak` (or since start)."""
    kb = _read_hwm_kb()
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


def current_rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class StageTimer:
    """Wraps functions so that each call records seconds and peak RSS under a stage name."""

    def __init__(self) -> None:
        self.stages: list[dict] = []
        self.resettable = reset_peak()

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            before = current_rss_mb()
            reset_peak()
            t0 = time.perf_counter()
            c0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.stages.append(
                    {
                        "stage": name,
                        "seconds": time.perf_counter() - t0,
                        "cpu_s": time.process_time() - c0,
                        "peak_rss_mb": peak_rss_mb(),
                        "rss_before_mb": before,
                    }
                )

        return timed


# --------------------------------------------------------------------------- outputs
def output_sizes(folder: Path) -> dict:
    """Every file under ``folder`` with its size, totals, and the map sizes."""
    files = {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    maps = {k: v for k, v in files.items() if k.startswith("maps/") and k.endswith(".html")}
    hood = [v for k, v in maps.items() if "neighbourhood_" in k]
    area = [v for k, v in maps.items() if k.startswith("maps/area_")]
    overview = folder / "maps" / "overview.html"
    aggregated = overview.exists() and "LSOAs are shown as" in overview.read_text("utf-8")
    return {
        "files": files,
        "n_files": len(files),
        "total_mb": sum(files.values()) / 1e6,
        "overview_map_mb": maps.get("maps/overview.html", 0) / 1e6,
        "largest_neighbourhood_map_mb": (max(hood) / 1e6) if hood else 0.0,
        "overview_aggregated": aggregated,
        "n_area_maps": len(area),
        "largest_area_map_mb": (max(area) / 1e6) if area else 0.0,
        "gpkg_mb": files.get("priority_index.gpkg", 0) / 1e6,
        "rasters_mb": sum(v for k, v in files.items() if k.endswith(".tif")) / 1e6,
        "report_mb": files.get("report.html", 0) / 1e6,
    }


def venv_bin(name: str) -> str:
    """An executable beside this interpreter (the project's venv)."""
    return str(Path(sys.executable).parent / name)
