"""Other agencies' points (ambulance, fire brigade, A&E assaults): a generic dated-points CSV
with a column mapping and a weight, reconciled and turned into its own indicator."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from priority_index import pipeline
from priority_index.config import load_settings
from priority_index.examples.fictional import generate_borough, write_borough


@pytest.fixture(scope="module")
def borough(tmp_path_factory):
    root = tmp_path_factory.mktemp("other")
    b = generate_borough(n_lsoas=60, months=3, start="2025-01", seed=3)
    write_borough(b, root / "data", parts=("boundaries", "police_uk", "iod", "census"))
    return root


def test_ambulance_callouts_become_an_indicator(borough):
    root = borough
    lsoas = gpd.read_file(root / "data" / "boundaries" / "fictional_lsoa21.gpkg").to_crs(27700)
    pts = lsoas.geometry.representative_point()
    good = pd.DataFrame(
        {
            "incident_date": "2025-02-14",
            "easting": pts.x.round(1),
            "northing": pts.y.round(1),
            "severity": 2.0,
        }
    )
    good.loc[:9, "severity"] = 5.0  # first ten LSOAs get heavier incidents
    bad = pd.DataFrame(
        {
            "incident_date": ["2025-02-01", "2025-02-01", "not a date", "2025-02-01", "2024-06-01"],
            "easting": ["", "x", str(pts.x.iloc[0]), "100.0", str(pts.x.iloc[0])],
            "northing": ["", "1", str(pts.y.iloc[0]), "100.0", str(pts.y.iloc[0])],
            "severity": ["1", "1", "1", "1", "1"],
        }
    )
    neg = pd.DataFrame(
        {
            "incident_date": ["2025-02-01"],
            "easting": [str(pts.x.iloc[1])],
            "northing": [str(pts.y.iloc[1])],
            "severity": ["-3"],
        }
    )
    table = pd.concat([good.astype(str), bad, neg], ignore_index=True)
    table.to_csv(root / "data" / "ambulance.csv", index=False)
    toml = """
[pipeline]
name = "other"
[study_area]
boundaries = "data/boundaries/fictional_lsoa21.gpkg"
[[periods]]
name = "Q1"
start = "2025-01"
end = "2025-03"
[[sources.police_uk]]
path = "data/police_uk"
points_are_generated = true
[sources.population]
path = "data/census2021_residents_by_age.csv"
[[sources.other_points]]
name = "ambulance"
label = "Ambulance assault call-outs"
path = "data/ambulance.csv"
x_column = "easting"
y_column = "northing"
crs = "EPSG:27700"
date_column = "incident_date"
weight_column = "severity"
[index.weights]
harm_rate = 50
other_ambulance = 50
[uncertainty]
draws = 0
"""
    (root / "p.toml").write_text(toml)
    s = load_settings(root / "p.toml")
    inputs = pipeline.ingest(s)
    t = inputs.quarantine.tallies["Ambulance assault call-outs"]
    assert t.rows_read == len(table) == 66
    assert t.rejected == {
        "no_coordinates": 1,
        "bad_coordinates": 1,
        "bad_date": 1,
        "outside_study_area": 1,
        "outside_period": 1,
        "bad_weight": 1,
    }
    assert t.rows_used == 60 and t.reconciles
    index = pipeline.build_index(s, inputs)
    ind = index.indicators["other_ambulance"]
    assert ind.sum() == pytest.approx(10 * 5.0 + 50 * 2.0)
    assert (ind == 5.0).sum() == 10 and (ind == 2.0).sum() == 50
    assert "other_ambulance" in index.result.effective_weights.index
    assert np.isclose(index.result.effective_weights.sum(), 1.0)
