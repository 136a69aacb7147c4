"""Tests for the offline HTML maps (priority_index.exports.maps and .offline_assets).

A synthetic borough of 230 LSOAs with realistic boundary complexity (about 150 vertices each,
more than the real 20 m generalised LSOAs) always runs; the real Croydon 2021 LSOAs run when
the shared raw data are present. Browser tests open the pages in headless Chromium with every
network request blocked, and look at the DOM Leaflet built.
"""

from __future__ import annotations

import base64
import io
import json
import re
import warnings
from pathlib import Path

import folium
import folium.plugins
import geopandas as gpd
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import shapely
from affine import Affine
from browser import dump_dom, print_pdf, screenshot
from pyproj import Transformer

from priority_index.exports import maps
from priority_index.exports.offline_assets import (
    OfflineAssetError,
    check_offline,
    remote_references,
    render_offline,
)

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"
CROYDON_LSOAS = RAW / "london" / "boundaries" / "london-2021-lsoa-gen20.shp"

# Text from data that must reach the page as text. The first is the classic probe; the others
# would leave a trace (a body attribute) if any of them ever ran.
XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_LOCATION = "<img src=y onerror=\"document.body.setAttribute('data-pwned','1')\">"
XSS_SCRIPT = "<script>document.body.setAttribute('data-pwned','2')</script>"
XSS_TEMPLATE = "`${document.body.setAttribute('data-pwned','3')}`\\"
XSS_NEIGHBOURHOOD = "Broad Green & <b>Selhurst</b>"

MB = 1024 * 1024


# ------------------------------------------------------------------------------------------
# Synthetic borough


def _wiggle(xy: np.ndarray) -> np.ndarray:
    """A smooth displacement that depends on position only, so shared edges stay shared."""
    x, y = xy[:, 0], xy[:, 1]
    dx = 6 * np.sin(x / 37.0 + y / 53.0) + 4 * np.sin(y / 17.0)
    dy = 6 * np.cos(x / 41.0 - y / 29.0) + 4 * np.cos(x / 19.0)
    return np.c_[x + dx, y + dy]


def synthetic_lsoa_geometry(n: int = 230, seed: int = 7) -> np.ndarray:
    """A valid coverage of about ``n`` wiggly polygons in a Croydon-sized borough (EPSG:27700)."""
    rng = np.random.default_rng(seed)
    cx, cy = 533000.0, 165000.0
    angle = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    radius = 7000 * (1 + 0.12 * np.sin(3 * angle) + 0.06 * np.cos(7 * angle))
    boundary = shapely.Polygon(
        np.c_[cx + radius * np.cos(angle), cy + 1.25 * radius * np.sin(angle)]
    )
    xmin, ymin, xmax, ymax = boundary.bounds
    candidates = rng.uniform([xmin, ymin], [xmax, ymax], size=(4 * n, 2))
    inside = shapely.contains_xy(boundary, candidates[:, 0], candidates[:, 1])
    seeds = candidates[inside][:n]
    cells = shapely.get_parts(
        shapely.voronoi_polygons(shapely.MultiPoint(seeds), extend_to=boundary)
    )
    # One noded line network, densified and displaced once, then polygonised: every vertex of a
    # shared edge is the same in both neighbours (a valid coverage, like real LSOAs).
    edges = shapely.union_all(shapely.boundary(shapely.intersection(cells, boundary)))
    edges = shapely.transform(shapely.segmentize(edges, 25.0), _wiggle)
    polygons = shapely.get_parts(shapely.polygonize(shapely.get_parts(edges)))
    centres = shapely.get_coordinates(shapely.centroid(polygons))
    order = np.lexsort((centres[:, 0], np.round(centres[:, 1], -2)))
    return polygons[order]


def synthetic_index(geometry: np.ndarray, *, seed: int = 7) -> gpd.GeoDataFrame:
    """An index frame over ``geometry`` with nine neighbourhoods of five LSOAs each."""
    rng = np.random.default_rng(seed)
    n = len(geometry)
    xy = shapely.get_coordinates(shapely.centroid(geometry))
    centre = xy.mean(axis=0)
    field = np.exp(
        -(((xy[:, 0] - centre[0] + 2500) / 2500) ** 2 + ((xy[:, 1] - centre[1] - 3000) / 3000) ** 2)
    )
    score = field + 0.15 * rng.random(n)
    rank = pd.Series(score).rank(ascending=False, method="first").astype(int).to_numpy()
    names = [f"Synthborough {i // 4 + 1:03d}{'ABCD'[i % 4]}" for i in range(n)]
    names[17] = XSS_NAME
    lsoas = gpd.GeoDataFrame(
        {
            "lsoa_name": names,
            "score": score,
            "rank": rank,
            "decile": np.ceil(rank / n * 10).astype(int),
            "gi_bin": np.clip(np.round((field - 0.35) * 6), -3, 3).astype(int),
            "neighbourhood_id": 0,
            "top_drivers": [
                f"Violence harm {40 - i % 20}%, Income deprivation {10 + i % 15}%" for i in range(n)
            ],
        },
        geometry=geometry,
        crs="EPSG:27700",
        index=pd.Index([f"E0199{i:04d}" for i in range(n)], name="lsoa_code"),
    )
    # Nine neighbourhoods: the five LSOAs nearest to well-separated high-scoring seeds; the
    # XSS-named LSOA is put in the first one.
    taken = np.zeros(n, bool)
    seeds: list[int] = [17]
    for i in np.argsort(-score):
        if len(seeds) == 9:
            break
        if all(np.hypot(*(xy[i] - xy[j])) > 1800 for j in seeds):
            seeds.append(int(i))
    for k, s in enumerate(seeds, start=1):
        distance = np.hypot(*(xy - xy[s]).T)
        distance[taken] = np.inf
        members = np.argsort(distance)[:5]
        taken[members] = True
        lsoas.iloc[members, lsoas.columns.get_loc("neighbourhood_id")] = k
    return lsoas


