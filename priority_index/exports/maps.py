"""HTML hot-spot maps for patrol planners that open with no network.

Two builders return a whole HTML page as a string:

- :func:`overview_map`: the borough, with toggleable layers for the index deciles, Gi* hot and
  cold spots, the harm density surface, the priority neighbourhoods and their micro-places;
- :func:`neighbourhood_map`: one priority neighbourhood, zoomed to it, its micro-places
  numbered in patrol order beside a printable table.

Micro-places are grid cells (polygons, drawn as yellow squares) or street segments (lines,
drawn as thick yellow lines over a dark casing, numbered at their midpoint); the maps draw
whichever they are given. A caller may say what the micro-places and the density are made of
(``points_note``, shown as a banner on the map and above the patrol table, and
``density_label``); places at a generic police.uk map point ("On or near Supermarket") are
marked in the patrol table to be checked on the ground.

Leaflet and jQuery are inlined from installed packages (see :mod:`.offline_assets`), so every
layer draws offline; the OpenStreetMap basemap appears only when a network is reachable and the
borough outline gives context without it. Geometry is simplified as a coverage (shared
boundaries stay shared) and coordinates rounded. Text from the data is HTML-escaped before it
reaches the page. The same inputs give byte-identical pages. Only :func:`write_map` touches
paths.
"""

from __future__ import annotations

import base64
import functools
import html as _html
import io
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import branca.element
import folium
import geopandas as gpd
import matplotlib
import matplotlib.colors
import matplotlib.image
import numpy as np
import pandas as pd
import rasterio.crs
import shapely
import shapely.errors
import shapely.geometry
from affine import Affine
from folium.template import Template
from pyproj import CRS, Transformer
from rasterio import warp
from rasterio.enums import Resampling

from priority_index.exports.offline_assets import render_offline

__all__ = [
    "DECILE_COLOURS",
    "GI_CLASSES",
    "LAYERS",
    "density_png",
    "grid_squares",
    "map_pages",
    "neighbourhood_map",
    "neighbourhood_maps",
    "overview_map",
    "web_geometries",
    "write_map",
]

BNG = "EPSG:27700"
WEB_MERCATOR = "EPSG:3857"
WGS84 = "EPSG:4326"

#: Gi* confidence bins (ArcGIS convention) with their labels and the familiar ArcGIS colours.
GI_CLASSES: dict[int, tuple[str, str]] = {
    3: ("Hot spot, 99% confidence", "#d62f27"),
    2: ("Hot spot, 95% confidence", "#ed7551"),
    1: ("Hot spot, 90% confidence", "#fab984"),
    0: ("Not significant", "#ffffbf"),
    -1: ("Cold spot, 90% confidence", "#c0ccbe"),
    -2: ("Cold spot, 95% confidence", "#849eba"),
    -3: ("Cold spot, 99% confidence", "#4575b5"),
}

#: Overview layers, by key, with the names shown in the layer control.
LAYERS: dict[str, str] = {
    "deciles": "Index decile (1 = top 10%)",
    "gi": "Gi* hot and cold spots",
    "density": "Density surface",
    "neighbourhoods": "Priority neighbourhoods",
    "micro_places": "Micro-places (patrol cells)",
}

_LSOA_COLUMNS = ("lsoa_name", "score", "rank", "decile")
_NEIGHBOURHOOD_COLUMNS = ("name",)
_MICRO_COLUMNS = (
    "neighbourhood_id",
    "patrol_rank",
    "cell_id",
    "n_records",
    "harm",
    "harm_share",
    "crime_types",
    "top_location",
)

_DECILE_CMAP = "PuRd"
_DENSITY_CMAP = "YlOrRd"
_NEIGHBOURHOOD_COLOUR = "#1b1b1b"
_MICRO_FILL = "#ffe14d"
_MICRO_LINE = "#3b2a00"
#: Layer-control name of the micro-places when they are street segments.
_MICRO_SEGMENTS_LAYER = "Micro-places (street segments)"
_SEGMENT_WEIGHT = 6
_SEGMENT_CASING_WEIGHT = 10
_LINE_TYPES = ("LineString", "MultiLineString")
_NO_TIME_NOTE = (
    "police.uk records give the month of each crime, not the time of day, so no patrol times "
    "are suggested."
)
#: Marker and footnote of places whose top location is a generic police.uk map point.
_GENERIC_MARK = "\u2020"
_GENERIC_NOTE_SHORT = "generic police.uk point: check on the ground"
_GENERIC_NOTE = (
    f"{_GENERIC_NOTE_SHORT}. police.uk moves every record to an anonymised map point; this one "
    "is named after a kind of place (such as a supermarket or a parking area), not a street, "
    "so its records may come from the streets around it."
)
#: Below this share inside its neighbourhood a place's share is printed in the patrol table.
_MOSTLY_OUTSIDE = 0.5
#: Diameter of the patrol-order number markers, in CSS pixels (border included).
_NUM_SIZE = 18

#: A density surface: ``(values, transform)``, ``(values, transform, crs)``, or an object with
#: ``values``, ``transform`` and ``crs`` attributes (such as ``priority_index.density
#: .DensityGrid``); values north-up, NaN where there is no value, EPSG:27700 unless given.
DensityLike = tuple[np.ndarray, Affine] | tuple[np.ndarray, Affine, Any] | Any


# --------------------------------------------------------------------------------------------
# Text and numbers


def _esc(value: Any) -> str:
    """Text from data, safe inside HTML and inside folium's JavaScript template literals."""
    if value is None:
        return ""
    if isinstance(value, list | tuple | set | np.ndarray):
        value = ", ".join(str(v) for v in value)
    elif not isinstance(value, str) and pd.isna(value):
        return ""
    text = _html.escape(str(value), quote=True)
    return text.replace("\\", "&#92;").replace("`", "&#96;").replace("$", "&#36;")


def _is_missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _fmt_number(value: Any, *, digits: int = 2) -> str:
    if _is_missing(value):
        return "n/a"
    value = float(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.{max(digits - 1, 0)}f}"
    if abs(value) >= 1:
        return f"{value:.{digits}f}"
    return f"{value:.{digits + 1}f}"


def _fmt_int(value: Any) -> str:
    return "n/a" if _is_missing(value) else f"{int(value):,d}"


def _fmt_share(value: Any) -> str:
    return "n/a" if _is_missing(value) else f"{float(value):.1%}"


def _int_or(value: Any, default: int) -> int:
    return default if _is_missing(value) else int(value)


def _gi_label(value: Any) -> str:
    if _is_missing(value):
        return "n/a"
    return GI_CLASSES.get(int(value), ("n/a", ""))[0]


def _decile_colours() -> dict[int, str]:
    """Decile 1 (top 10%) darkest."""
    cmap = matplotlib.colormaps[_DECILE_CMAP]
    stops = np.linspace(0.95, 0.08, 10)
    return {d: matplotlib.colors.to_hex(cmap(s)) for d, s in zip(range(1, 11), stops, strict=True)}


#: Fill colour of each index decile (1 = top 10%, darkest).
DECILE_COLOURS: dict[int, str] = _decile_colours()


# --------------------------------------------------------------------------------------------
# Validation


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}")


