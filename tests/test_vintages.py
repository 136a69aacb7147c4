"""2011 -> 2021 LSOA conversion by a best-fit lookup built from boundary overlap."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from priority_index import pipeline, vintages
from priority_index.config import load_settings

REPO = Path(__file__).resolve().parents[1]
RAW = REPO.parent / "shared" / "data" / "raw"


def test_overlap_lookup_split_and_merge():
    # 2011: A (left half), B (right half). 2021: A split into A1/A2, B merged with C into D.
    old = gpd.GeoDataFrame(
        geometry=[box(0, 0, 100, 100), box(100, 0, 200, 100), box(200, 0, 300, 100)],
        index=pd.Index(["A", "B", "C"], name="lsoa_code"),
        crs=27700,
    )
    new = gpd.GeoDataFrame(
        geometry=[box(0, 0, 70, 100), box(70, 0, 100, 100), box(100, 0, 300, 100)],
        index=pd.Index(["A1", "A2", "D"], name="lsoa_code"),
        crs=27700,
    )
    lk = vintages.overlap_lookup(old, new)
    a = lk[lk["from_code"] == "A"].set_index("to_code")
    assert a.loc["A1", "share"] == pytest.approx(0.7) and a.loc["A2", "share"] == pytest.approx(0.3)
    assert bool(a.loc["A1", "best_fit"]) and not bool(a.loc["A2", "best_fit"])
    best = pipeline.best_fit_map(lk, new.index)
    assert best == {"A": {"A1": 1.0}, "B": {"D": 1.0}, "C": {"D": 1.0}}


@pytest.mark.realdata
def test_met_annual_2011_counts_carried_to_croydon_2021(tmp_path):
    if not RAW.exists():
        pytest.skip("../shared/data/raw not present")
    toml = f"""
[pipeline]
name = "v"
[study_area]
boundaries = "{REPO}/boundaries/croydon_lsoa21.gpkg"
lad_codes = ["E09000008"]
[[periods]]
name = "2019"
start = "2019-01"
end = "2019-12"
[[sources.area_counts]]
path = "{RAW}/london/crime_lsoa_annual/london-2011-2021-major-violence.csv"
format = "met_annual"
crime_group = "violence"
label = "violence"
[sources]
other_vintage_boundaries = "{RAW}/london/boundaries/london-2011-lsoa-gen20.shp"
[index.weights]
harm_total = 1
"""
    (tmp_path / "p.toml").write_text(toml)
    s = load_settings(tmp_path / "p.toml")
    inputs = pipeline.ingest(s)
    t = inputs.quarantine.tallies["violence"]
    assert t.reconciles
    # Croydon's 2011 LSOAs that changed code in 2021 are carried across, not lost
    assert t.codes_converted > 0
    assert t.rows_used == 220
    croydon_2019 = inputs.counts.loc[inputs.counts["period"] == "2019", "count"].sum()
    assert croydon_2019 == 9_579  # every offence of the 220 2011 LSOAs, now on 229 2021 LSOAs
    assert inputs.counts["lsoa_code"].isin(inputs.study.index).all()
