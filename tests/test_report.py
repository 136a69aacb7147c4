"""Tests of the board report: sections, numbers, figures, escaping, determinism."""

from __future__ import annotations

import base64
import re
import struct
import zlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from priority_index.exports import report
from priority_index.exports.report import ReportData, render_report, write_report
from priority_index.harm import concentration

EVIL = "<script>alert(1)</script>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG_SRC = re.compile(r'<img src="data:image/(png|svg\+xml);base64,([A-Za-z0-9+/=]+)"')


# --------------------------------------------------------------------------------------------
# A small synthetic borough: 6 x 5 square LSOAs, 3 neighbourhoods


def _lsoa_index() -> gpd.GeoDataFrame:
    rows = []
    k = 0
    for j in range(5):
        for i in range(6):
            x0, y0 = 530000 + 500 * i, 160000 + 500 * j
            rows.append(
                {
                    "lsoa_code": f"E0100{k:04d}",
                    "lsoa_name": f"Testham {k:03d}A",
                    "ward_name": f"Ward {'ABC'[i // 2]}",
                    "geometry": shapely.box(x0, y0, x0 + 500, y0 + 500),
                }
            )
            k += 1
    gdf = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:27700").set_index("lsoa_code")
    rng = np.random.default_rng(7)
    score = np.round(np.linspace(3.0, -2.0, 30) + rng.normal(0, 0.01, 30), 4)
    gdf["score"] = score
    gdf["rank"] = pd.Series(score, index=gdf.index).rank(ascending=False).astype("int64")
    gdf["decile"] = np.ceil(gdf["rank"] / 3).astype("int64")
    gdf["median_rank"] = gdf["rank"] + 0.5
    gdf["rank_p05"] = np.maximum(1, gdf["rank"] - 2)
    gdf["rank_p95"] = gdf["rank"] + 4
    gdf["p_top_decile"] = np.clip(1 - gdf["rank"] / 6, 0, 1)
    nb = np.zeros(30, dtype="int64")
    nb[[0, 1, 6]] = 1  # bottom-left block
    nb[[4, 5, 11]] = 2  # bottom-right block
    nb[[24, 25, 18]] = 3  # top-left block
    gdf["neighbourhood_id"] = nb
    gdf["top_drivers"] = "Violence harm 41%, Income deprivation 22%"
    gdf["gi_bin"] = np.where(gdf["rank"] <= 5, 3, np.where(gdf["rank"] >= 27, -2, 0))
    gdf["residents"] = 1500.0
    # a hostile name among the top LSOAs (rank 1)
    gdf.loc[gdf["rank"] == 1, "lsoa_name"] = EVIL
    return gdf


def _neighbourhoods(lsoas: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    geoms = [
        shapely.union_all(lsoas.geometry[lsoas["neighbourhood_id"] == i].to_numpy())
        for i in (1, 2, 3)
    ]
    return gpd.GeoDataFrame(
        {
            "neighbourhood_id": [1, 2, 3],
            "name": ["Thornton Heath & West Thornton", EVIL, "Fieldway"],
            "n_lsoas": [3, 3, 3],
            "residents": [4500.0, 4600.0, 4400.0],
            "total_harm": [12345.0, 9876.0, 5432.0],
            "violence_harm": [6000.0, 5000.0, 2000.0],
            "share_of_borough_harm": [0.214, 0.171, 0.094],
            "rank": [1, 2, 3],
            "drivers": ["Violence Against the Person (52%)", "Robbery (30%)", "ASB (40%)"],
            "gi_hot_share": [1.0, 0.33, 0.0],
            "selection_frequency": [0.97, 0.61, 0.31],
            "mean_overlap": [0.88, 0.54, 0.26],
            "fragile": [False, False, True],
            "also_priority_before": [True, False, True],
        },
        geometry=geoms,
        crs="EPSG:27700",
    )


def _harm_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "crime_group": ["violence", "robbery", "total_notifiable", "asb"],
            "Crime Type": [
                "Violence Against the Person",
                "Robbery",
                "Total Notifiable Offences",
                "Anti-social Behaviour",
            ],
            "2019": [50000.0, 20000.0, 70000.0, 0.0],
            "2020": [55000.0, 18000.0, 73000.0, 0.0],
            "+/-": [5000.0, -2000.0, 3000.0, 0.0],
            "% +/-": [10.0, -10.0, 4.2857, np.nan],
            "Offences 2019": [5000.0, 400.0, 5400.0, 900.0],
            "Offences 2020": [5100.0, 380.0, 5480.0, 950.0],
        }
    )