def synthetic_neighbourhoods(lsoas: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    members = lsoas[lsoas["neighbourhood_id"] > 0]
    dissolved = members.dissolve("neighbourhood_id")
    ids = dissolved.index
    nb = gpd.GeoDataFrame(
        {
            "name": [f"Priority area {k}" for k in ids],
            "n_lsoas": members.groupby("neighbourhood_id").size().reindex(ids).to_numpy(),
            "residents": 8000,
            "total_harm": 1000.0 + ids.to_numpy() * 10,
            "share_of_borough_harm": 0.03,
            "selection_frequency": 0.9,
        },
        geometry=dissolved.geometry.values,
        crs="EPSG:27700",
        index=pd.Index(ids, name="neighbourhood_id"),
    )
    nb.loc[3, "name"] = XSS_NEIGHBOURHOOD
    return nb


def synthetic_micro_places(neighbourhoods: gpd.GeoDataFrame, *, seed: int = 7) -> gpd.GeoDataFrame:
    """Eight 100 m cells per neighbourhood, in patrol order; XSS text in neighbourhood 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, geom in zip(neighbourhoods.index, neighbourhoods.geometry, strict=True):
        x0, y0, x1, y1 = geom.bounds
        boxes = [
            shapely.box(x, y, x + 100, y + 100)
            for x in np.arange(np.floor(x0 / 100) * 100, x1, 100)
            for y in np.arange(np.floor(y0 / 100) * 100, y1, 100)
        ]
        boxes = [b for b in boxes if geom.contains(b.centroid)]
        for r, j in enumerate(rng.choice(len(boxes), size=8, replace=False), start=1):
            rows.append(
                {
                    "neighbourhood_id": k,
                    "patrol_rank": r,
                    "cell_id": f"C{k}-{j}",
                    "n_records": 60 - 5 * r,
                    "harm": 500.0 / r,
                    "harm_share": 0.3 / r,
                    "crime_types": "Violence and sexual offences, Anti-social behaviour",
                    "top_location": f"On or near Street {k}-{r}",
                    "gi_hotspot": r <= 3,
                    "kde_hotspot": r % 2 == 1,
                    "geometry": boxes[j],
                }
            )
    micro = gpd.GeoDataFrame(rows, crs="EPSG:27700")
    # shuffled, so the maps must sort by patrol rank themselves
    micro = micro.sample(frac=1.0, random_state=3)
    first = micro.index[micro["neighbourhood_id"] == neighbourhoods.index[0]]
    by_rank = micro.loc[first].sort_values("patrol_rank").index
    micro.loc[by_rank[0], "top_location"] = XSS_LOCATION
    micro.loc[by_rank[1], "top_location"] = XSS_SCRIPT
    micro.loc[by_rank[2], "cell_id"] = XSS_TEMPLATE
    return micro


def synthetic_density(lsoas: gpd.GeoDataFrame, *, cell: float = 50.0) -> tuple[np.ndarray, Affine]:
    """Gaussian bumps on a 50 m grid over the borough, NaN outside it."""
    xmin, ymin, xmax, ymax = lsoas.total_bounds
    width, height = int(np.ceil((xmax - xmin) / cell)), int(np.ceil((ymax - ymin) / cell))
    transform = Affine(cell, 0, xmin, 0, -cell, ymax)
    x = xmin + (np.arange(width) + 0.5) * cell
    y = ymax - (np.arange(height) + 0.5) * cell
    gx, gy = np.meshgrid(x, y)
    centres = shapely.get_coordinates(shapely.centroid(lsoas.geometry.values[lsoas["rank"] <= 9]))
    values = sum(np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * 400.0**2)) for cx, cy in centres)
    outside = ~shapely.contains_xy(shapely.union_all(lsoas.geometry.values), gx, gy)
    values[outside] = np.nan
    return values, transform


@pytest.fixture(scope="module")
def borough():
    lsoas = synthetic_index(synthetic_lsoa_geometry())
    neighbourhoods = synthetic_neighbourhoods(lsoas)
    micro = synthetic_micro_places(neighbourhoods)
    return lsoas, neighbourhoods, micro, synthetic_density(lsoas)


@pytest.fixture(scope="module")
def overview_html(borough):
    lsoas, neighbourhoods, micro, density = borough
    return maps.overview_map(
        lsoas, neighbourhoods=neighbourhoods, micro_places=micro, density=density, title="Test"
    )


@pytest.fixture(scope="module")
def neighbourhood_html(borough):
    lsoas, neighbourhoods, micro, density = borough
    return maps.neighbourhood_map(1, lsoas, neighbourhoods, micro, density=density)


def test_synthetic_borough_is_realistic(borough):
    lsoas, neighbourhoods, micro, _ = borough
    assert 225 <= len(lsoas) <= 235
    geometry = np.asarray(lsoas.geometry.values)
    assert shapely.coverage_is_valid(geometry)
    # real Croydon gen20 LSOAs have ~36 vertices each; these have more (a conservative test)
    assert shapely.get_num_coordinates(geometry).mean() > 100
    assert len(neighbourhoods) == 9 and len(micro) == 72
    assert lsoas.loc[lsoas["lsoa_name"] == XSS_NAME, "neighbourhood_id"].item() == 1


# ------------------------------------------------------------------------------------------
# Offline assets


def test_render_offline_inlines_libraries_and_drops_unused_cdns():
    m = folium.Map(location=[51.37, -0.1], zoom_start=12, tiles="OpenStreetMap", maxZoom=18)
    folium.Marker([51.37, -0.1]).add_to(m)  # default Leaflet icon
    folium.plugins.MarkerCluster().add_to(m)
    page = render_offline(m)
    assert remote_references(page) == []
    assert "<script src=" not in page and "<link rel=" not in page
    lowered = page.lower()
    for dropped in ("bootstrap", "glyphicons", "fontawesome", "awesome-markers"):
        assert dropped not in lowered
    assert "L.Icon.Default.imagePath = ''" in page
    assert "iconUrl: 'data:image/png;base64," in page
    assert "url(images/" not in page and 'url("data:image/png;base64,' in page  # leaflet.css
    assert "L.MarkerClusterGroup" in page and "sourceMappingURL" not in page
    # the tile URL template stays (it is not a load when the page opens)
    assert "tile.openstreetmap.org/{z}/{x}/{y}.png" in page
    # folium's class-level link lists are not modified for other users of folium
    assert ("bootstrap", folium.Map.default_js[2][1]) == folium.Map.default_js[2]
    assert any(url.startswith("https://") for _, url in folium.Map.default_css)


def test_render_offline_refuses_library_without_offline_copy():
    m = folium.Map(tiles=None, maxZoom=18)
    folium.plugins.Fullscreen().add_to(m)
    with pytest.raises(OfflineAssetError, match="Control.Fullscreen.js"):
        render_offline(m)


def test_render_offline_is_deterministic():
    def build() -> str:
        m = folium.Map(location=[51.37, -0.1], tiles=None, maxZoom=18)
        folium.GeoJson(
            {"type": "Point", "coordinates": [-0.1, 51.37]}, tooltip="a", name="pt"
        ).add_to(m)
        folium.LayerControl().add_to(m)
        return render_offline(m)

    first, second = build(), build()
    assert first == second
    assert re.search(r"[0-9a-f]{32}", first) is None


@pytest.mark.parametrize(
    "page",
    [
        '<script src="https://cdn.example.org/x.js"></script>',
        "<script defer src=//cdn.example.org/x.js></script>",
        '<link rel="stylesheet" href="http://cdn.example.org/x.css"/>',
        "<style>@import url('https://fonts.example.org/a.css');</style>",
        "<style>.a { background: url(https://img.example.org/a.png) }</style>",
        '<img src="https://img.example.org/a.png">',
    ],
)
def test_check_offline_rejects_network_loads(page):
    assert remote_references(page)
    with pytest.raises(OfflineAssetError):
        check_offline(page)


def test_check_offline_accepts_tile_templates_and_links():
    page = (
        '<script>L.tileLayer("https://tile.openstreetmap.org/{z}/{x}/{y}.png")</script>'
        '<a href="https://www.openstreetmap.org/copyright">OSM</a>'
        '<style>.b { background: url("data:image/png;base64,AAAA") }</style>'
        "<p>Text that mentions url(https://example.org) is not CSS</p>"
    )
    assert remote_references(page) == []
    check_offline(page)


# ------------------------------------------------------------------------------------------
# Geometry and density


def test_web_geometries_keep_shared_boundaries(borough):
    lsoas = borough[0]
    web = maps.web_geometries(lsoas, tolerance=10.0, precision=5)
    assert web.crs.to_epsg() == 4326 and list(web.index) == list(lsoas.index)
    before = shapely.get_num_coordinates(np.asarray(lsoas.geometry.values)).sum()
    after = shapely.get_num_coordinates(web.values).sum()
    assert after < 0.6 * before
    coords = shapely.get_coordinates(web.values)
    np.testing.assert_array_equal(coords, np.round(coords, 5))
    # still a coverage: neighbours share their simplified edges (no gaps, no overlaps)
    assert shapely.coverage_is_valid(web.values)
    back = web.to_crs(27700)
    assert back.area.sum() == pytest.approx(lsoas.area.sum(), rel=2e-3)
    # each polygon moved by no more than the tolerance plus rounding
    assert (back.hausdorff_distance(lsoas.geometry, align=True) < 12.0).all()


def test_web_geometries_without_a_valid_coverage_warns_and_simplifies_each():
    squares = gpd.GeoSeries(
        [shapely.box(0, 0, 100, 100).segmentize(1), shapely.box(50, 0, 150, 100).segmentize(1)],
        crs=27700,
    )
    with pytest.warns(UserWarning, match="valid coverage"):
        web = maps.web_geometries(squares, tolerance=5.0)
    assert shapely.get_num_coordinates(web.values).max() <= 6


def test_web_geometries_refuse_degrees():
    with pytest.raises(ValueError, match="projected"):
        maps.web_geometries(gpd.GeoSeries([shapely.box(0, 0, 1, 1)], crs=4326))


def _decode_png(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return matplotlib.image.imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), "png")


def test_density_png_nan_is_transparent_and_bounds_are_right():
    values = np.tile(np.linspace(0.0, 1.0, 40), (30, 1))
    values[:, :10] = np.nan  # western quarter missing
    transform = Affine(100.0, 0, 530000.0, 0, -100.0, 168000.0)
    uri, bounds = maps.density_png(values, transform, crs="EPSG:27700", max_alpha=0.8)
    image = _decode_png(uri)
    assert image.shape[2] == 4
    alpha = image[..., 3]
    width = image.shape[1]
    assert (alpha[:, : int(width * 0.2)] == 0).all()  # NaN -> transparent
    assert alpha[:, -2:].max() == pytest.approx(0.8, abs=0.02)  # top value at max_alpha
    middle = alpha[alpha.shape[0] // 2]
    assert (np.diff(middle[int(width * 0.3) : -2]) >= -1e-6).all()  # denser -> more opaque
    # the overlay lies on the grid's footprint, to within one 100 m cell (about 0.0009 deg
    # of latitude, 0.0014 deg of longitude); a sheared or swapped placement would be far off
    to_wgs84 = Transformer.from_crs(27700, 4326, always_xy=True)
    lon, lat = to_wgs84.transform(
        [530000.0, 534000.0, 530000.0, 534000.0], [165000.0, 165000.0, 168000.0, 168000.0]
    )
    (south, west), (north, east) = bounds
    assert south == pytest.approx(min(lat), abs=9e-4)
    assert north == pytest.approx(max(lat), abs=9e-4)
    assert west == pytest.approx(min(lon), abs=1.4e-3)
    assert east == pytest.approx(max(lon), abs=1.4e-3)


def test_density_png_is_deterministic_and_capped():
    values = np.random.default_rng(1).random((3000, 200))
    transform = Affine(5.0, 0, 530000.0, 0, -5.0, 170000.0)
    first = maps.density_png(values, transform, max_pixels=500)
    assert first == maps.density_png(values, transform, max_pixels=500)
    assert max(_decode_png(first[0]).shape[:2]) <= 501


# ------------------------------------------------------------------------------------------
# Pages


def test_overview_is_offline_light_and_deterministic(borough, overview_html):
    lsoas, neighbourhoods, micro, density = borough
    page = overview_html
    assert len(page.encode()) < 2 * MB
    assert remote_references(page) == []
    again = maps.overview_map(
        lsoas, neighbourhoods=neighbourhoods, micro_places=micro, density=density, title="Test"
    )
    assert page == again
    assert re.search(r"[0-9a-f]{32}", page) is None
    # Leaflet and jQuery are inline; the basemap is only a URL template
    assert "Leaflet 1.9.3" in page or '"1.9.3"' in page
    assert "jQuery v3.7.1" in page
    assert "tile.openstreetmap.org/{z}/{x}/{y}.png" in page
    assert "control_scale" not in page and "L.control.scale" in page
    assert '"maxZoom": 18' in page
    # deciles and Gi* draw the same LSOAs: the GeoJSON is embedded once
    assert page.count('"id": "E01990000"') == 1
    assert "pi_shared_data_1" in page
    assert page.count("data:image/png;base64,") >= 1  # density overlay (and leaflet.css icons)


def test_overview_legend_and_layers(overview_html):
    page = overview_html
    for name in maps.LAYERS.values():
        assert name.replace("&", "&amp;") in page or name in page
    for label, colour in maps.GI_CLASSES.values():
        assert label in page and colour in page
    for colour in maps.DECILE_COLOURS.values():
        assert colour in page
    assert 'class="pi-legend pi-key"' in page


def test_page_text_from_data_is_escaped(overview_html, neighbourhood_html):
    for page in (overview_html, neighbourhood_html):
        for raw in (XSS_NAME, XSS_LOCATION, XSS_SCRIPT, XSS_NEIGHBOURHOOD, "<b>Selhurst"):
            assert raw not in page
        assert "${document" not in page  # would run inside a JavaScript template literal
        assert "`${" not in page
    table = neighbourhood_html[neighbourhood_html.index('<table class="pi-patrol">') :]
    assert "&lt;img src=y onerror=&quot;document.body.setAttribute(&#x27;data-pwned" in table
    assert "&lt;script&gt;document.body" in table
    assert "&#96;&#36;{document.body" in table


def _table_rows(page: str) -> list[list[str]]:
    body = re.search(r'<table class="pi-patrol">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]


def test_neighbourhood_map_table_in_patrol_order(borough, neighbourhood_html):
    lsoas, neighbourhoods, micro, _ = borough
    page = neighbourhood_html
    assert len(page.encode()) < 1 * MB
    assert remote_references(page) == []
    rows = _table_rows(page)
    expected = micro[micro["neighbourhood_id"] == 1].sort_values("patrol_rank")
    assert [r[0] for r in rows] == [str(v) for v in expected["patrol_rank"]]
    assert [r[4] for r in rows] == [str(v) for v in expected["n_records"]]
    assert rows[0][6] == "30.0%" and rows[1][5] == "250"
    assert "month of each crime" in page and "Suggested patrol times" not in page
    assert "@page { size: A4 portrait" in page and "@media print" in page
    # the title and facts of the neighbourhood
    assert "<h1>Priority area 1</h1>" in page and "5 LSOAs" in page


def _overlay_bounds(page: str) -> list[list[float]]:
    match = re.search(
        r'L\.imageOverlay\(\s*"data:image/png;base64,[^"]+",\s*(\[\[.*?\]\])', page, re.S
    )
    return json.loads(match.group(1))


def test_neighbourhood_density_is_cropped_around_it(borough, overview_html, neighbourhood_html):
    neighbourhoods = borough[1]
    (south, west), (north, east) = _overlay_bounds(neighbourhood_html)
    (b_south, b_west), (b_north, b_east) = _overlay_bounds(overview_html)
    nb_west, nb_south, nb_east, nb_north = neighbourhoods.to_crs(4326).geometry.loc[1].bounds
    assert south < nb_south and west < nb_west and north > nb_north and east > nb_east
    assert (north - south) * (east - west) < 0.6 * (b_north - b_south) * (b_east - b_west)


def test_neighbourhood_map_shows_patrol_times_only_when_given(borough):
    lsoas, neighbourhoods, micro, _ = borough
    timed = micro.assign(
        suggested_patrol_times=np.where(micro["patrol_rank"] <= 2, "Fri 22-02", "")
    )
    page = maps.neighbourhood_map(2, lsoas, neighbourhoods, timed, basemap=False)
    assert "<th>Suggested patrol times</th>" in page
    assert "month of each crime" not in page
    rows = _table_rows(page)
    assert [r[-1] for r in rows[:3]] == ["Fri 22-02", "Fri 22-02", ""]
    assert "tile.openstreetmap.org" not in page


def test_neighbourhood_without_micro_places(borough):
    lsoas, neighbourhoods, _, _ = borough
    page = maps.neighbourhood_map(4, lsoas, neighbourhoods, None)
    assert "No micro-places were identified here." in page


def test_neighbourhood_maps_builds_one_page_each(borough):
    lsoas, neighbourhoods, micro, _ = borough
    pages = maps.neighbourhood_maps(lsoas, neighbourhoods.iloc[:2], micro, basemap=False)
    assert list(pages) == [1, 2]
    assert "<h1>Priority area 2</h1>" in pages[2]


def test_inputs_are_validated(borough):
    lsoas, neighbourhoods, micro, density = borough
    with pytest.raises(ValueError, match="lsoas lacks column.*rank.*decile"):
        maps.overview_map(lsoas.drop(columns=["rank", "decile"]))
    with pytest.raises(ValueError, match="harm_share must be a fraction"):
        maps.overview_map(lsoas, micro_places=micro.assign(harm_share=micro["harm_share"] * 100))
    with pytest.raises(ValueError, match="unknown layer"):
        maps.overview_map(lsoas, show=["hotspots"])
    with pytest.raises(KeyError, match="99"):
        maps.neighbourhood_map(99, lsoas, neighbourhoods, micro)
    with pytest.raises(ValueError, match="no CRS"):
        maps.overview_map(lsoas.set_crs(None, allow_override=True))
    with pytest.raises(ValueError, match="north-up"):
        maps.overview_map(lsoas, density=(density[0], Affine(50, 0, 0, 0, 50, 0)))


def test_lsoas_in_another_crs_and_without_optional_columns(borough):
    lsoas = borough[0].drop(columns=["gi_bin", "top_drivers", "neighbourhood_id"]).to_crs(4326)
    page = maps.overview_map(lsoas, basemap=False)
    assert maps.LAYERS["gi"] not in page and maps.LAYERS["deciles"] in page
    assert remote_references(page) == []


def test_micro_places_with_a_duplicated_index(borough):
    lsoas, _, micro, _ = borough
    page = maps.overview_map(lsoas, micro_places=micro.set_axis(np.zeros(len(micro), int)))
    assert page.count('"patrol_rank": ') == len(micro)
    assert f'"id": "{len(micro) - 1}"' in page


def test_write_map_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "map.html"
    maps.write_map("<html>first</html>", target)
    assert target.read_text(encoding="utf-8") == "<html>first</html>"

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(maps.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        maps.write_map("<html>second</html>", target)
    assert target.read_text(encoding="utf-8") == "<html>first</html>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.html"]


# ------------------------------------------------------------------------------------------
# In a browser with no network

_HOOK = """
<script>
(function () {
  var map = %(map)s;
  function find(text) {
    var hits = [];
    map.eachLayer(function (l) {
      if (l.feature && JSON.stringify(l.feature.properties).indexOf(text) >= 0) hits.push(l);
    });
    return hits;
  }
  function mouse(layer, type) {
    var el = layer._path || layer._icon;
    var box = el.getBoundingClientRect();
    var p = map.latLngToContainerPoint(layer.getCenter ? layer.getCenter() : layer.getLatLng());
    var c = map.getContainer().getBoundingClientRect();
    el.dispatchEvent(new MouseEvent(type, {bubbles: true, cancelable: true, view: window,
      clientX: c.left + p.x, clientY: c.top + p.y}));
  }
  var done = [];
  %(actions)s
  document.body.setAttribute("data-hook", done.join(","));
})();
</script>
"""


def _with_hook(page: str, actions: str) -> str:
    name = re.search(r"var (map_\w+) = L\.map\(", page).group(1)
    hook = _HOOK % {"map": name, "actions": actions}
    return page.replace("</html>", hook + "</html>")


def _without_scripts(dom: str) -> str:
    """The DOM with script elements' source removed (Leaflet's source holds HTML snippets)."""
    return re.sub(r"<script\b[^>]*>.*?</script>", "<script></script>", dom, flags=re.S)


def _count(pattern: str, dom: str) -> int:
    return len(re.findall(pattern, _without_scripts(dom)))


INTERACTIVE_PATH = r'<path[^>]*class="leaflet-interactive"'


def _assert_no_injection(dom: str) -> None:
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert "data-hook" in body and "data-pwned" not in body  # the hook ran; no probe did
    assert re.search(r"<[a-z][^<>]*\sdata-pwned=", dom) is None
    assert re.search(r'<img[^>]*src="[xy]"', dom) is None
    assert "<script>document.body" not in dom
    assert "<b>Selhurst" not in dom


@pytest.mark.browser
def test_overview_draws_offline_in_chromium(borough, overview_html, tmp_path):
    lsoas, neighbourhoods, micro, _ = borough
    actions = """
      find("onerror=alert").forEach(function (l) { mouse(l, "mouseover"); mouse(l, "click");
        done.push("lsoa"); });
      var cell = find("data-pwned&#x27;,&#x27;1")[0]; mouse(cell, "mouseover"); done.push("cell");
      var nb = find('"name":"Broad Green')[0]; mouse(nb, "mouseover"); done.push("nb");
    """
    page = tmp_path / "overview.html"
    page.write_text(_with_hook(overview_html, actions), encoding="utf-8")
    dom = dump_dom(page)
    assert 'data-hook="lsoa,cell,nb"' in dom  # Gi* is unticked: one XSS-named LSOA drawn
    assert "leaflet-container" in dom
    # visible on opening: deciles, neighbourhood outlines, micro-places (Gi* is unticked)
    expected = len(lsoas) + len(neighbourhoods) + len(micro)
    assert _count(INTERACTIVE_PATH, dom) == expected
    for decile in (1, 10):
        colour = maps.DECILE_COLOURS[decile]
        assert _count(rf'<path[^>]*fill="{colour}"', dom) == (lsoas["decile"] == decile).sum()
    labels = _count(r'<div class="leaflet-marker-icon pi-nb-label-icon', dom)
    assert labels == len(neighbourhoods)
    assert _count(r'class="leaflet-control-layers-selector"', dom) == 6  # basemap + 5 overlays
    assert "leaflet-control-scale" in dom
    # the probes are shown as text in the tooltips and the popup, and nothing ran
    tooltips = " ".join(re.findall(r'<div class="leaflet-tooltip.*?</div>\s*</div>', dom, re.S))
    assert "&lt;img src=x onerror=alert(1)&gt;" in tooltips
    assert "&lt;img src=y onerror=\"document.body.setAttribute('data-pwned','1')\"&gt;" in tooltips
    assert "Broad Green &amp; &lt;b&gt;Selhurst&lt;/b&gt;" in tooltips
    popup = re.search(r'<div class="leaflet-popup-content".*?</table>', dom, re.S).group(0)
    assert "&lt;img src=x onerror=alert(1)&gt;" in popup and "Top drivers" in popup
    assert "Broad Green &amp; &lt;b&gt;Selhurst&lt;/b&gt;" in dom  # neighbourhood label
    _assert_no_injection(dom)


@pytest.mark.browser
def test_overview_gi_and_density_layers_in_chromium(borough, tmp_path):
    lsoas, neighbourhoods, micro, density = borough
    html = maps.overview_map(
        lsoas,
        neighbourhoods=neighbourhoods,
        micro_places=micro,
        density=density,
        show=["gi", "density"],
        basemap=False,
    )
    page = tmp_path / "overview_gi.html"
    page.write_text(html, encoding="utf-8")
    dom = dump_dom(page)
    assert _count(INTERACTIVE_PATH, dom) == len(lsoas)
    for gi_bin, (_, colour) in maps.GI_CLASSES.items():
        assert _count(rf'<path[^>]*fill="{colour}"', dom) == (lsoas["gi_bin"] == gi_bin).sum()
    assert _count(r'<img[^>]*class="leaflet-image-layer', dom) == 1
    shot = screenshot(page, tmp_path / "overview_gi.png")
    image = matplotlib.image.imread(shot)[..., :3]
    # Gi* hot-spot red is on screen
    red = np.array([0xD6, 0x2F, 0x27]) / 255
    assert (np.abs(image - red).max(axis=2) < 0.12).sum() > 500


@pytest.mark.browser
def test_overview_screenshot_looks_like_a_map(overview_html, tmp_path):
    page = tmp_path / "overview.html"
    page.write_text(overview_html, encoding="utf-8")
    shot = screenshot(page, tmp_path / "overview.png")
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (1000, 1400)
    rgb = (image[..., :3] * 255).round().astype(int)
    colours = np.unique(rgb.reshape(-1, 3), axis=0)
    assert len(colours) > 200
    background = (np.abs(rgb - 0xDD).max(axis=2) <= 2).mean()  # Leaflet's grey, no tiles
    assert background < 0.8


@pytest.mark.browser
def test_neighbourhood_map_draws_offline_and_prints_on_a4(borough, neighbourhood_html, tmp_path):
    lsoas, neighbourhoods, micro, _ = borough
    actions = """
      map.eachLayer(function (l) { if (l._icon && l.getTooltip && l.getTooltip()) {
        l.openTooltip(); done.push("marker"); } });
    """
    page = tmp_path / "neighbourhood.html"
    page.write_text(_with_hook(neighbourhood_html, actions), encoding="utf-8")
    dom = dump_dom(page)
    in_nb = micro[micro["neighbourhood_id"] == 1]
    assert dom.count("marker") >= len(in_nb)
    assert re.search(r'data-hook="(marker,){7}marker"', dom)
    geometry = neighbourhoods.geometry.loc[1]
    shown = (lsoas["neighbourhood_id"] == 1) | shapely.dwithin(
        np.asarray(lsoas.geometry.values), geometry, 200.0
    )
    assert _count(INTERACTIVE_PATH, dom) == shown.sum() + 1 + len(in_nb)
    assert _count(r'<img[^>]*class="leaflet-image-layer', dom) == 0  # density unticked
    numbers = re.findall(r'<div class="pi-num">(\d+)</div>', dom)
    assert sorted(map(int, numbers)) == list(range(1, len(in_nb) + 1))
    # the probes are text in marker tooltips and the side table; nothing ran
    assert "${document.body.setAttribute('data-pwned','3')}" in dom
    assert "&lt;script&gt;document.body.setAttribute('data-pwned','2')&lt;/script&gt;" in dom
    _assert_no_injection(dom)
    # the map sits beside the table
    assert 'class="pi-side"' in dom and dom.count("<tr>") >= len(in_nb) + 1
    pdf = print_pdf(page, tmp_path / "neighbourhood.pdf").read_bytes()
    boxes = re.findall(rb"/MediaBox\s*\[0 0 ([\d.]+) ([\d.]+)\]", pdf)
    assert boxes and all(
        abs(float(w) - 595) < 2 and abs(float(h) - 842) < 2 for w, h in boxes
    )  # A4 portrait in points
    assert 1 <= len(re.findall(rb"/Type\s*/Page\b", pdf)) <= 3
    shot = screenshot(page, tmp_path / "neighbourhood.png")
    assert matplotlib.image.imread(shot).shape[:2] == (1000, 1400)


# ------------------------------------------------------------------------------------------
# Real Croydon boundaries


@pytest.fixture(scope="module")
def croydon():
    if not CROYDON_LSOAS.exists():
        pytest.skip(f"{CROYDON_LSOAS} not available")
    raw = gpd.read_file(CROYDON_LSOAS)
    raw = raw[raw["LAD22CD"] == "E09000008"]
    geometry = raw.geometry.values
    lsoas = synthetic_index(np.asarray(geometry))
    lsoas.index = pd.Index(raw["LSOA21CD"].to_numpy(), name="lsoa_code")
    lsoas["lsoa_name"] = raw["LSOA21NM"].to_numpy()
    lsoas.iloc[17, lsoas.columns.get_loc("lsoa_name")] = XSS_NAME
    neighbourhoods = synthetic_neighbourhoods(lsoas)
    micro = synthetic_micro_places(neighbourhoods)
    return lsoas, neighbourhoods, micro, synthetic_density(lsoas)


@pytest.mark.realdata
def test_croydon_maps_are_light(croydon):
    lsoas, neighbourhoods, micro, density = croydon
    assert len(lsoas) == 229
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a valid coverage: no fallback warning
        overview = maps.overview_map(
            lsoas, neighbourhoods=neighbourhoods, micro_places=micro, density=density
        )
    assert len(overview.encode()) < 2 * MB
    for nid in neighbourhoods.index:
        page = maps.neighbourhood_map(nid, lsoas, neighbourhoods, micro, density=density)
        assert len(page.encode()) < 1 * MB
        assert remote_references(page) == []


@pytest.mark.realdata
@pytest.mark.browser
def test_croydon_overview_in_chromium(croydon, tmp_path):
    lsoas, neighbourhoods, micro, density = croydon
    page = tmp_path / "croydon.html"
    html = maps.overview_map(
        lsoas, neighbourhoods=neighbourhoods, micro_places=micro, density=density
    )
    actions = """
      find("onerror=alert").forEach(function (l) { mouse(l, "mouseover"); done.push("lsoa"); });
    """
    page.write_text(_with_hook(html, actions), encoding="utf-8")
    dom = dump_dom(page)
    assert 'data-hook="lsoa"' in dom
    assert _count(INTERACTIVE_PATH, dom) == 229 + len(neighbourhoods) + len(micro)
    tooltip = re.search(r'<div class="leaflet-tooltip.*?</table>', dom, re.S).group(0)
    assert "&lt;img src=x onerror=alert(1)&gt;" in tooltip
    _assert_no_injection(dom)
    screenshot(page, tmp_path / "croydon.png")


# ------------------------------------------------------------------------------------------
# Street-segment micro-places (line geometry)


@pytest.fixture(scope="module")
def segment_micro(borough):
    """Street-segment micro-places of the synthetic borough, from priority_index.micro itself:
    a 150 m road grid over neighbourhoods 1 and 2, records scattered a few metres off it."""
    from priority_index.micro import segment_places, street_segments

    lsoas, neighbourhoods, _, _ = borough
    x0, y0, x1, y1 = neighbourhoods.loc[[1, 2]].total_bounds
    xs = np.arange(np.floor(x0 / 150) * 150, x1 + 150, 150)
    ys = np.arange(np.floor(y0 / 150) * 150, y1 + 150, 150)
    roads = gpd.GeoDataFrame(
        {"name": [f"Avenue {i}" for i in range(len(xs))] + [f"Road {j}" for j in range(len(ys))]},
        geometry=[shapely.LineString([(x, ys[0]), (x, ys[-1])]) for x in xs]
        + [shapely.LineString([(xs[0], y), (xs[-1], y)]) for y in ys],
        crs="EPSG:27700",
    )
    segments = street_segments(roads, name_column="name")
    rng = np.random.default_rng(11)
    lines = segments.geometry.to_numpy()
    pick = rng.integers(0, len(lines), 3000)
    at = shapely.get_coordinates(
        shapely.line_interpolate_point(lines[pick], rng.random(3000), normalized=True)
    )
    at += rng.normal(0, 4, at.shape)
    points = pd.DataFrame(
        {
            "x": at[:, 0],
            "y": at[:, 1],
            "crime_group": rng.choice(["burglary", "robbery", "violence", "asb"], 3000),
            "harm": rng.choice([0.0, 60.0, 365.0, 400.0], 3000),
            "month": rng.choice(["2024-01", "2024-02", "2024-03"], 3000),
            "location": [f"On or near {segments['street'].iloc[i]}" for i in pick],
        }
    )
    micro = segment_places(points, neighbourhoods, segments, top_n=6)
    first = micro.index[micro["neighbourhood_id"] == 1]
    micro.loc[first[0], "top_location"] = XSS_LOCATION
    micro.loc[first[1], "top_location"] = XSS_SCRIPT
    return micro


def test_line_micro_places_pages(borough, segment_micro):
    lsoas, neighbourhoods, _, _ = borough
    micro = segment_micro
    assert set(micro.geometry.geom_type) == {"LineString"}
    assert micro.groupby("neighbourhood_id").size().loc[[1, 2]].tolist() == [6, 6]
    page = maps.neighbourhood_map(1, lsoas, neighbourhoods, micro, basemap=False)
    assert remote_references(page) == []
    assert "<th>Street segment</th>" in page and "<th>Cell</th>" not in page
    assert "Micro-place (street segment)" in page and "patrol cell" not in page
    assert '"Street segment"' in page  # tooltip label
    rows = _table_rows(page)
    expected = micro[micro["neighbourhood_id"] == 1].sort_values("patrol_rank")
    assert [r[0] for r in rows] == [str(v) for v in expected["patrol_rank"]]
    assert [r[1] for r in rows] == list(expected["cell_id"])
    # each number sits half way along its segment
    mids = gpd.GeoSeries(
        shapely.line_interpolate_point(expected.geometry.to_numpy(), 0.5, normalized=True),
        crs=27700,
    ).to_crs(4326)
    for p in mids:
        assert f"L.marker(\n                [{round(p.y, 5)}, {round(p.x, 5)}]" in page
    assert page == maps.neighbourhood_map(1, lsoas, neighbourhoods, micro, basemap=False)
    overview = maps.overview_map(lsoas, neighbourhoods=neighbourhoods, micro_places=micro)
    assert (
        "Micro-places (street segments)" in overview and "Micro-place (street segment)" in overview
    )
    for raw in (XSS_LOCATION, XSS_SCRIPT):
        assert raw not in page and raw not in overview


@pytest.mark.browser
def test_neighbourhood_map_draws_line_micro_places_offline(borough, segment_micro, tmp_path):
    lsoas, neighbourhoods, _, _ = borough
    micro = segment_micro
    actions = """
      map.eachLayer(function (l) { if (l._icon && l.getTooltip && l.getTooltip()) {
        l.openTooltip(); done.push("marker"); } });
      var seg = find("data-pwned&#x27;,&#x27;1")[0]; mouse(seg, "mouseover"); done.push("seg");
    """
    page = tmp_path / "segments.html"
    html = maps.neighbourhood_map(1, lsoas, neighbourhoods, micro)  # basemap on, network off
    page.write_text(_with_hook(html, actions), encoding="utf-8")
    dom = dump_dom(page)
    in_nb = micro[micro["neighbourhood_id"] == 1]
    assert re.search(r'data-hook="(marker,){6}seg"', dom)
    shown = (lsoas["neighbourhood_id"] == 1) | shapely.dwithin(
        np.asarray(lsoas.geometry.values), neighbourhoods.geometry.loc[1], 200.0
    )
    # interactive: the LSOAs, the outline and one line per segment (the casing is not)
    assert _count(INTERACTIVE_PATH, dom) == shown.sum() + 1 + len(in_nb)
    lines = _count(r'<path[^>]*stroke="#ffe14d"[^>]*fill="none"', dom)
    casings = _count(r'<path[^>]*stroke="#3b2a00"[^>]*stroke-width="10"[^>]*fill="none"', dom)
    assert lines == casings == len(in_nb)
    # the hovered segment is highlighted as wide as its casing; the others keep 6 px
    assert _count(r'<path[^>]*stroke="#ffe14d"[^>]*stroke-width="6"', dom) == len(in_nb) - 1
    numbers = re.findall(r'<div class="pi-num">(\d+)</div>', dom)
    assert sorted(map(int, numbers)) == list(range(1, len(in_nb) + 1))
    tooltips = " ".join(re.findall(r'<div class="leaflet-tooltip.*?</div>\s*</div>', dom, re.S))
    assert "Street segment" in tooltips and in_nb["cell_id"].iloc[0] in tooltips
    _assert_no_injection(dom)
    # each line is drawn along its segment, not collapsed to a point
    for d in re.findall(r'<path[^>]*stroke="#ffe14d"[^>]*d="([^"]+)"', _without_scripts(dom)):
        xy = np.array(re.findall(r"(-?\d+(?:\.\d+)?) (-?\d+(?:\.\d+)?)", d), dtype=float)
        assert len(xy) >= 2 and np.hypot(*np.diff(xy, axis=0).T).sum() > 5
    # and on screen beside their numbers (the page as opened: no tooltips over them)
    plain = tmp_path / "segments_plain.html"
    plain.write_text(html, encoding="utf-8")
    image = matplotlib.image.imread(screenshot(plain, tmp_path / "segments.png"))[..., :3]
    yellow = np.array([0xFF, 0xE1, 0x4D]) / 255
    assert (np.abs(image - yellow).max(axis=2) < 0.05).sum() > 50


# ------------------------------------------------------------------------------------------
# What the micro-places are made of, listing rules, generic police.uk points, markers

XSS_NOTE = "Micro-places & density: <b>police.uk</b> burglary points, 2024/25 only `${x}`"
NOTE_ESCAPED = (
    "Micro-places &amp; density: &lt;b&gt;police.uk&lt;/b&gt; burglary points, 2024/25 only "
    "&#96;&#36;{x}&#96;"
)


def _flagged_micro(micro: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Neighbourhood 2's micro-places with rank 2 at a generic police.uk point and rank 3
    mostly outside the neighbourhood."""
    out = micro.copy()
    out["generic_location"] = False
    out["overlap_share"] = 1.0
    in2 = out["neighbourhood_id"] == 2
    out.loc[in2 & (out["patrol_rank"] == 2), ["top_location", "generic_location"]] = [
        "On or near Supermarket",
        True,
    ]
    out.loc[in2 & (out["patrol_rank"] == 3), "overlap_share"] = 0.093
    out.loc[in2 & (out["patrol_rank"] == 4), "overlap_share"] = 0.5  # not "mostly outside"
    return out


