"""The whole point-based chain on real police.uk data: Sheffield, 2019 against 2020.

Whole monthly files of four forces are read (999,407 rows), with their real defects: rows
without coordinates, repeated Crime IDs, other areas' records. Every row must be accounted for.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyogrio
import pytest
import rasterio

from priority_index import pipeline
from priority_index.config import load_settings

REPO = Path(__file__).resolve().parents[1]
RAW = REPO.parent / "shared" / "data" / "raw"
pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def sheffield(tmp_path_factory):
    if not (RAW / "police_uk" / "four-forces-2019-01_to_2020-12.zip").exists():
        pytest.skip("../shared/data/raw not present")
    out = tmp_path_factory.mktemp("sheffield") / "out"
    settings = load_settings(REPO / "pipelines" / "sheffield.toml")
    result = pipeline.run(settings, out_dir=out)
    return result, out


def test_every_row_reconciles(sheffield):
    result, out = sheffield
    manifest = json.loads((out / "manifest.json").read_text())
    tally = manifest["counts"]["ingest"]["police.uk street-level (4 forces)"]
    assert tally["files"] == 93
    assert tally["rows_read"] == 999_407
    assert tally["rows_read"] == tally["rows_used"] + tally["rows_rejected"]
    reasons = tally["rejected_by_reason"]
    # the archive's 43,642 rows without coordinates (all forces) are all accounted for
    assert reasons["no_coordinates"] == 43_642
    assert reasons["outside_study_area"] > 700_000  # the other forces and districts
    assert tally["rows_used"] > 100_000
    rejected = pyogrio.read_dataframe(out / "priority_index.gpkg", layer="rejected_records")
    rejected = rejected[rejected["source"] == "police.uk street-level (4 forces)"]
    assert int(rejected["n_records"].sum()) == tally["rows_rejected"]
    assert set(rejected["reason"]) == set(reasons)
    # repeated Crime IDs inside Sheffield would be listed, one row each, with file and line
    dups = rejected[rejected["reason"] == "duplicate_crime_id"]
    assert (dups["n_records"] == 1).all() and (dups["line"] > 1).all()
    pts = result.inputs.points
    assert pts["crime_id"][pts["crime_id"] != ""].is_unique


def test_harm_table_2019_against_2020(sheffield):
    _, out = sheffield
    harm = pd.read_csv(out / "harm_table.csv")
    assert {"2019", "2020", "+/-", "% +/-"} <= set(harm.columns)
    total = harm[harm["Crime Type"] == "Total Notifiable Offences"].iloc[0]
    assert total["2019"] > 0 and total["2020"] > 0
    assert abs(total["+/-"] - (total["2020"] - total["2019"])) < 1e-6 * total["2019"]


def test_violence_density_and_micro_places(sheffield):
    result, out = sheffield
    path = out / "density_violence_and_sexual.tif"
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 27700
        band = ds.read(1, masked=True)
        assert band.max() > 0
    micro = pyogrio.read_dataframe(out / "priority_index.gpkg", layer="micro_hotspots")
    assert len(micro) >= 9 * 5
    assert micro["harm_share"].between(0, 1).all()
    assert micro.crs.to_epsg() == 27700


def test_nine_neighbourhoods(sheffield):
    result, out = sheffield
    nbs = pyogrio.read_dataframe(out / "priority_index.gpkg", layer="priority_neighbourhoods")
    assert len(nbs) == 9
    assert nbs["n_lsoas"].between(3, 8).all()
    assert nbs.geometry.is_valid.all()
    assert nbs["selection_frequency"].between(0, 1).all()
    assigned = result.selection.assignment
    assert (assigned > 0).sum() == nbs["n_lsoas"].sum()