def _data(**overrides) -> ReportData:
    lsoas = _lsoa_index()
    rng = np.random.default_rng(3)
    harm = rng.gamma(0.5, 100.0, 30)
    counts = rng.gamma(2.0, 10.0, 30)
    lorenz = {}
    conc_rows = []
    for label, values in (("LSOA harm", harm), ("LSOA count", counts)):
        c = concentration(values)
        lorenz[label] = (c.x, c.y)
        conc_rows.append(
            {
                "unit": "LSOA",
                "measure": label.split()[1],
                "units": c.n,
                "total": c.total,
                "gini": c.gini,
                "share_of_units_for_half": c.share_of_units_for(0.5),
                "units_for_half": round(c.share_of_units_for(0.5) * c.n),
            }
        )
    # a classic ascending Lorenz curve is accepted too
    c = concentration(rng.gamma(0.3, 10.0, 200))
    lorenz["cell harm"] = (1 - c.x[::-1], 1 - c.y[::-1])
    base = dict(
        title=f"Testham Priority Localities Index {EVIL}",
        subtitle="Testham, 30 LSOAs. Periods: 2019; 2020.",
        generated_note="Counts from the Met's LSOA tables; point positions are GENERATED.",
        lsoa_index=lsoas,
        neighbourhoods=_neighbourhoods(lsoas),
        harm_table=_harm_table(),
        periods=["2019", "2020"],
        concentration=pd.DataFrame(conc_rows),
        lorenz=lorenz,
        quality=pd.DataFrame(
            [
                {
                    "source": "police.uk street-level crime",
                    "files": 12,
                    "rows_read": 1000,
                    "rows_used": 950,
                    "rows_rejected": 50,
                    "rejected_by_reason": {"no_coordinates": 30, "outside_study_area": 20},
                    "reconciles": True,
                },
                {
                    "source": EVIL,
                    "files": 1,
                    "rows_read": 10,
                    "rows_used": 9,
                    "rows_rejected": 0,
                    "rejected_by_reason": {},
                    "reconciles": False,
                },
            ]
        ),
        reasons={
            "no_coordinates": "no longitude/latitude (police.uk withholds some locations)",
            "outside_study_area": "the record's LSOA is outside the study area",
        },
        sensitivity=pd.DataFrame(
            {
                "label": ["Violence harm", "Income deprivation"],
                "effective_weight": [0.6, 0.4],
                "n_left": [2, 1],
                "n_entered": [2, 1],
                "jaccard": [0.5, 0.8],
                "left": ["E01000003; E01000002", "E01000002"],
                "entered": ["E01000009; E01000010", "E01000009"],
            },
            index=pd.Index(["harm_violence", "dep_income"], name="dropped"),
        ),
        controls=pd.DataFrame(
            {
                "n_lsoas": [3, 3, 3],
                "control_lsoa_codes": ["E01000012; E01000013", "E01000014", ""],
                "target_mean_score": [2.5, 2.0, 1.5],
                "control_mean_score": [1.1, 1.0, np.nan],
                "target_trend": [-120.0, 35.0, 10.0],
                "control_trend": [-20.0, 15.0, np.nan],
            },
            index=pd.Index([1, 2, 3], name="neighbourhood_id"),
        ),
        trial=pd.DataFrame(
            {
                "unit": ["cell-1", "cell-2", "cell-3", "cell-4"],
                "block": [1, 1, 2, 2],
                "arm": ["treatment", "control", "control", "treatment"],
                "seed": [42, 42, 42, 42],
            }
        ),
        face_validity=pd.DataFrame(
            {
                "place": ["West Testham", EVIL],
                "wards": ["Ward A", "Ward C"],
                "n_lsoas": [10, 10],
                "n_selected": [3, 0],
                "in_priority": [True, False],
                "neighbourhoods": ["Thornton Heath & West Thornton", ""],
                "share_of_lsoas_selected": [0.3, 0.0],
                "best_rank": pd.array([1, 17], dtype="Int64"),
                "median_rank": [12.5, 22.0],
                "gi_hot_share": [0.2, 0.0],
                "main_drivers": ["Violence harm", "Income deprivation"],
                "source": ["Testham 2021 survey", "Testham 2021 survey"],
                "explanation": [
                    "In the nine: 3 of its 10 LSOAs form part of 'Thornton Heath'.",
                    "Not in the nine: its best LSOA ranks 17th of 30.",
                ],
            }
        ),
        weights={
            "harm_violence": (0.6, "Violence harm"),
            "dep_income": (0.4, "Income deprivation"),
        },
        method_text=["Crimes are weighted by the Cambridge Crime Harm Index.", EVIL],
        selection_rule="Seeds are taken in descending score order.",
        config_toml='[pipeline]\nname = "testham"\ntitle = "<b>Testham</b>"\n'
        'source = "https://data.police.uk/"\n',
        timings={"ingest": 1.234, "indicators and index": 0.5},
        notes=["A note about the run.", EVIL],
        outputs={"report.html": 123456, "priority_index.gpkg": {"bytes": 2_500_000}},
        harm_weights=pd.DataFrame(
            {
                "crime_group": ["violence", "robbery", "sexual_offences", "asb"],
                "days": [51.27, 333.72, 724.14, 0.0],
            }
        ),
        study_area_is_croydon=False,
        study_area_name=f"Testham {EVIL}",
        hotspot_method={
            "indicator": "crime harm",
            "weights": "queen",
            "permutations": 999,
            "fdr": True,
        },
    )
    base.update(overrides)
    return ReportData(**base)


