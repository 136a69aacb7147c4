"""The Dask engine: ingest (read, validate, join to LSOAs), aggregation and density on a cluster.

When one machine is not enough (every force, many years, many surfaces), ``[engine] kind =
"dask"`` runs the heavy stages as Dask tasks, one task per police.uk file (one month of one
force), on a :class:`dask.distributed.LocalCluster` or on a running scheduler. Results equal the
local engine's exactly: the same points in the same order, the same rejected records, the same
tallies and the same density surfaces.

How the police.uk reader stays exact
------------------------------------
Each task reads, parses and validates one file with :func:`police_uk._parse` and
:func:`police_uk._validate`, exactly as the local reader does, but with an empty set of Crime
IDs seen before and a recorder in place of the quarantine. The only dependence between files is
the duplicate Crime ID check: the local reader rejects a row whose Crime ID was kept from an
earlier file. After gathering, the client walks the files in order with the Crime IDs kept so
far; a file holding one of them is validated again (as a task, in parallel with the others)
with exactly those IDs as "seen before", which gives the local reader's result for that file by
construction. Finally the recorded quarantine calls are replayed into the caller's
:class:`~priority_index.sources.quarantine.Quarantine` in file order, so its rows and tallies
are those of the local run.

Dask is an optional dependency (``pip install 'priority-index[dask]'``); this module imports it
only when a cluster is used.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from . import density
from .errors import InputError
from .sources import police_uk
from .sources.quarantine import Quarantine

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "COUNT_KEYS",
    "client_for",
    "density_surfaces_dask",
    "make_client",
    "read_police_uk_dask",
]

#: Keys of the record counts aggregated from the points (as ``pipeline.ingest`` groups them).
COUNT_KEYS: tuple[str, ...] = ("lsoa_code", "crime_group", "period")

_NEEDS_DASK = (
    "engine.kind = 'dask' needs Dask: pip install 'priority-index[dask]' "
    "(dask, distributed) on the machine running the pipeline and on every worker"
)


# --------------------------------------------------------------------------- client
def make_client(
    kind: str = "dask",
    scheduler: str | None = None,
    n_workers: int = 2,
    *,
    threads_per_worker: int = 1,
    processes: bool = True,
    dashboard_address: str = ":0",
) -> Client | None:
    """A Dask client for ``[engine]``, or ``None`` for the local engine.

    Parameters
    ----------
    kind
        ``"local"`` (returns ``None``: run in this process) or ``"dask"``.
    scheduler
        Address of a running scheduler (``"tcp://host:8786"``); ``None`` starts a
        :class:`~dask.distributed.LocalCluster` on this machine, closed with the client.
    n_workers, threads_per_worker, processes
        Shape of the LocalCluster (ignored with ``scheduler``). One thread per worker suits
        these tasks (pandas and GEOS hold the GIL for much of their work).
    dashboard_address
        Dashboard (and HTTP) address of the LocalCluster: ``":0"`` a free port, ``":8787"``
        the usual one (the dashboard's plots need ``bokeh``).

    Returns
    -------
    distributed.Client or None
        Close it with ``client.close()`` (or use :func:`client_for`).
    """
    if kind == "local":
        return None
    if kind != "dask":
        raise ValueError(f"unknown engine kind {kind!r}; expected 'local' or 'dask'")
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_NEEDS_DASK) from exc
    if scheduler:
        return Client(scheduler)
    return Client(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=processes,
        dashboard_address=dashboard_address,
    )


@contextmanager
def client_for(
    kind: str = "local", scheduler: str | None = None, n_workers: int = 2, **kwargs: Any
) -> Iterator[Client | None]:
    """:func:`make_client` as a context manager: the client (or ``None``), closed on exit.

    A LocalCluster started here is shut down with it; a remote scheduler and its workers are
    left running (only this connection is closed).
    """
    client = make_client(kind, scheduler, n_workers, **kwargs)
    try:
        yield client
    finally:
        if client is not None:
            client.close()


def _scatter(client: Client, obj: Any) -> Any:
    """One future for ``obj`` on every worker (a list would otherwise be scattered per item)."""
    return client.scatter([obj], broadcast=True, hash=False)[0]


# --------------------------------------------------------------------------- police.uk
class _Context:
    """What every file task needs, scattered once; the STRtree is built once per worker."""

    _lock = threading.Lock()

    def __init__(
        self,
        study: gpd.GeoDataFrame,
        *,
        source: str,
        period_of_month: Mapping[str, str],
        crime_groups: Mapping[str, str],
        tolerance_m: float,
        code_map: Mapping[str, str] | None,
        known_codes: set[str] | None,
        with_counts: bool,
    ) -> None:
        self.study_codes = pd.Index(study.index)
        self.polys = study.geometry.to_numpy()
        self.source = source
        self.period_of_month = dict(period_of_month)
        self.crime_groups = dict(crime_groups)
        self.tolerance_m = float(tolerance_m)
        self.code_map = dict(code_map or {})
        self.known_codes = known_codes
        self.with_counts = with_counts
        self._tree: shapely.STRtree | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tree": None}

    def tree(self) -> shapely.STRtree:
        with self._lock:  # tasks on several threads of one worker share this object
            if self._tree is None:
                tree = shapely.STRtree(self.polys)
                tree.query(shapely.points(0.0, 0.0))  # GEOS builds the tree on first query
                self._tree = tree
            return self._tree


class _Recorder:
    """Stands in for the Quarantine inside a task: records ``reject*`` calls for replay."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        if not (name.startswith("reject") and callable(getattr(Quarantine, name, None))):
            raise AttributeError(
                f"the Dask engine replays Quarantine.reject* calls only; _validate used {name!r}"
            )

        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))

        return record

    def replay(self, quarantine: Quarantine) -> None:
        for name, args, kwargs in self.calls:
            getattr(quarantine, name)(*args, **kwargs)

    def crime_ids(self) -> set[str]:
        """Crime IDs of the rows rejected one by one (summaries carry none)."""
        out: set[str] = set()
        for _, args, kwargs in self.calls:
            for v in (*args, *kwargs.values()):
                if isinstance(v, pd.DataFrame) and "crime_id" in v:
                    out.update(v["crime_id"].astype(str).tolist())
        out.discard("")
        return out