def test_points_note_banner_and_density_label(borough):
    lsoas, neighbourhoods, micro, density = borough
    overview = maps.overview_map(
        lsoas,
        neighbourhoods=neighbourhoods,
        micro_places=micro,
        density=density,
        points_note=XSS_NOTE,
        density_label="burglary harm days per km2",
        show=["deciles", "density"],
    )
    assert overview.count(NOTE_ESCAPED) == 1 and 'class="pi-banner"' in overview
    assert "<b>police.uk" not in overview and "${x}" not in overview
    assert "<h2>Density surface (burglary harm days per km2)</h2>" in overview
    page = maps.neighbourhood_map(
        1,
        lsoas,
        neighbourhoods,
        micro,
        density=density,
        points_note=XSS_NOTE,
        density_label="burglary harm days per km2",
    )
    # on the map, and above the patrol table
    assert page.count(NOTE_ESCAPED) == 2
    side = page[page.index('<aside class="pi-side">') :]
    assert side.index(NOTE_ESCAPED) < side.index('<table class="pi-patrol">')
    assert "<h2>Density surface (burglary harm days per km2)</h2>" in page
    # without: no banner, and the surface's own units (none given for a bare tuple)
    plain = maps.neighbourhood_map(1, lsoas, neighbourhoods, micro, density=density)
    assert 'class="pi-banner"' not in plain and 'class="pi-points-note"' not in plain
    assert "<h2>Density surface</h2>" in plain
    blank = maps.overview_map(lsoas, points_note="  ", density_label="")
    assert 'class="pi-banner"' not in blank
    units = SimpleDensity(*density, units="harm days per km2")
    assert "<h2>Density surface (harm days per km2)</h2>" in maps.overview_map(
        lsoas, density=units, show=["density"]
    )