@pytest.fixture(scope="module")
def page() -> str:
    return render_report(_data(), top_n=12)


def _images(page: str) -> list[tuple[str, bytes]]:
    return [(kind, base64.b64decode(b64)) for kind, b64 in IMG_SRC.findall(page)]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _png_chunks(data: bytes) -> list[bytes]:
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        assert (
            zlib.crc32(kind + body)
            == struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]
        )
        chunks.append(kind)
        pos += 12 + length
    return chunks


# --------------------------------------------------------------------------------------------
# Structure and content


def test_every_section_and_heading_present(page: str) -> None:
    for anchor, _heading in report.SECTIONS:
        assert f'<section id="{anchor}"' in page
        assert f'href="#{anchor}"' in page
    for heading in (
        "Summary",
        "Where: the index map",
        "The top 12 LSOAs",
        "How sure are the ranks?",
        "The three priority neighbourhoods",
        "Harm by crime group",
        "Concentration: harm against counts",
        "Weights and sensitivity",
        "Face validity: places residents call unsafe",
        "Target, test, track",
        "Data quality",
        "Method in plain words",
        "Run details",
    ):
        assert f"<h2>{heading}</h2>" in page, heading
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    assert "@page" in page and "A4" in page


def test_summary_key_figures(page: str) -> None:
    summary = page.split('<section id="summary"')[1].split("</section>")[0]
    assert ">30<" in summary  # LSOAs
    assert "45,000" in summary  # residents, 30 x 1,500
    assert "73,000" in summary  # total harm, last period
    assert "5,480" in summary  # notifiable offences, last period
    assert "13,500" in summary  # residents in the neighbourhoods
    assert "47.9%" not in summary and "48%" in summary  # 0.214 + 0.171 + 0.094
    assert "9 of the 30 LSOAs (30%)" in summary
    assert "1 of the three priority neighbourhoods is fragile" in summary
    assert "Fieldway" in summary
    assert "+4.3%" in summary  # change in notifiable harm 2019 -> 2020


def test_top_table_lists_exactly_top_n_in_rank_order(page: str) -> None:
    section = page.split('<section id="top-lsoas"')[1].split("</section>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", section.split("<tbody>")[1])
    assert len(rows) == 12
    ranks = [int(re.search(r'<td class="num">(\d+)</td>', r).group(1)) for r in rows]
    assert ranks == list(range(1, 13))
    lsoas = _lsoa_index()
    second = lsoas[lsoas["rank"] == 2].iloc[0]
    assert f"{second['score']:.2f}" in rows[1]
    assert "Thornton Heath &amp; West Thornton" in section  # neighbourhood name of its LSOAs
    assert "Hot spot - 99%" in section
    # the 13th LSOA is not in the table
    thirteenth = lsoas[lsoas["rank"] == 13].index[0]
    assert thirteenth not in section


