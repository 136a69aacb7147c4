"""Tests for priority_index.density: binned FFT kernel density against exact sums."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from rasterio.features import geometry_mask
from sklearn.neighbors import KernelDensity

from priority_index import density
from priority_index.density import (
    DEFAULT_OVERSAMPLE,
    DensityGrid,
    aligned_grid,
    compare_with_sklearn,
    default_bandwidth,
    density_surfaces,
    exact_density,
    kernel_density,
    kernel_profile,
)

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"


def clustered_points(n_cluster: int = 3000, n_background: int = 1000, seed: int = 5):
    """Two elliptical clusters and a uniform background in a 5 km square."""
    rng = np.random.default_rng(seed)
    half = n_cluster // 2
    x = np.concatenate(
        [
            rng.normal(2000.0, 300.0, half),
            rng.normal(3500.0, 150.0, n_cluster - half),
            rng.uniform(0.0, 5000.0, n_background),
        ]
    )
    y = np.concatenate(
        [
            rng.normal(2500.0, 500.0, half),
            rng.normal(1500.0, 150.0, n_cluster - half),
            rng.uniform(0.0, 5000.0, n_background),
        ]
    )
    return 530000.0 + x, 160000.0 + y


BOUNDS = (530000.0, 160000.0, 535000.0, 165000.0)
#: BOUNDS grown by 1 km, so that every kernel of a point inside BOUNDS lies on the grid.
WIDE = (529000.0, 159000.0, 536000.0, 166000.0)


def test_aligned_grid_snaps_outward_to_cell_multiples():
    transform, shape = aligned_grid((1010.0, 2020.0, 1190.0, 2230.0), cell_size=50.0)
    assert (transform.c, transform.f) == (1000.0, 2250.0)
    assert (transform.a, transform.e) == (50.0, -50.0)
    assert shape == (5, 4)  # y 2000..2250, x 1000..1200
    # Already-aligned bounds are kept as they are.
    transform, shape = aligned_grid((503000, 155000, 562000, 201000), cell_size=50.0)
    assert shape == (920, 1180)
    assert (transform.c, transform.f) == (503000.0, 201000.0)


def test_kernel_profiles_integrate_to_one_and_match_formulas():
    h = 100.0
    r = np.array([0.0, 50.0, 99.0, 100.0, 150.0])
    quartic = kernel_profile(r, bandwidth=h, kernel="quartic")
    np.testing.assert_allclose(
        quartic, 3 / (math.pi * h * h) * np.array([1.0, 0.75**2, (1 - 0.99**2) ** 2, 0.0, 0.0])
    )
    epan = kernel_profile(r, bandwidth=h, kernel="epanechnikov")
    np.testing.assert_allclose(epan, 2 / (math.pi * h * h) * np.array([1.0, 0.75, 0.0199, 0, 0]))
    gauss = kernel_profile(np.array([0.0, 100.0]), bandwidth=h, kernel="gaussian")
    np.testing.assert_allclose(gauss, np.array([1.0, math.exp(-0.5)]) / (2 * math.pi * h * h))
    step = 2.0
    g = np.arange(-600.0, 600.0 + step, step)
    rr = np.hypot(g[:, None], g[None, :])
    for kernel in ("quartic", "epanechnikov", "gaussian"):
        mass = kernel_profile(rr, bandwidth=h, kernel=kernel).sum() * step * step
        assert mass == pytest.approx(1.0, abs=2e-3), kernel


def test_single_point_peak_symmetry_mass_and_exact_zeros():
    h, cs = 400.0, 50.0
    # The point sits on the centre of the middle cell of a 41 x 41 grid.
    g = kernel_density(
        [1025.0], [1025.0], bounds=(0, 0, 2050, 2050), cell_size=cs, bandwidth=h, oversample=1
    )
    assert isinstance(g, DensityGrid)
    assert g.shape == (41, 41) and g.values.dtype == np.float32
    assert g.units == "records per km2" and g.crs == "EPSG:27700"
    v = g.values.astype(np.float64)
    assert np.unravel_index(np.argmax(v), v.shape) == (20, 20)
    # Peak = 3 / (pi h^2) per m2 = 5.968 per km2 (within the 0.1 % stencil normalisation).
    assert v[20, 20] == pytest.approx(3e6 / (math.pi * h * h), rel=2e-3)
    np.testing.assert_allclose(v, v[::-1, :], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(v, v.T, rtol=1e-6, atol=1e-9)
    assert g.total() == pytest.approx(1.0, rel=1e-6)
    # Cells beyond the search radius are exactly zero (FFT round-off removed).
    xs, ys = g.cell_centres()
    r = np.hypot(xs[None, :] - 1025.0, ys[:, None] - 1025.0)
    assert np.all(v[r > h] == 0.0)
    assert np.all(v[r < h - cs] > 0.0)
    # Sub-cell binning keeps the mass and moves the peak by well under 1 %.
    g2 = kernel_density([1025.0], [1025.0], bounds=(0, 0, 2050, 2050), cell_size=cs, bandwidth=h)
    assert g2.total() == pytest.approx(1.0, rel=1e-6)
    assert g2.values[20, 20] == pytest.approx(3e6 / (math.pi * h * h), rel=1e-2)


def test_linear_binning_splits_a_point_between_cell_centres():
    kw = dict(bounds=(0, 0, 2000, 2000), cell_size=50.0, bandwidth=300.0, oversample=1)
    a = kernel_density([1025.0], [1025.0], **kw).values.astype(np.float64)
    b = kernel_density([1075.0], [1025.0], **kw).values.astype(np.float64)
    mid = kernel_density([1050.0], [1025.0], **kw).values.astype(np.float64)
    quarter = kernel_density([1037.5], [1025.0], **kw).values.astype(np.float64)
    np.testing.assert_allclose(mid, 0.5 * (a + b), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(quarter, 0.75 * a + 0.25 * b, rtol=1e-5, atol=1e-9)


def test_weights_are_linear():
    x, y = clustered_points(300, 100)
    w = np.random.default_rng(1).uniform(1, 50, x.size)
    kw = dict(bounds=BOUNDS, cell_size=25.0, bandwidth=300.0)
    full = kernel_density(x, y, weights=w, **kw).values.astype(np.float64)
    first = kernel_density(x[:200], y[:200], weights=w[:200], **kw).values.astype(np.float64)
    rest = kernel_density(x[200:], y[200:], weights=w[200:], **kw).values.astype(np.float64)
    np.testing.assert_allclose(full, first + rest, rtol=1e-5, atol=1e-6 * full.max())
    double = kernel_density(x, y, weights=2 * w, **kw).values.astype(np.float64)
    np.testing.assert_allclose(double, 2 * full, rtol=1e-6)
    g = kernel_density(x, y, weights=w, **{**kw, "bounds": WIDE})
    assert g.total() == pytest.approx(w.sum(), rel=1e-6)  # all kernels lie inside the grid


def test_gaussian_matches_sklearn():
    x, y = clustered_points()
    g = kernel_density(x, y, bounds=BOUNDS, cell_size=25.0, bandwidth=100.0, kernel="gaussian")
    assert g.bandwidth == 100.0 and g.kernel == "gaussian"
    # Independent check at the peak and at random cells above 5 % of the maximum.
    xs, ys = g.cell_centres()
    v = g.values.ravel()
    rng = np.random.default_rng(0)
    cells = np.flatnonzero(v >= 0.05 * v.max())
    cells = np.concatenate([[np.argmax(v)], rng.choice(cells, 300, replace=False)])
    r, c = np.divmod(cells, g.shape[1])
    kde = KernelDensity(kernel="gaussian", bandwidth=100.0).fit(np.column_stack([x, y]))
    ref = np.exp(kde.score_samples(np.column_stack([xs[c], ys[r]]))) * x.size * 1e6
    np.testing.assert_allclose(v[cells], ref, rtol=0.01)
    res = compare_with_sklearn(x, y, g, sample_cells=1500, seed=3)
    assert res.n_error_cells == 1500 and res.n_timed_cells == 1500
    assert res.max_rel_error < 0.01
    assert res.sklearn_seconds_per_cell > 0


def test_epanechnikov_matches_sklearn_with_weights():
    x, y = clustered_points()
    w = np.random.default_rng(2).choice([1.0, 2.0, 14.0, 365.0], size=x.size)
    g = kernel_density(
        x, y, weights=w, bounds=BOUNDS, cell_size=25.0, bandwidth=400.0, kernel="epanechnikov"
    )
    res = compare_with_sklearn(x, y, g, weights=w, sample_cells=1500, seed=4)
    assert res.n_error_cells == 1500
    assert res.max_rel_error < 0.01


def test_epanechnikov_default_oversample_on_snapped_points():
    # police.uk-like points: records snapped to shared map points (a 60 m lattice), so a cell
    # can take much of its density from one location near the kernel's edge, where the
    # Epanechnikov slope jumps and binning errs in proportion to the node spacing.
    x, y = clustered_points(6000, 2000, seed=11)
    sx, sy = np.round(x / 60.0) * 60.0 + 7.0, np.round(y / 60.0) * 60.0 - 11.0
    kw = dict(bounds=BOUNDS, cell_size=25.0, bandwidth=250.0, kernel="epanechnikov")
    errors = {}
    for k in (None, 2):
        g = kernel_density(sx, sy, oversample=k, **kw)
        xs, ys = g.cell_centres()
        v = g.values.ravel().astype(np.float64)
        cells = np.flatnonzero(v >= 0.05 * v.max())
        r, c = np.divmod(cells, g.shape[1])
        ref = exact_density(sx, sy, xs[c], ys[r], bandwidth=250.0, kernel="epanechnikov")
        errors[k] = np.max(np.abs(v[cells] - ref) / ref)
    assert DEFAULT_OVERSAMPLE["epanechnikov"] == 3
    assert errors[None] < 0.01 < errors[2]
    np.testing.assert_array_equal(
        kernel_density(sx, sy, **kw).values, kernel_density(sx, sy, oversample=3, **kw).values
    )


@pytest.mark.parametrize("oversample", [1, 2, 3, 4])
def test_every_oversample_keeps_mass_and_matches_exact(oversample):
    # Points off the sub-cell nodes, one beyond the grid's west edge and one beyond its
    # padding (which cannot reach the grid).
    px = np.array([1013.0, 1377.7, 1520.2, -60.0, -900.0])
    py = np.array([1041.0, 1210.3, 888.8, 1000.0, 1000.0])
    kw = dict(bounds=(0, 0, 2500, 2500), cell_size=25.0, bandwidth=300.0, oversample=oversample)
    g = kernel_density(px, py, **kw)
    inside = kernel_density(px[:3], py[:3], **kw)
    assert inside.total() == pytest.approx(3.0, rel=1e-6)
    xs, ys = g.cell_centres()
    v = g.values.astype(np.float64)
    ref = exact_density(px, py, *np.meshgrid(xs, ys), bandwidth=300.0).reshape(v.shape)
    assert 3.2 < g.total() < 3.5  # part of the west point's kernel lies beyond the grid
    assert g.total() == pytest.approx(ref.sum() * g.cell_area_km2, rel=2e-3)
    high = ref >= 0.05 * ref.max()
    # Quartic edges of lone points: the error falls as the square of the node spacing.
    assert np.max(np.abs(v[high] - ref[high]) / ref[high]) < 0.2 / oversample**2
    # Binning moves weight at most one node (25 m / oversample per axis) from each point.
    far = np.hypot(xs[None, :, None] - px, ys[:, None, None] - py).min(axis=2) > 300.0 + 36.0
    assert far.sum() > 8000 and np.all(v[far] == 0)


def test_quartic_matches_exact_direct_sum():
    x, y = clustered_points(400, 100, seed=9)
    g = kernel_density(x, y, bounds=BOUNDS, cell_size=25.0, bandwidth=200.0, kernel="quartic")
    xs, ys = g.cell_centres()
    v = g.values.ravel().astype(np.float64)
    cells = np.flatnonzero(v >= 0.05 * v.max())
    r, c = np.divmod(cells, g.shape[1])
    ref = exact_density(x, y, xs[c], ys[r], bandwidth=200.0, kernel="quartic")
    assert cells.size > 1000
    assert np.max(np.abs(v[cells] - ref) / ref) < 0.01
    # The exact sum itself, by hand: one point 100 m away with h = 200 m.
    one = exact_density([0.0], [0.0], [100.0], [0.0], bandwidth=200.0, kernel="quartic")
    assert one[0] == pytest.approx(3e6 / (math.pi * 200.0**2) * 0.75**2)


def test_points_outside_bounds_still_contribute():
    # A point 100 m west of the grid's west edge reaches into the first columns.
    g = kernel_density(
        [-100.0], [525.0], bounds=(0, 0, 1000, 1000), cell_size=25.0, bandwidth=300.0
    )
    xs, ys = g.cell_centres()
    ref = exact_density([-100.0], [525.0], xs[:4], [ys[19]] * 4, bandwidth=300.0)
    np.testing.assert_allclose(g.values[19, :4], ref, rtol=0.02)
    assert np.all(g.values[:, xs > 200.0] == 0.0)


def test_mask_sets_cells_outside_study_area_to_nan():
    ox, oy = 530000.0, 160000.0
    x, y = ox + np.array([300.0, 350.0]), oy + np.array([250.0, 260.0])
    area = shapely.box(ox + 100, oy + 100, ox + 600, oy + 400)
    bounds = (ox, oy, ox + 1000, oy + 1000)
    g = kernel_density(x, y, bounds=bounds, cell_size=50.0, bandwidth=100.0, mask_geometry=area)
    xs, ys = g.cell_centres()
    xs, ys = xs - ox, ys - oy
    inside = (xs[None, :] > 100) & (xs[None, :] < 600) & (ys[:, None] > 100) & (ys[:, None] < 400)
    assert inside.sum() == 60
    np.testing.assert_array_equal(np.isfinite(g.values), inside)
    assert g.total() == pytest.approx(2.0, rel=1e-6)  # the kernels fall inside the box
    # A GeoDataFrame in another CRS is reprojected; bounds default to the mask's.
    gdf = gpd.GeoDataFrame(geometry=[area], crs="EPSG:27700").to_crs("EPSG:4326")
    g2 = kernel_density(x, y, cell_size=50.0, bandwidth=100.0, mask_geometry=gdf)
    assert g2.bounds == (ox + 100, oy + 100, ox + 600, oy + 400)
    assert np.isfinite(g2.values).sum() == 60
    np.testing.assert_allclose(g2.values, g.values[12:18, 2:12], rtol=1e-6)


def test_mask_shapes_burn_like_the_geometries():
    ring = shapely.box(0, 0, 1000, 1000).difference(shapely.box(300, 300, 600, 600))
    multi = shapely.MultiPolygon(
        [shapely.box(1200, 0, 1500, 400), shapely.Point(1750, 500).buffer(300).difference(ring)]
    )
    geoms = [
        ring,
        multi,
        shapely.GeometryCollection([shapely.box(0, 1200, 300, 1500), shapely.Point(1900, 1900)]),
        shapely.LineString([(100, 1100), (1800, 1150)]),
        shapely.Polygon([(1200, 1200, 5.0), (1400, 1200, 5.0), (1300, 1400, 5.0)]),
    ]
    transform, shape = aligned_grid((0, 0, 2000, 2000), cell_size=25.0)
    for all_touched in (False, True):
        ours = density._study_area_mask(geoms, transform, shape, all_touched=all_touched)
        plain = geometry_mask(
            geoms, out_shape=shape, transform=transform, all_touched=all_touched, invert=True
        )
        np.testing.assert_array_equal(ours, plain)
        assert 0 < ours.sum() < ours.size


def test_density_surfaces_share_one_mask_and_match_kernel_density(monkeypatch):
    x, y = clustered_points(300, 100)
    groups = np.where(np.arange(x.size) % 3 == 0, "robbery", "burglary")
    harm = np.where(groups == "robbery", 365.0, 182.5)
    pts = pd.DataFrame({"x": x, "y": y, "crime_group": groups, "harm": harm})
    pts.loc[5, "crime_group"] = None  # in the harm surface only
    area = shapely.Point(532500.0, 162500.0).buffer(2200.0)
    calls = []
    masker = density._study_area_mask

    def counting(*args, **kwargs):
        calls.append(1)
        return masker(*args, **kwargs)

    monkeypatch.setattr(density, "_study_area_mask", counting)
    kw = dict(cell_size=50.0, mask_geometry=area)
    out = density_surfaces(pts, groups=["burglary", "robbery", "theft"], **kw)
    assert len(calls) == 1
    assert list(out) == ["burglary", "robbery", "theft", "total_harm"]
    for g in ("burglary", "robbery"):
        sel = (pts["crime_group"] == g).to_numpy()
        one = kernel_density(x[sel], y[sel], **kw)
        np.testing.assert_array_equal(out[g].values, one.values)
        assert (out[g].bandwidth, out[g].transform) == (one.bandwidth, one.transform)
    assert np.nansum(out["theft"].values) == 0.0 and out["theft"].bandwidth == 100.0
    total = kernel_density(x, y, weights=harm, units="harm days per km2", **kw)
    np.testing.assert_array_equal(out["total_harm"].values, total.values)


def test_default_bandwidth_by_hand():
    cx, cy = 530000.0, 160000.0
    four_x = cx + np.array([100.0, -100.0, 0.0, 0.0])
    four_y = cy + np.array([0.0, 0.0, 100.0, -100.0])
    # SD = Dm = 100; R = 0.9 * min(100, 1.2011 * 100) * 4 ** -0.2 = 68.21 m.
    r = default_bandwidth(four_x, four_y, min_bandwidth=10.0)
    assert r == pytest.approx(0.9 * 100.0 * 4**-0.2)
    assert default_bandwidth(four_x, four_y, min_bandwidth=100.0) == 100.0
    gauss = default_bandwidth(four_x, four_y, kernel="gaussian", min_bandwidth=1.0)
    assert gauss == pytest.approx(r / math.sqrt(8.0))
    epan = default_bandwidth(four_x, four_y, kernel="epanechnikov", min_bandwidth=1.0)
    assert epan == pytest.approx(r * math.sqrt(6.0 / 8.0))
    # Median term binds: distances 10 (x4) and 1000 (x4); Dm = 505, SD = 707.1.
    d = np.array([10.0, -10.0, 0, 0, 1000.0, -1000.0, 0, 0])
    e = np.array([0, 0, 10.0, -10.0, 0, 0, 1000.0, -1000.0])
    r8 = default_bandwidth(cx + d, cy + e, min_bandwidth=1.0)
    assert r8 == pytest.approx(0.9 * math.sqrt(1 / math.log(2)) * 505.0 * 8**-0.2)
    # Weighted: distances 100 (weight 1 each) and 1000 (weight 3 each); weighted median 1000,
    # weighted SD sqrt((2e4 + 6e6) / 8) = 867.5 binds; n stays the 4 records.
    px = cx + np.array([100.0, -100.0, 1000.0, -1000.0])
    py = np.full(4, cy)
    w = np.array([1.0, 1.0, 3.0, 3.0])
    rw = default_bandwidth(px, py, weights=w, min_bandwidth=1.0)
    assert rw == pytest.approx(0.9 * math.sqrt((2e4 + 6e6) / 8) * 4**-0.2)
    # Unit-free: harm in years instead of days gives the same bandwidth.
    assert default_bandwidth(px, py, weights=w / 365, min_bandwidth=1.0) == pytest.approx(rw)
    assert default_bandwidth(px, py, min_bandwidth=1.0) == pytest.approx(
        0.9 * math.sqrt(1 / math.log(2)) * 550.0 * 4**-0.2
    )
    assert default_bandwidth([cx], [cy], min_bandwidth=123.0) == 123.0


def test_default_bandwidth_does_not_depend_on_blas_threads():
    # Dask workers run with one BLAS thread: the bandwidth (and so the surface) must not change.
    code = (
        "import numpy as np\n"
        "from priority_index.density import default_bandwidth\n"
        "r = np.random.default_rng(8)\n"
        "x, y = 530000 + r.normal(0, 900, 20000), 180000 + r.normal(0, 400, 20000)\n"
        "w = r.choice([1.0, 14.0, 182.5, 365.0], 20000)\n"
        "print(repr(default_bandwidth(x, y, weights=w, min_bandwidth=0.0)))\n"
        "print(repr(default_bandwidth(x, y, min_bandwidth=0.0)))\n"
    )
    runs = set()
    for threads in ("1", "2", "4"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        runs.add(out.stdout)
    assert len(runs) == 1


def test_bandwidth_none_uses_default_rule():
    x, y = clustered_points(500, 200)
    g = kernel_density(x, y, bounds=BOUNDS, cell_size=50.0)
    assert g.bandwidth == pytest.approx(default_bandwidth(x, y))
    assert g.kernel == "quartic"


def test_density_surfaces_per_group_and_total_harm():
    x, y = clustered_points(300, 100)
    groups = np.where(np.arange(x.size) % 3 == 0, "robbery", "burglary")
    harm = np.where(groups == "robbery", 365.0, 182.5)
    pts = pd.DataFrame({"x": x, "y": y, "crime_group": groups, "harm": harm})
    out = density_surfaces(pts, bounds=WIDE, cell_size=50.0, bandwidth={"robbery": 250.0})
    assert list(out) == ["burglary", "robbery", "total_harm"]
    assert out["robbery"].bandwidth == 250.0
    assert out["burglary"].bandwidth == pytest.approx(
        default_bandwidth(x[groups == "burglary"], y[groups == "burglary"])
    )
    assert out["total_harm"].units == "harm days per km2"
    assert out["robbery"].units == "records per km2"
    assert out["robbery"].total() == pytest.approx((groups == "robbery").sum(), rel=1e-6)
    assert out["burglary"].total() == pytest.approx((groups == "burglary").sum(), rel=1e-6)
    assert out["total_harm"].total() == pytest.approx(harm.sum(), rel=1e-6)
    assert len({g.transform for g in out.values()}) == 1


def test_sample_reads_the_cell_under_each_point():
    g = kernel_density([525.0], [525.0], bounds=(0, 0, 1000, 1000), cell_size=50.0, bandwidth=200)
    got = g.sample(np.array([525.0, 510.0, 5000.0]), np.array([525.0, 549.0, 0.0]))
    assert got[0] == got[1] == g.values[9, 10]
    assert np.isnan(got[2])


def test_compare_with_sklearn_detects_a_wrong_surface():
    x, y = clustered_points(600, 200)
    g = kernel_density(x, y, bounds=BOUNDS, cell_size=25.0, bandwidth=100.0, kernel="gaussian")
    wrong = DensityGrid(
        values=g.values * np.float32(1.05),
        transform=g.transform,
        cell_size=g.cell_size,
        bandwidth=g.bandwidth,
        kernel=g.kernel,
        units=g.units,
    )
    res = compare_with_sklearn(x, y, wrong, sample_cells=300, seed=0)
    assert res.max_rel_error == pytest.approx(0.05, abs=0.01)
    q = kernel_density(x, y, bounds=BOUNDS, cell_size=25.0, bandwidth=100.0)
    with pytest.raises(ValueError, match="quartic"):
        compare_with_sklearn(x, y, q, sample_cells=10, seed=0)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="smaller than one cell"):
        kernel_density([0.0], [0.0], bounds=(0, 0, 100, 100), cell_size=50.0, bandwidth=20.0)
    with pytest.raises(ValueError, match="unknown kernel"):
        kernel_density([0.0], [0.0], bounds=(0, 0, 100, 100), bandwidth=100.0, kernel="box")
    with pytest.raises(ValueError, match="non-negative"):
        kernel_density([0.0], [0.0], weights=[-1.0], bounds=(0, 0, 100, 100), bandwidth=100.0)
    # Missing coordinates are ignored, not propagated.
    g = kernel_density(
        [500.0, np.nan], [500.0, 1.0], bounds=(0, 0, 1000, 1000), cell_size=50.0, bandwidth=200
    )
    assert g.total() == pytest.approx(1.0, rel=1e-6)
    empty = kernel_density([], [], bounds=(0, 0, 1000, 1000), cell_size=50.0, bandwidth=200.0)
    assert empty.shape == (20, 20) and np.all(empty.values == 0.0)


@pytest.mark.realdata
def test_croydon_burglary_surface():
    archive = RAW / "police_uk" / "met-burglary-only-2023-03_to_2025-02.zip"
    shp = RAW / "london" / "boundaries" / "london-2021-lsoa-gen20.shp"
    if not (archive.exists() and shp.exists()):
        pytest.skip("shared raw data not available")
    from pyproj import Transformer

    with zipfile.ZipFile(archive) as z:
        frames = [
            pd.read_csv(io.BytesIO(z.read(n)), usecols=["Longitude", "Latitude", "LSOA name"])
            for n in sorted(z.namelist())
            if n.endswith(".csv")
        ]
    df = pd.concat(frames, ignore_index=True).dropna()
    df = df[df["LSOA name"].str.startswith("Croydon ")]
    assert len(df) > 3000
    x, y = Transformer.from_crs(4326, 27700, always_xy=True).transform(
        df["Longitude"].to_numpy(), df["Latitude"].to_numpy()
    )
    lsoas = gpd.read_file(shp, columns=["LSOA21CD", "LAD22NM"])
    croydon = lsoas[lsoas["LAD22NM"] == "Croydon"]
    assert len(croydon) == 229
    h = default_bandwidth(x, y)
    assert 300.0 < h < 900.0
    g = kernel_density(x, y, cell_size=25.0, mask_geometry=croydon, kernel="quartic")
    assert g.bandwidth == pytest.approx(h)
    centre_in = shapely.contains_xy(croydon.union_all(), *np.meshgrid(*g.cell_centres()))
    np.testing.assert_array_equal(np.isfinite(g.values), centre_in)
    assert 0.9 * x.size < g.total() < x.size
    gg = kernel_density(x, y, cell_size=25.0, mask_geometry=croydon, kernel="gaussian")
    res = compare_with_sklearn(x, y, gg, sample_cells=800, seed=1)
    assert res.max_rel_error < 0.01
