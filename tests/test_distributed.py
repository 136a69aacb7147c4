"""The Dask engine gives the local engine's results exactly (LocalCluster, 2 workers)."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point

pytest.importorskip("dask")
pytest.importorskip("distributed")

from priority_index import density, harm  # noqa: E402
from priority_index.crime_groups import source_mapping  # noqa: E402
from priority_index.distributed import (  # noqa: E402
    COUNT_KEYS,
    density_surfaces_dask,
    make_client,
    read_police_uk_dask,
)
from priority_index.errors import InputError  # noqa: E402
from priority_index.examples.fictional import generate_borough, write_borough  # noqa: E402
from priority_index.sources import boundaries, police_uk  # noqa: E402
from priority_index.sources.quarantine import Quarantine  # noqa: E402

SOURCE = "police.uk"
HEADER = ",".join(police_uk.COLUMNS)


@pytest.fixture(scope="module")
def client():
    c = make_client("dask", n_workers=2, threads_per_worker=1, processes=True)
    yield c
    c.close()


@pytest.fixture(scope="module")
def borough(tmp_path_factory):
    """A fictional borough with defects, plus files holding Crime IDs of earlier files."""
    root = tmp_path_factory.mktemp("borough")
    b = generate_borough(n_lsoas=60, months=3, defects=True)
    write_borough(b, root, parts=("boundaries", "police_uk"))
    study, _ = boundaries.load_study_area(
        root / "boundaries" / "fictional_lsoa21.gpkg",
        layer=None,
        code_column="LSOA21CD",
        name_column="LSOA21NM",
        lad_code_column="LAD22CD",
        lad_name_column="LAD22NM",
        lad_codes=[],
        lad_names=[],
    )
    months = list(b.months)
    pom = {months[0]: "first", months[1]: "first", months[2]: "second"}
    base_pts, base_q = read_local(root / "police_uk", study, pom)
    expected_dups, revived = _write_cross_file_duplicates(
        root / "police_uk", months, study, base_pts, base_q
    )
    base_dups = base_q.tallies[SOURCE].rejected.get("duplicate_crime_id", 0)
    return dict(
        root=root,
        study=study,
        pom=pom,
        months=months,
        expected_dups=base_dups + expected_dups,
        revived=revived,
    )


def read_local(path: Path, study, pom, **kw) -> tuple[pd.DataFrame, Quarantine]:
    q = Quarantine()
    pts = police_uk.read_police_uk(
        path,
        study=study,
        period_of_month=pom,
        crime_groups=source_mapping("police_uk"),
        quarantine=q,
        source=SOURCE,
        **kw,
    )
    return pts, q


def read_dask(path: Path, study, pom, client, **kw):
    q = Quarantine()
    out = read_police_uk_dask(
        path,
        client=client,
        study=study,
        period_of_month=pom,
        crime_groups=source_mapping("police_uk"),
        quarantine=q,
        source=SOURCE,
        **kw,
    )
    return out, q


def _lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8").split("\r\n")


def _write_cross_file_duplicates(folder: Path, months, study, pts, q) -> int:
    """Extra force files sorted after the fictional ones; returns the duplicates they add."""
    m0, m1, m2 = months

    def source_row(p: pd.Series, month: str) -> list[str]:
        f = _lines(Path(p["source_file"]))[int(p["line"]) - 1].split(",")
        f[1] = month
        return f

    crimes = pts[pts["crime_id"] != ""]
    jan = crimes[crimes["month"] == m0].head(6)
    feb = crimes[crimes["month"] == m1].head(2)
    rows, dups = [], 0
    # kept in January: a February row of another force with the same ID is a duplicate
    for _, p in jan.iloc[:4].iterrows():
        rows.append(source_row(p, m1))
        dups += 1
    # the same January ID twice more in this file: both duplicates
    rows += [source_row(jan.iloc[4], m1)] * 2
    dups += 2
    # kept in February, restated here with a far LSOA: locally a duplicate (checked before the
    # distance), alone it would be an lsoa_mismatch
    p = feb.iloc[0]
    far = study.geometry.distance(Point(p["x"], p["y"])).idxmax()
    f = source_row(p, m1)
    f[7] = far
    rows.append(f)
    dups += 1
    # an ID whose only earlier row was rejected (lsoa_mismatch): kept here
    rej = q.frame()
    mism = rej[(rej["reason"] == "lsoa_mismatch") & (rej["crime_id"].fillna("") != "")]
    assert len(mism), "the fictional defects include lsoa_mismatch rows with Crime IDs"
    revived = mism["crime_id"].iloc[0]
    f = source_row(feb.iloc[1], m1)
    f[0] = revived
    rows.append(f)
    # a new ID and an ASB row without ID copied from an ASB row: kept
    f = source_row(feb.iloc[1], m1)
    f[0] = "f" * 64
    rows.append(f)
    asb = pts[(pts["crime_id"] == "") & (pts["month"] == m1)].iloc[0]
    rows.append(source_row(asb, m1))
    # a malformed line between them
    rows.insert(3, ["too", "few", "fields"])
    _write(folder / m1 / f"{m1}-zother-street.csv", rows)
    # March of the other force: the revived ID (kept only in the file above) and a January ID
    rows = []
    for cid in (revived, jan.iloc[5]["crime_id"]):
        f = source_row(jan.iloc[5], m2)
        f[0] = cid
        rows.append(f)
        dups += 1
    _write(folder / m2 / f"{m2}-zother-street.csv", rows)
    return dups, revived


def _write(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\r\n".join([HEADER, *(",".join(r) for r in rows)]) + "\r\n", encoding="utf-8")


def assert_same_quarantine(qa: Quarantine, qb: Quarantine) -> None:
    pd.testing.assert_frame_equal(qa.frame(), qb.frame())
    assert {s: t.as_dict() for s, t in qa.tallies.items()} == {
        s: t.as_dict() for s, t in qb.tallies.items()
    }
    for s in qa.tallies:  # same reasons in the same order of first appearance
        assert list(qa.tallies[s].rejected.items()) == list(qb.tallies[s].rejected.items())


def test_ingest_equals_local_engine(borough, client):
    path, study, pom = borough["root"] / "police_uk", borough["study"], borough["pom"]
    t0 = time.perf_counter()
    pts_l, q_l = read_local(path, study, pom)
    t_local = time.perf_counter() - t0
    t0 = time.perf_counter()
    (pts_d, counts_d), q_d = read_dask(path, study, pom, client, with_counts=True)
    t_dask = time.perf_counter() - t0
    print(
        f"\nread police.uk: local {t_local:.2f} s, dask {t_dask:.2f} s "
        f"({q_l.tallies[SOURCE].files} files, {len(pts_l):,} points)"
    )

    pd.testing.assert_frame_equal(pts_l, pts_d)
    assert_same_quarantine(q_l, q_d)
    t = q_l.tallies[SOURCE]
    assert t.reconciles and q_d.tallies[SOURCE].reconciles
    assert t.files == 5
    assert t.rejected["duplicate_crime_id"] == borough["expected_dups"]
    assert t.rejected["malformed_row"] >= 1
    # the other force's February file keeps the ID rejected earlier as lsoa_mismatch, a new ID
    # and an ASB row; its March file keeps nothing
    zother = pts_l[pts_l["source_file"].str.contains("zother")]
    assert list(zother["month"]) == [borough["months"][1]] * 3
    assert list(zother["crime_id"]) == [borough["revived"], "f" * 64, ""]
    # the counts aggregated on the workers are those ingest builds from the points
    local_counts = (
        pts_l.groupby(list(COUNT_KEYS), as_index=False).size().rename(columns={"size": "count"})
    )
    local_counts["count"] = local_counts["count"].astype(float)
    pd.testing.assert_frame_equal(local_counts, counts_d)


def test_zip_and_glob_inputs_equal_local(borough, client, tmp_path):
    path, study, pom = borough["root"] / "police_uk", borough["study"], borough["pom"]
    archive = tmp_path / "police.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(path.rglob("*.csv")):
            zf.write(f, f.relative_to(path).as_posix())
    for src in (archive, path / "*" / "*-street.csv"):
        pts_l, q_l = read_local(src, study, pom)
        pts_d, q_d = read_dask(src, study, pom, client)
        pd.testing.assert_frame_equal(pts_l, pts_d)
        assert_same_quarantine(q_l, q_d)


def test_unreadable_file_raises_like_local(borough, client, tmp_path):
    months = borough["months"]
    src = borough["root"] / "police_uk" / months[0] / f"{months[0]}-fictional-street.csv"
    good = tmp_path / months[0] / src.name
    good.parent.mkdir()
    good.write_bytes(src.read_bytes())
    bad = tmp_path / months[1] / f"{months[1]}-fictional-street.csv"
    bad.parent.mkdir()
    bad.write_text("Crime ID,Month,Longitude\r\nx,2025-02,0\r\n", encoding="utf-8")
    with pytest.raises(InputError) as local_err:
        read_local(tmp_path, borough["study"], borough["pom"])
    with pytest.raises(InputError) as dask_err:
        read_dask(tmp_path, borough["study"], borough["pom"], client)
    assert str(dask_err.value) == str(local_err.value)
    assert dask_err.value.column == local_err.value.column


@pytest.mark.parametrize("bandwidth", [None, 250.0])
def test_density_surfaces_equal_local(borough, client, bandwidth):
    study = borough["study"]
    pts, _ = read_local(borough["root"] / "police_uk", study, borough["pom"])
    pts["harm"] = pts["crime_group"].map(harm.harm_weights()).astype(float)
    kw = dict(
        bounds=tuple(study.total_bounds),
        cell_size=50.0,
        bandwidth=bandwidth,
        kernel="quartic",
        mask_geometry=study.geometry.to_numpy(),
        include_total=True,
    )
    groups = sorted(pts["crime_group"].unique())
    t0 = time.perf_counter()
    local = density.density_surfaces(pts, groups=groups, **kw)
    t_local = time.perf_counter() - t0
    t0 = time.perf_counter()
    dist = density_surfaces_dask(pts, client=client, groups=groups, **kw)
    t_dask = time.perf_counter() - t0
    print(
        f"\ndensity ({len(local)} surfaces, bandwidth {bandwidth}): local {t_local:.2f} s, "
        f"dask {t_dask:.2f} s"
    )
    assert list(local) == list(dist) == [*groups, "total_harm"]
    for key, a in local.items():
        b = dist[key]
        np.testing.assert_array_equal(a.values, b.values)
        assert (a.transform, a.cell_size, a.bandwidth, a.kernel, a.units) == (
            b.transform,
            b.cell_size,
            b.bandwidth,
            b.kernel,
            b.units,
        )


def test_density_default_groups_and_extent(borough, client):
    pts, _ = read_local(borough["root"] / "police_uk", borough["study"], borough["pom"])
    pts["harm"] = 1.0
    local = density.density_surfaces(pts, cell_size=100.0, bandwidth=400.0)
    dist = density_surfaces_dask(pts, client=client, cell_size=100.0, bandwidth=400.0)
    assert list(local) == list(dist)
    for key in local:
        np.testing.assert_array_equal(local[key].values, dist[key].values)
        assert local[key].transform == dist[key].transform


def test_make_client_local_kind_is_none():
    assert make_client("local") is None
    with pytest.raises(ValueError):
        make_client("spark")
