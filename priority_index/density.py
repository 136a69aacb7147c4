"""Kernel density surfaces of crime records and harm on a British National Grid raster.

The estimator is the binned kernel density estimator (Wand and Jones, 1995, ch. 5): every point's
weight is shared between the four surrounding binning nodes by linear (bilinear) binning and the
binned grid is convolved by FFT with the kernel sampled at the offsets from those nodes to the
cell centres. With ``oversample=k`` the nodes form a ``k`` x ``k`` sub-grid in each cell and
each of the ``k * k`` node phases is convolved with its own exactly-offset kernel (a polyphase
convolution, summed in the frequency domain), so the result is the density at the cell centres
of points binned ``k`` times more finely. :data:`DEFAULT_OVERSAMPLE` is 2 for the quartic and
Gaussian kernels and 3 for the Epanechnikov kernel. On the London benchmark grid (902 x 1,169
cells of 50 m, 629,000 of them in the study area; 874,000 points) one surface, study-area mask
included, takes 0.15 to 0.2 s with the quartic kernel, about 0.3 s with the Epanechnikov and
0.2 to 0.45 s with the Gaussian on one core (the first surface of a process pays for mapping
fresh memory); scikit-learn's exact ``KernelDensity`` needs 25 ms a cell with the Gaussian
kernel (4.3 hours for the grid, 35,000 times slower) and 0.09 ms a cell with the Epanechnikov
kernel, which its KD-tree prunes (55 s, 190 times slower).

Binning moves each point's weight to nodes up to ``cell_size / oversample`` away, so the surface
departs from the exact kernel sum most where a cell's density comes from a few points near the edge
of the kernel; for the Epanechnikov kernel, whose slope jumps at its edge, the error there falls
only in proportion to the node spacing (as its square for the smooth kernels), hence its finer
default sub-grid. Measured with the default ``oversample`` against the exact sum, on 6,000 cells at
or above 5 % of the maximum in a 12 km square of central London (50 m cells; the London benchmark's
points of one year, "dispersed" when each is moved by 100 m at random): the Gaussian kernel stays
within 1 % once ``sigma`` is three cells and within 0.3 % at four; the quartic within 1 % once its
radius is six cells for dispersed points and twelve cells for police.uk points (which are snapped
to shared map points, so many records coincide), and within 0.15 % at sixteen; the Epanechnikov
kernel within 0.3 % from six cells for dispersed points and within 1 % at twelve cells for snapped
ones (0.4 % at sixteen; ``oversample=2`` gives 2 % at twelve). Over every cell of the London
benchmark grid (Epanechnikov radius 12.7 cells, snapped points) the largest Epanechnikov error is
1.1 % (3 cells of 206,000 above 1 %; 0.8 % with ``oversample=4``, at 1.4 times the time, 2.3 % with
``oversample=2``). At a few cells per bandwidth errors of several per cent remain (7 % for the
Epanechnikov radius of 5.4 cells of the small benchmark): use a finer ``cell_size`` there.
:func:`compare_with_sklearn` and :func:`exact_density` measure the error of any surface.

Kernels and the meaning of ``bandwidth``:

``"quartic"``
    The biweight kernel ``3 / (pi h^2) * (1 - r^2/h^2)^2`` for ``r < h``; ``h`` is the search
    radius, as in ArcGIS *Kernel Density* and the QGIS *Heatmap* tool.
``"epanechnikov"``
    ``2 / (pi h^2) * (1 - r^2/h^2)`` for ``r < h``; ``h`` is the radius, as in scikit-learn.
``"gaussian"``
    ``1 / (2 pi h^2) * exp(-r^2 / (2 h^2))``; ``h`` is the standard deviation ``sigma`` along
    each axis, as in scikit-learn. Truncated at ``truncate * h``.

Surfaces are in weight per square kilometre (records per km2 without weights, harm days per km2
with Crime Harm Index weights): summed over the cells and multiplied by the cell area in km2 they
give back the total weight, apart from what falls outside the study-area mask or the grid. Grids
are aligned to whole multiples of the cell size in EPSG:27700 so that two runs over slightly
different extents share cell edges.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from rasterio.features import geometry_mask
from scipy.fft import fft, irfft2, next_fast_len, rfft, rfft2

__all__ = [
    "DEFAULT_OVERSAMPLE",
    "KERNELS",
    "DensityGrid",
    "SklearnComparison",
    "aligned_grid",
    "compare_with_sklearn",
    "default_bandwidth",
    "density_surfaces",
    "exact_density",
    "kernel_density",
    "kernel_profile",
]

#: Kernels understood by :func:`kernel_density`.
KERNELS: tuple[str, ...] = ("quartic", "gaussian", "epanechnikov")

#: Per-axis standard deviation of each kernel as a multiple of its bandwidth ``h`` (2-D).
#: Quartic: E[r^2] = h^2/4, so sigma = h/sqrt(8); Epanechnikov: E[r^2] = h^2/3, sigma = h/sqrt(6).
_SIGMA_PER_H: dict[str, float] = {
    "quartic": 1.0 / math.sqrt(8.0),
    "epanechnikov": 1.0 / math.sqrt(6.0),
    "gaussian": 1.0,
}

_M2_PER_KM2 = 1.0e6

#: Default ``oversample`` of each kernel (see :func:`kernel_density`): the Epanechnikov kernel's
#: slope jumps at its edge, where binning errs in proportion to the node spacing (not its
#: square), so it gets a finer sub-grid than the smooth kernels.
DEFAULT_OVERSAMPLE: dict[str, int] = {"quartic": 2, "gaussian": 2, "epanechnikov": 3}


@dataclass(frozen=True, eq=False)
class DensityGrid:
    """A density surface on a north-up British National Grid raster.

    Attributes
    ----------
    values
        ``(rows, cols)`` float32 array, row 0 at the north edge; ``NaN`` outside the study area.
    transform
        Affine transform from (col, row) to the cell's top-left corner in metres.
    cell_size
        Cell side in metres.
    bandwidth
        Kernel bandwidth in metres (search radius for quartic and Epanechnikov, sigma for
        Gaussian).
    kernel
        One of :data:`KERNELS`.
    units
        Units of ``values``, for example ``"records per km2"`` or ``"harm days per km2"``.
    crs
        Coordinate reference system of the grid.
    """

    values: np.ndarray
    transform: Affine
    cell_size: float
    bandwidth: float
    kernel: str
    units: str
    crs: str = "EPSG:27700"

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the grid."""
        return tuple(self.values.shape)  # type: ignore[return-value]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the grid's outer edges in metres."""
        rows, cols = self.values.shape
        xmin, ymax = self.transform.c, self.transform.f
        return (xmin, ymax - rows * self.cell_size, xmin + cols * self.cell_size, ymax)

    @property
    def cell_area_km2(self) -> float:
        """Area of one cell in square kilometres."""
        return self.cell_size * self.cell_size / _M2_PER_KM2

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the 1-D arrays of column centre ``x`` and row centre ``y`` (north first)."""
        rows, cols = self.values.shape
        xmin, _, _, ymax = self.bounds
        xs = xmin + (np.arange(cols) + 0.5) * self.cell_size
        ys = ymax - (np.arange(rows) + 0.5) * self.cell_size
        return xs, ys

    def total(self) -> float:
        """Integral of the surface over the valid cells (total weight inside the mask)."""
        return float(np.nansum(self.values, dtype=np.float64) * self.cell_area_km2)

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Value of the cell holding each point (``NaN`` outside the grid or the mask).

        Parameters
        ----------
        x, y
            Coordinates in the grid's CRS.

        Returns
        -------
        numpy.ndarray
            float64 values, one per point.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        rows, cols = self.values.shape
        xmin, _, _, ymax = self.bounds
        with np.errstate(invalid="ignore"):
            col = np.floor((x - xmin) / self.cell_size)
            row = np.floor((ymax - y) / self.cell_size)
        inside = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
        out = np.full(x.shape, np.nan)
        out[inside] = self.values[row[inside].astype(np.int64), col[inside].astype(np.int64)]
        return out


class SklearnComparison(NamedTuple):
    """Result of :func:`compare_with_sklearn`."""

    #: Largest ``|ours - sklearn| / sklearn`` over the compared cells.
    max_rel_error: float
    #: Wall-clock seconds scikit-learn needed per evaluated cell.
    sklearn_seconds_per_cell: float
    #: Number of cells whose error was measured (those at or above ``rel_floor`` of the maximum).
    n_error_cells: int
    #: Number of cells timed.
    n_timed_cells: int


def _check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")
    return kernel


def kernel_profile(r: np.ndarray, *, bandwidth: float, kernel: str = "quartic") -> np.ndarray:
    """Evaluate the normalised 2-D kernel at distances ``r`` (per square metre).

    Parameters
    ----------
    r
        Distances in metres.
    bandwidth
        Bandwidth ``h`` in metres (radius for quartic and Epanechnikov, sigma for Gaussian).
    kernel
        One of :data:`KERNELS`.

    Returns
    -------
    numpy.ndarray
        Kernel values; each kernel integrates to 1 over the plane.
    """
    _check_kernel(kernel)
    h = float(bandwidth)
    u2 = (np.asarray(r, dtype=np.float64) / h) ** 2
    if kernel == "gaussian":
        return np.exp(-0.5 * u2) / (2.0 * math.pi * h * h)
    inside = np.clip(1.0 - u2, 0.0, None)
    if kernel == "quartic":
        return 3.0 / (math.pi * h * h) * inside * inside
    return 2.0 / (math.pi * h * h) * inside


def _support(kernel: str, bandwidth: float, truncate: float) -> float:
    return bandwidth * truncate if kernel == "gaussian" else bandwidth


def _clean_points(
    x: Any, y: Any, weights: Any | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError("x and y must have the same length")
    ok = np.isfinite(x) & np.isfinite(y)
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.shape != x.shape:
            raise ValueError("weights must have the same length as x and y")
        ok &= np.isfinite(w)
        if np.any(w[ok] < 0):
            raise ValueError("weights must be non-negative")
    if ok.all():  # no copies (the arrays may be the caller's: they are only read)
        return x, y, w
    return x[ok], y[ok], None if w is None else w[ok]


def default_bandwidth(
    x: Any,
    y: Any,
    *,
    weights: Any | None = None,
    kernel: str = "quartic",
    min_bandwidth: float = 100.0,
) -> float:
    """Bandwidth from the spatial-variant Silverman rule used by ArcGIS *Kernel Density*.

    The search radius is ``R = 0.9 * min(SD, sqrt(1 / ln 2) * Dm) * n ** -0.2`` where ``SD`` is
    the (weighted) standard distance of the points from their (weighted) mean centre, ``Dm`` the
    (weighted) median distance from that centre and ``n`` the number of points with positive
    weight. ArcGIS takes ``n`` as the sum of the population field when one is used; here ``n``
    stays the number of records so that the bandwidth does not change with the unit of the
    weights (harm in days or years). ``R`` is the quartic search radius; for the other kernels
    the bandwidth returned has the same per-axis spread (variance) as a quartic kernel of radius
    ``R``: ``R / sqrt(8)`` as a Gaussian sigma and ``R * sqrt(6 / 8)`` as an Epanechnikov
    radius.

    Parameters
    ----------
    x, y
        Point coordinates in metres.
    weights
        Optional non-negative weights (for example harm days); zero-weight points are ignored.
    kernel
        Kernel whose bandwidth convention the result is expressed in.
    min_bandwidth
        Floor on the result, in metres, in the kernel's own convention; also returned when there
        are fewer than two points or they all coincide.

    Returns
    -------
    float
        Bandwidth in metres.
    """
    _check_kernel(kernel)
    x, y, w = _clean_points(x, y, weights)
    unweighted = w is None
    if w is None:
        w = np.ones_like(x)
    keep = w > 0
    x, y, w = x[keep], y[keep], w[keep]
    n = x.size
    if n < 2:
        return float(min_bandwidth)
    # Sums by numpy, not BLAS dot products, whose rounding depends on the number of BLAS threads
    # (Dask workers run with one): the bandwidth, and so the surface, is the same everywhere.
    wsum = w.sum()
    cx = (w * x).sum() / wsum
    cy = (w * y).sum() / wsum
    d2 = (x - cx) ** 2 + (y - cy) ** 2
    sd = math.sqrt((w * d2).sum() / wsum)
    d = np.sqrt(d2)
    if unweighted:  # the rule below with unit weights, by selection instead of a sort
        dm = float(np.median(d))
    else:
        order = np.argsort(d, kind="stable")
        cum = np.cumsum(w[order])
        # Weighted median: first distance where the cumulative weight reaches half (the mean of
        # the two middle values when that happens exactly, as np.median does without weights).
        half = 0.5 * cum[-1]
        i = int(np.searchsorted(cum, half, side="left"))
        dm = d[order][i]
        if math.isclose(cum[i], half, rel_tol=1e-12) and i + 1 < n:
            dm = 0.5 * (dm + d[order][i + 1])
    radius = 0.9 * min(sd, math.sqrt(1.0 / math.log(2.0)) * dm) * n ** (-0.2)
    h = radius * _SIGMA_PER_H["quartic"] / _SIGMA_PER_H[kernel]
    return float(max(h, min_bandwidth))


def aligned_grid(
    bounds: tuple[float, float, float, float], *, cell_size: float
) -> tuple[Affine, tuple[int, int]]:
    """Grid covering ``bounds`` with edges on whole multiples of ``cell_size``.

    Parameters
    ----------
    bounds
        ``(xmin, ymin, xmax, ymax)`` in metres; expanded outwards to the next cell edges.
    cell_size
        Cell side in metres.

    Returns
    -------
    transform : affine.Affine
        North-up transform of the grid's top-left corner.
    shape : tuple of int
        ``(rows, cols)``.
    """
    if cell_size <= 0:
        raise ValueError("cell_size must be positive")
    xmin, ymin, xmax, ymax = (float(b) for b in bounds)
    if not (xmax > xmin and ymax > ymin):
        raise ValueError(f"empty bounds {bounds!r}")
    eps = 1e-4  # bounds within 1e-4 cell of an edge (reprojection round-off) snap to it
    c0 = math.floor(xmin / cell_size + eps)
    c1 = math.ceil(xmax / cell_size - eps)
    r0 = math.floor(ymin / cell_size + eps)
    r1 = math.ceil(ymax / cell_size - eps)
    cols = max(c1 - c0, 1)
    rows = max(r1 - r0, 1)
    transform = Affine(cell_size, 0.0, c0 * cell_size, 0.0, -cell_size, (r0 + rows) * cell_size)
    return transform, (rows, cols)


def _as_geometries(mask_geometry: Any) -> list:
    if isinstance(mask_geometry, gpd.GeoDataFrame):
        mask_geometry = mask_geometry.geometry
    if isinstance(mask_geometry, gpd.GeoSeries):
        if mask_geometry.crs is not None and not mask_geometry.crs.equals("EPSG:27700"):
            mask_geometry = mask_geometry.to_crs("EPSG:27700")
        geoms = mask_geometry.to_numpy()
    elif isinstance(mask_geometry, shapely.Geometry):
        geoms = np.array([mask_geometry], dtype=object)
    else:
        geoms = np.asarray(list(mask_geometry), dtype=object)
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    return list(geoms)


def _mask_shapes(geoms: list) -> list:
    """Geometries for :func:`rasterio.features.geometry_mask`, polygons as GeoJSON-like dicts.

    Polygon and multipolygon coordinates are read from shapely's coordinate arrays in one call
    instead of ``__geo_interface__`` one geometry at a time, which was most of the cost of the
    mask; the coordinates, and so the mask, are the same (rasterio burns a multipolygon's parts
    one by one in any case). Other geometries are passed as they are.
    """
    arr = np.asarray(geoms, dtype=object)
    kind = shapely.get_type_id(arr)
    polygonal = ((kind == 3) | (kind == 6)) & ~shapely.has_z(arr)
    polys = shapely.get_parts(arr[polygonal])
    polys = polys[~shapely.is_empty(polys)]
    shapes: list = list(arr[~polygonal])
    if polys.size:
        _, coords, (ring_end, poly_end) = shapely.to_ragged_array(polys)
        with _gc_paused():  # many small lists: keep the cyclic collector from scanning the heap
            xy = coords.tolist()
            rings = [xy[a:b] for a, b in zip(ring_end[:-1], ring_end[1:], strict=True)]
            shapes += [
                {"type": "Polygon", "coordinates": rings[a:b]}
                for a, b in zip(poly_end[:-1], poly_end[1:], strict=True)
            ]
    return shapes


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Disable the cyclic garbage collector in a block that makes no reference cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _study_area_mask(
    mask_geometry: Any, transform: Affine, shape: tuple[int, int], *, all_touched: bool
) -> np.ndarray:
    """True for cells inside the study area (cell centre inside, or touched)."""
    geoms = _as_geometries(mask_geometry)
    if not geoms:
        return np.zeros(shape, dtype=bool)
    return geometry_mask(
        _mask_shapes(geoms),
        out_shape=shape,
        transform=transform,
        all_touched=all_touched,
        invert=True,
    )


def _binned_phases(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    *,
    x_first: float,
    y_first: float,
    cell_size: float,
    oversample: int,
    shape: tuple[int, int],
    fshape: tuple[int, int],
) -> tuple[float, Iterator[tuple[int, int, np.ndarray]]]:
    """Linear binning onto ``oversample`` x ``oversample`` nodes per cell, one grid per phase.

    ``(x_first, y_first)`` is the first node of cell (0, 0) of a ``shape`` grid; rows go south.
    Node ``(r * k + a, c * k + b)`` (``k = oversample``) is cell ``(r, c)`` at phase ``(a, b)``.
    Returns the total weight binned and an iterator of ``(a, b, grid)`` with ``grid[r + 1,
    c + 1]`` the weight at node ``(r * k + a, c * k + b)``: an ``fshape`` array, zero-padded
    for the FFT, with a one-cell margin around the grid that catches the corners of points just
    outside it (those never reach the output, see :func:`_polyphase_convolve`). Up to
    ``k = 2`` one bincount fills every phase; from ``k = 3`` the points are grouped by the
    phase of their upper-left node and each phase is binned on its own, which keeps the memory
    (and the freshly mapped pages, slow to touch) at one grid instead of ``k * k``.
    """
    k = int(oversample)
    rows, cols = shape
    f0, f1 = fshape
    step = cell_size / k
    fu = x - x_first
    fu /= step
    fv = y_first - y
    fv /= step
    c0 = np.floor(fu)
    r0 = np.floor(fv)
    fu -= c0  # fractions of the node spacing past the node up-left of each point
    fv -= r0
    # Points further than one node outside the grid cannot reach it: drop them before the casts.
    near = (c0 >= -1) & (c0 < cols * k) & (r0 >= -1) & (r0 < rows * k)
    if not near.all():
        c0, r0, fu, fv = c0[near], r0[near], fu[near], fv[near]
        w = None if w is None else w[near]
    gu = 1.0 - fu
    gv = 1.0 - fv
    if w is not None:
        gv *= w
        fv *= w
    total = float(gv.sum() + fv.sum())
    # Node indices shifted by the one-cell (k-node) margin.
    col = c0.astype(np.int64) + k
    row = r0.astype(np.int64) + k
    if k <= 2:  # every phase at once: one bincount over all the nodes
        width = f1 * k

        def every_phase() -> Iterator[tuple[int, int, np.ndarray]]:
            upper = row * width + col
            index = upper + np.array([[0], [1], [width], [width + 1]])
            share = np.empty(index.shape)
            np.multiply(gu, gv, out=share[0])
            np.multiply(fu, gv, out=share[1])
            np.multiply(gu, fv, out=share[2])
            np.multiply(fu, fv, out=share[3])
            binned = np.bincount(index.ravel(), weights=share.ravel(), minlength=f0 * k * width)
            nodes = binned.reshape(f0, k, f1, k)
            for a in range(k):
                for b in range(k):
                    yield a, b, nodes[:, a, :, b]  # strided: the FFT reads it without a copy

        return total, every_phase()
    # Group the points by the phase of their upper-left node (a radix sort of small integers).
    rcell, rphase = np.divmod(row, k)
    ccell, cphase = np.divmod(col, k)
    key = rphase * k + cphase
    order = np.argsort(key.astype(np.uint16), kind="stable")
    rcell, ccell, gu, fu, gv, fv = (arr[order] for arr in (rcell, ccell, gu, fu, gv, fv))
    ends = np.r_[0, np.cumsum(np.bincount(key, minlength=k * k))]

    def one_phase(a: int, b: int) -> np.ndarray:
        index, share = [], []
        # The corners of the points whose upper-left, upper-right, lower-left and lower-right
        # nodes fall on phase (a, b); a corner one node right of (below) the last phase is in
        # the next cell.
        for da, db, wa, wb in ((0, 0, gv, gu), (0, 1, gv, fu), (1, 0, fv, gu), (1, 1, fv, fu)):
            g = (a - da) % k * k + (b - db) % k
            sl = slice(ends[g], ends[g + 1])
            index.append((rcell[sl] + (da and a == 0)) * f1 + ccell[sl] + (db and b == 0))
            share.append(wa[sl] * wb[sl])
        binned = np.bincount(np.concatenate(index), np.concatenate(share), minlength=f0 * f1)
        return binned.reshape(f0, f1)

    return total, ((a, b, one_phase(a, b)) for a in range(k) for b in range(k))


def _phase_offsets(oversample: int) -> np.ndarray:
    """Offsets (in cells) of the sub-cell binning nodes from the cell centre, symmetric."""
    return (np.arange(oversample) - (oversample - 1) / 2.0) / oversample


def _kernel_stencils(
    kernel: str, bandwidth: float, cell_size: float, truncate: float, oversample: int
) -> np.ndarray:
    """Kernel from each sub-cell node to the surrounding cell centres, ``(k, k, 2m+1, 2m+1)``.

    ``stencils[a, b, m + di, m + dj]`` is the kernel at the centre of the cell ``di`` rows and
    ``dj`` columns away from the sub-cell node of row phase ``a`` and column phase ``b``. Each
    stencil is rescaled to sum to one so that every point's weight is kept exactly.
    """
    phases = _phase_offsets(oversample)
    m = int(math.ceil(_support(kernel, bandwidth, truncate) / cell_size + phases[-1]))
    offsets = np.arange(-m, m + 1, dtype=np.float64)
    d = offsets[None, :] - phases[:, None]  # (k, 2m+1): target minus node, in cells
    r = cell_size * np.hypot(d[:, None, :, None], d[None, :, None, :])
    stencils = kernel_profile(r, bandwidth=bandwidth, kernel=kernel)
    if kernel == "gaussian":
        stencils[r > truncate * bandwidth] = 0.0
    return stencils / stencils.sum(axis=(2, 3), keepdims=True)


def _polyphase_convolve(
    phases: Iterable[tuple[int, int, np.ndarray]],
    stencils: np.ndarray,
    shape: tuple[int, int],
    workers: int,
) -> np.ndarray:
    """Sum over phases ``(a, b, grid)`` of the convolution of ``grid`` by ``stencils[a, b]``.

    The grids come from :func:`_binned_phases`: row and column ``j`` hold grid cell ``j - 1``.
    The products are accumulated in the frequency domain, so ``k * k`` phases cost ``k * k``
    forward transforms of the grid and a single inverse one; a stencil's spectrum costs about
    half a transform of the grid (an FFT of its ``2m + 1`` rows, then of the columns). Returns
    the ``shape`` cells of the grid that start ``m`` cells in, which then hold every node
    within the stencil's reach.
    """
    size = stencils.shape[-1]
    rows, cols = shape
    acc = None
    for a, b, grid in phases:  # k * k sub-cell phases (k is small), not points or cells
        f0, f1 = grid.shape
        spec = rfft2(grid, workers=workers)
        spec *= fft(
            rfft(stencils[a, b], n=f1, axis=1, workers=workers), n=f0, axis=0, workers=workers
        )
        if acc is None:
            acc = spec
        else:
            acc += spec
    # Output cell i sums array rows i + 1 .. i + 2m + 1 (cells i - m .. i + m): no wrap-around,
    # since the transform is at least as long as the grid and its margins.
    full = irfft2(acc, s=(f0, f1), workers=workers)
    return full[size : size + rows, size : size + cols]


def _density_values(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    *,
    transform: Affine,
    shape: tuple[int, int],
    cell_size: float,
    bandwidth: float,
    kernel: str,
    truncate: float,
    oversample: int,
    workers: int,
) -> np.ndarray:
    """float32 density (weight per km2) on the grid, before the study-area mask."""
    rows, cols = shape
    k = int(oversample)
    stencils = _kernel_stencils(kernel, bandwidth, cell_size, truncate, k)
    m = stencils.shape[-1] // 2
    # Bin onto sub-cell nodes (k per cell side) of the output grid padded by the kernel's reach;
    # the convolution then gives every output cell all its contributions.
    padded = (rows + 2 * m, cols + 2 * m)
    fshape = (
        next_fast_len(padded[0] + 2, real=True),
        next_fast_len(padded[1] + 2, real=True),
    )
    s0 = _phase_offsets(k)[0]
    total, phases = _binned_phases(
        x,
        y,
        w,
        x_first=transform.c + (0.5 - m + s0) * cell_size,
        y_first=transform.f - (0.5 - m + s0) * cell_size,
        cell_size=cell_size,
        oversample=k,
        shape=padded,
        fshape=fshape,
    )
    if total > 0:
        dens = _polyphase_convolve(phases, stencils, shape, workers)
        # FFT round-off leaves values of order eps * total * max(stencil) where the exact result
        # is zero (and slightly negative ones); clear them so empty cells are exactly 0.
        dens[dens < 64.0 * np.finfo(np.float64).eps * total * stencils.max()] = 0.0
    else:
        dens = np.zeros(shape, dtype=np.float64)
    dens *= _M2_PER_KM2 / (cell_size * cell_size)
    return dens.astype(np.float32)


def kernel_density(
    x: Any,
    y: Any,
    *,
    weights: Any | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    cell_size: float = 50.0,
    bandwidth: float | None = None,
    kernel: str = "quartic",
    mask_geometry: Any | None = None,
    all_touched: bool = False,
    units: str = "records per km2",
    min_bandwidth: float = 100.0,
    truncate: float = 5.0,
    oversample: int | None = None,
    workers: int = 1,
) -> DensityGrid:
    """Binned (FFT) kernel density surface of points, in weight per km2.

    Parameters
    ----------
    x, y
        Point coordinates in EPSG:27700 metres. Rows with missing coordinates (or weights) are
        ignored. Points outside ``bounds`` still contribute to cells within the kernel's reach.
    weights
        Optional non-negative weight per point (for example Crime Harm Index days).
    bounds
        ``(xmin, ymin, xmax, ymax)`` of the output, expanded outwards to multiples of
        ``cell_size``. Defaults to the bounds of ``mask_geometry``, else of the points.
    cell_size
        Cell side in metres.
    bandwidth
        Bandwidth in metres (see the module docstring for each kernel's convention); ``None``
        uses :func:`default_bandwidth` for these points, weights and kernel. Must be at least
        one cell; see the module docstring for the accuracy at each bandwidth in cells.
    kernel
        ``"quartic"`` (ArcGIS/QGIS), ``"gaussian"`` or ``"epanechnikov"`` (scikit-learn).
    mask_geometry
        Study area (shapely geometry, sequence of geometries, GeoSeries or GeoDataFrame in
        EPSG:27700 or with a CRS to convert from). Cells whose centre falls outside are ``NaN``.
    all_touched
        Keep every cell the study area touches rather than only those whose centre is inside.
    units
        Text describing the values, stored on the grid.
    min_bandwidth
        Floor passed to :func:`default_bandwidth` when ``bandwidth`` is ``None``.
    truncate
        Gaussian kernels are cut at ``truncate * bandwidth``.
    oversample
        Points are linearly binned onto ``oversample`` x ``oversample`` sub-cell nodes per cell,
        each convolved with the kernel sampled from its own position (polyphase), which cuts the
        binning error roughly by ``oversample ** 2`` (by ``oversample`` at the edge of the
        Epanechnikov kernel) for ``oversample ** 2`` FFTs. ``None`` takes the kernel's
        :data:`DEFAULT_OVERSAMPLE`.
    workers
        Threads for the FFTs (``scipy.fft`` ``workers``; -1 for every core).

    Returns
    -------
    DensityGrid
        float32 surface; summed times the cell area in km2 it gives the total weight of the
        points (less what lies beyond the grid or outside the mask).
    """
    _check_kernel(kernel)
    if cell_size <= 0:
        raise ValueError("cell_size must be positive")
    k = _resolve_oversample(oversample, kernel)
    x, y, w = _clean_points(x, y, weights)
    bandwidth = _resolve_bandwidth(bandwidth, x, y, w, kernel, cell_size, min_bandwidth)
    if bounds is None:
        if mask_geometry is not None:
            geoms = _as_geometries(mask_geometry)
            bounds = tuple(shapely.total_bounds(np.asarray(geoms, dtype=object)))
        elif x.size:
            bounds = (x.min(), y.min(), x.max(), y.max())
        else:
            raise ValueError("bounds are needed when there are no points and no mask")
        if bounds[2] <= bounds[0] or bounds[3] <= bounds[1]:
            bounds = (bounds[0], bounds[1], bounds[0] + cell_size, bounds[1] + cell_size)
    transform, shape = aligned_grid(bounds, cell_size=cell_size)
    inside = None
    if mask_geometry is not None:
        inside = _study_area_mask(mask_geometry, transform, shape, all_touched=all_touched)
    return _grid(
        x,
        y,
        w,
        transform=transform,
        shape=shape,
        inside=inside,
        cell_size=cell_size,
        bandwidth=bandwidth,
        kernel=kernel,
        truncate=truncate,
        oversample=k,
        workers=workers,
        units=units,
    )


def _resolve_oversample(oversample: int | None, kernel: str) -> int:
    if oversample is None:
        return DEFAULT_OVERSAMPLE[kernel]
    if int(oversample) != oversample or oversample < 1:
        raise ValueError("oversample must be a positive integer")
    return int(oversample)


def _resolve_bandwidth(
    bandwidth: float | None,
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    kernel: str,
    cell_size: float,
    min_bandwidth: float,
) -> float:
    if bandwidth is None:
        bandwidth = default_bandwidth(x, y, weights=w, kernel=kernel, min_bandwidth=min_bandwidth)
    bandwidth = float(bandwidth)
    if not bandwidth >= cell_size:
        raise ValueError(
            f"bandwidth {bandwidth} m is smaller than one cell ({cell_size} m); "
            "use a smaller cell_size or a larger bandwidth"
        )
    return bandwidth


def _grid(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    *,
    transform: Affine,
    shape: tuple[int, int],
    inside: np.ndarray | None,
    cell_size: float,
    bandwidth: float,
    kernel: str,
    truncate: float,
    oversample: int,
    workers: int,
    units: str,
) -> DensityGrid:
    """The :class:`DensityGrid` of cleaned points on a given grid and study-area mask."""
    values = _density_values(
        x,
        y,
        w,
        transform=transform,
        shape=shape,
        cell_size=cell_size,
        bandwidth=bandwidth,
        kernel=kernel,
        truncate=truncate,
        oversample=oversample,
        workers=workers,
    )
    if inside is not None:
        values[~inside] = np.nan
    return DensityGrid(
        values=values,
        transform=transform,
        cell_size=float(cell_size),
        bandwidth=bandwidth,
        kernel=kernel,
        units=units,
    )


def density_surfaces(
    points: pd.DataFrame,
    *,
    groups: Iterable[str] | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    cell_size: float = 50.0,
    bandwidth: float | Mapping[str, float] | None = None,
    kernel: str = "quartic",
    mask_geometry: Any | None = None,
    all_touched: bool = False,
    min_bandwidth: float = 100.0,
    truncate: float = 5.0,
    oversample: int | None = None,
    workers: int = 1,
    total_key: str = "total_harm",
    include_total: bool = True,
) -> dict[str, DensityGrid]:
    """Record-density surface per crime group and a harm-weighted surface of all records.

    Every surface is on one grid, so the study-area mask is rasterised once for all of them;
    each surface equals :func:`kernel_density` of its points with the same arguments.

    Parameters
    ----------
    points
        Point frame with float ``x``, ``y`` (EPSG:27700), ``crime_group`` and ``harm``.
    groups
        Crime groups to map; default every group present, in sorted order.
    bounds
        Output bounds; default the mask's bounds, else the extent of all points, so that every
        surface shares one grid.
    cell_size, kernel, mask_geometry, all_touched, min_bandwidth, truncate, oversample, workers
        As for :func:`kernel_density`.
    bandwidth
        One bandwidth for every surface, a mapping from surface key (group id or ``total_key``)
        to bandwidth, or ``None``: each surface then gets :func:`default_bandwidth` of its own
        points (and weights, for the harm surface); keys missing from a mapping do too.
    total_key
        Key of the harm-weighted surface.
    include_total
        Add the harm-weighted surface of all points.

    Returns
    -------
    dict of str to DensityGrid
        Group surfaces in ``"records per km2"`` and ``total_key`` in ``"harm days per km2"``.
    """
    x = points["x"].to_numpy(dtype=np.float64)
    y = points["y"].to_numpy(dtype=np.float64)
    codes, labels = pd.factorize(points["crime_group"].astype("string"))  # missing: -1
    code_of = {str(g): i for i, g in enumerate(labels)}
    if groups is None:
        groups = sorted(code_of)
    if bounds is None:
        if mask_geometry is not None:
            geoms = _as_geometries(mask_geometry)
            bounds = tuple(shapely.total_bounds(np.asarray(geoms, dtype=object)))
        else:
            ok = np.isfinite(x) & np.isfinite(y)
            if not ok.any():
                raise ValueError("bounds are needed when there are no located points and no mask")
            bounds = (x[ok].min(), y[ok].min(), x[ok].max(), y[ok].max())
            if bounds[2] <= bounds[0] or bounds[3] <= bounds[1]:
                bounds = (bounds[0], bounds[1], bounds[0] + cell_size, bounds[1] + cell_size)

    _check_kernel(kernel)
    if cell_size <= 0:
        raise ValueError("cell_size must be positive")
    k = _resolve_oversample(oversample, kernel)
    # One grid and one study-area mask for every surface.
    transform, shape = aligned_grid(bounds, cell_size=cell_size)
    inside = None
    if mask_geometry is not None:
        inside = _study_area_mask(mask_geometry, transform, shape, all_touched=all_touched)

    def _surface(sel: np.ndarray | None, weights: Any | None, key: str, units: str) -> DensityGrid:
        px, py, pw = _clean_points(
            x if sel is None else x[sel], y if sel is None else y[sel], weights
        )
        bw = bandwidth.get(key) if isinstance(bandwidth, Mapping) else bandwidth
        bw = _resolve_bandwidth(bw, px, py, pw, kernel, cell_size, min_bandwidth)
        return _grid(
            px,
            py,
            pw,
            transform=transform,
            shape=shape,
            inside=inside,
            cell_size=cell_size,
            bandwidth=bw,
            kernel=kernel,
            truncate=truncate,
            oversample=k,
            workers=workers,
            units=units,
        )

    out: dict[str, DensityGrid] = {}
    for g in groups:  # one surface per group
        sel = codes == code_of[g] if g in code_of else np.zeros(codes.size, dtype=bool)
        out[g] = _surface(sel, None, g, "records per km2")
    if include_total:
        harm = points["harm"].to_numpy(dtype=np.float64)
        out[total_key] = _surface(None, harm, total_key, "harm days per km2")
    return out


def exact_density(
    x: Any,
    y: Any,
    at_x: Any,
    at_y: Any,
    *,
    weights: Any | None = None,
    bandwidth: float,
    kernel: str = "quartic",
    chunk_pairs: int = 4_000_000,
) -> np.ndarray:
    """Exact kernel sum at query locations, in weight per km2 (reference for tests).

    Parameters
    ----------
    x, y
        Point coordinates in metres.
    at_x, at_y
        Query coordinates in metres.
    weights
        Optional non-negative weight per point.
    bandwidth
        Bandwidth in metres, in the kernel's convention.
    kernel
        One of :data:`KERNELS` (Gaussian not truncated).
    chunk_pairs
        Largest number of point-query pairs held in memory at once.

    Returns
    -------
    numpy.ndarray
        Density at each query location.
    """
    x, y, w = _clean_points(x, y, weights)
    if w is None:
        w = np.ones_like(x)
    qx = np.asarray(at_x, dtype=np.float64).ravel()
    qy = np.asarray(at_y, dtype=np.float64).ravel()
    out = np.zeros(qx.size)
    step = max(1, chunk_pairs // max(x.size, 1))
    for s in range(0, qx.size, step):  # chunks of queries, each fully vectorised
        dx = qx[s : s + step, None] - x[None, :]
        dy = qy[s : s + step, None] - y[None, :]
        out[s : s + step] = kernel_profile(np.hypot(dx, dy), bandwidth=bandwidth, kernel=kernel) @ w
    return out * _M2_PER_KM2


def compare_with_sklearn(
    x: Any,
    y: Any,
    grid: DensityGrid,
    *,
    weights: Any | None = None,
    sample_cells: int = 1000,
    seed: int = 0,
    rel_floor: float = 0.05,
) -> SklearnComparison:
    """Check a surface against scikit-learn's exact ``KernelDensity`` at sampled cell centres.

    Two samples of ``sample_cells`` valid cells are drawn with ``numpy.random.default_rng(seed)``:
    one uniformly over the grid, to time scikit-learn (seconds per cell, to extrapolate to the
    full grid), and one among cells at or above ``rel_floor`` times the grid maximum, where the
    relative error is measured. scikit-learn's density (per m2, weights normalised) is scaled by
    the total weight and by 1e6 m2 per km2.

    Parameters
    ----------
    x, y, weights
        The points (and weights) the grid was computed from.
    grid
        Output of :func:`kernel_density` with the ``"gaussian"`` or ``"epanechnikov"`` kernel.
    sample_cells
        Cells per sample.
    seed
        Seed for the cell samples.
    rel_floor
        Only cells at or above this fraction of the maximum enter the error.

    Returns
    -------
    SklearnComparison
        Maximum relative error, scikit-learn seconds per cell and the sample sizes.
    """
    from sklearn.neighbors import KernelDensity

    if grid.kernel not in ("gaussian", "epanechnikov"):
        raise ValueError(f"scikit-learn has no {grid.kernel!r} kernel; use exact_density")
    x, y, w = _clean_points(x, y, weights)
    total = float(x.size if w is None else w.sum())
    kde = KernelDensity(kernel=grid.kernel, bandwidth=grid.bandwidth)
    kde.fit(np.column_stack([x, y]), sample_weight=w)
    xs, ys = grid.cell_centres()
    vals = grid.values
    rng = np.random.default_rng(seed)

    def _sklearn(flat: np.ndarray) -> tuple[np.ndarray, float]:
        r, c = np.divmod(flat, vals.shape[1])
        query = np.column_stack([xs[c], ys[r]])
        t0 = time.perf_counter()
        dens = np.exp(kde.score_samples(query)) * total * _M2_PER_KM2
        return dens, time.perf_counter() - t0

    valid = np.flatnonzero(np.isfinite(vals.ravel()))
    timed = rng.choice(valid, size=min(sample_cells, valid.size), replace=False)
    _, seconds = _sklearn(timed)
    peak = float(np.nanmax(vals)) if valid.size else 0.0
    high = valid[vals.ravel()[valid] >= rel_floor * peak] if peak > 0 else valid[:0]
    chosen = rng.choice(high, size=min(sample_cells, high.size), replace=False)
    ref, _ = _sklearn(chosen)
    ours = vals.ravel()[chosen].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(ours - ref) / ref
    max_rel = float(np.nanmax(rel)) if chosen.size else float("nan")
    return SklearnComparison(
        max_rel_error=max_rel,
        sklearn_seconds_per_cell=seconds / max(timed.size, 1),
        n_error_cells=int(chosen.size),
        n_timed_cells=int(timed.size),
    )