@dataclass
class _FileResult:
    rows_read: int = 0
    points: pd.DataFrame | None = None
    recorder: _Recorder = field(default_factory=_Recorder)
    counts: pd.DataFrame | None = None
    kept_ids: set[str] = field(default_factory=set)
    other_ids: set[str] = field(default_factory=set)
    error: dict | None = None  # InputError's fields (it does not pickle)


def _count(points: pd.DataFrame) -> pd.DataFrame:
    """Records per LSOA, crime group and period, as ``pipeline.ingest`` counts them."""
    agg = points.groupby(list(COUNT_KEYS), as_index=False).size().rename(columns={"size": "count"})
    agg["count"] = agg["count"].astype(float)
    return agg


def _read_one(ctx: _Context, mf: police_uk.MonthFile, seen: set[str] | None) -> _FileResult:
    """Read, parse and validate one file (the body of the local reader's loop)."""
    out = _FileResult()
    try:
        frame, lines, malformed = police_uk._parse(mf.name, mf.read())
    except InputError as exc:
        out.error = dict(
            file=exc.file,
            problem=exc.problem,
            row=exc.row,
            column=exc.column,
            expected=exc.expected,
        )
        return out
    out.rows_read = len(frame) + len(malformed)
    q = out.recorder
    if malformed:
        q.reject(
            ctx.source,
            mf.name,
            "malformed_row",
            pd.DataFrame(index=range(len(malformed))),
            lines=[ln for ln, _ in malformed],
            detail=[f"{len(t.split(','))} fields: {t[:120]}" for _, t in malformed],
        )
    kept = police_uk._validate(
        frame,
        lines,
        mf.name,
        source=ctx.source,
        quarantine=q,  # type: ignore[arg-type]
        study_codes=ctx.study_codes,
        polys=ctx.polys,
        tree=ctx.tree(),
        period_of_month=ctx.period_of_month,
        crime_groups=ctx.crime_groups,
        tolerance_m=ctx.tolerance_m,
        code_map=ctx.code_map,
        known_codes=ctx.known_codes,
        seen_ids=set(seen or ()),
    )
    out.points = kept
    ids = kept["crime_id"].astype(str)
    out.kept_ids = set(ids[ids != ""].tolist())
    out.other_ids = q.crime_ids() - out.kept_ids
    if ctx.with_counts and len(kept):
        out.counts = _count(kept)
    return out