def test_neighbourhood_table_shows_stability_and_persistence(page: str) -> None:
    section = page.split('<section id="neighbourhoods"')[1].split("</section>")[0]
    for text in ("97%", "61%", "31%", "21.4%", "12,345", "Fieldway", "Seeds are taken"):
        assert text in section, text
    fieldway = [r for r in re.findall(r"<tr[^>]*>(.*?)</tr>", section) if "Fieldway" in r][0]
    assert "<td>Yes</td>" in fieldway  # fragile and priority before
    assert 'class="fragile"' in section


def test_harm_table_layout(page: str) -> None:
    section = page.split('<section id="harm"')[1].split("</section>")[0]
    headers = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", section)
    assert headers[:6] == [
        "Crime Type",
        "Days per offence (CCHI average)",
        "2019",
        "2020",
        "+/-",
        "% +/-",
    ]
    assert "Offences 2019" in headers and "Offences 2020" in headers
    assert "crime_group" not in headers
    assert '<tr class="total">' in section
    total = section.split('<tr class="total">')[1].split("</tr>")[0]
    assert "70,000" in total and "73,000" in total and "+3,000" in total and "+4.3" in total
    assert "\u221210.0" in section  # robbery's fall, with a true minus sign


def test_concentration_statement_and_table(page: str) -> None:
    section = page.split('<section id="concentration"')[1].split("</section>")[0]
    data = _data()
    conc = data.concentration.set_index("measure")
    more = conc.loc["harm", "gini"] > conc.loc["count", "gini"]
    assert ("harm is more concentrated than counts" in section) == bool(more)
    assert f"{conc.loc['harm', 'gini']:.3f}" in section
    assert f"{conc.loc['count', 'gini']:.3f}" in section
    assert "50%" in section


def test_weights_sensitivity_face_validity_ttt_quality_method_run(page: str) -> None:
    weights = page.split('<section id="weights"')[1].split("</section>")[0]
    assert "60.0%" in weights and "40.0%" in weights
    assert "The index leans most on Violence harm" in weights
    face = page.split('<section id="face-validity"')[1].split("</section>")[0]
    assert "1 of 2 have at least one LSOA in a priority neighbourhood" in face
    assert "weak test" in face and "2021" in face
    assert "3 of 10" in face  # LSOAs selected, beside the yes/no
    assert "its best LSOA ranks 17th of 30" in face
    ttt = page.split('<section id="target-test-track"')[1].split("</section>")[0]
    assert "E01000012; E01000013" in ttt and "treatment" in ttt
    assert "Thornton Heath &amp; West Thornton" in ttt  # neighbourhood name joined in
    assert "4 units randomised" in ttt
    quality = page.split('<section id="data-quality"')[1].split("</section>")[0]
    assert "1,000" in quality and "950" in quality
    assert "no_coordinates" in quality and "police.uk withholds some locations" in quality
    assert 'class="warn"' in quality  # a source that does not reconcile
    method = page.split('<section id="method"')[1].split("</section>")[0]
    assert "Cambridge Crime Harm Index" in method
    assert "[pipeline]" in method and 'name = "testham"' in method.replace("&quot;", '"')
    run = page.split('<section id="run"')[1].split("</section>")[0]
    assert "1.23" in run and "2.4 MB" in run and "121 kB" in run


def test_generated_note_shown_first(page: str) -> None:
    header = page.split("<header>")[1].split("</header>")[0]
    assert 'class="note"' in header and "GENERATED" in header


# --------------------------------------------------------------------------------------------
# Figures


def test_figures_are_embedded_pngs(page: str) -> None:
    images = _images(page)
    # index map, Gi* map, rank uncertainty, concentration curves
    assert len(images) == 4
    for kind, data in images:
        assert kind == "png"
        width, height = _png_size(data)
        assert 600 <= width <= 1200 and 300 <= height <= 1400
        chunks = _png_chunks(data)
        assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
        assert b"tIME" not in chunks  # no timestamp
        assert b"Software" not in data
    for section in ("map", "uncertainty", "concentration"):
        body = page.split(f'<section id="{section}"')[1].split("</section>")[0]
        assert "data:image/png;base64," in body, section


