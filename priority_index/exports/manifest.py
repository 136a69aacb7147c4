"""The run's manifest: inputs with hashes, settings, versions, seed, counts per stage.

Everything in it is a function of the inputs, the settings and the seed, except the single
field ``run_info`` (timestamp, timings, host), so two runs of the same pipeline give manifests
that differ only there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = [
    "priority-index",
    "numpy",
    "pandas",
    "pyarrow",
    "geopandas",
    "pyogrio",
    "shapely",
    "pyproj",
    "rasterio",
    "scipy",
    "libpysal",
    "esda",
    "scikit-learn",
    "folium",
    "branca",
    "matplotlib",
    "pydantic",
]


def versions() -> dict[str, str]:
    """Installed versions of the packages whose behaviour shapes the outputs."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        import pyogrio

        out["GDAL"] = pyogrio.__gdal_version_string__
    except Exception:  # pragma: no cover - GDAL always comes with pyogrio
        pass
    return out


def relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when below it, else absolute (POSIX separators)."""
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def build_manifest(
    *,
    pipeline: dict[str, Any],
    inputs: list[dict[str, Any]],
    settings: dict[str, Any],
    seed: int,
    counts: dict[str, Any],
    outputs: dict[str, dict[str, Any]],
    notes: list[str],
    timings: dict[str, float],
) -> dict[str, Any]:
    """Assemble the manifest as a plain, JSON-serialisable dict (keys in a fixed order)."""
    return {
        "pipeline": pipeline,
        "seed": seed,
        "versions": versions(),
        "inputs": inputs,
        "settings": settings,
        "counts": counts,
        "notes": notes,
        "outputs": dict(sorted(outputs.items())),
        "run_info": {
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "timings_s": timings,
            "host": platform.node(),
        },
    }


def write_json(data: Any, path: Path) -> None:
    """Write JSON (sorted keys off, 2-space indent, UTF-8) atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(
        json.dumps(data, indent=2, ensure_ascii=False, default=_default) + "\n", encoding="utf-8"
    )
    os.replace(tmp, path)


def _default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, set | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
