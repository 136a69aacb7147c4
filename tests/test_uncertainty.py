"""Monte Carlo uncertainty and drop-one sensitivity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from priority_index.composite import composite_index
from priority_index.crime_groups import source_mapping
from priority_index.indicators import build_indicators
from priority_index.uncertainty import (
    drop_one_sensitivity,
    monte_carlo,
    perturb_weights,
    poisson_counts,
    top_count,
)

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"
HARM = {"violence": 100.0, "theft": 2.0, "burglary": 30.0}
WEIGHTS = {"harm_rate": 3.0, "asb_rate": 1.0, "dep_income": 2.0, "crime_count": 0.0}


def _inputs(n: int = 40, seed: int = 5):
    rng = np.random.default_rng(seed)
    idx = pd.Index([f"E01{i:06d}" for i in range(n)][::-1], name="lsoa_code")
    counts = pd.DataFrame(
        rng.poisson(rng.gamma(2.0, 8.0, (n, 4))),
        index=idx,
        columns=["violence", "theft", "burglary", "asb"],
    )
    kwargs = dict(
        population=pd.Series(rng.integers(1000, 2500, n).astype(float), index=idx),
        deprivation=pd.DataFrame({"income": rng.random(n)}, index=idx),
    )
    return counts, kwargs


@pytest.mark.parametrize(
    ("normalisation", "aggregation"),
    [("zscore", "linear"), ("exponential", "linear"), ("minmax", "geometric"), ("rank", "linear")],
)
def test_degenerate_interval_equals_base_rank(normalisation, aggregation):
    counts, kwargs = _inputs()
    base = composite_index(
        build_indicators(counts, HARM, **kwargs),
        WEIGHTS,
        normalisation=normalisation,
        aggregation=aggregation,
    )
    mc = monte_carlo(
        counts,
        HARM,
        WEIGHTS,
        build_kwargs=kwargs,
        draws=20,
        weight_spread=0.0,
        resample_counts=False,
        normalisation=normalisation,
        aggregation=aggregation,
    )
    s = mc.summary
    assert list(s.index) == list(counts.index)
    for col in ("base_rank", "median_rank", "rank_p05", "rank_p95"):
        np.testing.assert_array_equal(s[col].to_numpy(), base.rank.to_numpy())
    np.testing.assert_array_equal(mc.rank_draws, np.tile(base.rank.to_numpy(), (20, 1)))
    np.testing.assert_allclose(mc.score_draws, np.tile(base.score.to_numpy(), (20, 1)))
    k = top_count(40, 0.1)
    assert k == 4
    np.testing.assert_array_equal(s["p_top_decile"], (base.rank <= k).astype(float))
    assert mc.indicators == ("harm_rate", "asb_rate", "dep_income")
    np.testing.assert_allclose(mc.weight_draws, np.tile([0.5, 1 / 6, 1 / 3], (20, 1)))


def test_reproducible_and_block_invariant():
    counts, kwargs = _inputs()
    run = dict(build_kwargs=kwargs, draws=60, weight_spread=0.3, seed=11)
    a = monte_carlo(counts, HARM, WEIGHTS, **run)
    b = monte_carlo(counts, HARM, WEIGHTS, **run, block_size=7)
    c = monte_carlo(counts, HARM, WEIGHTS, **{**run, "seed": 12})
    again = monte_carlo(counts, HARM, WEIGHTS, **run)
    np.testing.assert_array_equal(a.score_draws, again.score_draws)
    np.testing.assert_array_equal(a.rank_draws, again.rank_draws)
    pd.testing.assert_frame_equal(a.summary, again.summary)
    # another block size draws the same random numbers (sums may differ in the last bit)
    np.testing.assert_allclose(a.score_draws, b.score_draws, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(a.rank_draws, b.rank_draws)
    np.testing.assert_array_equal(a.weight_draws, b.weight_draws)
    assert not np.array_equal(a.score_draws, c.score_draws)
    # weights and counts use separate streams: switching resampling off keeps the weights
    d = monte_carlo(counts, HARM, WEIGHTS, **run, resample_counts=False)
    np.testing.assert_array_equal(a.weight_draws, d.weight_draws)
    assert not np.array_equal(a.score_draws, d.score_draws)
    # every draw ranks all LSOAs once, and exactly k are in the top set per draw
    assert (np.sort(a.rank_draws, axis=1) == np.arange(1, 41)).all()
    assert a.summary["p_top_decile"].sum() == pytest.approx(4.0)
    s = a.summary
    assert (s["rank_p05"] <= s["median_rank"]).all() and (s["median_rank"] <= s["rank_p95"]).all()


def test_resampled_draws_match_rebuilt_indicators():
    """Vectorised per-draw rebuild == build_indicators + composite_index on the same counts."""
    counts, kwargs = _inputs(n=25)
    mc = monte_carlo(
        counts,
        HARM,
        WEIGHTS,
        build_kwargs=kwargs,
        draws=5,
        weight_spread=0.0,
        seed=3,
        normalisation="exponential",
        block_size=5,
    )
    # the documented stream: SeedSequence(seed).spawn(2)[1] drives the counts
    rng_c = np.random.default_rng(np.random.SeedSequence(3).spawn(2)[1])
    sample = poisson_counts(counts.to_numpy(dtype=float), draws=5, rng=rng_c)
    for d in range(5):
        frame = pd.DataFrame(sample[d], index=counts.index, columns=counts.columns)
        ref = composite_index(
            build_indicators(frame, HARM, **kwargs), WEIGHTS, normalisation="exponential"
        )
        np.testing.assert_allclose(mc.score_draws[d], ref.score.to_numpy(), rtol=1e-12)
        np.testing.assert_array_equal(mc.rank_draws[d], ref.rank.to_numpy())


def test_dominant_lsoa_always_first():
    counts, kwargs = _inputs()
    counts.iloc[7] = [400, 400, 400, 400]
    kwargs["deprivation"].iloc[7, 0] = 1.0
    mc = monte_carlo(counts, HARM, WEIGHTS, build_kwargs=kwargs, draws=200, weight_spread=0.5)
    row = mc.summary.iloc[7]
    assert row["median_rank"] == 1 and row["rank_p95"] == 1 and row["p_top_decile"] == 1.0
    # perturbation moves some other LSOAs' ranks
    assert (mc.summary["rank_p95"] - mc.summary["rank_p05"]).max() > 0


def test_weight_perturbation_distributions():
    w = np.array([2.0, 1.0, 1.0])
    none = perturb_weights(w, draws=5, spread=0.0, rng=np.random.default_rng(0))
    np.testing.assert_allclose(none, np.tile([0.5, 0.25, 0.25], (5, 1)))
    uni = perturb_weights(w, draws=4000, spread=0.25, rng=np.random.default_rng(0))
    np.testing.assert_allclose(uni.sum(axis=1), 1.0)
    ratio = uni[:, 0] / uni[:, 1] / 2.0  # factor_0 / factor_1, each in [0.75, 1.25]
    assert ratio.min() >= 0.75 / 1.25 - 1e-12 and ratio.max() <= 1.25 / 0.75 + 1e-12
    assert ratio.min() < 0.7 and ratio.max() > 1.5
    logn = perturb_weights(
        w, draws=4000, spread=0.25, distribution="lognormal", rng=np.random.default_rng(0)
    )
    log_ratio = np.log(logn[:, 0] / logn[:, 1] / 2.0)  # N(0, 2 * 0.25^2)
    assert abs(log_ratio.std() - 0.25 * np.sqrt(2)) < 0.02
    assert abs(np.median(log_ratio)) < 0.03
    with pytest.raises(ValueError):
        perturb_weights(w, draws=2, spread=1.0, rng=np.random.default_rng(0))


def test_poisson_resampling_moments():
    lam = np.array([[0.0, 3.0], [50.0, 0.5]])
    draws = poisson_counts(lam, draws=20000, rng=np.random.default_rng(1))
    assert draws.shape == (20000, 2, 2)
    assert (draws[:, 0, 0] == 0).all()
    np.testing.assert_allclose(draws.mean(axis=0), lam, atol=0.15)
    np.testing.assert_allclose(draws.var(axis=0), lam, rtol=0.05, atol=0.05)


def test_drop_one_sensitivity_by_hand():
    idx = pd.Index(["L1", "L2", "L3", "L4"], name="lsoa_code")
    ind = pd.DataFrame({"a": [4.0, 3.0, 2.0, 1.0], "b": [1.0, 2.0, 3.0, 10.0]}, index=idx)
    # minmax: a = 1, 2/3, 1/3, 0; b = 0, 1/9, 2/9, 1; score (2a + b)/3 = .667, .481, .296, .333
    base = composite_index(ind, {"a": 2, "b": 1}, normalisation="minmax")
    assert list(base.rank) == [1, 2, 4, 3]
    table = drop_one_sensitivity(ind, {"a": 2, "b": 1}, top_n=2, normalisation="minmax")
    assert list(table.index) == ["a", "b"]
    # drop a: ranking by b alone is L4, L3, ...: both of L1, L2 leave
    assert table.loc["a", "n_left"] == 2 and table.loc["a", "n_entered"] == 2
    assert table.loc["a", "jaccard"] == 0.0
    assert table.loc["a", "left"] == "L1; L2" and table.loc["a", "entered"] == "L4; L3"
    assert table.loc["a", "effective_weight"] == pytest.approx(2 / 3)
    # drop b: ranking by a alone keeps L1, L2
    assert table.loc["b", "n_left"] == 0 and table.loc["b", "jaccard"] == 1.0
    assert table.loc["b", "entered"] == ""
    # top 1: dropping a swaps L1 for L4 -> Jaccard 0
    assert (
        drop_one_sensitivity(ind, {"a": 2, "b": 1}, top_n=1, normalisation="minmax").loc[
            "a", "entered"
        ]
        == "L4"
    )
    single = drop_one_sensitivity(ind, {"a": 1}, top_n=1)
    assert np.isnan(single.loc["a", "jaccard"])


@pytest.mark.realdata
def test_croydon_monte_carlo_1000_draws():
    crime = RAW / "london" / "crime_lsoa_monthly" / "MPS_LSOA_Level_Crime_2024-02_to_2026-02.csv"
    census = RAW / "census2021" / "census2021_usual_residents_lsoa21_total.csv"
    iod = RAW / "iod" / "imd2025_england_lsoa21.csv.gz"
    if not (crime.exists() and census.exists() and iod.exists()):
        pytest.skip("shared raw data not available")
    table = pd.read_csv(crime)
    table = table[table["Borough"] == "E09000008"]
    months = [c for c in table.columns if c.isdigit()][-12:]
    table = table.assign(group=table["Major Category"].map(source_mapping("met_major")))
    counts = table.groupby(["LSOA Code", "group"])[months].sum().sum(axis=1).unstack(fill_value=0)
    counts.index.name = "lsoa_code"
    pop = pd.read_csv(census).set_index("lsoa21_code")["usual_residents"]
    dep = pd.read_csv(iod).set_index("lsoa21_code")[["Income_score", "Employment_score"]]
    harm = {g: 10.0 for g in counts.columns} | {"violence": 200.0, "robbery": 365.0}
    weights = {"harm_rate": 4, "violence_harm_rate": 2, "dep_income": 2, "dep_employment": 1}
    kwargs = dict(population=pop, deprivation=dep)
    run = dict(build_kwargs=kwargs, draws=1000, seed=0)
    mc = monte_carlo(counts, harm, weights, **run)
    again = monte_carlo(counts, harm, weights, **run)
    np.testing.assert_array_equal(mc.score_draws, again.score_draws)
    assert mc.score_draws.shape == (1000, 229) and mc.rank_draws.shape == (1000, 229)
    s = mc.summary
    assert s["p_top_decile"].sum() == pytest.approx(22.0)
    assert (s["rank_p05"] <= s["median_rank"]).all() and (s["median_rank"] <= s["rank_p95"]).all()
    # the base top decile is mostly stable: most of its LSOAs stay in it in most draws
    top = s[s["base_rank"] <= 22]
    assert (top["p_top_decile"] > 0.5).mean() > 0.6
    assert np.corrcoef(s["base_rank"], s["median_rank"])[0, 1] > 0.95