def read_police_uk_dask(
    path: Path,
    *,
    client: Client,
    study: gpd.GeoDataFrame,
    period_of_month: Mapping[str, str],
    crime_groups: Mapping[str, str],
    quarantine: Quarantine,
    source: str,
    tolerance_m: float = 150.0,
    code_map: Mapping[str, str] | None = None,
    known_codes: set[str] | None = None,
    progress: Callable[[str], None] | None = None,
    with_counts: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`police_uk.read_police_uk` with one Dask task per file; the same results.

    Parameters
    ----------
    path, study, period_of_month, crime_groups, quarantine, source, tolerance_m, code_map,
    known_codes, progress
        As for :func:`~priority_index.sources.police_uk.read_police_uk`. Workers must be able
        to read ``path`` (a shared or identically mounted folder, glob or zip).
    client
        A :class:`distributed.Client` (see :func:`make_client`).
    with_counts
        Also return the records per ``lsoa_code``, ``crime_group`` and ``period`` (float
        ``count``), counted per file on the workers and summed: the frame ``pipeline.ingest``
        builds with ``points.groupby(COUNT_KEYS).size()``.

    Returns
    -------
    pandas.DataFrame or (pandas.DataFrame, pandas.DataFrame)
        The points, equal row for row to the local reader's (and the counts).

    Raises
    ------
    InputError
        As the local reader, for the first unreadable file in file order.
    """
    from distributed import wait

    tally = quarantine.tally(source)
    files = police_uk.list_files(path)
    ctx = _scatter(
        client,
        _Context(
            study,
            source=source,
            period_of_month=period_of_month,
            crime_groups=crime_groups,
            tolerance_m=tolerance_m,
            code_map=code_map,
            known_codes=known_codes,
            with_counts=with_counts,
        ),
    )
    run = uuid.uuid4().hex[:8]
    futures = [
        client.submit(_read_one, ctx, mf, None, key=f"police-uk-{run}-{i}", pure=False)
        for i, mf in enumerate(files)
    ]
    wait(futures)
    results: list[_FileResult] = client.gather(futures)
    del futures

    # Duplicate Crime IDs across files: walk the files in order with the IDs kept so far. A
    # file holding none of them among its kept or individually rejected rows is already exact
    # (the rows that reach the duplicate check are kept or rejected row by row, never in a
    # summary). A file holding some is validated again with those IDs as seen before, which is
    # what the local reader does; its kept IDs are then those of the first pass not seen before,
    # so the walk goes on without waiting for the second pass.
    seen: set[str] = set()
    again: dict[int, set[str]] = {}
    for i, res in enumerate(results):
        if res.error is not None:
            break  # the local reader stops here; later files do not matter
        hits = (res.kept_ids | res.other_ids) & seen
        if hits:
            again[i] = hits
        seen |= res.kept_ids
    del seen
    if again:
        futures = {
            i: client.submit(
                _read_one, ctx, files[i], ids, key=f"police-uk-{run}-{i}-again", pure=False
            )
            for i, ids in again.items()
        }
        wait(list(futures.values()))
        for i, res in zip(futures, client.gather(list(futures.values())), strict=True):
            results[i] = res
        del futures
    client.cancel([ctx])

    parts: list[pd.DataFrame] = []
    count_parts: list[pd.DataFrame] = []
    for mf, res in zip(files, results, strict=True):
        if res.error is not None:
            err = res.error
            raise InputError(
                err["file"],
                err["problem"],
                row=err["row"],
                column=err["column"],
                expected=err["expected"],
            )
        tally.files += 1
        tally.rows_read += res.rows_read
        res.recorder.replay(quarantine)
        kept = res.points
        tally.rows_used += len(kept)
        parts.append(kept)
        if res.counts is not None:
            count_parts.append(res.counts)
        if progress:
            progress(
                f"{Path(mf.name.split('!')[-1]).name}: {res.rows_read:,} rows, {len(kept):,} used"
            )
    points = pd.concat(parts, ignore_index=True) if parts else police_uk._empty_points()
    if not with_counts:
        return points
    if count_parts:
        counts = (
            pd.concat(count_parts, ignore_index=True)
            .groupby(list(COUNT_KEYS), as_index=False, sort=True)["count"]
            .sum()
        )
    else:
        counts = _count(points)
    return points, counts


# --------------------------------------------------------------------------- density
def _surfaces(points: pd.DataFrame, mask: Any, kwargs: dict) -> dict[str, density.DensityGrid]:
    return density.density_surfaces(points, mask_geometry=mask, **kwargs)


def density_surfaces_dask(
    points: pd.DataFrame,
    *,
    client: Client,
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
) -> dict[str, density.DensityGrid]:
    """:func:`density.density_surfaces` with one Dask task per surface; equal values.

    Every task calls :func:`density.density_surfaces` on the points of its group (the harm
    surface on all points) with the same grid, so each surface is the one the local engine
    computes. The mask geometry is scattered once. Parameters and return value as for
    :func:`~priority_index.density.density_surfaces`.
    """
    keep = [c for c in ("x", "y", "crime_group", "harm") if c in points]
    pts = points[keep]
    grp = pts["crime_group"].astype("string").to_numpy(dtype=object, na_value=None)
    if groups is None:
        groups = sorted({g for g in pd.unique(grp) if g is not None})
    groups = list(groups)
    if bounds is None and mask_geometry is None:  # the extent of all points, as locally
        x = pts["x"].to_numpy(dtype=np.float64)
        y = pts["y"].to_numpy(dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            raise ValueError("bounds are needed when there are no located points and no mask")
        bounds = (x[ok].min(), y[ok].min(), x[ok].max(), y[ok].max())
        if bounds[2] <= bounds[0] or bounds[3] <= bounds[1]:
            bounds = (bounds[0], bounds[1], bounds[0] + cell_size, bounds[1] + cell_size)
    common = dict(
        bounds=bounds,
        cell_size=cell_size,
        bandwidth=bandwidth,
        kernel=kernel,
        all_touched=all_touched,
        min_bandwidth=min_bandwidth,
        truncate=truncate,
        oversample=oversample,
        workers=workers,
        total_key=total_key,
    )
    mask = _scatter(client, mask_geometry) if mask_geometry is not None else None
    inputs = [pts.loc[grp == g, ["x", "y", "crime_group"]] for g in groups]
    jobs = [{**common, "groups": [g], "include_total": False} for g in groups]
    if include_total:
        inputs.append(pts)
        jobs.append({**common, "groups": [], "include_total": True})
    data = client.scatter(inputs, hash=False)
    futures = [
        client.submit(_surfaces, d, mask, job, pure=False)
        for d, job in zip(data, jobs, strict=True)
    ]
    out: dict[str, density.DensityGrid] = {}
    for part in client.gather(futures):
        out.update(part)
    client.cancel([*futures, *data, *([mask] if mask is not None else [])])
    return out
