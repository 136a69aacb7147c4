"""Spatial weights between LSOAs for hot-spot statistics.

:func:`build_weights` turns an LSOA GeoDataFrame into a binary :class:`libpysal.weights.W`
whose ids are the LSOA codes in the frame's order, together with a :class:`WeightsReport`
that records what was done: the method, the distance band actually used, the LSOAs that had
no neighbour (islands) and what they were attached to, the LSOAs on the edge of the study
area, and the spread of neighbour counts. The report is meant for the run log and the
methods note of the partnership's assessment.

Four conceptualisations are offered, as in ArcGIS's *Hot Spot Analysis*:

``"queen"``
    Polygons sharing at least one boundary point ("contiguity edges corners").
``"rook"``
    Polygons sharing a boundary segment ("contiguity edges only").
``"distance_band"``
    Centroids within ``threshold`` metres (fixed distance band). The default threshold is the
    smallest distance that gives every LSOA at least one neighbour (the largest
    nearest-neighbour distance between centroids), as ArcGIS's default.
``"knn"``
    The ``k`` nearest centroids. Not symmetric: ``j`` may be among ``i``'s nearest without the
    converse.

All weights are binary (1 for a neighbour); the statistics in :mod:`priority_index.hotspots`
add the self-weight (Gi*) or row-standardise (local Moran) themselves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import shapely
from libpysal.weights import WSP, W
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

Method = Literal["queen", "rook", "distance_band", "knn"]

__all__ = ["WeightsReport", "build_weights", "min_threshold_distance"]


@dataclass
class WeightsReport:
    """What :func:`build_weights` built, for logs and the methods note.

    Attributes
    ----------
    method
        Conceptualisation of spatial relationships.
    n
        Number of LSOAs.
    threshold
        Distance band in metres (``"distance_band"`` only, else ``None``).
    threshold_is_default
        Whether ``threshold`` was computed (smallest band leaving no island) rather than given.
    k
        Number of nearest neighbours (``"knn"`` only, else ``None``).
    islands
        LSOA codes that had no neighbour under the chosen method.
    island_links
        ``{island code: code of the LSOA it was attached to}`` when islands were fixed.
    edge
        LSOA codes touching the outer boundary of the study area (or of a hole in it). They
        have fewer neighbours than interior LSOAs; Gi* accounts for this through each LSOA's
        own neighbour count, but their results rest on less information.
    mean_neighbors, min_neighbors, max_neighbors
        Neighbour counts after any island fix (self not counted).
    n_components
        Connected components of the neighbour graph (1 = every LSOA reachable).
    """

    method: str
    n: int
    threshold: float | None = None
    threshold_is_default: bool = False
    k: int | None = None
    islands: list[str] = field(default_factory=list)
    island_links: dict[str, str] = field(default_factory=dict)
    edge: list[str] = field(default_factory=list)
    mean_neighbors: float = 0.0
    min_neighbors: int = 0
    max_neighbors: int = 0
    n_components: int = 1

    def as_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-serialisable dict (adds ``n_islands`` and ``n_edge``).

        Returns
        -------
        dict
            Field name to value, with plain Python types.
        """
        out = asdict(self)
        out["n_islands"] = len(self.islands)
        out["n_edge"] = len(self.edge)
        return out


def min_threshold_distance(coords: np.ndarray) -> float:
    """Smallest distance band that gives every point at least one neighbour.

    Parameters
    ----------
    coords
        ``(n, 2)`` point coordinates (metres, EPSG:27700), ``n >= 2``.

    Returns
    -------
    float
        The largest nearest-neighbour distance.
    """
    coords = np.asarray(coords, dtype=float)
    if len(coords) < 2:
        raise ValueError("need at least two points for a distance band")
    dist, _ = cKDTree(coords).query(coords, k=2)
    return float(dist[:, 1].max())