class SimpleDensity:
    def __init__(self, values, transform, *, units):
        self.values, self.transform, self.units, self.crs = values, transform, units, "EPSG:27700"


def test_min_records_message_and_caption(borough):
    lsoas, neighbourhoods, micro, _ = borough
    listed = micro[micro["neighbourhood_id"] != 4]
    page = maps.neighbourhood_map(4, lsoas, neighbourhoods, listed, min_records=3)
    assert _table_rows(page) == [["No micro-place reaches 3 records."]]
    assert "Listed: micro-places with at least 3 records." in page
    both = maps.neighbourhood_map(4, lsoas, neighbourhoods, listed, min_records=3, min_overlap=0.25)
    assert (
        "No micro-place reaches 3 records and has at least 25% of its area inside the "
        "neighbourhood." in both
    )
    # a neighbourhood with places: the caption states the rule, the rows are the places
    page = maps.neighbourhood_map(2, lsoas, neighbourhoods, micro, min_records=3)
    assert "Listed: micro-places with at least 3 records." in page
    assert len(_table_rows(page)) == 8
    # the default rule (1 record) is not stated, and no micro-places at all reads as before
    assert "Listed:" not in maps.neighbourhood_map(2, lsoas, neighbourhoods, micro)
    assert "No micro-places were identified here." in maps.neighbourhood_map(
        4, lsoas, neighbourhoods, listed
    )
    assert "No micro-places were identified here." in maps.neighbourhood_map(
        4, lsoas, neighbourhoods, None, min_records=3
    )


