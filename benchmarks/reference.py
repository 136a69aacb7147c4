"""The off-the-shelf way, on the same inputs: ``python -m benchmarks.reference TOML``.

What an analyst would write with the usual libraries, timed on the pipeline's own input files
and study area (prints one JSON line; the ratios against our figures are taken by
:mod:`benchmarks.run`):

- reading: pandas' default ``pd.read_csv`` of every police.uk CSV (no checks at all);
- joining: points from longitude/latitude (``gpd.points_from_xy``), reprojected to EPSG:27700,
  then ``geopandas.sjoin(..., predicate="within")`` into the study LSOAs (no checks either);
- Gi*: ``esda.G_Local(y, w, transform="B", star=True, permutations=999)`` against
  :func:`priority_index.hotspots.gi_star` with the same weights (those the pipeline builds) and
  the same ``y`` (records per LSOA in the current period, from the join above), with the
  largest absolute difference of the z-scores;
- kernel density: scikit-learn's exact ``KernelDensity`` (Gaussian, the like-for-like kernel)
  timed on a sample of cells and extrapolated to every cell of the grid, against
  :func:`priority_index.density.kernel_density` on the same points, grid and bandwidth
  (:func:`~priority_index.density.compare_with_sklearn`, which also gives the largest relative
  difference over cells at or above 5% of the peak); our quartic surface (the pipeline's
  kernel, which scikit-learn does not have) is timed too, and scikit-learn's compact
  Epanechnikov kernel is extrapolated beside it. Ours are timed with the study-area mask and
  each kernel's default ``oversample`` (:data:`~priority_index.density.DEFAULT_OVERSAMPLE`,
  recorded beside each figure).
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from priority_index import density, hotspots, spatial_weights
from priority_index.config import load_settings
from priority_index.pipeline import load_study, period_of_month
from priority_index.sources import police_uk

from .measure import peak_rss_mb

#: Seconds of scikit-learn Gaussian KDE to spend on each of the two samples (timed, then
#: error); the time is extrapolated to the whole grid.
SKLEARN_BUDGET_S = 6.0


def _study(settings) -> gpd.GeoDataFrame:
    return load_study(settings)[0]


def _read_pandas(settings) -> tuple[pd.DataFrame, float, int]:
    files = [
        mf
        for src in settings.sources.police_uk
        for mf in police_uk.list_files(settings.path(src.path))
    ]
    t0 = time.perf_counter()
    frames = []
    for mf in files:
        p = Path(mf.name)
        frames.append(pd.read_csv(p if p.is_file() else io.BytesIO(mf.read())))
    seconds = time.perf_counter() - t0
    frame = pd.concat([f[["Month", "Longitude", "Latitude"]] for f in frames], ignore_index=True)
    return frame, seconds, sum(len(f) for f in frames)


def main(argv: list[str] | None = None) -> int:
    (toml,) = argv or sys.argv[1:]
    settings = load_settings(toml)
    out: dict = {}
    study = _study(settings)

    # reading
    frame, sec, rows = _read_pandas(settings)
    out["pandas_read_csv"] = {"seconds": sec, "rows": rows, "rows_per_s": rows / sec}

    # joining
    t0 = time.perf_counter()
    ok = frame["Longitude"].notna() & frame["Latitude"].notna()
    pts = gpd.GeoDataFrame(
        {"Month": frame.loc[ok, "Month"].to_numpy()},
        geometry=gpd.points_from_xy(frame.loc[ok, "Longitude"], frame.loc[ok, "Latitude"]),
        crs="EPSG:4326",
    ).to_crs(27700)
    t_points = time.perf_counter() - t0
    del frame
    t0 = time.perf_counter()
    joined = gpd.sjoin(pts, study[["geometry"]], predicate="within", how="inner")
    t_sjoin = time.perf_counter() - t0
    out["geopandas_join"] = {
        "points_from_xy_and_to_crs_s": t_points,
        "sjoin_s": t_sjoin,
        "seconds": t_points + t_sjoin,
        "points": int(ok.sum()),
        "joined": len(joined),
    }

    # Gi*: same weights, same y
    current = {m for m, p in period_of_month(settings).items() if p == settings.current_period.name}
    cur = joined[joined["Month"].astype(str).isin(current)]
    key = "lsoa_code" if "lsoa_code" in cur else "index_right"
    y = cur.groupby(key).size().reindex(study.index, fill_value=0).astype(float)
    h = settings.hotspots
    w, _ = spatial_weights.build_weights(study, method=h.weights, k=h.k, threshold=h.threshold_m)
    t0 = time.perf_counter()
    ours = hotspots.gi_star(y, w, permutations=999, seed=1)
    t_ours = time.perf_counter() - t0
    from esda.getisord import G_Local

    t0 = time.perf_counter()
    ref = G_Local(y.to_numpy(), w, transform="B", star=True, permutations=999, seed=1)
    t_esda = time.perf_counter() - t0
    dz = np.abs(ours["gi_z"].to_numpy() - np.asarray(ref.Zs, dtype=float))
    out["gi_star"] = {
        "ours_s": t_ours,
        "esda_s": t_esda,
        "ratio_esda_over_ours": t_esda / t_ours,
        "max_abs_z_difference": float(np.nanmax(dz)),
        "lsoas": len(y),
        "permutations": 999,
        "esda_numba": _has_numba(),
    }

    # kernel density on the current period's points, the pipeline's grid
    x = cur.geometry.x.to_numpy()
    yy = cur.geometry.y.to_numpy()
    bounds = tuple(study.total_bounds)
    cell = settings.density.cell_size_m
    mask = study.geometry
    kde: dict = {"points": len(x), "cell_size_m": cell}
    for kernel in ("gaussian", "quartic", "epanechnikov"):
        bw = density.default_bandwidth(x, yy, kernel=kernel)
        t0 = time.perf_counter()
        grid = density.kernel_density(
            x, yy, bounds=bounds, cell_size=cell, bandwidth=bw, kernel=kernel, mask_geometry=mask
        )
        k = {
            "ours_s": time.perf_counter() - t0,
            "bandwidth_m": bw,
            "oversample": density.DEFAULT_OVERSAMPLE[kernel],
        }
        cells = int(np.isfinite(grid.values).sum())
        kde["cells"] = cells
        kde["grid_shape"] = list(grid.shape)
        if kernel != "quartic":
            # scikit-learn's Gaussian query visits every point (about 60 ns each here): size
            # the timed sample to the budget; the compact kernel is pruned, 1000 cells
            n = 1000
            if kernel == "gaussian":
                n = int(np.clip(SKLEARN_BUDGET_S / (6e-8 * max(len(x), 1)), 30, 1000))
            cmp = density.compare_with_sklearn(x, yy, grid, sample_cells=n, seed=3)
            extrapolated = cmp.sklearn_seconds_per_cell * cells
            k.update(
                {
                    "sklearn_seconds_per_cell": cmp.sklearn_seconds_per_cell,
                    "sklearn_sample_cells": cmp.n_timed_cells,
                    "sklearn_extrapolated_s": extrapolated,
                    "ratio_sklearn_over_ours": extrapolated / k["ours_s"],
                    "max_rel_error": cmp.max_rel_error,
                    "error_cells": cmp.n_error_cells,
                }
            )
        kde[kernel] = k
    out["kde"] = kde
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))
    return 0


def _has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