def test_no_external_resources(page: str) -> None:
    refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', page, flags=re.I)
    assert refs
    for ref in refs:
        assert ref.startswith(("#", "data:")), ref
    assert not re.search(r'(?:src|href)\s*=\s*["\']?\s*(?:https?:)?//', page, flags=re.I)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "<script" not in page  # no script at all, data or otherwise


def test_text_from_data_is_escaped(page: str) -> None:
    assert EVIL not in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for anchor in ("top-lsoas", "neighbourhoods", "face-validity", "data-quality", "method"):
        section = page.split(f'<section id="{anchor}"')[1].split("</section>")[0]
        assert escaped in section, anchor
    assert f"<title>Testham Priority Localities Index {escaped}</title>" in page
    assert "&lt;b&gt;Testham&lt;/b&gt;" in page  # config text


def test_render_is_deterministic() -> None:
    first = render_report(_data(), top_n=12)
    second = render_report(_data(), top_n=12)
    assert first == second


def test_rc_params_of_the_caller_do_not_leak_in_or_out() -> None:
    import matplotlib

    before = render_report(_data(), top_n=5)
    with matplotlib.rc_context({"font.size": 20, "lines.linewidth": 5}):
        during = render_report(_data(), top_n=5)
        assert matplotlib.rcParams["font.size"] == 20
    assert before == during


def test_missing_optional_tables_give_notes_not_errors() -> None:
    lsoas = _lsoa_index()[["lsoa_name", "score", "rank", "neighbourhood_id", "geometry"]]
    nb = pd.DataFrame({"name": ["Only one"]}, index=pd.Index([1], name="neighbourhood_id"))
    html = render_report(ReportData(title="Bare", lsoa_index=lsoas, neighbourhoods=nb))
    assert html.count("not available for this run") >= 6
    assert "<h2>The one priority neighbourhood</h2>" in html
    assert "The one priority neighbourhoods" not in html
    # the outline is dissolved from the LSOAs: still one map, no rank figure
    assert len(_images(html)) == 1


def test_neighbourhoods_as_column_and_other_crs() -> None:
    data = _data()
    lsoas = data.lsoa_index.to_crs("EPSG:4326").reset_index()
    html = render_report(_data(lsoa_index=lsoas), top_n=12)
    assert "<h2>The three priority neighbourhoods</h2>" in html
    assert len(_images(html)) == 4


def test_top_n_is_validated() -> None:
    with pytest.raises(ValueError):
        render_report(_data(), top_n=0)


# --------------------------------------------------------------------------------------------
# Writing


def test_write_report_is_atomic_and_exact(tmp_path: Path, page: str) -> None:
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")
    write_report(page, target)
    assert target.read_text(encoding="utf-8") == page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_write_report_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", fail)
    with pytest.raises(OSError):
        write_report("<html>new</html>", target)
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_concentration_wording_equal_gini_and_plural_units() -> None:
    conc = pd.DataFrame(
        {
            "unit": ["150 m cell (points only)"] * 2,
            "measure": ["harm", "count"],
            "gini": [0.371, 0.372],
            "share_of_units_for_half": [0.22, 0.22],
        }
    )
    html = render_report(_data(concentration=conc, lorenz={}))
    section = html.split('<section id="concentration"')[1].split("</section>")[0]
    assert "Across 150 m cells (points only), harm is about as concentrated as counts" in section
    assert "(Gini 0.371 against 0.372)" in section  # equal at two digits: three shown
    assert "22% of 150 m cells (points only) hold half of the harm" in section
    assert "data:image/png" not in section  # no curves given, no figure
    conc["gini"] = [0.30, 0.40]
    html = render_report(_data(concentration=conc, lorenz={}))
    assert "harm is less concentrated than counts" in html


def test_long_trial_is_cut_and_ids_print_without_separators() -> None:
    trial = pd.DataFrame(
        {
            "unit": [f"cell-{i}" for i in range(90)],
            "block": np.repeat(np.arange(1, 46), 2),
            "arm": ["treatment", "control"] * 45,
            "seed": 20240301,
            "harm": np.linspace(600.0, 22.25, 90),
        }
    )
    html = render_report(_data(trial=trial))
    section = html.split('<section id="target-test-track"')[1].split("</section>")[0]
    assert "90 units randomised in blocks (treatment: 45, control: 45)" in section
    assert "The first 40 of 90 units are listed" in section
    assert "cell-39<" in section and "cell-40<" not in section
    # the seed is stated once, not repeated on each row
    assert "random seed 20240301" in section and "20,240,301" not in section
    assert section.count("20240301") == 1
    # one format per column: values up to 600 print without decimals, 346.8 too
    assert ">600<" in section and ">347<" in section and "346.8" not in section