def _pairs_to_matrix(n: int, i: np.ndarray, j: np.ndarray) -> sparse.csr_matrix:
    """Binary CSR adjacency from (i, j) position pairs; duplicates and self-pairs dropped."""
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    keep = i != j
    key = np.unique(i[keep] * n + j[keep])
    data = np.ones(len(key), dtype=float)
    return sparse.csr_matrix((data, (key // n, key % n)), shape=(n, n))


def _contiguity_pairs(geoms: np.ndarray, *, rook: bool) -> tuple[np.ndarray, np.ndarray]:
    """Queen or rook contiguity pairs (both directions) between polygons."""
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    if rook:
        # A shared segment: the boundaries' intersection has positive length.
        shared = shapely.intersection(shapely.boundary(geoms[i]), shapely.boundary(geoms[j]))
        keep = shapely.length(shared) > 0
        i, j = i[keep], j[keep]
    return np.concatenate([i, j]), np.concatenate([j, i])


def _edge_mask(geoms: np.ndarray) -> np.ndarray:
    """Polygons touching the boundary of the union of all polygons."""
    outline = shapely.boundary(shapely.union_all(geoms))
    return shapely.intersects(geoms, outline)


def build_weights(
    lsoas: gpd.GeoDataFrame,
    *,
    method: Method = "queen",
    k: int = 8,
    threshold: float | None = None,
    fix_islands: bool = True,
    find_edges: bool = True,
) -> tuple[W, WeightsReport]:
    """Binary spatial weights between LSOAs, with a report on islands and edges.

    Parameters
    ----------
    lsoas
        LSOA polygons in a projected CRS (EPSG:27700), indexed by unique LSOA code.
    method
        ``"queen"`` or ``"rook"`` contiguity, ``"distance_band"`` between centroids, or
        ``"knn"`` (``k`` nearest centroids).
    k
        Neighbours per LSOA for ``"knn"``.
    threshold
        Distance band in metres for ``"distance_band"``. ``None`` uses the smallest band that
        leaves no LSOA without a neighbour (:func:`min_threshold_distance` of the centroids,
        plus one part in 10^9 against rounding); the value used is in the report.
    fix_islands
        Attach each LSOA with no neighbour to its nearest LSOA (smallest polygon-to-polygon
        distance), in both directions, so that no row of the weights is empty. When false,
        islands are left empty (and still reported).
    find_edges
        Report the LSOAs touching the outline of the study area (costs a polygon union).

    Returns
    -------
    w : libpysal.weights.W
        Binary weights (transform ``"O"``), ids = LSOA codes in the frame's order.
    report : WeightsReport
        Method, threshold, islands and their links, edge LSOAs, neighbour counts, components.
    """
    if method not in ("queen", "rook", "distance_band", "knn"):
        raise ValueError(f"unknown weights method {method!r}")
    if not lsoas.index.is_unique:
        raise ValueError("LSOA index must be unique")
    if lsoas.crs is not None and lsoas.crs.is_geographic:
        raise ValueError("weights need a projected CRS (metres), e.g. EPSG:27700")
    n = len(lsoas)
    if n < 2:
        raise ValueError("need at least two LSOAs")
    geoms = np.asarray(lsoas.geometry.values)
    if shapely.is_missing(geoms).any() or shapely.is_empty(geoms).any():
        raise ValueError("LSOA geometries must not be missing or empty")
    ids = [str(v) for v in lsoas.index]

    report = WeightsReport(method=method, n=n)
    if method in ("queen", "rook"):
        i, j = _contiguity_pairs(geoms, rook=method == "rook")
    else:
        coords = shapely.get_coordinates(shapely.centroid(geoms))
        tree = cKDTree(coords)
        if method == "distance_band":
            if threshold is None:
                threshold = min_threshold_distance(coords) * (1 + 1e-9)
                report.threshold_is_default = True
            if threshold <= 0:
                raise ValueError("threshold must be positive")
            pairs = tree.query_pairs(r=float(threshold), output_type="ndarray")
            i = np.concatenate([pairs[:, 0], pairs[:, 1]])
            j = np.concatenate([pairs[:, 1], pairs[:, 0]])
            report.threshold = float(threshold)
        else:
            if not 1 <= k < n:
                raise ValueError(f"k must be between 1 and n - 1 = {n - 1}")
            # k + 1 because each point is its own nearest; drop self afterwards (ties with
            # coincident centroids may put self second, so ask for one spare).
            _, nn = tree.query(coords, k=min(k + 2, n))
            not_self = nn != np.arange(n)[:, None]
            order = np.argsort(~not_self, axis=1, kind="stable")
            nn = np.take_along_axis(nn, order, axis=1)[:, :k]
            i = np.repeat(np.arange(n), k)
            j = nn.ravel()
            report.k = int(k)

    adj = _pairs_to_matrix(n, i, j)
    card = np.diff(adj.indptr)
    island_pos = np.flatnonzero(card == 0)
    report.islands = [ids[p] for p in island_pos]
    if fix_islands and len(island_pos):
        gs = gpd.GeoSeries(geoms, crs=lsoas.crs)
        src, dst = gs.sindex.nearest(geoms[island_pos], return_all=False, exclusive=True)
        near = np.empty(len(island_pos), dtype=np.int64)
        near[src] = dst
        report.island_links = {ids[a]: ids[b] for a, b in zip(island_pos, near, strict=True)}
        adj = adj + _pairs_to_matrix(
            n, np.concatenate([island_pos, near]), np.concatenate([near, island_pos])
        )
        adj.data[:] = 1.0
        card = np.diff(adj.indptr)

    w = WSP(adj, id_order=ids).to_W(silence_warnings=True)
    report.mean_neighbors = float(card.mean())
    report.min_neighbors = int(card.min())
    report.max_neighbors = int(card.max())
    report.n_components = int(connected_components(adj, directed=True, connection="weak")[0])
    if find_edges:
        report.edge = [ids[p] for p in np.flatnonzero(_edge_mask(geoms))]
    return w, report