def _check_shares(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    for column in columns:
        if column not in frame.columns:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values[(values < 0) | (values > 1 + 1e-9)]
        if len(bad):
            raise ValueError(
                f"{what}: {column} must be a fraction between 0 and 1; "
                f"found {bad.iloc[0]!r} at {bad.index[0]!r}"
            )


def _as_bng(frame: gpd.GeoDataFrame, what: str) -> gpd.GeoDataFrame:
    if not isinstance(frame, gpd.GeoDataFrame):
        raise TypeError(f"{what} must be a GeoDataFrame")
    if frame.crs is None:
        raise ValueError(f"{what} has no CRS (expected EPSG:27700)")
    if CRS.from_user_input(frame.crs) != CRS.from_user_input(BNG):
        frame = frame.to_crs(BNG)
    return frame


def _prepare_lsoas(lsoas: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    lsoas = _as_bng(lsoas, "lsoas")
    if "lsoa_code" in lsoas.columns:
        lsoas = lsoas.set_index("lsoa_code")
    _require(lsoas, _LSOA_COLUMNS, "lsoas")
    if not lsoas.index.is_unique:
        raise ValueError("lsoas: lsoa_code values must be unique")
    return lsoas


def _prepare_neighbourhoods(neighbourhoods: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame | None:
    if neighbourhoods is None:
        return None
    neighbourhoods = _as_bng(neighbourhoods, "neighbourhoods")
    if "neighbourhood_id" in neighbourhoods.columns:
        neighbourhoods = neighbourhoods.set_index("neighbourhood_id")
    _require(neighbourhoods, _NEIGHBOURHOOD_COLUMNS, "neighbourhoods")
    if not neighbourhoods.index.is_unique:
        raise ValueError("neighbourhoods: neighbourhood_id values must be unique")
    _check_shares(
        neighbourhoods, ["share_of_borough_harm", "selection_frequency"], "neighbourhoods"
    )
    return neighbourhoods


def _prepare_micro(micro_places: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame | None:
    if micro_places is None:
        return None
    micro_places = _as_bng(micro_places, "micro_places")
    _require(micro_places, _MICRO_COLUMNS, "micro_places")
    _check_shares(micro_places, ["harm_share"], "micro_places")
    ordered = micro_places.sort_values(["neighbourhood_id", "patrol_rank"], kind="stable")
    return ordered.reset_index(drop=True)  # feature ids by position: unique whatever the index


def _is_lines(micro: gpd.GeoDataFrame | None) -> bool:
    """True when every micro-place with a geometry is a (Multi)LineString: street segments."""
    if micro is None:
        return False
    kinds = micro.geometry.geom_type.dropna()
    return len(kinds) > 0 and bool(kinds.isin(_LINE_TYPES).all())


def _anchor_points(geometries: gpd.GeoSeries) -> np.ndarray:
    """Where a micro-place's number goes: half way along a line, else a point on the surface."""
    values = np.asarray(geometries.values)
    out = shapely.point_on_surface(values)
    kinds = shapely.get_type_id(values)
    lines = (kinds == shapely.GeometryType.LINESTRING) | (
        kinds == shapely.GeometryType.MULTILINESTRING
    )
    if lines.any():
        out[lines] = shapely.line_interpolate_point(values[lines], 0.5, normalized=True)
    return out


# --------------------------------------------------------------------------------------------
# Geometry


def web_geometries(
    geometries: gpd.GeoSeries | gpd.GeoDataFrame,
    *,
    tolerance: float = 10.0,
    precision: int = 5,
    coverage: bool = True,
) -> gpd.GeoSeries:
    """Simplify and reproject geometries for a web map.

    Parameters
    ----------
    geometries
        Polygons in a projected CRS in metres (EPSG:27700 expected). With ``coverage=True`` they
        must form a coverage (no overlaps), like LSOAs or neighbourhoods built from them.
    tolerance
        Simplification tolerance in metres; 0 keeps every vertex.
    precision
        Decimal places kept in longitude and latitude (5 is about a metre).
    coverage
        Simplify as a coverage (``shapely.coverage_simplify``), so that shared boundaries are
        simplified once and stay shared. With ``False`` each geometry is simplified on its own
        (topology-preserving within each one).

    Returns
    -------
    geopandas.GeoSeries
        EPSG:4326 geometries with the same index, coordinates rounded, repeated points dropped.
    """
    series = geometries.geometry if isinstance(geometries, gpd.GeoDataFrame) else geometries
    if series.crs is None:
        raise ValueError("geometries have no CRS")
    if CRS.from_user_input(series.crs).is_geographic:
        raise ValueError("simplify in a projected CRS in metres (EPSG:27700), not degrees")
    values = _simplify(np.asarray(series.values), tolerance, coverage=coverage)
    out = gpd.GeoSeries(values, index=series.index, crs=series.crs).to_crs(WGS84)
    rounded = shapely.transform(out.values, lambda xy: np.round(xy, precision))
    rounded = shapely.remove_repeated_points(rounded, 0.0)
    return gpd.GeoSeries(rounded, index=series.index, crs=WGS84)


def _simplify(values: np.ndarray, tolerance: float, *, coverage: bool) -> np.ndarray:
    if tolerance <= 0 or len(values) == 0:
        return values
    if coverage:
        if shapely.coverage_is_valid(values):
            return shapely.coverage_simplify(values, tolerance)
        warnings.warn(
            "polygons do not form a valid coverage (overlaps or mismatched shared edges); "
            "simplifying each on its own, so small gaps may show between neighbours",
            stacklevel=3,
        )
    return shapely.simplify(values, tolerance, preserve_topology=True)


#: Gaps narrower than twice this (metres) inside a union of a non-clean coverage are closed.
_CLOSE_GAPS_M = 5.0


def _union(values: np.ndarray) -> shapely.Geometry:
    try:
        return shapely.coverage_union_all(values)
    except shapely.errors.GEOSException:  # not a clean coverage: the general (slower) union
        # ... whose slivers between neighbours simplified on their own would show as slits:
        # closed (grown then shrunk, square corners kept) when under 2 x _CLOSE_GAPS_M wide
        union = shapely.union_all(values)
        grown = shapely.buffer(union, _CLOSE_GAPS_M, join_style="mitre")
        return shapely.buffer(grown, -_CLOSE_GAPS_M, join_style="mitre")


def _feature_collection(
    geometries: gpd.GeoSeries, properties: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    features = []
    for key, geometry, props in zip(geometries.index, geometries.values, properties, strict=True):
        if geometry is None or geometry.is_empty:
            continue
        features.append(
            {
                "type": "Feature",
                "id": str(key),
                "properties": dict(props),
                "geometry": shapely.geometry.mapping(geometry),
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _bounds_latlon(geometries: gpd.GeoSeries) -> list[list[float]]:
    west, south, east, north = (round(float(v), 6) for v in geometries.total_bounds)
    return [[south, west], [north, east]]


# --------------------------------------------------------------------------------------------
# Density surface


@dataclass(frozen=True)
class _Density:
    values: np.ndarray
    transform: Affine
    crs: CRS
    vmin: float
    vmax: float
    units: str


def _as_density(density: DensityLike, *, quantile: float) -> _Density | None:
    units = ""
    if hasattr(density, "values") and hasattr(density, "transform"):
        units = str(getattr(density, "units", "") or "")
        density = (density.values, density.transform, getattr(density, "crs", None) or BNG)
    if not isinstance(density, tuple | list) or len(density) not in (2, 3):
        raise ValueError(
            "density must be (values, transform), (values, transform, crs) or an object with "
            "values, transform and crs"
        )
    values = np.asarray(density[0], dtype=float)
    transform = density[1]
    crs = CRS.from_user_input(density[2] if len(density) == 3 else BNG)
    if values.ndim != 2:
        raise ValueError(f"density values must be 2-D, got shape {values.shape}")
    if not isinstance(transform, Affine):
        transform = Affine(*transform[:6])
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        raise ValueError("density transform must be north-up (no rotation, negative y step)")
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.max() <= 0:
        return None
    vmin = min(0.0, float(finite.min()))
    vmax = float(np.quantile(finite, quantile))
    if vmax <= vmin:
        vmax = float(finite.max())
    return _Density(values, transform, crs, vmin, vmax, units)


def density_png(
    values: np.ndarray,
    transform: Affine,
    *,
    crs: Any = BNG,
    cmap: str = _DENSITY_CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
    max_alpha: float = 0.8,
    max_pixels: int = 1600,
) -> tuple[str, list[list[float]]]:
    """Render a density surface as a PNG data URI placed for a Leaflet image overlay.

    The grid is warped to Web Mercator (Leaflet stretches an overlay linearly in that CRS), so
    the picture lies where the grid does.

    Parameters
    ----------
    values
        2-D array, north-up, NaN where there is no value.
    transform
        Affine transform of ``values`` (rasterio convention).
    crs
        CRS of the grid.
    cmap
        Matplotlib colormap name.
    vmin, vmax
        Value range of the colour scale; by default 0 (or the minimum if negative) and the
        maximum. Values are clipped to it.
    max_alpha
        Opacity at ``vmax``; opacity grows with the square root of the scaled value so low
        densities fade out. NaN is fully transparent.
    max_pixels
        Longest side of the PNG.

    Returns
    -------
    uri : str
        ``data:image/png;base64,...``
    bounds : list of list of float
        ``[[south, west], [north, east]]`` in degrees.
    """
    values = np.asarray(values, dtype=float)
    height, width = values.shape
    left, bottom, right, top = _grid_bounds(transform, width, height)
    # Web Mercator extent of the grid, at about the grid's own resolution (at most max_pixels
    # on the longest side); computed directly: GDAL's suggested-output search costs 30 ms a call
    west, south, east, north = _to_web_mercator(CRS.from_user_input(crs)).transform_bounds(
        left, bottom, right, top, densify_pts=21
    )
    res = max((east - west) / width, (north - south) / height)
    res = max(res, max(east - west, north - south) / max_pixels)
    dst_width = max(1, math.ceil((east - west) / res))
    dst_height = max(1, math.ceil((north - south) / res))
    dst_transform = Affine(res, 0.0, west, 0.0, -res, north)
    warped = np.full((dst_height, dst_width), np.nan)
    warp.reproject(
        values,
        warped,
        src_transform=transform,
        src_crs=_rasterio_crs(CRS.from_user_input(crs).to_wkt()),
        src_nodata=np.nan,
        dst_transform=dst_transform,
        dst_crs=_rasterio_crs(WEB_MERCATOR),
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    finite = np.isfinite(warped)
    lo = vmin if vmin is not None else min(0.0, float(np.nanmin(values)))
    hi = vmax if vmax is not None else float(np.nanmax(values))
    scaled = np.zeros_like(warped)
    if hi > lo:
        scaled[finite] = np.clip((warped[finite] - lo) / (hi - lo), 0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](scaled)
    rgba[..., 3] = np.where(finite, max_alpha * np.sqrt(scaled), 0.0)
    buffer = io.BytesIO()
    matplotlib.image.imsave(
        buffer,
        np.round(rgba * 255).astype(np.uint8),
        format="png",
        metadata={"Software": None},
    )
    uri = "data:image/png;base64," + _b64(buffer.getvalue())
    dst_left, dst_bottom, dst_right, dst_top = _grid_bounds(dst_transform, dst_width, dst_height)
    to_wgs84 = Transformer.from_crs(WEB_MERCATOR, WGS84, always_xy=True)
    west, south = to_wgs84.transform(dst_left, dst_bottom)
    east, north = to_wgs84.transform(dst_right, dst_top)
    return uri, [[round(south, 6), round(west, 6)], [round(north, 6), round(east, 6)]]


@functools.lru_cache(maxsize=8)
def _rasterio_crs(text: str) -> rasterio.crs.CRS:
    """A rasterio CRS, built once (GDAL parses it again on every call otherwise)."""
    return rasterio.crs.CRS.from_user_input(text)


@functools.lru_cache(maxsize=8)
def _to_web_mercator(crs: CRS) -> Transformer:
    return Transformer.from_crs(crs, WEB_MERCATOR, always_xy=True)


def _grid_bounds(transform: Affine, width: int, height: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a north-up grid."""
    left, top = transform.c, transform.f
    return left, top + height * transform.e, left + width * transform.a, top


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _crop(
    values: np.ndarray, transform: Affine, bounds: tuple[float, float, float, float]
) -> tuple[np.ndarray, Affine]:
    """The cells of a north-up grid that overlap ``bounds``, with their transform."""
    xmin, ymin, xmax, ymax = bounds
    rows, cols = values.shape
    col0 = int(np.clip(np.floor((xmin - transform.c) / transform.a), 0, cols))
    col1 = int(np.clip(np.ceil((xmax - transform.c) / transform.a), 0, cols))
    row0 = int(np.clip(np.floor((ymax - transform.f) / transform.e), 0, rows))
    row1 = int(np.clip(np.ceil((ymin - transform.f) / transform.e), 0, rows))
    cropped = Affine(
        transform.a,
        0.0,
        transform.c + col0 * transform.a,
        0.0,
        transform.e,
        transform.f + row0 * transform.e,
    )
    return values[row0:row1, col0:col1], cropped


def _density_layer(
    density: _Density,
    *,
    show: bool,
    clip: tuple[float, float, float, float] | None = None,
    max_pixels: int = 1600,
) -> folium.raster_layers.ImageOverlay | None:
    values, transform = density.values, density.transform
    if clip is not None:
        if density.crs != CRS.from_user_input(BNG):
            clip = warp.transform_bounds(BNG, density.crs, *clip)
        values, transform = _crop(values, transform, clip)
    if not np.isfinite(values).any():
        return None
    uri, bounds = density_png(
        values,
        transform,
        crs=density.crs,
        vmin=density.vmin,
        vmax=density.vmax,
        max_pixels=max_pixels,
    )
    return folium.raster_layers.ImageOverlay(
        image=uri,
        bounds=bounds,
        name=LAYERS["density"],
        show=show,
        pixelated=False,
        interactive=False,
        pane="pi-density",
    )


# --------------------------------------------------------------------------------------------
# Page pieces


class _Block(branca.element.MacroElement):
    """Static CSS and HTML, plus optional script, added to the page."""

    _template = Template(
        """
        {% macro header(this, kwargs) %}<style>{{ this.css }}</style>{% endmacro %}
        {% macro html(this, kwargs) %}{{ this.body }}{% endmacro %}
        {% macro script(this, kwargs) %}{{ this.js }}{% endmacro %}
        """
    )

    def __init__(self, *, css: str = "", body: str = "", js: str = "") -> None:
        super().__init__()
        self._name = "Block"
        self.css = css
        self.body = body
        self.js = js


class _PrintFit(branca.element.MacroElement):
    """Refit the map to its bounds when the page is laid out for printing and back."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        (function () {
            var map = {{ this._parent.get_name() }};
            var bounds = {{ this.bounds|tojson }};
            function refit() { map.invalidateSize(false); map.fitBounds(bounds); }
            window.addEventListener("beforeprint", refit);
            window.addEventListener("afterprint", refit);
            if (window.matchMedia) {
                window.matchMedia("print").addEventListener("change", refit);
            }
        })();
        {% endmacro %}
        """
    )

    def __init__(self, bounds: list[list[float]]) -> None:
        super().__init__()
        self._name = "PrintFit"
        self.bounds = bounds


class _MapBanner(branca.element.MacroElement):
    """A banner of escaped text at the top right of the map, above the layer control (a Leaflet
    control, so it stacks with the other controls and stays on the map in print)."""

    _template = Template(
        """
        {% macro html(this, kwargs) %}<div class="pi-banner" id="{{ this.get_name() }}"
        role="note">{{ this.text }}</div>{% endmacro %}
        {% macro script(this, kwargs) %}
        (function () {
            var banner = document.getElementById({{ this.get_name()|tojson }});
            var Note = L.Control.extend({
                options: { position: "topright" },
                onAdd: function () { return banner; }
            });
            new Note().addTo({{ this._parent.get_name() }});
            L.DomEvent.disableClickPropagation(banner);
            L.DomEvent.disableScrollPropagation(banner);
        })();
        {% endmacro %}
        """
    )

    def __init__(self, text: str) -> None:
        super().__init__()
        self._name = "MapBanner"
        self.text = _esc(text)


_BASE_CSS = """
.pi-key { font: 12px/1.35 system-ui, sans-serif; color: #222; }
.pi-key h2 { font-size: 12px; margin: 6px 0 3px; }
.pi-key .pi-row { display: flex; align-items: center; gap: 6px; margin: 1px 0; }
.pi-key .pi-sw { width: 16px; height: 12px; border: 1px solid #777; flex: none; }
.pi-key .pi-ramp { width: 120px; height: 10px; border: 1px solid #777; }
.pi-key .pi-note { color: #555; margin-top: 6px; max-width: 230px; }
.pi-nb-label-icon { background: none; border: none; }
.pi-nb-label { position: absolute; left: 6px; top: 6px; transform: translate(-50%, -50%);
  white-space: nowrap; font: 600 12px/1.2 system-ui, sans-serif; color: #111;
  background: rgba(255,255,255,0.85); border: 1px solid #333; border-radius: 3px;
  padding: 1px 4px; }
.pi-num-icon { background: none; border: none; }
.pi-num { position: relative; box-sizing: border-box; width: 18px; height: 18px;
  border-radius: 50%; background: #111; color: #fff; border: 1.5px solid #fff;
  box-shadow: 0 0 0 1px #111; text-align: center;
  font: 700 10px/15px system-ui, sans-serif; letter-spacing: -0.5px; }
.pi-num.pi-num-generic { background: #7a3b00; }
.pi-num-icon .pi-num::before { content: ""; position: absolute; left: -7.5px; top: 16.5px;
  width: 6px; height: 6px; box-sizing: border-box; border-radius: 50%; background: #111;
  border: 1px solid #fff; }
.pi-num-icon .pi-num::after { content: ""; position: absolute; left: -5.7px; top: 15.7px;
  width: 8px; height: 2px; background: #111; transform: rotate(-45deg); }
.pi-banner { max-width: 300px; box-sizing: border-box; background: #fff4c2;
  border: 1px solid #8a6d00; border-radius: 4px; padding: 4px 9px;
  font: 600 13px/1.3 system-ui, sans-serif; color: #222;
  box-shadow: 0 1px 4px rgba(0,0,0,0.3); }
.pi-key, .pi-num, .pi-nb-label, .pi-side, .pi-banner { -webkit-print-color-adjust: exact;
  print-color-adjust: exact; }
.leaflet-tooltip table, .leaflet-popup-content table { border-collapse: collapse; }
.leaflet-tooltip th, .leaflet-popup-content th { text-align: left; padding-right: 6px; }
"""

_OVERVIEW_CSS = """
.pi-legend { position: absolute; z-index: 1000; left: 10px; top: 84px;
  max-height: calc(100% - 150px);
  overflow: auto; background: rgba(255,255,255,0.92); padding: 6px 9px; border-radius: 4px;
  box-shadow: 0 1px 4px rgba(0,0,0,0.35); }
.pi-legend summary { font-weight: 600; cursor: pointer; }
"""

_NEIGHBOURHOOD_CSS = """
html, body { height: 100%; margin: 0; }
.folium-map { position: absolute !important; left: 0; top: 0; bottom: 0;
  width: calc(100% - 440px) !important; height: 100% !important; }
.pi-side { position: absolute; right: 0; top: 0; bottom: 0; width: 440px; overflow: auto;
  box-sizing: border-box; padding: 10px 12px; background: #fff;
  font: 12px/1.35 system-ui, sans-serif; color: #111; border-left: 1px solid #bbb; }
.pi-side h1 { font-size: 17px; margin: 0 0 4px; }
.pi-side .pi-sub { margin: 0 0 8px; color: #333; }
.pi-patrol { border-collapse: collapse; width: 100%; margin-top: 8px; table-layout: fixed; }
.pi-patrol caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 4px; }
.pi-patrol caption .pi-caption-note { display: block; font-weight: 400; color: #444; }
.pi-patrol th, .pi-patrol td { border: 1px solid #999; padding: 3px 4px; vertical-align: top;
  text-align: left; }
.pi-patrol td { overflow-wrap: anywhere; }
.pi-patrol th { font-size: 11px; }
.pi-patrol td.pi-n { text-align: right; white-space: nowrap; }
.pi-patrol .pi-generic { color: #7a3b00; font-weight: 700; }
.pi-patrol .pi-inside { display: block; color: #555; font-size: 11px; }
.pi-side .pi-points-note { margin: 6px 0 0; padding: 4px 6px; background: #fff4c2;
  border: 1px solid #8a6d00; border-radius: 3px; font-weight: 600; }
.pi-side .pi-foot { margin: 4px 0 0; color: #333; }
.pi-patrol thead th { background: #eee; }
@page { size: A4 portrait; margin: 10mm; }
@media print {
  html, body { height: auto; }
  .folium-map { position: relative !important; width: 190mm !important;
    height: 120mm !important; border: 1px solid #999; }
  .pi-side { position: static; width: auto; overflow: visible; border: none; padding: 4mm 0 0; }
  .leaflet-control-zoom, .leaflet-control-layers { display: none; }
  .pi-patrol { font-size: 10px; page-break-inside: auto; }
  .pi-patrol tr { page-break-inside: avoid; }
  .pi-patrol thead { display: table-header-group; }
  .pi-side .pi-key { column-count: 3; font-size: 10px; }
  .pi-side .pi-key summary { display: none; }
}
"""


def _note_text(note: str | None) -> str:
    """The caller's note, single-spaced; "" for none."""
    return " ".join(str(note).split()) if note is not None else ""


def _density_units(density: _Density | None, label: str | None) -> str | None:
    """Units shown in the density legend: the caller's label, else the surface's own units."""
    if density is None:
        return None
    return _note_text(label) if label is not None and _note_text(label) else density.units


def _swatch_row(label: str, *, fill: str, line: str = "#777", opacity: float = 1.0) -> str:
    style = f"background:{fill};border-color:{line};opacity:{opacity}"
    return f'<div class="pi-row"><span class="pi-sw" style="{style}"></span>{label}</div>'


def _legend_sections(
    *,
    deciles: bool,
    gi: bool,
    density: str | None,
    neighbourhoods: bool,
    micro: bool,
    numbered: bool = False,
    micro_lines: bool = False,
    generic: bool = False,
) -> str:
    parts = []
    if deciles:
        parts.append("<h2>Index decile</h2>")
        for decile, colour in DECILE_COLOURS.items():
            label = f"{decile} (top 10%)" if decile == 1 else str(decile)
            parts.append(_swatch_row(label, fill=colour))
    if gi:
        parts.append("<h2>Gi* hot and cold spots</h2>")
        for _, (label, colour) in sorted(GI_CLASSES.items(), reverse=True):
            parts.append(_swatch_row(label, fill=colour))
    if density is not None:
        cmap = matplotlib.colormaps[_DENSITY_CMAP]
        stops = ", ".join(matplotlib.colors.to_hex(cmap(x)) for x in np.linspace(0, 1, 6))
        units = f" ({_esc(density)})" if density else ""
        parts.append(f"<h2>{LAYERS['density']}{units}</h2>")
        parts.append(
            '<div class="pi-row">low <span class="pi-ramp" '
            f'style="background:linear-gradient(to right, {stops})"></span> high</div>'
        )
    if neighbourhoods or micro:
        parts.append("<h2>Places</h2>")
    if neighbourhoods:
        parts.append(
            _swatch_row("Priority neighbourhood", fill="transparent", line=_NEIGHBOURHOOD_COLOUR)
        )
    if micro and micro_lines:
        bar = (
            f"height:{_SEGMENT_WEIGHT - 2}px;background:{_MICRO_FILL};"
            f"border:2px solid {_MICRO_LINE};border-radius:4px"
        )
        parts.append(
            f'<div class="pi-row"><span class="pi-sw" style="{bar}"></span>'
            "Micro-place (street segment)</div>"
        )
    elif micro:
        parts.append(_swatch_row("Micro-place (patrol cell)", fill=_MICRO_FILL, line=_MICRO_LINE))
    if numbered:
        parts.append('<div class="pi-row"><span class="pi-num">1</span>Patrol order</div>')
    if generic:
        parts.append(
            '<div class="pi-row"><span class="pi-num pi-num-generic">1</span>'
            "Generic police.uk point: check on the ground</div>"
        )
    parts.append(
        '<div class="pi-note">The street basemap needs a network connection; every other layer '
        "works offline.</div>"
    )
    return "".join(parts)


def _base_map(bounds: list[list[float]], *, basemap: bool, title: str) -> folium.Map:
    (south, west), (north, east) = bounds
    m = folium.Map(
        location=[(south + north) / 2, (west + east) / 2],
        zoom_start=12,
        tiles=None,
        control_scale=True,
        maxZoom=18,
    )
    m.get_root().title = _esc(title)
    if basemap:
        folium.TileLayer(
            "OpenStreetMap", name="OpenStreetMap (needs network)", max_zoom=18, control=True
        ).add_to(m)
    for name, z_index, pointer in (
        ("pi-density", 350, False),
        ("pi-areas", 410, True),
        ("pi-outlines", 420, True),
        ("pi-cells", 430, True),
    ):
        folium.map.CustomPane(name, z_index=z_index, pointer_events=pointer).add_to(m)
    m.add_child(_Block(css=_BASE_CSS))
    return m


def _lsoa_properties(
    lsoas: gpd.GeoDataFrame, neighbourhood_names: Mapping[int, str]
) -> list[dict[str, Any]]:
    total = len(lsoas)
    nb_ids = (
        lsoas["neighbourhood_id"]
        if "neighbourhood_id" in lsoas.columns
        else pd.Series(0, lsoas.index)
    )
    gi = lsoas["gi_bin"] if "gi_bin" in lsoas.columns else pd.Series(np.nan, lsoas.index)
    drivers = lsoas["top_drivers"] if "top_drivers" in lsoas.columns else pd.Series("", lsoas.index)
    props = []
    for code, name, score, rank, decile, gi_bin, nb_id, driver in zip(
        lsoas.index,
        lsoas["lsoa_name"],
        lsoas["score"],
        lsoas["rank"],
        lsoas["decile"],
        gi,
        nb_ids,
        drivers,
        strict=True,
    ):
        nb = _int_or(nb_id, 0)
        props.append(
            {
                "name": _esc(name),
                "code": _esc(code),
                "rank": f"{_fmt_int(rank)} of {total:,d}",
                "score": _fmt_number(score),
                "decile": _int_or(decile, 0),
                "gi_bin": None if _is_missing(gi_bin) else int(gi_bin),
                "gi": _esc(_gi_label(gi_bin)),
                "nbhd": _esc(neighbourhood_names.get(nb, "")) if nb else "",
                "drivers": _esc(driver),
            }
        )
    return props


_LSOA_TOOLTIP = (["name", "rank", "score", "drivers"], ["LSOA", "Rank", "Score", "Top drivers"])
_LSOA_POPUP = (
    ["name", "code", "rank", "score", "decile", "gi", "nbhd", "drivers"],
    [
        "LSOA",
        "Code",
        "Rank",
        "Score",
        "Decile",
        "Gi* class",
        "Priority neighbourhood",
        "Top drivers",
    ],
)


def _lsoa_layer(
    collection: dict[str, Any],
    *,
    name: str,
    show: bool,
    fill: Mapping[str, Any],
    key: str,
    control: bool = True,
) -> folium.GeoJson:
    def style(feature: dict[str, Any]) -> dict[str, Any]:
        props = feature["properties"]
        opacity = 0.7 if props.get("focus", True) else 0.3
        return {
            "fillColor": fill.get(props[key], "#cccccc"),
            "color": "#555555",
            "weight": 0.6,
            "fillOpacity": opacity,
        }

    def highlight(feature: dict[str, Any]) -> dict[str, Any]:
        return {"weight": 2.5, "color": "#000000"}

    return folium.GeoJson(
        collection,
        name=name,
        show=show,
        control=control,
        style_function=style,
        highlight_function=highlight,
        tooltip=folium.GeoJsonTooltip(*_LSOA_TOOLTIP, sticky=True),
        popup=folium.GeoJsonPopup(*_LSOA_POPUP),
        pane="pi-areas",
    )


def _neighbourhood_properties(neighbourhoods: gpd.GeoDataFrame) -> list[dict[str, Any]]:
    def column(name: str) -> pd.Series:
        if name in neighbourhoods.columns:
            return neighbourhoods[name]
        return pd.Series(np.nan, index=neighbourhoods.index)

    return [
        {
            "name": _esc(name),
            "n_lsoas": _fmt_int(n),
            "residents": _fmt_int(residents),
            "harm": _fmt_number(harm),
            "share": _fmt_share(share),
            "frequency": _fmt_share(freq),
        }
        for name, n, residents, harm, share, freq in zip(
            neighbourhoods["name"],
            column("n_lsoas"),
            column("residents"),
            column("total_harm"),
            column("share_of_borough_harm"),
            column("selection_frequency"),
            strict=True,
        )
    ]


def _neighbourhood_tooltip(whole: str) -> tuple[list[str], list[str]]:
    return (
        ["name", "n_lsoas", "residents", "harm", "share", "frequency"],
        ["Neighbourhood", "LSOAs", "Residents", "Harm", f"Share of {whole} harm", "Selected in"],
    )


def _neighbourhood_outlines(collection: dict[str, Any], whole: str = "borough") -> folium.GeoJson:
    return folium.GeoJson(
        collection,
        control=False,
        style_function=lambda _: {
            "fill": False,
            "color": _NEIGHBOURHOOD_COLOUR,
            "weight": 3,
            "dashArray": "6 4",
        },
        tooltip=folium.GeoJsonTooltip(*_neighbourhood_tooltip(whole), sticky=True),
        pane="pi-outlines",
    )


def _micro_properties(
    micro: gpd.GeoDataFrame, neighbourhood_names: Mapping[int, str]
) -> list[dict[str, Any]]:
    gi = micro["gi_hotspot"] if "gi_hotspot" in micro.columns else pd.Series(False, micro.index)
    kde = micro["kde_hotspot"] if "kde_hotspot" in micro.columns else pd.Series(False, micro.index)
    generic = _generic_flags(micro)
    inside = _inside_shares(micro)
    props = []
    for nb, rank, cell, records, harm, share, types, location, is_gi, is_kde, gen, ins in zip(
        micro["neighbourhood_id"],
        micro["patrol_rank"],
        micro["cell_id"],
        micro["n_records"],
        micro["harm"],
        micro["harm_share"],
        micro["crime_types"],
        micro["top_location"],
        gi,
        kde,
        generic,
        inside,
        strict=True,
    ):
        flags = [
            label
            for label, flag in (("Gi*", is_gi), ("kernel density", is_kde))
            if not _is_missing(flag) and bool(flag)
        ]
        props.append(
            {
                "nbhd": _esc(neighbourhood_names.get(_int_or(nb, 0), "")),
                "patrol_rank": _int_or(rank, 0),
                "cell": _esc(cell),
                "location": _esc(location) + (f" ({_esc(_GENERIC_NOTE_SHORT)})" if gen else ""),
                "types": _esc(types),
                "records": _fmt_int(records),
                "harm": _fmt_number(harm),
                "share": _fmt_share(share),
                "hotspot": " and ".join(flags) if flags else "no",
                "inside": _fmt_share(ins),
            }
        )
    return props


def _generic_flags(micro: gpd.GeoDataFrame) -> np.ndarray:
    """``generic_location`` as booleans (missing column or value: False)."""
    if "generic_location" not in micro.columns:
        return np.zeros(len(micro), dtype=bool)
    return micro["generic_location"].astype("boolean").fillna(False).to_numpy(dtype=bool)


def _inside_shares(micro: gpd.GeoDataFrame) -> np.ndarray:
    """``overlap_share`` as floats (missing column or value: NaN)."""
    if "overlap_share" not in micro.columns:
        return np.full(len(micro), np.nan)
    return pd.to_numeric(micro["overlap_share"], errors="coerce").to_numpy(dtype=np.float64)


_MICRO_TOOLTIP = (
    [
        "nbhd",
        "patrol_rank",
        "cell",
        "location",
        "types",
        "records",
        "harm",
        "share",
        "hotspot",
        "inside",
    ],
    [
        "Neighbourhood",
        "Patrol order",
        "Cell",
        "Top location",
        "Crime types (most harm first)",
        "Records",
        "Harm",
        "Share of harm",
        "Hot spot by",
        "Inside the neighbourhood",
    ],
)
_SEGMENT_TOOLTIP = (
    _MICRO_TOOLTIP[0],
    [*_MICRO_TOOLTIP[1][:2], "Street segment"] + _MICRO_TOOLTIP[1][3:],
)


def _micro_layer(
    collection: dict[str, Any], *, name: str | None, show: bool, lines: bool = False
) -> folium.GeoJson | folium.FeatureGroup:
    """Micro-places: yellow cells with a dark edge, or for street segments thick yellow lines
    over a dark casing (a group of the non-interactive casing and the lines, toggled together).
    """
    if not lines:
        return folium.GeoJson(
            collection,
            name=name,
            show=show,
            control=name is not None,
            style_function=lambda _: {
                "fillColor": _MICRO_FILL,
                "color": _MICRO_LINE,
                "weight": 1.5,
                "fillOpacity": 0.75,
            },
            highlight_function=lambda _: {"weight": 3},
            tooltip=folium.GeoJsonTooltip(*_MICRO_TOOLTIP, sticky=True),
            pane="pi-cells",
        )
    group = folium.FeatureGroup(name=name, show=show, control=name is not None)
    bare = {
        "type": "FeatureCollection",
        "features": [{**f, "properties": {}} for f in collection["features"]],
    }
    folium.GeoJson(
        bare,
        control=False,
        interactive=False,
        style_function=lambda _: {
            "color": _MICRO_LINE,
            "weight": _SEGMENT_CASING_WEIGHT,
            "opacity": 0.9,
            "lineCap": "round",
            "lineJoin": "round",
        },
        pane="pi-cells",
    ).add_to(group)
    folium.GeoJson(
        collection,
        control=False,
        style_function=lambda _: {
            "color": _MICRO_FILL,
            "weight": _SEGMENT_WEIGHT,
            "opacity": 1.0,
            "lineCap": "round",
            "lineJoin": "round",
        },
        highlight_function=lambda _: {"weight": _SEGMENT_CASING_WEIGHT},
        tooltip=folium.GeoJsonTooltip(*_SEGMENT_TOOLTIP, sticky=True),
        pane="pi-cells",
    ).add_to(group)
    return group


def _outline_layer(geometry: gpd.GeoSeries) -> folium.GeoJson:
    return folium.GeoJson(
        _feature_collection(geometry, [{}] * len(geometry)),
        control=False,
        style_function=lambda _: {"fill": False, "color": "#333333", "weight": 2},
        interactive=False,
        pane="pi-outlines",
    )


def _to_latlon(points_bng: np.ndarray, *, precision: int) -> list[list[float]]:
    lonlat = gpd.GeoSeries(points_bng, crs=BNG).to_crs(WGS84)
    return [[round(p.y, precision), round(p.x, precision)] for p in lonlat.values]


def _neighbourhood_geometries(
    neighbourhoods: gpd.GeoDataFrame,
    lsoas: gpd.GeoDataFrame,
    simplified_lsoas: np.ndarray,
    *,
    tolerance: float,
    precision: int,
) -> gpd.GeoSeries:
    """Neighbourhood outlines that follow the simplified LSOA edges exactly.

    A neighbourhood made of whole LSOAs (its area within 1% of its member LSOAs' area) is drawn
    as the union of its simplified members; any other is simplified on its own.
    """
    own = web_geometries(neighbourhoods.geometry, tolerance=tolerance, precision=precision)
    if "neighbourhood_id" not in lsoas.columns:
        return own
    ids = lsoas["neighbourhood_id"].to_numpy()
    original = np.asarray(lsoas.geometry.values)
    outlines = []
    for nid, geometry in zip(neighbourhoods.index, neighbourhoods.geometry.values, strict=True):
        members = ids == nid
        if members.any() and geometry is not None and not geometry.is_empty:
            member_area = float(shapely.area(original[members]).sum())
            if abs(member_area - geometry.area) <= 0.01 * geometry.area:
                outlines.append(_union(simplified_lsoas[members]))
                continue
        outlines.append(None)
    from_members = gpd.GeoSeries(outlines, index=neighbourhoods.index, crs=BNG)
    use = from_members.notna().to_numpy()
    if not use.any():
        return own
    rebuilt = web_geometries(from_members[use], tolerance=0, precision=precision)
    out = own.copy()
    out.loc[use] = rebuilt.values
    return out


@dataclass
class _Prepared:
    lsoas: gpd.GeoDataFrame
    lsoa_web: gpd.GeoSeries
    lsoa_simplified_bng: np.ndarray
    neighbourhoods: gpd.GeoDataFrame | None
    neighbourhood_web: gpd.GeoSeries | None
    micro: gpd.GeoDataFrame | None
    micro_web: gpd.GeoSeries | None
    names: dict[int, str]
    precision: int = 5
    whole: str = "borough"  # what shares of harm are shares of, in labels
    _unions: dict[str, shapely.Geometry] = field(default_factory=dict)

    @cached_property
    def lsoa_props(self) -> list[dict[str, Any]]:
        """Tooltip and popup fields of every LSOA (shared by all pages; copy to change)."""
        return _lsoa_properties(self.lsoas, self.names)

    @cached_property
    def outline_bng(self) -> shapely.Geometry:
        """The study area's outline (union of the simplified LSOAs), in EPSG:27700."""
        return _union(self.lsoa_simplified_bng)

    @cached_property
    def outline_web(self) -> gpd.GeoSeries:
        """The study area's outline, in EPSG:4326."""
        return self._web(self.outline_bng)

    def area_union(self, key: str, members: np.ndarray) -> shapely.Geometry:
        """Union of the simplified LSOAs in ``members`` (an area named ``key``), EPSG:27700."""
        if key not in self._unions:
            self._unions[key] = _union(self.lsoa_simplified_bng[members])
        return self._unions[key]

    def area_outline(self, key: str, members: np.ndarray) -> gpd.GeoSeries:
        """Outline of the LSOAs in ``members`` (an area named ``key``), in EPSG:4326."""
        return self._web(self.area_union(key, members))

    def outline_near(self, bounds: tuple[float, float, float, float]) -> gpd.GeoSeries:
        """The study area's outline cut to ``bounds`` (EPSG:27700), in EPSG:4326."""
        xmin, ymin, xmax, ymax = self.outline_bng.bounds
        if xmin >= bounds[0] and ymin >= bounds[1] and xmax <= bounds[2] and ymax <= bounds[3]:
            return self.outline_web
        # the boundary line only: a clipped polygon would draw the cut as a border
        return self._web(shapely.clip_by_rect(self.outline_line, *bounds))

    @cached_property
    def outline_line(self) -> shapely.Geometry:
        """The study area's boundary as lines, in EPSG:27700."""
        return shapely.boundary(self.outline_bng)

    def _web(self, geometry: shapely.Geometry) -> gpd.GeoSeries:
        series = gpd.GeoSeries([geometry], index=["borough"], crs=BNG)
        return web_geometries(series, tolerance=0, precision=self.precision)


def _prepare(
    lsoas: gpd.GeoDataFrame,
    neighbourhoods: gpd.GeoDataFrame | None,
    micro_places: gpd.GeoDataFrame | None,
    *,
    simplify_tolerance: float,
    precision: int,
) -> _Prepared:
    lsoas = _prepare_lsoas(lsoas)
    neighbourhoods = _prepare_neighbourhoods(neighbourhoods)
    micro = _prepare_micro(micro_places)
    simplified = _simplify(np.asarray(lsoas.geometry.values), simplify_tolerance, coverage=True)
    lsoa_web = web_geometries(
        gpd.GeoSeries(simplified, index=lsoas.index, crs=BNG), tolerance=0, precision=precision
    )
    nb_web = None
    names: dict[int, str] = {}
    if neighbourhoods is not None:
        nb_web = _neighbourhood_geometries(
            neighbourhoods, lsoas, simplified, tolerance=simplify_tolerance, precision=precision
        )
        names = {int(k): str(v) for k, v in neighbourhoods["name"].items()}
    micro_web = None
    if micro is not None:
        micro_web = web_geometries(micro.geometry, tolerance=0, precision=precision, coverage=False)
    return _Prepared(
        lsoas, lsoa_web, simplified, neighbourhoods, nb_web, micro, micro_web, names, precision
    )


def _prepare_with_density(
    lsoas: gpd.GeoDataFrame,
    neighbourhoods: gpd.GeoDataFrame | None,
    micro_places: gpd.GeoDataFrame | None,
    density: DensityLike | None,
    *,
    simplify_tolerance: float,
    precision: int,
    density_quantile: float,
) -> tuple[_Prepared, _Density | None]:
    """The prepared geometry and the density surface, as every builder starts."""
    prep = _prepare(
        lsoas,
        neighbourhoods,
        micro_places,
        simplify_tolerance=simplify_tolerance,
        precision=precision,
    )
    dens = _as_density(density, quantile=density_quantile) if density is not None else None
    return prep, dens


# --------------------------------------------------------------------------------------------
# Public builders


def overview_map(
    lsoas: gpd.GeoDataFrame,
    *,
    neighbourhoods: gpd.GeoDataFrame | None = None,
    micro_places: gpd.GeoDataFrame | None = None,
    density: DensityLike | None = None,
    title: str = "Priority Localities Index",
    show: Collection[str] = ("deciles", "neighbourhoods", "micro_places"),
    basemap: bool = True,
    simplify_tolerance: float = 10.0,
    precision: int = 5,
    density_quantile: float = 0.995,
    points_note: str | None = None,
    density_label: str | None = None,
) -> str:
    """Build the borough overview map as one self-contained HTML page.

    Parameters
    ----------
    lsoas
        Index frame: LSOA polygons indexed by ``lsoa_code`` with ``lsoa_name``, ``score``,
        ``rank``, ``decile`` and, when available, ``gi_bin``, ``neighbourhood_id`` and
        ``top_drivers``. Any CRS (reprojected to EPSG:27700 to simplify).
    neighbourhoods
        Priority neighbourhoods indexed by ``neighbourhood_id`` with ``name`` and, when
        available, ``n_lsoas``, ``residents``, ``total_harm``, ``share_of_borough_harm`` and
        ``selection_frequency`` (shares as fractions).
    micro_places
        Micro-places with ``neighbourhood_id``, ``patrol_rank``, ``cell_id``, ``n_records``,
        ``harm``, ``harm_share``, ``crime_types``, ``top_location`` and optionally
        ``gi_hotspot`` and ``kde_hotspot``: grid cells (polygons) or street segments (when every
        geometry is a line; drawn as thick lines, the table and tooltips say "Street segment").
    density
        A density surface (see :data:`DensityLike`): north-up values, EPSG:27700 unless a CRS
        is given, drawn as an image overlay; NaN is transparent.
    title
        Page title and legend heading.
    show
        Keys of :data:`LAYERS` visible on opening; the others are listed, unticked, in the layer
        control. Layers without data are left out.
    basemap
        Add an OpenStreetMap tile layer (loads only with a network).
    simplify_tolerance
        Coverage simplification tolerance in metres.
    precision
        Decimal places of longitude and latitude.
    density_quantile
        Quantile of the density values mapped to the top colour (robust to single spikes).
    points_note
        What the micro-places and the density are made of, e.g. "Micro-places and density:
        police.uk burglary points, 2024/25 only"; shown (escaped) as a banner across the top of
        the map. ``None`` or blank: no banner.
    density_label
        Units of the density in the legend (e.g. "burglary harm days per km2"); by default
        the ``units`` of ``density`` when it has them.

    Returns
    -------
    str
        The HTML page; no script or stylesheet is loaded from the network.

    See Also
    --------
    map_pages : every page of a run at once, with aggregated overviews for large study areas.
    """
    _check_show(show)
    prep, dens = _prepare_with_density(
        lsoas,
        neighbourhoods,
        micro_places,
        density,
        simplify_tolerance=simplify_tolerance,
        precision=precision,
        density_quantile=density_quantile,
    )
    return _overview_page(
        prep,
        dens,
        title=title,
        show=show,
        basemap=basemap,
        points_note=points_note,
        density_label=density_label,
    )


def _check_show(show: Collection[str]) -> None:
    unknown = set(show) - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown layer key(s) {sorted(unknown)}; choose from {list(LAYERS)}")


def _places_of(
    prep: _Prepared, members: np.ndarray | None
) -> tuple[
    gpd.GeoDataFrame | None, gpd.GeoSeries | None, gpd.GeoDataFrame | None, gpd.GeoSeries | None
]:
    """Neighbourhoods (and their micro-places) with at least one LSOA in ``members``."""
    nbs, nb_web, micro, micro_web = (
        prep.neighbourhoods,
        prep.neighbourhood_web,
        prep.micro,
        prep.micro_web,
    )
    if members is None or nbs is None or "neighbourhood_id" not in prep.lsoas.columns:
        return nbs, nb_web, micro, micro_web
    ids = set(prep.lsoas["neighbourhood_id"].to_numpy()[members].tolist())
    keep = nbs.index.isin(list(ids))
    nbs, nb_web = nbs[keep], nb_web[keep] if nb_web is not None else None
    if micro is not None:
        in_area = micro["neighbourhood_id"].isin(list(ids)).to_numpy()
        micro = micro[in_area]
        micro_web = micro_web[in_area] if micro_web is not None else None
    return nbs, nb_web, micro, micro_web


def _neighbourhood_group(
    nbs: gpd.GeoDataFrame,
    nb_web: gpd.GeoSeries,
    *,
    show: bool,
    precision: int,
    numbers: bool = False,
    whole: str = "borough",
) -> folium.FeatureGroup:
    """Dashed neighbourhood outlines labelled with their names (or, on a region's map where
    names would overlap, their numbers; the outline's tooltip names it)."""
    group = folium.FeatureGroup(name=LAYERS["neighbourhoods"], show=show)
    _neighbourhood_outlines(
        _feature_collection(nb_web, _neighbourhood_properties(nbs)), whole
    ).add_to(group)
    points = shapely.point_on_surface(np.asarray(nbs.geometry.values))
    labels = [str(k) for k in nbs.index] if numbers else list(nbs["name"])
    for latlon, name in zip(_to_latlon(points, precision=precision), labels, strict=True):
        folium.Marker(
            latlon,
            icon=folium.DivIcon(
                html=f'<div class="pi-nb-label">{_esc(name)}</div>',
                class_name="pi-nb-label-icon",
            ),
            interactive=False,
            keyboard=False,
        ).add_to(group)
    return group


def _overview_page(
    prep: _Prepared,
    dens: _Density | None,
    *,
    title: str,
    show: Collection[str],
    basemap: bool,
    points_note: str | None,
    density_label: str | None,
    members: np.ndarray | None = None,
    area_key: str = "",
    context_m: float = 2000.0,
) -> str:
    """The overview page of the study area, or of the LSOAs in ``members`` (the map of the
    area ``area_key``)."""
    if members is None:
        lsoas, lsoa_web, props, outline = prep.lsoas, prep.lsoa_web, prep.lsoa_props, None
    else:
        lsoas, lsoa_web = prep.lsoas[members], prep.lsoa_web[members]
        props = [p for p, keep in zip(prep.lsoa_props, members, strict=True) if keep]
        outline = prep.area_outline(area_key, members)
    nbs, nb_web, micro, micro_web = _places_of(prep, members)
    bounds = _bounds_latlon(lsoa_web)
    m = _base_map(bounds, basemap=basemap, title=title)

    collection = _feature_collection(lsoa_web, props)
    _lsoa_layer(
        collection,
        name=LAYERS["deciles"],
        show="deciles" in show,
        fill=DECILE_COLOURS,
        key="decile",
    ).add_to(m)
    has_gi = "gi_bin" in lsoas.columns and lsoas["gi_bin"].notna().any()
    if has_gi:
        _lsoa_layer(
            collection,
            name=LAYERS["gi"],
            show="gi" in show,
            fill={k: colour for k, (_, colour) in GI_CLASSES.items()},
            key="gi_bin",
        ).add_to(m)
    density_layer = None
    if dens is not None:
        clip = None
        if members is not None:
            xmin, ymin, xmax, ymax = lsoas.total_bounds
            clip = (xmin - context_m, ymin - context_m, xmax + context_m, ymax + context_m)
        density_layer = _density_layer(dens, show="density" in show, clip=clip)
        if density_layer is not None:
            density_layer.add_to(m)
    _outline_layer(prep.outline_web if outline is None else outline).add_to(m)
    has_nb, has_micro, lines = _place_layers(m, prep, nbs, nb_web, micro, micro_web, show=show)
    legend = _legend_sections(
        deciles=True,
        gi=has_gi,
        density=_density_units(dens, density_label) if density_layer is not None else None,
        neighbourhoods=has_nb,
        micro=has_micro,
        micro_lines=lines,
    )
    return _share_repeated_data(_finish(m, title, legend, points_note, bounds))


def _place_layers(
    m: folium.Map,
    prep: _Prepared,
    nbs: gpd.GeoDataFrame | None,
    nb_web: gpd.GeoSeries | None,
    micro: gpd.GeoDataFrame | None,
    micro_web: gpd.GeoSeries | None,
    *,
    show: Collection[str],
    numbers: bool = False,
) -> tuple[bool, bool, bool]:
    """Add the neighbourhoods and micro-places: (any neighbourhood, any micro-place, lines)."""
    has_nb = nbs is not None and len(nbs) > 0
    if has_nb:
        _neighbourhood_group(
            nbs,
            nb_web,
            show="neighbourhoods" in show,
            precision=prep.precision,
            numbers=numbers,
            whole=prep.whole,
        ).add_to(m)
    has_micro = micro is not None and len(micro) > 0
    lines = _is_lines(prep.micro)
    if has_micro:
        _micro_layer(
            _feature_collection(micro_web, _micro_properties(micro, prep.names)),
            name=_MICRO_SEGMENTS_LAYER if lines else LAYERS["micro_places"],
            show="micro_places" in show,
            lines=lines,
        ).add_to(m)
    return has_nb, has_micro, lines


def _finish(
    m: folium.Map, title: str, legend: str, points_note: str | None, bounds: list[list[float]]
) -> str:
    """Add the legend, the banner and the layer control; render the page."""
    m.add_child(
        _Block(
            css=_OVERVIEW_CSS,
            body=(
                '<div class="pi-legend pi-key"><details open>'
                f"<summary>{_esc(title)}</summary>{legend}</details></div>"
            ),
        )
    )
    if _note_text(points_note):
        m.add_child(_MapBanner(_note_text(points_note)))
    folium.LayerControl(collapsed=False).add_to(m)
    m.fit_bounds(bounds)
    return render_offline(m)


# --------------------------------------------------------------------------------------------
# Large study areas: the overview by area, one map per area


#: Share of an area's LSOAs in the top index decile: class upper bounds, labels and colours.
_TOP_SHARE_CLASSES: tuple[tuple[float, str], ...] = (
    (0.0, "none"),
    (0.05, "up to 5%"),
    (0.10, "5 to 10%"),
    (0.20, "10 to 20%"),
    (0.40, "20 to 40%"),
    (1.0, "over 40%"),
)
_TOP_SHARE_COLOURS = tuple(
    matplotlib.colors.to_hex(matplotlib.colormaps[_DECILE_CMAP](x))
    for x in (0.08, 0.25, 0.42, 0.6, 0.78, 0.95)
)
_AREA_TOOLTIP = (
    ["name", "n_lsoas", "top", "hot", "priority", "harm_share"],
    [
        "Area",
        "LSOAs",
        "In the top index decile",
        "Gi* hot spots (95%+)",
        "In priority neighbourhoods",
        "Share of study-area harm",
    ],
)
_AREA_POPUP = (
    ["name", "n_lsoas", "residents", "top", "hot", "priority", "nbhds", "harm", "harm_share",
     "link"],
    ["Area", "LSOAs", "Residents", "In the top index decile", "Gi* hot spots (95%+)",
     "In priority neighbourhoods", "Priority neighbourhoods", "Harm", "Share of study-area harm",
     "Map"],
)  # fmt: skip
#: Longest side of the density picture on an aggregated overview (a region seen whole).
_AGGREGATE_DENSITY_PIXELS = 1000
#: The study-area outline on a neighbourhood map reaches this far around the neighbourhood.
_OUTLINE_REACH_M = 10000.0
#: Sides tried for grid squares when the study area has no usable authority split (metres).
_GRID_SIDES_M = (1000.0, 2000.0, 5000.0, 10000.0, 20000.0, 50000.0, 100000.0)


def _top_share_class(share: float) -> int:
    for i, (upper, _) in enumerate(_TOP_SHARE_CLASSES):
        if share <= upper:
            return i
    return len(_TOP_SHARE_CLASSES) - 1


def _overview_bytes(prep: _Prepared, *, with_density: bool) -> int:
    """Expected size in bytes of the study area's LSOA overview page.

    About 25 bytes per coordinate and the attributes' JSON (measured on London and synthetic
    pages), 130 bytes of styling per LSOA, 0.3 MB of inlined Leaflet, and 0.5 MB set aside
    for the density picture (London's, the largest seen, is 0.8 MB at 1,600 pixels).
    """
    coords = int(shapely.get_num_coordinates(np.asarray(prep.lsoa_web.values)).sum())
    props = sum(len(json.dumps(p)) for p in prep.lsoa_props)
    return 25 * coords + props + 130 * len(prep.lsoas) + 300_000 + (500_000 if with_density else 0)


def grid_squares(
    points_x: np.ndarray, points_y: np.ndarray, *, max_squares: int
) -> tuple[np.ndarray, float]:
    """Group points into the smallest grid squares that leave at most ``max_squares`` occupied.

    Parameters
    ----------
    points_x, points_y
        Coordinates in metres (EPSG:27700).
    max_squares
        Most occupied squares wanted.

    Returns
    -------
    keys : numpy.ndarray
        A label per point, ``"E<easting> N<northing>"`` of its square's south-west corner in
        km.
    side : float
        The side of the squares in metres (the largest tried when none fits).
    """
    side = _GRID_SIDES_M[-1]
    for candidate in _GRID_SIDES_M:
        sq = np.column_stack([np.floor(points_x / candidate), np.floor(points_y / candidate)])
        if len(np.unique(sq, axis=0)) <= max_squares:
            side = candidate
            break
    ex = (np.floor(points_x / side) * side / 1000).astype(int)
    ny = (np.floor(points_y / side) * side / 1000).astype(int)
    keys = np.array([f"E{e:d} N{n:d}" for e, n in zip(ex, ny, strict=True)], dtype=object)
    return keys, side


def _area_properties(
    lsoas: gpd.GeoDataFrame,
    groups: pd.Series,
    labels: Mapping[str, str],
    names: Mapping[int, str],
    links: Mapping[str, str],
) -> pd.DataFrame:
    """One row per area: counts, shares and the text shown in its tooltip and popup."""
    frame = pd.DataFrame(index=lsoas.index)
    frame["area"] = groups.reindex(lsoas.index).to_numpy()
    frame["top"] = lsoas["decile"].eq(1).to_numpy()
    frame["hot"] = (
        pd.to_numeric(lsoas["gi_bin"], errors="coerce").ge(2).to_numpy()
        if "gi_bin" in lsoas.columns
        else False
    )
    nb = (
        pd.to_numeric(lsoas["neighbourhood_id"], errors="coerce").fillna(0).astype(int)
        if "neighbourhood_id" in lsoas.columns
        else pd.Series(0, index=lsoas.index)
    )
    frame["priority"] = nb.gt(0).to_numpy()
    frame["nb"] = nb.to_numpy()
    frame["residents"] = (
        pd.to_numeric(lsoas["residents"], errors="coerce") if "residents" in lsoas else np.nan
    )
    frame["harm"] = (
        pd.to_numeric(lsoas["harm_total"], errors="coerce") if "harm_total" in lsoas else np.nan
    )
    total_harm = float(frame["harm"].sum()) if frame["harm"].notna().any() else np.nan
    g = frame.groupby("area", sort=True)
    out = pd.DataFrame(
        {
            "n_lsoas": g.size(),
            "n_top": g["top"].sum(),
            "n_hot": g["hot"].sum(),
            "n_priority": g["priority"].sum(),
            "residents": g["residents"].sum(min_count=1),
            "harm": g["harm"].sum(min_count=1),
        }
    )
    out["top_share"] = out["n_top"] / out["n_lsoas"]
    out["harm_share"] = out["harm"] / total_harm if total_harm and total_harm > 0 else np.nan
    nb_names = g["nb"].agg(lambda v: sorted({names.get(int(i), "") for i in v if i > 0} - {""}))
    out["nbhds"] = nb_names.map(lambda v: _esc("; ".join(v)))
    out["label"] = [labels.get(str(k), str(k)) for k in out.index]
    out["link"] = [
        f'<a href="{_esc(links[str(k)])}">Open the map of {_esc(labels.get(str(k), str(k)))}</a>'
        if str(k) in links
        else ""
        for k in out.index
    ]
    return out


def _area_geometries(
    prep: _Prepared, groups: pd.Series, *, side: float | None, tolerance: float
) -> gpd.GeoSeries:
    """Outline of each area in EPSG:4326: the union of its LSOAs, or its grid square."""
    keys = sorted(groups.unique().tolist())
    codes = groups.reindex(prep.lsoas.index).to_numpy()
    if side is not None:
        geoms = []
        for key in keys:
            e, n = (float(part[1:]) * 1000 for part in str(key).split())
            geoms.append(shapely.box(e, n, e + side, n + side))
        values = np.asarray(geoms, dtype=object)
    else:
        values = np.asarray([prep.area_union(str(key), codes == key) for key in keys], dtype=object)
        values = _simplify(values, tolerance, coverage=True)
    return web_geometries(
        gpd.GeoSeries(values, index=pd.Index(keys), crs=BNG),
        tolerance=0,
        precision=prep.precision,
    )


def _areas_layer(collection: dict[str, Any]) -> folium.GeoJson:
    def style(feature: dict[str, Any]) -> dict[str, Any]:
        return {
            "fillColor": _TOP_SHARE_COLOURS[feature["properties"]["cls"]],
            "color": "#444444",
            "weight": 1.2,
            "fillOpacity": 0.7,
        }

    return folium.GeoJson(
        collection,
        name="Areas: share of LSOAs in the top index decile",
        show=True,
        style_function=style,
        highlight_function=lambda _: {"weight": 3, "color": "#000000"},
        tooltip=folium.GeoJsonTooltip(*_AREA_TOOLTIP, sticky=True),
        popup=folium.GeoJsonPopup(*_AREA_POPUP),
        pane="pi-areas",
    )


def _aggregate_page(
    prep: _Prepared,
    dens: _Density | None,
    groups: pd.Series,
    labels: Mapping[str, str],
    *,
    kind: str,
    side: float | None,
    links: Mapping[str, str],
    title: str,
    basemap: bool,
    points_note: str | None,
    density_label: str | None,
    tolerance: float,
    reason: str,
) -> str:
    """The overview of a large study area: areas (authorities or grid squares) coloured by the
    share of their LSOAs in the top index decile, with the neighbourhoods and micro-places."""
    table = _area_properties(prep.lsoas, groups, labels, prep.names, links)
    geoms = _area_geometries(prep, groups, side=side, tolerance=tolerance)
    props = [
        {
            "name": _esc(row.label),
            "n_lsoas": _fmt_int(row.n_lsoas),
            "residents": _fmt_int(row.residents),
            "top": f"{_fmt_int(row.n_top)} ({_fmt_share(row.top_share)})",
            "hot": _fmt_int(row.n_hot),
            "priority": _fmt_int(row.n_priority),
            "nbhds": row.nbhds,
            "harm": _fmt_number(row.harm),
            "harm_share": _fmt_share(row.harm_share),
            "link": row.link,
            "cls": _top_share_class(float(row.top_share)),
        }
        for row in table.loc[geoms.index].itertuples()
    ]
    bounds = _bounds_latlon(geoms)
    m = _base_map(bounds, basemap=basemap, title=title)
    _areas_layer(_feature_collection(geoms, props)).add_to(m)
    density_layer = (
        _density_layer(dens, show=False, max_pixels=_AGGREGATE_DENSITY_PIXELS)
        if dens is not None
        else None
    )
    if density_layer is not None:
        density_layer.add_to(m)
    has_nb, has_micro, lines = _place_layers(
        m,
        prep,
        prep.neighbourhoods,
        prep.neighbourhood_web,
        prep.micro,
        prep.micro_web,
        show=("neighbourhoods", "micro_places"),
        numbers=True,
    )
    unit = "local authority" if kind == "authority" else f"{side / 1000:g} km grid square"
    units = "local authorities" if kind == "authority" else f"{side / 1000:g} km grid squares"
    rows = "".join(
        _swatch_row(label, fill=colour)
        for (_, label), colour in zip(_TOP_SHARE_CLASSES, _TOP_SHARE_COLOURS, strict=True)
    )
    opened = " Click an area for its figures and its own map." if links else ""
    summary = (
        f"<h2>Share of each {unit}'s LSOAs in the top index decile</h2>{rows}"
        f'<div class="pi-note">{len(prep.lsoas):,d} LSOAs are shown as {len(geoms):,d} '
        f"{units}: {_esc(reason)}.{opened}</div>"
    )
    legend = summary + _legend_sections(
        deciles=False,
        gi=False,
        density=_density_units(dens, density_label) if density_layer is not None else None,
        neighbourhoods=has_nb,
        micro=has_micro,
        micro_lines=lines,
    )
    return _finish(m, title, legend, points_note, bounds)


def _file_key(code: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", str(code)).strip("_") or "area"


def map_pages(
    lsoas: gpd.GeoDataFrame,
    neighbourhoods: gpd.GeoDataFrame,
    micro_places: gpd.GeoDataFrame | None = None,
    *,
    density: DensityLike | None = None,
    title: str = "Priority Localities Index",
    areas: pd.Series | None = None,
    area_names: Mapping[str, str] | None = None,
    overview_budget_mb: float = 2.0,
    max_areas: int = 400,
    area_maps: bool = True,
    aggregate_simplify_m: float = 50.0,
    basemap: bool = True,
    simplify_tolerance: float = 10.0,
    precision: int = 5,
    density_quantile: float = 0.995,
    points_note: str | None = None,
    density_label: str | None = None,
    min_records: int = 1,
    min_overlap: float = 0.0,
) -> dict[str, str]:
    """Every map page of a run, sharing one preparation of the geometry.

    The overview draws every LSOA while its expected size (from the coordinates and attributes
    it would carry) stays within ``overview_budget_mb``. Beyond that the
    overview draws areas instead (the local authorities of ``areas`` when there are two to
    ``max_areas`` of them, else grid squares grown until at most ``max_areas`` are occupied),
    coloured by the share of their LSOAs in the top index decile, and, when the areas are
    authorities and ``area_maps`` is set, each authority gets its own LSOA map
    (``area_<code>.html``) linked from the overview.

    Parameters
    ----------
    lsoas, neighbourhoods, micro_places, density, title
        As for :func:`overview_map` and :func:`neighbourhood_map`.
    areas
        Local authority code per LSOA (index ``lsoa_code``); ``None`` or blank: no authority
        split.
    area_names
        Display name by authority code (the code when missing).
    overview_budget_mb
        Size budget of the overview page in MB (10^6 bytes).
    max_areas
        Most areas the aggregated overview draws.
    area_maps
        Write one LSOA map per authority when the overview is aggregated by authority.
    aggregate_simplify_m
        Simplification of the authority outlines on the aggregated overview, in metres.
    basemap, simplify_tolerance, precision, density_quantile, points_note, density_label
        As for :func:`overview_map`.
    min_records, min_overlap
        As for :func:`neighbourhood_map`.

    Returns
    -------
    dict of str to str
        HTML page by file name: ``overview.html``, ``neighbourhood_<id>.html`` and, for an
        aggregated overview by authority, ``area_<code>.html``.
    """
    prep, dens = _prepare_with_density(
        lsoas,
        neighbourhoods,
        micro_places,
        density,
        simplify_tolerance=simplify_tolerance,
        precision=precision,
        density_quantile=density_quantile,
    )
    common = dict(basemap=basemap, points_note=points_note, density_label=density_label)
    pages: dict[str, str] = {}
    estimate = _overview_bytes(prep, with_density=dens is not None)
    nb_outline = "study"
    codes = (
        areas.reindex(prep.lsoas.index).fillna("").astype(str)
        if areas is not None
        else pd.Series("", index=prep.lsoas.index)
    )
    n_codes = codes[codes != ""].nunique()
    if n_codes > 1:
        prep.whole = "study area"  # several authorities: no single borough
    if estimate <= overview_budget_mb * 1e6:
        pages["overview.html"] = _overview_page(
            prep, dens, title=title, show=("deciles", "neighbourhoods", "micro_places"), **common
        )
    else:
        reason = (
            f"a map of every LSOA would be about {estimate / 1e6:.1f} MB, over the "
            f"{overview_budget_mb:g} MB budget"
        )
        links: dict[str, str] = {}
        if 2 <= n_codes <= max_areas and (codes != "").all():
            labels = {str(c): str((area_names or {}).get(c) or c) for c in codes.unique()}
            if area_maps:
                for code in sorted(labels):
                    members = (codes == code).to_numpy()
                    name = f"area_{_file_key(code)}.html"
                    links[code] = name
                    pages[name] = _overview_page(
                        prep,
                        dens,
                        title=f"{title}: {labels[code]}",
                        show=("deciles", "neighbourhoods", "micro_places"),
                        members=members,
                        area_key=code,
                        **common,
                    )
            nb_outline = "authority"  # each neighbourhood map outlines its authorities
            pages["overview.html"] = _aggregate_page(
                prep,
                dens,
                codes,
                labels,
                kind="authority",
                side=None,
                links=links,
                title=title,
                tolerance=aggregate_simplify_m,
                reason=reason,
                **common,
            )
        else:
            points = shapely.point_on_surface(np.asarray(prep.lsoas.geometry.values))
            keys, side = grid_squares(
                shapely.get_x(points), shapely.get_y(points), max_squares=max_areas
            )
            squares = pd.Series(keys, index=prep.lsoas.index)
            nb_outline = "none"  # a region's outline says nothing around one neighbourhood
            labels = {str(k): f"{side / 1000:g} km square at {k} km" for k in set(keys)}
            pages["overview.html"] = _aggregate_page(
                prep,
                dens,
                squares,
                labels,
                kind="grid",
                side=side,
                links={},
                title=title,
                tolerance=aggregate_simplify_m,
                reason=reason,
                **common,
            )
    if prep.neighbourhoods is not None:
        for nid in prep.neighbourhoods.index:
            pages[f"neighbourhood_{int(nid)}.html"] = _neighbourhood_page(
                prep,
                int(nid),
                dens,
                min_records=min_records,
                min_overlap=min_overlap,
                outline=nb_outline,
                area_codes=codes.to_numpy(),
                **common,
            )
    return pages


_ADD_DATA = re.compile(r"\b(\w+)_add\((\{.*\})\);$")


def _share_repeated_data(page: str) -> str:
    """Embed GeoJSON that several layers draw (deciles and Gi* share the LSOAs) only once."""
    lines = page.split("\n")
    calls: dict[int, re.Match[str]] = {}
    counts: dict[str, int] = {}
    for i, line in enumerate(lines[:-1]):  # a call ends its line, a newline follows
        if "_add({" not in line or not line.endswith("});"):
            continue
        match = _ADD_DATA.search(line)
        if match:
            calls[i] = match
            counts[match.group(2)] = counts.get(match.group(2), 0) + 1
    names: dict[str, str] = {}
    for i, match in calls.items():
        layer, data = match.group(1), match.group(2)
        if counts[data] < 2:
            continue
        head = lines[i][: match.start()]
        if data in names:
            lines[i] = f"{head}{layer}_add({names[data]});"
        else:
            names[data] = f"pi_shared_data_{len(names) + 1}"
            lines[i] = f"{head}var {names[data]} = {data};\n{layer}_add({names[data]});"
    return "\n".join(lines)


def _thresholds_text(
    min_records: int, min_overlap: float, *, listed: bool, lines: bool = False
) -> str:
    """The listing rule: ``"reaches 3 records"`` (``listed=False``, after "No micro-place") or
    ``"with at least 3 records"`` (``listed=True``), and the overlap rule; "" for none."""
    parts = []
    if min_records > 1:
        parts.append(f"{'with at least' if listed else 'reaches'} {min_records:,d} records")
    if min_overlap > 0:
        verb = "with" if listed else "has"
        what = "length" if lines else "area"
        parts.append(f"{verb} at least {min_overlap:.0%} of its {what} inside the neighbourhood")
    return " and ".join(parts)


def _patrol_table(
    micro: gpd.GeoDataFrame | None,
    *,
    time_field: str | None,
    neighbourhood_name: str,
    min_records: int = 1,
    min_overlap: float = 0.0,
    lines: bool | None = None,
) -> str:
    has_time = micro is not None and time_field is not None and time_field in micro.columns
    lines = _is_lines(micro) if lines is None else lines
    place = "Street segment" if lines else "Cell"
    headers = [
        "No.",
        place,
        "Top location",
        "Crime types (most harm first)",
        "Records",
        "Harm",
        "Share",
    ]
    if has_time:
        headers.append("Suggested patrol times")
    notes = []
    rule = _thresholds_text(min_records, min_overlap, listed=True, lines=lines)
    if rule:
        notes.append(f"Listed: micro-places {rule}.")
    if not has_time:
        notes.append(_NO_TIME_NOTE)
    note = "".join(f'<span class="pi-caption-note">{_esc(n)}</span>' for n in notes)
    caption = f"<caption>Micro-places in patrol order, {_esc(neighbourhood_name)}{note}</caption>"
    widths = [6, 16, 22, 22, 13, 10, 11] if not has_time else [6, 14, 17, 17, 12, 9, 10, 15]
    cols = "<colgroup>" + "".join(f'<col style="width:{w}%">' for w in widths) + "</colgroup>"
    head = cols + "<thead><tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr></thead>"
    rows = []
    any_generic = False
    if micro is not None:
        times = micro[time_field] if has_time else pd.Series("", index=micro.index)
        for rank, cell, location, types, records, harm, share, when, generic, inside in zip(
            micro["patrol_rank"],
            micro["cell_id"],
            micro["top_location"],
            micro["crime_types"],
            micro["n_records"],
            micro["harm"],
            micro["harm_share"],
            times,
            _generic_flags(micro),
            _inside_shares(micro),
            strict=True,
        ):
            mark = ""
            if generic:
                any_generic = True
                mark = (
                    f' <span class="pi-generic" title="{_esc(_GENERIC_NOTE_SHORT)}">'
                    f"{_GENERIC_MARK}</span>"
                )
            where = ""
            if np.isfinite(inside) and inside < _MOSTLY_OUTSIDE:
                where = f'<span class="pi-inside">{_fmt_share(inside)} inside</span>'
            cells = [
                f'<td class="pi-n">{_int_or(rank, 0)}</td>',
                f"<td>{_esc(cell)}{where}</td>",
                f"<td>{_esc(location)}{mark}</td>",
                f"<td>{_esc(types)}</td>",
                f'<td class="pi-n">{_fmt_int(records)}</td>',
                f'<td class="pi-n">{_fmt_number(harm)}</td>',
                f'<td class="pi-n">{_fmt_share(share)}</td>',
            ]
            if has_time:
                cells.append(f"<td>{_esc(when)}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        empty = (
            f"No micro-place "
            f"{_esc(_thresholds_text(min_records, min_overlap, listed=False, lines=lines))}."
            if micro is not None and rule
            else "No micro-places were identified here."
        )
        rows.append(f'<tr><td colspan="{len(headers)}">{empty}</td></tr>')
    table = f'<table class="pi-patrol">{caption}{head}<tbody>{"".join(rows)}</tbody></table>'
    if any_generic:
        table += f'<p class="pi-foot">{_GENERIC_MARK} {_esc(_GENERIC_NOTE)}</p>'
    return table


def neighbourhood_map(
    neighbourhood_id: int,
    lsoas: gpd.GeoDataFrame,
    neighbourhoods: gpd.GeoDataFrame,
    micro_places: gpd.GeoDataFrame | None = None,
    *,
    density: DensityLike | None = None,
    title: str | None = None,
    context_m: float = 200.0,
    time_field: str | None = "suggested_patrol_times",
    show_density: bool = False,
    basemap: bool = True,
    simplify_tolerance: float = 10.0,
    precision: int = 5,
    density_quantile: float = 0.995,
    points_note: str | None = None,
    density_label: str | None = None,
    min_records: int = 1,
    min_overlap: float = 0.0,
) -> str:
    """Build the patrol map of one priority neighbourhood as one self-contained HTML page.

    The map is zoomed to the neighbourhood; its LSOAs are coloured by index decile (LSOAs
    within ``context_m`` around it are shown paler), its micro-places are drawn and numbered in
    patrol order, and a side table lists them. The page prints on A4 (map above the table).

    Parameters
    ----------
    neighbourhood_id
        The neighbourhood to map (an index value of ``neighbourhoods``).
    lsoas, neighbourhoods, micro_places, density
        As for :func:`overview_map`; LSOAs belong to the neighbourhood through
        ``neighbourhood_id``.
    title
        Page title and table heading; the neighbourhood's name by default.
    context_m
        LSOAs within this distance (metres) of the neighbourhood are drawn for context.
    time_field
        Column of ``micro_places`` with suggested patrol times. The column is shown only if it
        exists; otherwise the caption says why there are none (police.uk gives months only).
    show_density
        Tick the density layer on opening (it is listed in the layer control either way).
    basemap, simplify_tolerance, precision, density_quantile, points_note, density_label
        As for :func:`overview_map`; ``points_note`` is also shown above the patrol table.
    min_records, min_overlap
        The rules the micro-places were listed by (``micro.micro_places`` options of the same
        names), stated in the table caption; when the neighbourhood has no micro-place the
        table says "No micro-place reaches N records". They select nothing here.

    Returns
    -------
    str
        The HTML page.
    """
    prep, dens = _prepare_with_density(
        lsoas,
        neighbourhoods,
        micro_places,
        density,
        simplify_tolerance=simplify_tolerance,
        precision=precision,
        density_quantile=density_quantile,
    )
    return _neighbourhood_page(
        prep,
        neighbourhood_id,
        dens,
        title=title,
        context_m=context_m,
        time_field=time_field,
        show_density=show_density,
        basemap=basemap,
        points_note=points_note,
        density_label=density_label,
        min_records=min_records,
        min_overlap=min_overlap,
    )


def _neighbourhood_page(
    prep: _Prepared,
    neighbourhood_id: int,
    dens: _Density | None,
    *,
    title: str | None = None,
    context_m: float = 200.0,
    time_field: str | None = "suggested_patrol_times",
    show_density: bool = False,
    basemap: bool = True,
    points_note: str | None = None,
    density_label: str | None = None,
    min_records: int = 1,
    min_overlap: float = 0.0,
    outline: str = "study",
    area_codes: np.ndarray | None = None,
) -> str:
    """One neighbourhood's page. ``outline``: "study" draws the study area's boundary near it,
    "authority" the outlines of the authorities (``area_codes`` per LSOA) its LSOAs are in,
    "none" nothing."""
    precision = prep.precision
    if prep.neighbourhoods is None or prep.neighbourhood_web is None:
        raise TypeError("neighbourhood_map needs the neighbourhoods GeoDataFrame")
    if neighbourhood_id not in prep.neighbourhoods.index:
        raise KeyError(f"neighbourhood {neighbourhood_id!r} is not in neighbourhoods")
    nb = prep.neighbourhoods.loc[neighbourhood_id]
    nb_name = str(nb["name"])
    title = title if title is not None else nb_name
    nb_geom = nb.geometry

    member = (
        prep.lsoas["neighbourhood_id"].eq(neighbourhood_id).to_numpy()
        if "neighbourhood_id" in prep.lsoas.columns
        else np.zeros(len(prep.lsoas), bool)
    )
    near = (
        shapely.dwithin(np.asarray(prep.lsoas.geometry.values), nb_geom, context_m)
        if (context_m > 0)
        else np.zeros(len(prep.lsoas), bool)
    )
    keep = member | near
    shown = [
        {**p, "focus": bool(focus)}
        for p, focus, k in zip(prep.lsoa_props, member, keep, strict=True)
        if k
    ]

    nb_web = prep.neighbourhood_web.loc[[neighbourhood_id]]
    bounds = _bounds_latlon(nb_web)
    m = _base_map(bounds, basemap=basemap, title=title)

    _lsoa_layer(
        _feature_collection(prep.lsoa_web[keep], shown),
        name=LAYERS["deciles"],
        show=True,
        fill=DECILE_COLOURS,
        key="decile",
    ).add_to(m)
    density_layer = None
    if dens is not None:
        # clipped with a margin wide enough for any window shape around the neighbourhood
        xmin, ymin, xmax, ymax = nb_geom.buffer(max(context_m, 0) + 2000).bounds
        density_layer = _density_layer(dens, show=show_density, clip=(xmin, ymin, xmax, ymax))
        if density_layer is not None:
            density_layer.add_to(m)
    if outline == "study":
        xmin, ymin, xmax, ymax = nb_geom.bounds
        reach = max(context_m, 0) + _OUTLINE_REACH_M
        _outline_layer(
            prep.outline_near((xmin - reach, ymin - reach, xmax + reach, ymax + reach))
        ).add_to(m)
    elif outline == "authority" and area_codes is not None:
        for code in sorted(set(area_codes[member].tolist())):
            _outline_layer(prep.area_outline(code, area_codes == code)).add_to(m)
    nb_props = _neighbourhood_properties(prep.neighbourhoods.loc[[neighbourhood_id]])
    group = folium.FeatureGroup(name=LAYERS["neighbourhoods"], show=True)
    _neighbourhood_outlines(_feature_collection(nb_web, nb_props), prep.whole).add_to(group)
    group.add_to(m)

    micro = None
    lines = _is_lines(prep.micro)
    if prep.micro is not None:
        in_nb = prep.micro["neighbourhood_id"].eq(neighbourhood_id).to_numpy()
        micro = prep.micro[in_nb]
        micro_web = prep.micro_web[in_nb]
        if len(micro):
            cells = folium.FeatureGroup(
                name=_MICRO_SEGMENTS_LAYER if lines else LAYERS["micro_places"], show=True
            )
            _micro_layer(
                _feature_collection(micro_web, _micro_properties(micro, prep.names)),
                name=None,
                show=True,
                lines=lines,
            ).add_to(cells)
            centres = _anchor_points(micro.geometry)
            # The number sits up and to the right of its place, a leader line and a dot on the
            # place itself, so that small cells and short segments stay visible under it.
            anchor = (-3, _NUM_SIZE + 3)
            for latlon, rank, location, cell, generic in zip(
                _to_latlon(centres, precision=precision),
                micro["patrol_rank"],
                micro["top_location"],
                micro["cell_id"],
                _generic_flags(micro),
                strict=True,
            ):
                number = _int_or(rank, 0)
                kind = "pi-num pi-num-generic" if generic else "pi-num"
                check = f" {_GENERIC_MARK} {_esc(_GENERIC_NOTE_SHORT)}" if generic else ""
                folium.Marker(
                    latlon,
                    icon=folium.DivIcon(
                        html=f'<div class="{kind}">{number}</div>',
                        icon_size=(_NUM_SIZE, _NUM_SIZE),
                        icon_anchor=anchor,
                        class_name="pi-num-icon",
                    ),
                    tooltip=folium.Tooltip(f"{number}. {_esc(location)} ({_esc(cell)}){check}"),
                ).add_to(cells)
            cells.add_to(m)

    nb_row = prep.neighbourhoods.loc[neighbourhood_id]
    facts = [
        f"{_fmt_int(nb_row.get('n_lsoas'))} LSOAs" if "n_lsoas" in nb_row else "",
        f"{_fmt_int(nb_row.get('residents'))} residents" if "residents" in nb_row else "",
        f"{_fmt_share(nb_row.get('share_of_borough_harm'))} of {prep.whole} harm"
        if "share_of_borough_harm" in nb_row
        else "",
        f"selected in {_fmt_share(nb_row.get('selection_frequency'))} of runs"
        if "selection_frequency" in nb_row
        else "",
    ]
    has_micro = micro is not None and len(micro) > 0
    legend = _legend_sections(
        deciles=True,
        gi=False,
        density=_density_units(dens, density_label) if density_layer is not None else None,
        neighbourhoods=True,
        micro=has_micro,
        numbered=has_micro,
        micro_lines=lines,
        generic=has_micro and bool(_generic_flags(micro).any()),
    )
    note = _note_text(points_note)
    table = _patrol_table(
        micro,
        time_field=time_field,
        neighbourhood_name=nb_name,
        min_records=min_records,
        min_overlap=min_overlap,
        lines=lines,
    )
    side = (
        '<aside class="pi-side">'
        f"<h1>{_esc(title)}</h1>"
        f'<p class="pi-sub">{" &middot; ".join(f for f in facts if f)}</p>'
        + (f'<p class="pi-points-note" role="note">{_esc(note)}</p>' if note else "")
        + f"{table}"
        f'<details class="pi-key" open><summary>Key</summary>{legend}</details>'
        "</aside>"
    )
    m.add_child(_Block(css=_NEIGHBOURHOOD_CSS, body=side))
    if note:
        m.add_child(_MapBanner(note))
    m.add_child(_PrintFit(bounds))
    folium.LayerControl(collapsed=False).add_to(m)
    m.fit_bounds(bounds)
    return render_offline(m)


def neighbourhood_maps(
    lsoas: gpd.GeoDataFrame,
    neighbourhoods: gpd.GeoDataFrame,
    micro_places: gpd.GeoDataFrame | None = None,
    **options: Any,
) -> dict[int, str]:
    """Build :func:`neighbourhood_map` for every neighbourhood (geometry prepared once).

    Parameters
    ----------
    lsoas, neighbourhoods, micro_places
        As for :func:`neighbourhood_map`.
    **options
        Keyword options of :func:`neighbourhood_map` (``title`` excepted).

    Returns
    -------
    dict of int to str
        HTML page by neighbourhood id, in the order of ``neighbourhoods``.
    """
    ids = (
        neighbourhoods["neighbourhood_id"]
        if "neighbourhood_id" in neighbourhoods.columns
        else neighbourhoods.index
    )
    prep = _prepare(
        lsoas,
        neighbourhoods,
        micro_places,
        simplify_tolerance=options.pop("simplify_tolerance", 10.0),
        precision=options.pop("precision", 5),
    )
    density = options.pop("density", None)
    quantile = options.pop("density_quantile", 0.995)
    dens = _as_density(density, quantile=quantile) if density is not None else None
    return {int(nid): _neighbourhood_page(prep, int(nid), dens, **options) for nid in ids}


def write_map(html: str, path: str | os.PathLike[str]) -> None:
    """Write a map page atomically (a temporary file in the same folder, then a rename).

    Parameters
    ----------
    html
        The page, as returned by a builder.
    path
        Destination file; its folder must exist. Readers never see a half-written file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(html)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