def _section_of(html: str, anchor: str) -> str:
    return html.split(f'<section id="{anchor}"')[1].split("</section>")[0]


def _text_of(html: str) -> str:
    """Visible text with tags removed and entities decoded (for phrase checks)."""
    import html as html_lib

    return html_lib.unescape(re.sub(r"<[^>]+>", " ", html))


def test_what_harm_means_here_in_harm_and_method_sections(page: str) -> None:
    for anchor in ("harm", "method"):
        section = _section_of(page, anchor)
        text = _text_of(section)
        assert "What harm means here" in text, anchor
        assert "AVERAGE number of CCHI days per recorded offence" in text
        assert "Strategic Assessment" in text and "CCHI_DERIVATION.md" in text
        assert "harm at a fixed offence mix" in text
        assert "not with a shift towards more or less serious offences" in text
        # no sexual offences in the counts: said, with their weight in Croydon's harm
        assert "EXCLUDES sexual offences" in text and "about a third" in text
        # not Croydon: the weights are said to be Croydon-calibrated, area name escaped
        assert "Croydon-calibrated" in text
        assert "Testham &lt;script&gt;" in section
        # the old, wrong wording is gone
        assert "attracts at the starting point" not in text
    harm = _section_of(page, "harm")
    assert "Total Notifiable Offences (excluding sexual offences)" in harm
    violence = [r for r in re.findall(r"<tr[^>]*>(.*?)</tr>", harm) if "Violence Against" in r][0]
    assert ">51.27<" in violence  # days per offence beside the group
    summary = _text_of(_section_of(page, "summary"))
    assert "days of harm (CCHI excluding sexual offences), 2020" in summary
    assert "harm at a fixed offence mix" in summary


def test_harm_sexual_offences_rows_and_wording() -> None:
    table = _harm_table()
    sexual = pd.DataFrame(
        {
            "crime_group": ["sexual_offences"],
            "Crime Type": ["Sexual Offences"],
            "2019": [0.0],
            "2020": [0.0],
            "+/-": [0.0],
            "% +/-": [np.nan],
            "Offences 2019": [0.0],
            "Offences 2020": [0.0],
        }
    )
    with_zeros = pd.concat([table.iloc[:2], sexual, table.iloc[2:]], ignore_index=True)
    html = render_report(_data(harm_table=with_zeros, study_area_is_croydon=True))
    harm = _section_of(html, "harm")
    row = [r for r in re.findall(r"<tr[^>]*>(.*?)</tr>", harm) if "Sexual Offences" in r][0]
    assert "Sexual Offences (not published at LSOA level)" in row
    assert ">0<" not in row and ">+0<" not in row  # no zeros shown as if real
    text = _text_of(harm)
    assert "EXCLUDES sexual offences" in text
    assert "Croydon's own 2019-20 averages" in text and "Croydon-calibrated" not in text

    # police.uk's combined group: sexual harm included, blended
    blended = table.copy()
    blended.loc[0, ["crime_group", "Crime Type"]] = ["violence_and_sexual", "Violence and Sexual"]
    weights = pd.DataFrame(
        {
            "crime_group": ["violence", "sexual_offences", "violence_and_sexual", "robbery"],
            "days": [51.27, 724.14, 108.46, 333.72],
        }
    )
    html = render_report(_data(harm_table=blended, harm_weights=weights))
    text = _text_of(_section_of(html, "harm"))
    assert "EXCLUDES" not in text and "excluding sexual offences" not in text
    assert "blends the two (108.46 days" in text and "724.14" in text
    # sexual offences counted on their own
    own = pd.concat([table.iloc[:2], sexual.assign(**{"Offences 2020": 10.0})], ignore_index=True)
    text = _text_of(_section_of(render_report(_data(harm_table=own)), "harm"))
    assert "included with their own weight (724.14 days per offence)" in text