def test_generic_locations_and_mostly_outside_cells_in_the_table(borough):
    lsoas, neighbourhoods, micro, _ = borough
    flagged = _flagged_micro(micro)
    page = maps.neighbourhood_map(2, lsoas, neighbourhoods, flagged)
    rows = _table_rows(page)
    assert rows[1][2].startswith('On or near Supermarket <span class="pi-generic"')
    assert "\u2020</span>" in rows[1][2]
    assert all("pi-generic" not in r[2] for i, r in enumerate(rows) if i != 1)
    assert page.count('<p class="pi-foot">\u2020 generic police.uk point: check on the ground') == 1
    # the numbered marker and its tooltip say so too, and the key explains the colour
    assert page.count('class=\\"pi-num pi-num-generic\\"\\u003e2\\u003c/div') == 1
    assert "2. On or near Supermarket (" in page and ") \u2020 generic police.uk point" in page
    assert "Generic police.uk point: check on the ground" in page
    # share inside shown for the cell mostly outside only
    assert rows[2][1].endswith('<span class="pi-inside">9.3% inside</span>')
    assert "inside" not in rows[3][1] and "inside" not in rows[0][1]
    # the overview tooltips carry both
    overview = maps.overview_map(lsoas, neighbourhoods=neighbourhoods, micro_places=flagged)
    assert "On or near Supermarket (generic police.uk point: check on the ground)" in overview
    assert '"inside": "9.3%"' in overview and "Inside the neighbourhood" in overview
    # pages without the new columns have no marker, footnote or share
    plain = maps.neighbourhood_map(2, lsoas, neighbourhoods, micro)
    for mark in ('class="pi-generic"', 'class="pi-foot"', 'class="pi-inside"', "generic\\"):
        assert mark not in plain


