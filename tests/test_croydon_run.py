"""The shipped example (`make index`): real Croydon data from the repository alone."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyogrio
import pytest

from priority_index.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def croydon(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("croydon") / "out"
    assert (
        main(["run", str(REPO / "pipelines" / "croydon.toml"), "--out", str(out), "--quiet"]) == 0
    )
    return out


def test_nine_named_by_wards(croydon):
    nbs = pyogrio.read_dataframe(croydon / "priority_index.gpkg", layer="priority_neighbourhoods")
    assert len(nbs) == 9
    wards = set(pd.read_csv(REPO / "data/croydon/lsoa21_ward24_lookup_croydon.csv")["WD24NM"])
    for name in nbs["name"]:
        assert any(w in name for w in wards), name
    assert nbs["residents"].sum() > 50_000
    assert nbs["selection_frequency"].between(0, 1).all()
    idx = pyogrio.read_dataframe(croydon / "priority_index.gpkg", layer="lsoa_index")
    assert len(idx) == 229 and round(idx["residents"].sum()) == 390_732


def test_points_are_real_burglary_and_said_so(croydon):
    manifest = json.loads((croydon / "manifest.json").read_text())
    notes = " ".join(manifest["notes"])
    assert "Burglary" in notes and "area-level counts only" in notes
    assert "GENERATED" not in notes
    assert (croydon / "density_burglary.tif").exists()
    micro = pyogrio.read_dataframe(croydon / "priority_index.gpkg", layer="micro_hotspots")
    assert len(micro) > 0 and micro["crime_types"].str.startswith("Burglary").all()
    tally = manifest["counts"]["ingest"]["police.uk burglary points"]
    assert tally["rows_read"] == tally["rows_used"] + tally["rows_rejected"]


def test_face_validity_and_two_periods(croydon):
    fv = pd.read_csv(croydon / "face_validity.csv")
    assert list(fv["place"]) == [
        "West Croydon",
        "Thornton Heath",
        "South Norwood",
        "New Addington",
        "Croydon Town Centre",
    ]
    assert fv["explanation"].str.len().gt(20).all()
    harm = pd.read_csv(croydon / "harm_table.csv")
    assert {"2024/25", "2025/26"} <= set(harm.columns)
    report = (croydon / "report.html").read_text()
    assert "Face validity" in report or "face validity" in report