def test_offences_outside_the_periods_are_mentioned_by_the_harm_table() -> None:
    quality = pd.DataFrame(
        [
            {
                "source": "Met LSOA crime counts (monthly)",
                "rows_read": 10,
                "rows_used": 10,
                "rows_rejected": 0,
                "offences_read": 65521.0,
                "offences_used": 65519.0,
                "rejected_by_reason": {},
                "reconciles": True,
            },
            {
                "source": "police.uk burglary points",
                "rows_read": 3702,
                "rows_used": 1907,
                "rows_rejected": 1795,
                "rejected_by_reason": {"outside_period": 1795},
                "reconciles": True,
            },
        ]
    )
    html = render_report(_data(quality=quality))
    text = _text_of(_section_of(html, "harm"))
    offences = (
        "2 of the 65,521 offences read from Met LSOA crime counts (monthly) fall in months "
        "outside the analysis periods"
    )
    assert offences in text
    assert "1,795 records of police.uk burglary points fall in months outside the analysis" in text
    assert offences in _text_of(_section_of(html, "data-quality"))


def test_cell_concentration_with_one_crime_group_is_called_void() -> None:
    label = "150 m cell, police.uk points 2024/25 (Burglary); all 3,864 cells of the study area"
    conc = pd.DataFrame(
        {
            "unit": ["LSOA", "LSOA", label, label],
            "measure": ["harm", "count", "harm", "count"],
            "units": [229, 229, 3864, 3864],
            "gini": [0.448, 0.412, 0.854, 0.854],
            "share_of_units_for_half": [0.197, 0.21, 0.052, 0.052],
        }
    )
    html = render_report(_data(concentration=conc, point_groups=["Burglary"]))
    section = _section_of(html, "concentration")
    text = _text_of(section)
    assert f"<strong>{label}</strong>" in section  # the unit label, as given
    assert "Across the 3,864 cells, harm cannot be compared with counts" in text
    assert "only one crime group has points (Burglary)" in text
    assert "harm is as concentrated as counts" not in text
    assert "Across the 229 LSOAs, harm is more concentrated than counts" in text
    assert "Units (denominator)" in text
    summary = _text_of(_section_of(html, "summary"))
    assert "Across the 229 LSOAs" in summary
    # without the groups, identical curves are still recognised as proportional
    text = _text_of(_section_of(render_report(_data(concentration=conc)), "concentration"))
    assert "harm is proportional to counts here" in text


def test_stability_shows_mean_overlap_in_plain_words(page: str) -> None:
    section = _section_of(page, "neighbourhoods")
    text = _text_of(section)
    assert "Core LSOA re-selected (runs)" in text and "Its LSOAs re-selected (mean)" in text
    assert "88%" in section and "54%" in section
    assert (
        "Most stable: Thornton Heath & West Thornton (core LSOA re-selected in 97% of runs; "
        "on average 88% of its LSOAs re-selected)"
    ) in text
    assert "Least stable: Fieldway (core LSOA re-selected in 31% of runs" in text


def test_face_validity_headline_weak_test_and_shared_wards() -> None:
    fv = _data().face_validity.copy()
    fv.loc[1, "wards"] = "Ward A; Ward C"
    text = _text_of(_section_of(render_report(_data(face_validity=fv)), "face-validity"))
    assert "1 of 2 have at least one LSOA in a priority neighbourhood" in text
    # pooled over distinct LSOAs of Ward A and Ward C (the fixture: 10 LSOAs each)
    assert "Of the 20 distinct LSOAs in their wards" in text
    assert "median rank of its LSOAs from 12.5 to 22 of 30" in text
    assert "This is a weak test" in text and 'counts as "in"' in text
    assert "Ward A (West Testham and <script>alert(1)</script>)" in text
    assert "named in 2021 (Testham 2021 survey) while the index uses 2020" in text


def test_controls_side_by_side_with_evaluation_caveats(page: str) -> None:
    section = _section_of(page, "target-test-track")
    text = _text_of(section)
    assert "Mean score: neighbourhood" in text and "Mean score: controls" in text
    assert "necessarily lower-scoring" in text
    assert "mean score 2.50 against 1.10 for its controls" in text
    assert "difference-in-differences" in text and "regression to the mean" in text
    assert "Harm change: change in harm days from 2019 to 2020." in text
    assert "\u2212120" in section  # signed change, true minus
    controls = _data().controls.assign(match_quality=["good", "fair", "poor"])
    text = _text_of(
        _section_of(
            render_report(_data(controls=controls, control_trend_unit="mean change per LSOA")),
            "target-test-track",
        )
    )
    assert "Match quality" in text and "fair" in text
    assert "Poor matches (1): Fieldway" in text
    assert "Harm change: mean change per LSOA." in text