def test_number_markers_are_small_and_beside_their_place(neighbourhood_html):
    assert '"iconSize": [18, 18]' in neighbourhood_html
    assert '"iconAnchor": [-3, 21]' in neighbourhood_html
    assert "width: 18px; height: 18px;" in neighbourhood_html
    assert "Crime types (most harm first)" in neighbourhood_html


@pytest.mark.browser
def test_banner_and_offset_numbers_in_chromium(borough, tmp_path):
    lsoas, neighbourhoods, micro, _ = borough
    html = maps.neighbourhood_map(
        2,
        lsoas,
        neighbourhoods,
        _flagged_micro(micro),
        points_note=XSS_NOTE,
        min_records=2,
        basemap=False,
    )
    # every number's circle lies up and to the right of its place: the place stays visible
    # (transitions off first: under virtual time a zoom transition may not have ended)
    actions = """
      var still = document.createElement("style");
      still.textContent = "* { transition: none !important; }";
      document.head.appendChild(still);
      void document.body.offsetHeight;
      var c = map.getContainer().getBoundingClientRect();
      map.eachLayer(function (l) {
        if (!(l._icon && l._icon.querySelector(".pi-num"))) return;
        var p = map.latLngToContainerPoint(l.getLatLng());
        var r = l._icon.querySelector(".pi-num").getBoundingClientRect();
        var clear = c.left + p.x < r.left && c.top + p.y > r.bottom && r.width === 18;
        done.push(clear ? "clear" : "covers");
      });
    """
    page = tmp_path / "banner.html"
    page.write_text(_with_hook(html, actions), encoding="utf-8")
    dom = dump_dom(page)
    assert re.search(r'data-hook="(clear,){7}clear"', dom)
    # the banner is a control on the map (above the layer control), its text escaped
    controls = re.search(r'<div class="leaflet-top leaflet-right">(.*?)</section>', dom, re.S)
    assert controls is not None
    first = controls.group(1)
    assert first.index("pi-banner") < first.index("leaflet-control-layers")
    assert NOTE_ESCAPED.replace("&#96;", "`").replace("&#36;", "$") in first
    assert "<b>police.uk</b>" not in _without_scripts(dom)
    assert _count(r'<div class="pi-num pi-num-generic">2</div>', dom) == 1
    _assert_no_injection(dom)


