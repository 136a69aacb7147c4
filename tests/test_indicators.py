"""Indicators per LSOA and empirical-Bayes rates: hand-worked cases, esda, real Croydon data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from esda.smoothing import Empirical_Bayes

from priority_index.crime_groups import source_mapping
from priority_index.indicators import (
    INDICATORS,
    build_indicators,
    count_indicator_arrays,
    deprivation_name,
    describe_indicators,
    eb_rate,
    indicator_spec,
    repeat_location_share,
)

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"
CODES = pd.Index(["E01000003", "E01000001", "E01000002"], name="lsoa_code")


# ------------------------------------------------------------------------------------------
# Empirical Bayes
# ------------------------------------------------------------------------------------------


def test_eb_equal_populations_closed_form():
    # n = 1000 each, events 5, 10, 20, 45: b = 80/4000 = 0.02, var(r) = 0.00095/4 = 2.375e-4,
    # b/n = 2e-5, so w = 1 - 2e-5/2.375e-4 = 87/95 and EB = 20 + 87/95 (r*1000 - 20).
    out = eb_rate(np.array([5, 10, 20, 45]), np.full(4, 1000.0))
    expected = 20 + 87 / 95 * np.array([-15.0, -10.0, 0.0, 25.0])
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    np.testing.assert_allclose(expected, [6.263158, 10.842105, 20.0, 42.894737], atol=1e-6)
    # crude rates would be 5, 10, 20, 45: shrinkage pulls every rate toward the mean of 20
    assert np.all(np.abs(out - 20) < np.abs(np.array([5, 10, 20, 45]) - 20) + 1e-12)


def test_eb_non_positive_between_area_variance_shrinks_to_mean():
    # n = 100 each, events 1, 2, 1, 0: b = 0.01, var(r) = 5e-5 < b/n = 1e-4, so a < 0 -> 0
    # and every rate is the pooled mean, 10 per 1,000.
    out = eb_rate(np.array([1, 2, 1, 0]), np.full(4, 100.0))
    np.testing.assert_allclose(out, 10.0, rtol=1e-12)
    # identical crude rates (a = -b/nbar < 0) also give the mean exactly
    np.testing.assert_allclose(eb_rate([10, 20, 5], [1000, 2000, 500], per=1.0), 0.01)


def test_eb_matches_esda_and_handles_draw_axis():
    rng = np.random.default_rng(3)
    pop = rng.integers(300, 3000, 60).astype(float)
    events = rng.poisson(pop * rng.gamma(4, 0.01 / 4, 60))
    ours = eb_rate(events, pop, per=1.0)
    ref = Empirical_Bayes(events, pop).r.ravel()
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    # leading (draw) axis: each row smoothed on its own, same as one call per row
    stack = np.stack([events, events[::-1], events * 2])
    out = eb_rate(stack, pop)
    for i in range(3):
        np.testing.assert_allclose(out[i], eb_rate(stack[i], pop), rtol=1e-12)
        np.testing.assert_allclose(out[i], Empirical_Bayes(stack[i], pop).r.ravel() * 1000)


def test_eb_zero_or_missing_population_left_out():
    out = eb_rate(np.array([5, 10, 20, 45, 3]), np.array([1000, 1000, 1000, 1000, 0]))
    assert np.isnan(out[4])
    np.testing.assert_allclose(out[:4], 20 + 87 / 95 * np.array([-15.0, -10.0, 0.0, 25.0]))
    out = eb_rate(np.array([5, 10, 20, 45, 3]), np.array([1000, 1000, 1000, 1000, np.nan]))
    np.testing.assert_allclose(out[:4], 20 + 87 / 95 * np.array([-15.0, -10.0, 0.0, 25.0]))
    # general (2-D population) path agrees with the fast path
    pop2 = np.broadcast_to(np.array([1000, 1000, 1000, 1000, 0.0]), (2, 5))
    both = eb_rate(np.array([[5, 10, 20, 45, 3]] * 2), pop2)
    np.testing.assert_allclose(both[0, :4], out[:4])


# ------------------------------------------------------------------------------------------
# build_indicators
# ------------------------------------------------------------------------------------------


def _counts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "violence": [10, 0, 4],
            "theft": [5, 20, 0],
            "sexual_offences": [1, 0, 1],
            "asb": [8, 2, 0],
        },
        index=CODES,
    )


HARM = {"violence": 100.0, "theft": 2.0, "sexual_offences": 500.0}


def test_counts_and_harm_by_hand():
    ind = build_indicators(_counts(), HARM)
    # harm: 10*100 + 5*2 + 1*500 = 1510; 0 + 40 + 0 = 40; 400 + 0 + 500 = 900
    np.testing.assert_allclose(ind["harm_total"], [1510, 40, 900])
    np.testing.assert_allclose(ind["harm_violence"], [1500, 0, 900])
    np.testing.assert_allclose(ind["crime_count"], [16, 20, 5])
    np.testing.assert_allclose(ind["asb_count"], [8, 2, 0])
    np.testing.assert_allclose(ind["count_theft"], [5, 20, 0])
    assert list(ind.index) == list(CODES) and ind.index.name == "lsoa_code"
    # no population / deprivation / repeat / young / other: their indicators are absent
    for absent in ("harm_rate", "asb_rate", "young_share", "repeat_share", "population"):
        assert absent not in ind.columns
    assert "count_asb" not in ind.columns
    # ASB enters harm only with a positive weight
    with_asb = build_indicators(_counts(), {**HARM, "asb": 999.0}, asb_weight=3.0)
    np.testing.assert_allclose(with_asb["harm_total"], [1534, 46, 900])
    np.testing.assert_allclose(with_asb["harm_violence"], [1500, 0, 900])


def test_rates_crude_and_shrunk():
    pop = pd.Series([1000.0, 2000.0, 500.0], index=CODES[::-1])  # order must not matter
    pop_aligned = pop.reindex(CODES).to_numpy()
    crude = build_indicators(_counts(), HARM, population=pop, shrink=False)
    # harm per 1,000: 1510/0.5, 40/2, 900/1 (pop aligned by code: 500, 2000, 1000)
    np.testing.assert_allclose(pop_aligned, [500, 2000, 1000])
    np.testing.assert_allclose(crude["harm_rate"], [3020, 20, 900])
    np.testing.assert_allclose(crude["asb_rate"], [16, 1, 0])
    np.testing.assert_allclose(crude["crime_rate"], [32, 10, 5])
    np.testing.assert_allclose(crude["violence_harm_rate"], [3000, 0, 900])
    np.testing.assert_allclose(crude["population"], [500, 2000, 1000])

    eb = build_indicators(_counts(), HARM, population=pop)
    c = _counts()
    expected = sum(w * eb_rate(c[g].to_numpy(), pop_aligned) for g, w in HARM.items())
    np.testing.assert_allclose(eb["harm_rate"], expected)
    np.testing.assert_allclose(eb["asb_rate"], eb_rate(c["asb"].to_numpy(), pop_aligned))
    np.testing.assert_allclose(eb["crime_rate"], eb_rate([16, 20, 5], pop_aligned))
    assert not np.allclose(eb["harm_rate"], crude["harm_rate"])
    # ASB harm rate with a weight
    eb_asb = build_indicators(_counts(), HARM, population=pop, asb_weight=2.0)
    np.testing.assert_allclose(eb_asb["harm_rate"], expected + 2.0 * eb["asb_rate"])


def test_other_inputs_and_catalogue():
    pop = pd.Series([500.0, 2000.0, 1000.0], index=CODES)
    young = pd.Series([100.0, 300.0, 250.0], index=CODES)
    dep = pd.DataFrame(
        {"Income_score": [0.3, 0.1], "Housing_and_Services_score": [20.0, 30.0]},
        index=CODES[:2],
    )
    ind = build_indicators(
        _counts(),
        HARM,
        population=pop,
        young=young,
        deprivation=dep,
        repeat=pd.Series([0.5, 0.25], index=CODES[1:]),
        other={"Youth service referrals": pd.Series([4.0], index=CODES[2:])},
    )
    np.testing.assert_allclose(ind["young_share"], [0.2, 0.15, 0.25])
    np.testing.assert_allclose(ind["dep_income"], [0.3, 0.1, np.nan])
    np.testing.assert_allclose(ind["dep_housing_services"], [20.0, 30.0, np.nan])
    np.testing.assert_allclose(ind["repeat_share"], [np.nan, 0.5, 0.25])
    np.testing.assert_allclose(ind["other_youth_service_referrals"], [0.0, 0.0, 4.0])
    # young without population: omitted
    assert "young_share" not in build_indicators(_counts(), HARM, young=young).columns
    # every column is described, with a valid direction and kind
    table = describe_indicators(list(ind.columns))
    assert table["label"].str.len().gt(0).all()
    assert set(table["direction"]) <= {1, -1}
    assert table.loc["dep_income", "kind"] == "deprivation"
    assert table.loc["other_youth_service_referrals", "kind"] == "other"
    assert table.loc["asb_rate", "kind"] == "asb"
    assert table.loc["young_share", "kind"] == "demography"
    assert "map point" in INDICATORS["repeat_share"].description
    with pytest.raises(KeyError):
        indicator_spec("no_such_indicator")


def test_deprivation_names():
    assert deprivation_name("Income_score") == "dep_income"
    assert deprivation_name("Environment_score") == "dep_living_environment"
    assert deprivation_name("Housing_and_Services_score") == "dep_housing_services"
    assert deprivation_name("Health Deprivation and Disability") == "dep_health"
    assert deprivation_name("IMD_score") == "dep_imd"
    assert deprivation_name("dep_employment") == "dep_employment"


def test_missing_harm_weight_and_negative_counts_raise():
    with pytest.raises(ValueError, match="theft"):
        build_indicators(_counts(), {"violence": 1.0, "sexual_offences": 1.0})
    bad = _counts()
    bad.iloc[0, 0] = -1
    with pytest.raises(ValueError):
        build_indicators(bad, HARM)


def test_count_arrays_match_builder_per_draw():
    rng = np.random.default_rng(0)
    pop = np.array([500.0, 2000.0, 1000.0])
    draws = rng.poisson(_counts().to_numpy(dtype=float) + 3, size=(4, 3, 4)).astype(float)
    out = count_indicator_arrays(
        draws, list(_counts().columns), HARM, population=pop, asb_weight=1.5
    )
    for d in range(4):
        frame = pd.DataFrame(draws[d], index=CODES, columns=_counts().columns)
        ref = build_indicators(frame, HARM, population=pd.Series(pop, index=CODES), asb_weight=1.5)
        for name, arr in out.items():
            np.testing.assert_allclose(arr[d], ref[name].to_numpy(), rtol=1e-12, err_msg=name)


# ------------------------------------------------------------------------------------------
# Repeat map points
# ------------------------------------------------------------------------------------------


def test_repeat_location_share_by_hand():
    recs = pd.DataFrame(
        {
            "lsoa_code": ["A", "A", "A", "B", "B", "B", "B", "B", "B", None],
            "x": [1.0, 1.0, 2.0, 1.0, 3.0, 3.0, 3.0, 5.0, np.nan, 1.0],
            "y": [1.0, 1.0, 2.0, 1.0, 3.0, 3.0, 3.0, 5.0, 1.0, 1.0],
            "location": ["P", "P", "Q", "P", "R", "R", "S", "T", "T", "P"],
        }
    )
    # A: (1,1) twice, (2,2) once -> 2/3. B: (1,1) once (A's do not count), (3,3) three times,
    # (5,5) once, one record without coordinates dropped -> 3/5.
    share = repeat_location_share(recs)
    assert list(share.index) == ["A", "B"]
    np.testing.assert_allclose(share, [2 / 3, 3 / 5])
    # by location text: A as before; B: P once, R twice, S once, T twice -> 4/6
    by_text = repeat_location_share(recs, location_col="location")
    np.testing.assert_allclose(by_text, [2 / 3, 4 / 6])
    # a higher threshold: only B's (3,3) point (3 records) counts
    np.testing.assert_allclose(repeat_location_share(recs, min_records=3), [0.0, 3 / 5])


# ------------------------------------------------------------------------------------------
# Real data: Croydon, Met LSOA counts (12 months) and Census 2021 residents
# ------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_croydon_rates_match_esda():
    crime = RAW / "london" / "crime_lsoa_monthly" / "MPS_LSOA_Level_Crime_2024-02_to_2026-02.csv"
    census = RAW / "census2021" / "census2021_usual_residents_lsoa21_total.csv"
    if not crime.exists() or not census.exists():
        pytest.skip("shared raw data not available")
    table = pd.read_csv(crime)
    table = table[table["Borough"] == "E09000008"]
    months = [c for c in table.columns if c.isdigit()][-12:]
    table = table.assign(group=table["Major Category"].map(source_mapping("met_major")))
    counts = table.groupby(["LSOA Code", "group"])[months].sum().sum(axis=1).unstack(fill_value=0)
    counts.index.name = "lsoa_code"
    pop = pd.read_csv(census).set_index("lsoa21_code")["usual_residents"]
    assert len(counts) == 229
    weights = {g: 1.0 for g in counts.columns}
    ind = build_indicators(counts, weights, population=pop)
    assert ind["population"].notna().all()
    v = counts["violence"].to_numpy(dtype=float)
    n = pop.reindex(counts.index).to_numpy(dtype=float)
    ref = Empirical_Bayes(v, n).r.ravel() * 1000
    np.testing.assert_allclose(eb_rate(v, n), ref, rtol=1e-10)
    np.testing.assert_allclose(ind["violence_harm_rate"], ref, rtol=1e-10)
    crude = v / n * 1000
    # shrinkage keeps the population-weighted mean and narrows the spread
    assert np.std(ind["violence_harm_rate"]) < np.std(crude)
    assert abs(np.average(ref, weights=n) / (v.sum() / n.sum() * 1000) - 1) < 0.05


def test_harm_and_young_descriptions_say_what_the_numbers_are():
    for name in ("harm_total", "harm_violence", "harm_rate", "violence_harm_rate"):
        text = INDICATORS[name].description
        assert "average CCHI days per" in text, name
        assert "CCHI_DERIVATION.md" in text and "Croydon" in text, name
        assert "moves with the counts" in text, name
        assert "does not publish them at LSOA level" in text, name
        assert "starting-point sentence days" not in text, name
        assert INDICATORS[name].label  # labels unchanged in kind: short, non-empty
    young = INDICATORS["young_share"].description
    assert "10-24" not in young
    assert "sources.population.young_columns" in young
    assert INDICATORS["harm_total"].label == "Crime harm"
    assert INDICATORS["young_share"].label == "Young residents"