def test_gi_star_explained(page: str) -> None:
    text = _text_of(_section_of(page, "map"))
    assert "Getis-Ord Gi* hot and cold spots of crime harm" in text
    assert "together with its neighbours" in text and "next to the town centre" in text
    assert "permutation pseudo p-value (999" in text and "Benjamini-Hochberg" in text
    assert "can still be 'not significant'" in text


def test_minor_wording_fixes() -> None:
    lsoas = _lsoa_index()
    lsoas["ward_name"] = ""
    text = _text_of(_section_of(render_report(_data(lsoa_index=lsoas), top_n=12), "summary"))
    assert " in ;" not in text and " in  ;" not in text
    assert "Highest-ranked LSOA: <script>alert(1)</script> (E01000000); drivers" in text
    # the rank figure covers the same LSOAs as the top table
    html = render_report(_data(), top_n=12)
    text = _text_of(_section_of(html, "uncertainty"))
    assert "of the top 12 LSOAs (the table above)" in text
    assert "The 12 highest-ranked LSOAs" in text


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    not (REPO / "pipelines" / "croydon.toml").exists()
    or not (REPO / "data" / "croydon" / "unsafe_places_2021_survey.csv").exists(),
    reason="Croydon pipeline or data not present",
)
def test_build_report_data_from_a_real_run() -> None:
    from priority_index import pipeline
    from priority_index.config import load_settings
    from priority_index.exports import bundle

    settings = load_settings(REPO / "pipelines" / "croydon.toml")
    settings = settings.model_copy(
        update={
            "uncertainty": settings.uncertainty.model_copy(update={"draws": 50}),
            "hotspots": settings.hotspots.model_copy(update={"permutations": 99}),
        }
    )
    result = pipeline.run(settings, write=False)
    lsoa_index = bundle.lsoa_index_layer(result)
    neighbourhoods = bundle._neighbourhoods_layer(result)
    data = report.build_report_data(result, lsoa_index, neighbourhoods)
    assert isinstance(data, ReportData)
    assert data.title and data.periods == [p.name for p in settings.periods]
    assert {"LSOA harm", "LSOA count"} <= set(data.lorenz)
    assert data.quality is not None and data.quality["reconciles"].all()
    assert data.weights is not None and data.method_text and data.selection_rule
    assert data.timings == {}  # run-to-run wall-clock times would break reproducibility
    html = render_report(data, top_n=settings.report.top_n)
    second = pipeline.run(settings, write=False)
    again = report.build_report_data(
        second, bundle.lsoa_index_layer(second), bundle._neighbourhoods_layer(second)
    )
    assert render_report(again, top_n=settings.report.top_n) == html
    assert f"<h2>The top {settings.report.top_n} LSOAs</h2>" in html
    assert "<h2>The nine priority neighbourhoods</h2>" in html
    assert len(_images(html)) >= 3
    if data.face_validity is not None:
        for place in data.face_validity["place"]:
            assert place in html
    method = _text_of(_section_of(html, "method"))
    assert "anti-social" not in method  # the Croydon run has no ASB data
    assert "shown below" not in method and "listed under 'Weights and sensitivity'" in method
    assert "EXCLUDES sexual offences" in method  # the Met's tables carry none
    assert "Croydon's own 2019-20 averages" in method
    assert data.study_area_is_croydon is True and data.point_groups == ["Burglary"]
    assert set(data.harm_weights["crime_group"]) >= {"violence", "robbery"}
    assert data.hotspot_method["fdr"] is True
    assert "young_share" in set(data.weights["indicator"])
    young = data.weights.set_index("indicator").loc["young_share", "label"]
    assert young == "Young residents (Aged 16 to 24 years)"
    concentration = _text_of(_section_of(html, "concentration"))
    assert "harm cannot be compared with counts" in concentration
    assert "1 of its 10 LSOAs form part" not in html