# --------------------------------------------------------------------------------------------
# Large study areas: map_pages aggregates the overview and writes one map per authority


def _two_authorities(lsoas: gpd.GeoDataFrame) -> pd.Series:
    """West and east halves of the synthetic borough as two local authorities."""
    x = shapely.get_x(shapely.centroid(np.asarray(lsoas.geometry.values)))
    return pd.Series(np.where(x < np.median(x), "E09000901", "E09000902"), index=lsoas.index)


def test_map_pages_within_budget_is_the_overview(borough):
    lsoas, neighbourhoods, micro, density = borough
    pages = maps.map_pages(lsoas, neighbourhoods, micro, density=density, title="Test")
    assert list(pages) == ["overview.html"] + [
        f"neighbourhood_{i}.html" for i in neighbourhoods.index
    ]
    expected = maps.overview_map(
        lsoas, neighbourhoods=neighbourhoods, micro_places=micro, density=density, title="Test"
    )
    assert pages["overview.html"] == expected
    assert pages["neighbourhood_1.html"] == maps.neighbourhood_map(
        1, lsoas, neighbourhoods, micro, density=density
    )


def test_expected_overview_size_is_a_close_upper_bound(borough, overview_html):
    lsoas, neighbourhoods, micro, _ = borough
    prep = maps._prepare(lsoas, neighbourhoods, micro, simplify_tolerance=10.0, precision=5)
    actual = len(overview_html.encode())
    assert actual <= maps._overview_bytes(prep, with_density=True) <= actual + 600_000
    assert 0.8 < maps._overview_bytes(prep, with_density=False) / actual < 1.2


