"""End to end through the CLI on the fictional borough: the output contract, exit codes,
reconciliation, determinism and all-or-nothing writing."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio

from priority_index.cli import main
from priority_index.examples.fictional import generate_borough, write_borough

REPO = Path(__file__).resolve().parents[1]
LAYERS = {
    "lsoa_index",
    "priority_neighbourhoods",
    "hotspots_gi",
    "micro_hotspots",
    "rejected_records",
}


@pytest.fixture(scope="session")
def example(tmp_path_factory) -> Path:
    """The fictional borough with defects, and a copy of pipelines/example.toml pointing at it."""
    root = tmp_path_factory.mktemp("example")
    data = root / "outputs" / "example_data"
    borough = generate_borough(n_lsoas=200, months=12, start="2025-01", seed=0, defects=True)
    write_borough(borough, data)
    (root / "pipelines").mkdir()
    toml = (REPO / "pipelines" / "example.toml").read_text()
    toml = toml.replace("draws = 200", "draws = 100")
    (root / "pipelines" / "example.toml").write_text(toml)
    (root / "defects.json").write_text(json.dumps(borough.defect_counts))
    return root


@pytest.fixture(scope="session")
def run_once(example) -> Path:
    out = example / "out1"
    assert (
        main(["run", str(example / "pipelines" / "example.toml"), "--out", str(out), "--quiet"])
        == 0
    )
    return out


def test_outputs_exist(run_once):
    out = run_once
    layers = {name for name, _ in pyogrio.list_layers(out / "priority_index.gpkg")}
    assert LAYERS <= layers
    assert (out / "density_harm.tif").exists()
    assert (out / "density_violence_and_sexual.tif").exists()
    assert (out / "maps" / "overview.html").exists()
    nbs = pyogrio.read_dataframe(out / "priority_index.gpkg", layer="priority_neighbourhoods")
    assert len(nbs) == 9
    for nid in nbs["neighbourhood_id"]:
        assert (out / "maps" / f"neighbourhood_{nid}.html").exists()
    assert (out / "report.html").stat().st_size > 10_000
    idx = pyogrio.read_dataframe(out / "priority_index.gpkg", layer="lsoa_index")
    assert len(idx) == 200 and idx.crs.to_epsg() == 27700
    assert sorted(idx["rank"]) == list(range(1, 201))
    assert set(idx.loc[idx["neighbourhood_id"] > 0, "neighbourhood_id"]) == set(
        nbs["neighbourhood_id"]
    )
    with rasterio.open(out / "density_harm.tif") as ds:
        assert ds.crs.to_epsg() == 27700 and ds.overviews(1)


def test_manifest_reconciles_with_known_defects(example, run_once):
    manifest = json.loads((run_once / "manifest.json").read_text())
    tally = manifest["counts"]["ingest"]["police.uk (fictional)"]
    assert tally["reconciles"]
    assert tally["rows_read"] == tally["rows_used"] + tally["rows_rejected"]
    defects = json.loads((example / "defects.json").read_text())
    for reason, n in defects.items():
        assert tally["rejected_by_reason"].get(reason, 0) == n, reason
    assert all(len(i["sha256"]) == 64 for i in manifest["inputs"])
    assert manifest["seed"] == 1
    assert set(manifest) >= {"inputs", "settings", "versions", "counts", "run_info"}
    rejected = pyogrio.read_dataframe(run_once / "priority_index.gpkg", layer="rejected_records")
    assert int(rejected["n_records"].sum()) == tally["rows_rejected"]


def _attribute_tables(gpkg: Path) -> dict[str, list]:
    with sqlite3.connect(gpkg) as con:
        names = [
            r[0] for r in con.execute("select table_name from gpkg_contents order by table_name")
        ]
        out = {}
        for name in names:
            cols = [r[1] for r in con.execute(f'pragma table_info("{name}")') if r[1] != "geom"]
            out[name] = con.execute(
                f'select {", ".join(chr(34) + c + chr(34) for c in cols)} from "{name}"'
            ).fetchall()
    return out


def test_two_runs_are_identical(example, run_once):
    out2 = example / "out2"
    assert (
        main(["run", str(example / "pipelines" / "example.toml"), "--out", str(out2), "--quiet"])
        == 0
    )
    a = json.loads((run_once / "manifest.json").read_text())
    b = json.loads((out2 / "manifest.json").read_text())
    a.pop("run_info")
    b.pop("run_info")
    assert a == b  # includes the sha256 of every output file
    assert _attribute_tables(run_once / "priority_index.gpkg") == _attribute_tables(
        out2 / "priority_index.gpkg"
    )
    assert (run_once / "priority_index.gpkg").read_bytes() == (
        out2 / "priority_index.gpkg"
    ).read_bytes()
    assert (run_once / "maps" / "overview.html").read_bytes() == (
        out2 / "maps" / "overview.html"
    ).read_bytes()


def test_missing_input_exits_2_and_writes_nothing(example, tmp_path, capsys):
    bad = tmp_path / "pipelines"
    bad.mkdir()
    toml = (
        (example / "pipelines" / "example.toml")
        .read_text()
        .replace("iod2025_file7.csv", "no_such_file.csv")
        .replace("../outputs/", str(example / "outputs") + "/")
    )
    (bad / "example.toml").write_text(toml)
    out = tmp_path / "out"
    assert main(["run", str(bad / "example.toml"), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no_such_file.csv" in err and "not found" in err
    assert not out.exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_malformed_input_keeps_previous_outputs(example, run_once, tmp_path, capsys):
    """A structural error mid-run leaves the previous output folder as it was."""
    data = tmp_path / "outputs" / "example_data"
    shutil.copytree(example / "outputs" / "example_data", data)
    (tmp_path / "pipelines").mkdir()
    shutil.copy(example / "pipelines" / "example.toml", tmp_path / "pipelines")
    census = data / "census2021_residents_by_age.csv"
    census.write_text(census.read_text().replace("usual_residents", "residents", 1))
    out = tmp_path / "prev"
    shutil.copytree(run_once, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert (
        main(["run", str(tmp_path / "pipelines" / "example.toml"), "--out", str(out), "--quiet"])
        == 2
    )
    err = capsys.readouterr().err
    assert "census2021_residents_by_age.csv" in err and "usual_residents" in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_bad_config_names_the_key(tmp_path, capsys):
    toml = (REPO / "pipelines" / "croydon.toml").read_text()
    toml = toml.replace("[selection]\nn = 9", '[selection]\nn = "nine"\nmystery = 1')
    (tmp_path / "p.toml").write_text(toml)
    assert main(["validate", str(tmp_path / "p.toml")]) == 2
    err = capsys.readouterr().err
    assert "selection.n" in err and "selection.mystery: unknown key" in err


def test_validate_reads_without_writing(example, capsys):
    assert main(["validate", str(example / "pipelines" / "example.toml")]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "200 LSOAs" in out


def test_csv_tables(run_once):
    harm = pd.read_csv(run_once / "harm_table.csv")
    assert "Total Notifiable Offences" in set(harm["Crime Type"])
    assert {"2025 H1", "2025 H2", "+/-", "% +/-"} <= set(harm.columns)
    conc = pd.read_csv(run_once / "concentration.csv")
    assert set(conc["measure"]) == {"harm", "count"}
    trial = pd.read_csv(run_once / "trial_allocation.csv")
    assert set(trial["arm"]) == {"treatment", "control"}


def test_dask_engine_gives_the_same_outputs(example, run_once, tmp_path):
    """`[engine] kind = "dask"` on a LocalCluster of 2 workers: identical tables and rasters."""
    pytest.importorskip("distributed")
    toml = (example / "pipelines" / "example.toml").read_text()
    toml += '\n[engine]\nkind = "dask"\nn_workers = 2\n'
    (example / "pipelines" / "example_dask.toml").write_text(toml)
    out = tmp_path / "dask"
    assert (
        main(
            ["run", str(example / "pipelines" / "example_dask.toml"), "--out", str(out), "--quiet"]
        )
        == 0
    )
    for name in [
        "lsoa_index.csv",
        "rejected_records.csv",
        "neighbourhoods.csv",
        "micro_places.csv",
        "density_harm.tif",
        "density_violence_and_sexual.tif",
    ]:
        assert (out / name).read_bytes() == (run_once / name).read_bytes(), name


def test_street_segments_when_a_road_layer_is_given(example, tmp_path):
    """`[micro] roads = ...`: micro-places become street segments (lines) in every output."""
    import geopandas as gpd
    from shapely.geometry import LineString

    lsoas = gpd.read_file(
        example / "outputs" / "example_data" / "boundaries" / "fictional_lsoa21.gpkg"
    ).to_crs(27700)
    xmin, ymin, xmax, ymax = lsoas.total_bounds
    lines = [LineString([(x, ymin), (x, ymax)]) for x in np.arange(xmin, xmax, 200.0)]
    lines += [LineString([(xmin, y), (xmax, y)]) for y in np.arange(ymin, ymax, 200.0)]
    roads = gpd.GeoDataFrame(
        {"name1": [f"Road {i}" for i in range(len(lines))]}, geometry=lines, crs=27700
    ).to_crs(4326)
    roads.to_file(tmp_path / "roads.gpkg", layer="road_link")
    toml = (example / "pipelines" / "example.toml").read_text()
    toml = toml.replace(
        "[selection]",
        f'[micro]\nroads = "{tmp_path / "roads.gpkg"}"\n'
        'roads_layer = "road_link"\nroads_name_column = "name1"\n'
        "segment_length_m = 150\nmax_snap_m = 150\n\n[selection]",
    )
    (example / "pipelines" / "example_roads.toml").write_text(toml)
    out = tmp_path / "roads_out"
    assert (
        main(
            ["run", str(example / "pipelines" / "example_roads.toml"), "--out", str(out), "--quiet"]
        )
        == 0
    )
    micro = pyogrio.read_dataframe(out / "priority_index.gpkg", layer="micro_hotspots")
    assert len(micro) > 0
    assert set(micro.geom_type) <= {"LineString", "MultiLineString"}
    assert (micro.length <= 150.0 + 1e-6).all()
    assert micro["street"].str.startswith("Road ").all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert any("street segments" in n for n in manifest["notes"])
    assert "Street segment" in (out / "maps" / "neighbourhood_1.html").read_text()