@pytest.fixture(scope="module")
def aggregated(borough):
    lsoas, neighbourhoods, micro, density = borough
    areas = _two_authorities(lsoas)
    return maps.map_pages(
        lsoas,
        neighbourhoods,
        micro,
        density=density,
        title="Region",
        areas=areas,
        area_names={"E09000901": "Westborough", "E09000902": "Eastborough <i>"},
        overview_budget_mb=0.2,  # smaller than the LSOA overview: forces the aggregate
    )


def test_map_pages_over_budget_aggregates_by_authority(borough, aggregated):
    lsoas, neighbourhoods, _, _ = borough
    assert sorted(aggregated) == sorted(
        ["overview.html", "area_E09000901.html", "area_E09000902.html"]
        + [f"neighbourhood_{i}.html" for i in neighbourhoods.index]
    )
    overview = aggregated["overview.html"]
    assert len(overview) < 0.5 * len(aggregated["area_E09000901.html"]) + 400_000
    assert "are shown as 2 local authorities" in overview
    assert "over the 0.2 MB budget" in overview
    assert 'href=\\"area_E09000901.html\\"' in overview  # the popup links each authority map
    # names from data are escaped (and the JSON escapes the entities again)
    assert "Eastborough \\u0026lt;i\\u0026gt;" in overview and "Eastborough <i>" not in overview
    # each authority map is the overview of its own LSOAs, every one of them
    areas = _two_authorities(lsoas)
    for code in ("E09000901", "E09000902"):
        page = aggregated[f"area_{code}.html"]
        codes = set(re.findall(r'"id": "(E0199\d{4})"', page))
        assert codes == set(areas.index[areas == code])
        check_offline(page)
    assert aggregated["area_E09000902.html"].count("<title>Region: Eastborough &lt;i&gt;") == 1
    # shares of harm are of the whole study area, not of one borough
    assert "of study area harm" in aggregated["neighbourhood_1.html"]
    assert "of borough harm" not in aggregated["neighbourhood_1.html"]


def test_grid_squares_grow_until_few_enough():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(400_000, 460_000, 5000), rng.uniform(100_000, 160_000, 5000)
    keys, side = maps.grid_squares(x, y, max_squares=100)
    assert side == 10_000.0 and len(set(keys)) <= 100  # 5 km squares would be 144
    assert keys[0] == f"E{int(x[0] // 10_000 * 10):d} N{int(y[0] // 10_000 * 10):d}"


def test_map_pages_without_authorities_aggregates_by_grid(borough):
    lsoas, neighbourhoods, micro, density = borough
    pages = maps.map_pages(
        lsoas, neighbourhoods, micro, density=density, overview_budget_mb=0.2, max_areas=20
    )
    assert not any(name.startswith("area_") for name in pages)
    overview = pages["overview.html"]
    assert re.search(r"are shown as \d+ \d+ km grid squares", overview)
    squares = int(re.search(r"are shown as (\d+) ", overview).group(1))
    assert 2 <= squares <= 20


@pytest.mark.browser
def test_aggregated_overview_draws_offline_in_chromium(borough, aggregated, tmp_path):
    _, neighbourhoods, micro, _ = borough
    page = tmp_path / "overview.html"
    page.write_text(aggregated["overview.html"], encoding="utf-8")
    dom = dump_dom(page)
    # two authorities, the neighbourhood outlines and the micro-places
    assert _count(INTERACTIVE_PATH, dom) == 2 + len(neighbourhoods) + len(micro)
    assert _count(r'<div class="leaflet-marker-icon pi-nb-label-icon', dom) == len(neighbourhoods)
    assert "Eastborough <i>" not in _without_scripts(dom)
