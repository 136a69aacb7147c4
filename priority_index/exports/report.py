"""The analyst's board report: one self-contained HTML file that prints well on A4.

:class:`ReportData` holds plain tables (pandas / GeoPandas frames, dicts, strings), so the report
depends on nothing inside the pipeline; :func:`build_report_data` is the one adapter from a
pipeline run. :func:`render_report` turns the data into the page and is pure: the same data
give byte-identical HTML. Figures are drawn with matplotlib's Agg renderer at fixed sizes and
embedded as PNG data URIs (no timestamp or software tag in the files); CSS is inline; the page
refers to nothing outside itself, so it opens offline and can be e-mailed as one attachment.
Every piece of text that comes from the data is HTML-escaped. Only :func:`write_report`
touches a path.

Sections, in order: summary; the index map (and the Gi* hot-spot map); the top-N LSOAs; how
sure the ranks are; the priority neighbourhoods with their stability and persistence; harm by
crime group across periods; concentration of harm against counts; weights and drop-one
sensitivity; face validity; target, test, track (control areas and trial allocation); data
quality; the method in plain words and the configuration; run details.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import math
import os
import re
import tempfile
import textwrap
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import matplotlib
import numpy as np
import pandas as pd
import shapely
from matplotlib import patheffects
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.path import Path as MplPath

from priority_index.exports.styles import DECILE_COLORS, GI_BIN_CLASSES, NEIGHBOURHOOD_COLOR

if TYPE_CHECKING:
    from priority_index.pipeline import RunResult

__all__ = [
    "SECTIONS",
    "ReportData",
    "build_report_data",
    "render_report",
    "write_report",
]

BNG = "EPSG:27700"

#: Section anchors and headings, in page order.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Summary"),
    ("map", "Where: the index map"),
    ("top-lsoas", "The top LSOAs"),
    ("uncertainty", "How sure are the ranks?"),
    ("neighbourhoods", "The priority neighbourhoods"),
    ("harm", "Harm by crime group"),
    ("concentration", "Concentration: harm against counts"),
    ("weights", "Weights and sensitivity"),
    ("face-validity", "Face validity: places residents call unsafe"),
    ("target-test-track", "Target, test, track"),
    ("data-quality", "Data quality"),
    ("method", "Method in plain words"),
    ("run", "Run details"),
)

_DPI = 150
#: Width of a report map's drawing area, in inches.
_MAP_W = 4.6
_MISSING = "\u2013"  # en dash for missing values
_WORDS = {
    1: "one",
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
    10: "ten",
    11: "eleven",
    12: "twelve",
}
_TOTAL_GROUPS = ("total_notifiable",)


# --------------------------------------------------------------------------------------------
# The data


@dataclass(kw_only=True)
class ReportData:
    """Everything the report prints, as plain tables and text.

    Every field but ``title``, ``lsoa_index`` and ``neighbourhoods`` is optional; a missing
    table gives its section a one-line "not available" note.

    Attributes
    ----------
    title : str
        Page title, e.g. ``"Croydon Priority Localities Index 2025/26"``.
    subtitle : str
        The study area and periods in a sentence.
    generated_note : str
        Where the data come from: which crime groups have points and which are area-level only,
        and whether points are generated (synthetic). Shown in a box at the top.
    lsoa_index : geopandas.GeoDataFrame
        One row per LSOA, indexed by LSOA code (or with ``lsoa_code``), any CRS (drawn in
        EPSG:27700): ``lsoa_name``, ``ward_name``, ``score``, ``rank`` (1 = highest),
        ``decile``, ``median_rank``, ``rank_p05``, ``rank_p95``, ``p_top_decile``,
        ``neighbourhood_id`` (0 = none), ``top_drivers``, ``gi_bin`` (-3..3) and optionally
        ``residents``. Columns absent are left out of tables and figures.
    neighbourhoods : geopandas.GeoDataFrame or pandas.DataFrame
        Indexed by ``neighbourhood_id`` (or with that column): ``name``, ``n_lsoas``,
        ``residents``, ``total_harm``, ``violence_harm``, ``share_of_borough_harm`` (0-1),
        ``rank``, ``drivers``, ``gi_hot_share`` (0-1), ``selection_frequency`` (0-1: share of
        Monte Carlo runs in which its core LSOA is selected again), ``mean_overlap`` (0-1:
        average share of its LSOAs selected per run), ``fragile`` (bool),
        ``also_priority_before`` (bool). Without geometry the outlines are dissolved from
        ``lsoa_index``.
    harm_table : pandas.DataFrame, optional
        :func:`priority_index.harm.harm_table`: ``crime_group``, ``Crime Type``, one harm
        column per period, ``+/-``, ``% +/-`` and count columns (``Offences <period>``); every
        column present is printed.
    periods : list of str
        Period names, oldest first (the harm table's period columns).
    concentration : pandas.DataFrame, optional
        Rows per unit type and measure: ``unit`` (a label printed as given, e.g. ``"LSOA"`` or
        ``"150 m cell, police.uk points 2024/25 (Burglary); all 3,864 cells of the study
        area"``), ``measure`` (``"harm"``/``"count"``), ``units`` (the denominator, printed as
        given), ``gini``, ``share_of_units_for_half``, ``units_for_half`` and any others.
    lorenz : dict
        Curve label (``"LSOA harm"``, ``"LSOA count"``, ``"cell harm"``, ...) -> ``(x, y)``
        arrays: :class:`priority_index.harm.Concentration` curves (units highest first). An
        ascending (classic Lorenz) curve is turned round before drawing.
    quality : pandas.DataFrame, optional
        Per source: ``source``, ``files``, ``rows_read``, ``rows_used``, ``rows_rejected``,
        ``rejected_by_reason`` (dict reason -> rows), ``reconciles`` (bool).
    reasons : dict
        Rejection reason -> its meaning in plain words.
    sensitivity : pandas.DataFrame, optional
        Drop-one sensitivity (:func:`priority_index.uncertainty.drop_one_sensitivity`).
    controls : pandas.DataFrame, optional
        Control (comparison) areas per neighbourhood
        (:func:`priority_index.selection.propose_controls`): ``target_mean_score`` and
        ``control_mean_score``, ``target_residents``/``control_residents``,
        ``target_trend``/``control_trend``, ``distance`` and, when present,
        ``match_quality`` (``"good"``/``"fair"``/``"poor"``).
    trial : pandas.DataFrame, optional
        Randomised trial allocation.
    face_validity : pandas.DataFrame, optional
        :func:`priority_index.face_validity.face_validity`.
    weights : pandas.DataFrame or dict, optional
        Effective weight of each indicator: a frame indexed by indicator with
        ``effective_weight`` and ``label``, or a dict indicator -> weight or ->
        ``(weight, label)``.
    method_text : list of str
        Paragraphs describing the method in plain words.
    selection_rule : str
        The neighbourhood selection rule in plain words.
    config_toml : str
        The pipeline's TOML configuration, printed verbatim.
    timings : dict
        Stage -> seconds.
    notes : list of str
        Notes from the run (warnings, fallbacks) printed in the run details.
    outputs : dict
        Output file -> size in bytes (or a dict with ``bytes``).
    harm_weights : pandas.DataFrame, optional
        The harm weights used: ``crime_group`` and ``days`` (average CCHI days per offence of
        the group), optionally ``label`` and ``source``. Adds a "Days per offence" column to
        the harm table.
    harm_weights_file : str
        A partnership's own weights table overriding the packaged one ("" = packaged only).
    study_area_is_croydon : bool or None
        Whether the study area is Croydon, where the packaged weights were calibrated (None =
        unknown). Outside Croydon the report says the weights are Croydon-calibrated.
    study_area_name : str
        The study area in a few words, e.g. ``"Sheffield (E08000019)"``.
    point_groups : list of str
        Labels of the crime groups in the points behind the cell-level (non-LSOA)
        concentration rows. With one group, cell harm is count x one weight and the report
        says the harm/count comparison is void there.
    hotspot_method : dict
        How the Gi* bins were made: ``indicator`` (label of the variable tested),
        ``weights`` (neighbour rule), ``permutations`` (int), ``fdr`` (bool), ``alpha``.
    control_trend_unit : str
        What ``target_trend``/``control_trend`` measure, e.g. ``"mean change per LSOA in harm
        days, 2024/25 to 2025/26"`` ("" = a default from ``periods``).
    """

    title: str
    lsoa_index: gpd.GeoDataFrame
    neighbourhoods: gpd.GeoDataFrame | pd.DataFrame
    subtitle: str = ""
    generated_note: str = ""
    harm_table: pd.DataFrame | None = None
    periods: list[str] = field(default_factory=list)
    concentration: pd.DataFrame | None = None
    lorenz: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    quality: pd.DataFrame | None = None
    reasons: dict[str, str] = field(default_factory=dict)
    sensitivity: pd.DataFrame | None = None
    controls: pd.DataFrame | None = None
    trial: pd.DataFrame | None = None
    face_validity: pd.DataFrame | None = None
    weights: pd.DataFrame | Mapping[str, Any] | None = None
    method_text: list[str] = field(default_factory=list)
    selection_rule: str = ""
    config_toml: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    harm_weights: pd.DataFrame | None = None
    harm_weights_file: str = ""
    study_area_is_croydon: bool | None = None
    study_area_name: str = ""
    point_groups: list[str] = field(default_factory=list)
    hotspot_method: dict[str, Any] = field(default_factory=dict)
    control_trend_unit: str = ""


# --------------------------------------------------------------------------------------------
# Text and numbers


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return not math.isfinite(float(value))
    return False


def _int(value: Any) -> str:
    if _missing(value):
        return _MISSING
    return f"{round(float(value)):,}"


def _num(value: Any, digits: int = 1) -> str:
    if _missing(value):
        return _MISSING
    return f"{float(value):,.{digits}f}"


def _signed(value: Any, digits: int = 0) -> str:
    if _missing(value):
        return _MISSING
    v = float(value)
    text = f"{v:+,.{digits}f}"
    return text.replace("-", "\u2212")


def _pct(share: Any, digits: int = 0) -> str:
    if _missing(share):
        return _MISSING
    return f"{100 * float(share):.{digits}f}%"


def _yes_no(value: Any) -> str:
    if _missing(value):
        return _MISSING
    return "Yes" if bool(value) else "No"


def _text(value: Any) -> str:
    if _missing(value):
        return ""
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_auto_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | np.ndarray):
        return "; ".join(str(v) for v in value)
    return str(value)


def _auto_value(value: Any) -> str:
    """Plain text of one cell of any type (tables printed as they come)."""
    if isinstance(value, bool | np.bool_):
        return _yes_no(value)
    if _missing(value):
        return _MISSING
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if v.is_integer() and abs(v) < 1e15:
            return f"{int(v):,}"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 1:
            return f"{v:,.2f}"
        return f"{v:.3f}"
    return _text(value)


def _and_join(items: Sequence[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _count_word(n: int) -> str:
    return _WORDS.get(int(n), str(int(n)))


def _ordinal(n: int) -> str:
    n = int(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _pretty(column: Any) -> str:
    text = str(column).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


# --------------------------------------------------------------------------------------------
# HTML building blocks


@dataclass(frozen=True)
class _Col:
    key: str
    header: str
    fmt: Callable[[Any], str] = _auto_value
    numeric: bool = False


def _table(
    frame: pd.DataFrame,
    columns: Sequence[_Col],
    *,
    row_class: Callable[[pd.Series], str] | None = None,
    css: str = "",
) -> str:
    cols = [c for c in columns if c.key in frame.columns]
    head = "".join(
        f'<th class="num">{_esc(c.header)}</th>' if c.numeric else f"<th>{_esc(c.header)}</th>"
        for c in cols
    )
    body = []
    for _, row in frame.iterrows():
        cls = row_class(row) if row_class is not None else ""
        cells = "".join(
            f'<td class="num">{_esc(c.fmt(row[c.key]))}</td>'
            if c.numeric
            else f"<td>{_esc(c.fmt(row[c.key]))}</td>"
            for c in cols
        )
        body.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    klass = f' class="{css}"' if css else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _auto_table(
    frame: pd.DataFrame,
    *,
    headers: Mapping[str, str] | None = None,
    formats: Mapping[str, Callable[[Any], str]] | None = None,
    skip: Sequence[str] = (),
    css: str = "",
) -> str:
    """Every column of ``frame`` (the index too, when named) with type-driven formatting."""
    headers = dict(headers or {})
    formats = dict(formats or {})
    if frame.index.name is not None or isinstance(frame.index, pd.MultiIndex):
        frame = frame.reset_index()
    cols = []
    for key in frame.columns:
        if key in skip or key == "geometry":
            continue
        name = str(key)
        numeric = _is_numeric(frame[key])
        fmt = formats.get(name) or _column_format(name, frame[key])
        cols.append(_Col(name, headers.get(name, _pretty(name)), fmt, numeric))
    frame = frame.rename(columns=str)
    return _table(frame, cols, css=css)


def _plain_int(value: Any) -> str:
    return _MISSING if _missing(value) else str(int(value))


def _column_format(name: str, series: pd.Series) -> Callable[[Any], str]:
    """One format per column, so every row of a column shows the same number of decimals."""
    lowered = name.casefold()
    if not _is_numeric(series):
        return _auto_value
    if lowered in ("seed", "block", "year") or lowered.endswith(("_id", "seed")):
        return _plain_int
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    finite = values[np.isfinite(values)]
    if finite.size == 0 or np.all(finite == np.round(finite)):
        return _int
    largest = float(np.max(np.abs(finite)))
    digits = 0 if largest >= 100 else 2 if largest >= 1 else 3
    return lambda v: _num(v, digits)


def _figure_html(png: bytes, *, alt: str, caption: str, css: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    klass = f' class="{css}"' if css else ""
    return (
        f'<figure{klass}><img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _p(text: str) -> str:
    return f"<p>{_esc(text)}</p>"


def _unavailable(what: str) -> str:
    return f'<p class="muted">{_esc(what)} not available for this run.</p>'


_CSS = """
@page { size: A4; margin: 14mm 12mm 16mm 12mm; }
* { box-sizing: border-box; }
body { font-family: "Segoe UI", Arial, Helvetica, sans-serif; font-size: 10pt; color: #1d1d1d;
  line-height: 1.4; max-width: 190mm; margin: 0 auto; padding: 6mm 0; background: #fff; }
h1 { font-size: 19pt; margin: 0 0 2mm 0; color: #67000d; }
h2 { font-size: 13.5pt; margin: 9mm 0 2mm 0; padding-bottom: 1mm;
  border-bottom: 2px solid #67000d; break-after: avoid; page-break-after: avoid; }
h3 { font-size: 11pt; margin: 5mm 0 1.5mm 0; break-after: avoid; page-break-after: avoid; }
p { margin: 1.5mm 0; }
.subtitle { font-size: 11pt; color: #444; margin: 0 0 3mm 0; }
.muted { color: #666; font-style: italic; }
.note { border-left: 4px solid #cb6d00; background: #fff6e8; padding: 2mm 3mm; margin: 3mm 0; }
.warn { border-left: 4px solid #b00020; background: #fdecee; padding: 2mm 3mm; margin: 3mm 0; }
nav { font-size: 9pt; columns: 2; margin: 3mm 0; }
nav ol { margin: 0; padding-left: 5mm; }
nav a { color: #67000d; text-decoration: none; }
.cards { display: flex; flex-wrap: wrap; gap: 3mm; margin: 3mm 0; }
.card { flex: 1 1 38mm; border: 1px solid #d9c5c5; border-radius: 2mm; padding: 2mm 3mm;
  break-inside: avoid; page-break-inside: avoid; }
.card .value { font-size: 15pt; font-weight: 600; color: #67000d; }
.card .label { font-size: 8.5pt; color: #444; }
table { border-collapse: collapse; width: 100%; font-size: 8pt; margin: 2mm 0 3mm 0; }
thead { display: table-header-group; }
th { background: #f3e9e9; text-align: left; font-weight: 600; }
th, td { border-bottom: 1px solid #ddd; padding: 1mm 1.5mm; vertical-align: top; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr { break-inside: avoid; page-break-inside: avoid; }
tr.total td { font-weight: 700; border-top: 1.5px solid #555; }
tr.apart td { color: #555; font-style: italic; }
tr.fragile td { background: #fff6e8; }
table.small { font-size: 7.5pt; }
figure { margin: 3mm 0; text-align: center; break-inside: avoid; page-break-inside: avoid; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 8.5pt; color: #444; text-align: left; margin-top: 1mm; }
pre { white-space: pre-wrap; word-break: break-word; font-size: 7.5pt; background: #f6f6f6;
  padding: 2mm 3mm; border: 1px solid #ddd; }
ul.explain li { margin-bottom: 1mm; }
footer { margin-top: 8mm; font-size: 8pt; color: #666; border-top: 1px solid #ccc;
  padding-top: 2mm; }
@media print {
  body { padding: 0; }
  nav { display: none; }
  section.page { break-before: page; page-break-before: always; }
}
"""


# --------------------------------------------------------------------------------------------
# Figures


_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8.0,
    "axes.titlesize": 9.0,
    "axes.labelsize": 8.0,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5,
    "text.parse_math": False,
    "svg.hashsalt": "priority-index",
    "svg.fonttype": "path",
    "savefig.dpi": _DPI,
    "figure.dpi": _DPI,
    "path.simplify": False,
}


@contextlib.contextmanager
def _plot_style() -> Iterator[None]:
    """Matplotlib's built-in defaults plus the report's settings, whatever the user's rc."""
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. a glyph missing from DejaVu Sans
        matplotlib.rcdefaults()
        matplotlib.rcParams.update(_RC)
        yield


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def _rgb(color: Sequence[int]) -> tuple[float, float, float]:
    return (color[0] / 255, color[1] / 255, color[2] / 255)


def _geometry_path(geom: Any) -> MplPath | None:
    """One compound path for a (multi)polygon, holes included."""
    if geom is None or shapely.is_empty(geom):
        return None
    geom = shapely.orient_polygons(geom)
    rings = []
    for part in shapely.get_parts(geom):
        if shapely.get_type_id(part) != 3:  # Polygon
            continue
        for ring in (part.exterior, *part.interiors):
            coords = np.asarray(ring.coords)[:, :2]
            if len(coords) >= 4:
                rings.append(MplPath(coords, closed=True))
    if not rings:
        return None
    return MplPath.make_compound_path(*rings)


def _paths(geoms: Sequence[Any]) -> tuple[list[MplPath], list[int]]:
    paths, keep = [], []
    for i, geom in enumerate(geoms):
        path = _geometry_path(geom)
        if path is not None:
            paths.append(path)
            keep.append(i)
    return paths, keep


def _scale_bar_length(width_m: float) -> float:
    target = width_m / 5
    for length in (100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 50000):
        if length >= target:
            return float(length)
    return 100000.0


def _draw_scale_bar(ax: Any, bounds: tuple[float, float, float, float], map_miny: float) -> None:
    """Scale bar in the margin below the map (``map_miny``), north arrow at the top right."""
    minx, miny, maxx, maxy = bounds
    length = _scale_bar_length(maxx - minx)
    x0 = minx + 0.02 * (maxx - minx)
    y0 = miny + 0.3 * (map_miny - miny)
    ax.plot([x0, x0 + length], [y0, y0], color="black", linewidth=2.2, solid_capstyle="butt")
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    ax.text(x0 + length + 0.01 * (maxx - minx), y0, label, ha="left", va="center")
    halo = [patheffects.withStroke(linewidth=2.5, foreground="white")]
    ax.annotate(
        "N",
        xy=(maxx - 0.03 * (maxx - minx), maxy - 0.01 * (maxy - miny)),
        xytext=(maxx - 0.03 * (maxx - minx), maxy - 0.08 * (maxy - miny)),
        ha="center",
        va="center",
        fontweight="bold",
        path_effects=halo,
        arrowprops={"arrowstyle": "-|>", "color": "black", "linewidth": 1.0},
    )


@dataclass(frozen=True)
class _Outlines:
    ids: list[int]
    names: list[str]
    geoms: list[Any]


def _map_bounds(lsoas: gpd.GeoDataFrame) -> tuple[float, float, float, float]:
    """The extent a report map shows: the LSOAs with a margin (wider below, for the scale)."""
    minx, miny, maxx, maxy = (float(v) for v in lsoas.total_bounds)
    pad = 0.02 * max(maxx - minx, maxy - miny, 1.0)
    return (minx - pad, miny - 3 * pad, maxx + pad, maxy + pad)


def _lsoa_paths(lsoas: gpd.GeoDataFrame) -> tuple[list[MplPath], list[int]]:
    """The LSOAs as drawing paths, simplified to half a pixel of the map (finer detail cannot
    show, and costs time at scale); the report's maps all draw these."""
    bounds = _map_bounds(lsoas)
    tolerance = 0.5 * (bounds[2] - bounds[0]) / (_MAP_W * _DPI)
    return _paths(list(shapely.simplify(np.asarray(lsoas.geometry.values), tolerance)))


def _map_png(
    lsoas: gpd.GeoDataFrame,
    drawn: tuple[list[MplPath], list[int]],
    colors: Sequence[tuple[float, float, float]],
    legend: Sequence[tuple[str, tuple[float, float, float]]],
    legend_title: str,
    outlines: _Outlines,
) -> bytes:
    """A choropleth of ``lsoas`` (one colour each; ``drawn`` is :func:`_lsoa_paths` of them)
    with numbered neighbourhood outlines."""
    bounds = _map_bounds(lsoas)
    aspect = (bounds[3] - bounds[1]) / max(bounds[2] - bounds[0], 1.0)
    map_w = _MAP_W
    key_lines = [
        (f"{i}", line)
        for i, name in zip(outlines.ids, outlines.names, strict=True)
        for line in _wrapped(name)
    ]
    n_lines = len(legend) + len(key_lines) + 4
    height = float(np.clip(max(map_w * aspect, 0.19 * n_lines + 0.5), 3.6, 8.6))
    width = 7.2

    with _plot_style():
        fig = Figure(figsize=(width, height), dpi=_DPI)
        ax = fig.add_axes((0.005, 0.005, map_w / width, 0.99))
        paths, keep = drawn
        ax.add_collection(
            PathCollection(
                paths,
                facecolors=[colors[i] for i in keep],
                edgecolors=(1.0, 1.0, 1.0, 0.9),
                linewidths=0.25,
            )
        )
        nb_paths, nb_keep = _paths(outlines.geoms)
        if nb_paths:
            ax.add_collection(
                PathCollection(nb_paths, facecolors="none", edgecolors="white", linewidths=3.2)
            )
            ax.add_collection(
                PathCollection(
                    nb_paths,
                    facecolors="none",
                    edgecolors=[_rgb(NEIGHBOURHOOD_COLOR)],
                    linewidths=1.3,
                )
            )
        for i in nb_keep:
            point = shapely.point_on_surface(outlines.geoms[i])
            ax.text(
                point.x,
                point.y,
                str(outlines.ids[i]),
                ha="center",
                va="center",
                fontsize=7.5,
                fontweight="bold",
                bbox={"boxstyle": "circle,pad=0.25", "fc": "white", "ec": "black", "lw": 0.8},
            )
        ax.set_xlim(bounds[0], bounds[2])
        ax.set_ylim(bounds[1], bounds[3])
        ax.set_aspect("equal")
        ax.set_anchor("NW")
        ax.set_axis_off()
        _draw_scale_bar(ax, bounds, float(lsoas.total_bounds[1]))

        # Legend and key, drawn by hand in inches from the top of a side panel.
        left = map_w / width + 0.01
        lax = fig.add_axes((left, 0.0, 1.0 - left, 1.0))
        lax.set_xlim(0, (1.0 - left) * width)
        lax.set_ylim(0, height)
        lax.set_axis_off()
        y = height - 0.25
        step = 0.19
        lax.text(0.05, y, legend_title, fontweight="bold", va="center")
        y -= step * 1.2
        for label, color in legend:
            lax.add_patch(
                Rectangle(
                    (0.05, y - 0.06),
                    0.22,
                    0.13,
                    facecolor=color,
                    edgecolor="#777777",
                    linewidth=0.4,
                )
            )
            lax.text(0.35, y, label, va="center")
            y -= step
        if key_lines:
            y -= step * 0.6
            lax.text(0.05, y, "Priority neighbourhoods", fontweight="bold", va="center")
            y -= step * 1.2
            last = None
            for number, line in key_lines:
                if number != last:
                    lax.text(0.16, y, number, va="center", ha="center", fontweight="bold")
                lax.text(0.35, y, line, va="center")
                last = number
                y -= step
        return _png(fig)


def _wrapped(name: str, width: int = 30) -> list[str]:
    lines = textwrap.wrap(str(name), width=width) or [""]
    return lines[:3]


def _rank_png(top: pd.DataFrame, *, n_total: int, top_k: int, in_nb: np.ndarray) -> bytes:
    """Median rank and 90% interval of the best-ranked LSOAs."""
    n = len(top)
    height = 0.2 * n + 1.3
    with _plot_style():
        fig = Figure(figsize=(7.2, height), dpi=_DPI)
        ax = fig.add_axes((0.35, 0.95 / height, 0.61, 1 - 1.1 / height))
        y = np.arange(n)
        lo = top["rank_p05"].to_numpy(float)
        hi = top["rank_p95"].to_numpy(float)
        med = top["median_rank"].to_numpy(float)
        base = top["rank"].to_numpy(float)
        dark, grey = _rgb(DECILE_COLORS[0]), (0.45, 0.45, 0.45)
        colours = [dark if flag else grey for flag in in_nb]
        ax.hlines(y, lo, hi, colors=colours, linewidth=2.0)
        ax.scatter(med, y, s=18, c=colours, zorder=3, label="Median rank over the draws")
        ax.scatter(base, y, s=22, marker="|", c="black", zorder=4, label="Rank")
        ax.axvline(top_k + 0.5, color="#cb6d00", linestyle="--", linewidth=0.9)
        ax.text(
            top_k + 0.5,
            -1.0,
            f" top 10% (rank \u2264 {top_k})",
            color="#cb6d00",
            va="center",
            ha="left",
            fontsize=7,
        )
        labels = [
            f"{int(r)}. {name}" if not _missing(r) else str(name)
            for r, name in zip(base, top["_label"], strict=True)
        ]
        ax.set_yticks(y, labels)
        ax.set_ylim(n - 0.5, -1.6)
        right = float(np.nanmax(np.concatenate([hi, base, [top_k + 1]]))) if n else 1.0
        ax.set_xlim(0, min(float(n_total) + 1, right * 1.08 + 1))
        ax.set_xlabel(f"Rank of {n_total} (1 = highest priority); bar = 90% interval")
        ax.grid(axis="x", color="#dddddd", linewidth=0.5)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        handles = [
            Line2D([], [], color=dark, linewidth=2.0, marker="o", markersize=4),
            Line2D([], [], color=grey, linewidth=2.0, marker="o", markersize=4),
            Line2D([], [], color="black", linestyle="none", marker="|", markersize=7),
        ]
        fig.legend(
            handles,
            ["In a priority neighbourhood", "Not in one", "Rank (dot: median over runs)"],
            loc="lower center",
            bbox_to_anchor=(0.6, 0.0),
            ncol=3,
            frameon=False,
            handlelength=1.8,
        )
        return _png(fig)


def _descending_curve(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn a classic (ascending) Lorenz curve into "highest units first" orientation."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) >= 2 and float(np.trapezoid(y, x)) < 0.5:
        return 1.0 - x[::-1], 1.0 - y[::-1]
    return x, y


def _lorenz_png(curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    palette = ["#a50f15", "#2166ac", "#1b7837", "#762a83", "#b35806", "#4d4d4d"]
    units: dict[str, str] = {}
    with _plot_style():
        fig = Figure(figsize=(6.4, 4.0), dpi=_DPI)
        ax = fig.add_axes((0.1, 0.12, 0.62, 0.84))
        ax.plot([0, 100], [0, 100], color="#bbbbbb", linewidth=0.8, label="Even spread")
        ax.axhline(50, color="#555555", linestyle=":", linewidth=0.9)
        ax.text(99, 51, "half of the total", ha="right", va="bottom", color="#555555", fontsize=7)
        for label, (x, y) in curves.items():
            xd, yd = _descending_curve(x, y)
            text = str(label)
            unit = text.rsplit(" ", 1)[0] if " " in text else text
            colour = units.setdefault(unit, palette[len(units) % len(palette)])
            style = "--" if "count" in text.casefold() else "-"
            ax.plot(100 * xd, 100 * yd, linestyle=style, color=colour, linewidth=1.6, label=text)
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100)
        ax.set_xlabel("Share of units, highest first (%)")
        ax.set_ylabel("Share of the total they hold (%)")
        ax.grid(color="#eeeeee", linewidth=0.5)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        return _png(fig)


# --------------------------------------------------------------------------------------------
# Preparing the data


def _lsoa_frame(data: ReportData) -> gpd.GeoDataFrame:
    frame = data.lsoa_index
    if "lsoa_code" in frame.columns:
        frame = frame.set_index("lsoa_code")
    if not isinstance(frame, gpd.GeoDataFrame):
        frame = gpd.GeoDataFrame(frame)
    frame = frame.copy()
    frame.index = frame.index.astype(str)
    frame.index.name = "lsoa_code"
    if frame.crs is not None and frame._geometry_column_name in frame.columns:
        frame = frame.to_crs(BNG)
    if "rank" in frame.columns:
        frame = frame.sort_values("rank", kind="stable", na_position="last")
    if "neighbourhood_id" in frame.columns:
        ids = pd.to_numeric(frame["neighbourhood_id"], errors="coerce").fillna(0)
        frame["neighbourhood_id"] = ids.astype("int64")
    else:
        frame["neighbourhood_id"] = 0
    return frame


def _nb_frame(data: ReportData) -> pd.DataFrame:
    frame = data.neighbourhoods
    if "neighbourhood_id" in frame.columns:
        frame = frame.set_index("neighbourhood_id")
    frame = frame.copy()
    frame.index = pd.Index([int(i) for i in frame.index], name="neighbourhood_id")
    frame = frame[frame.index > 0]
    if "name" not in frame.columns:
        frame["name"] = [f"Neighbourhood {i}" for i in frame.index]
    if "rank" in frame.columns:
        frame = frame.sort_values("rank", kind="stable", na_position="last")
    else:
        frame = frame.sort_index()
    return frame


def _nb_outlines(nb: pd.DataFrame, lsoas: gpd.GeoDataFrame) -> _Outlines:
    ids = [int(i) for i in nb.index]
    names = [str(n) for n in nb["name"]]
    geoms: list[Any] = []
    has_geom = (
        isinstance(nb, gpd.GeoDataFrame)
        and nb._geometry_column_name in nb.columns
        and nb.geometry.notna().any()
    )
    if has_geom:
        g = nb.geometry
        if nb.crs is not None:
            g = g.to_crs(BNG)
        geoms = list(g)
    else:
        has_lsoa_geom = lsoas._geometry_column_name in lsoas.columns
        for i in ids:
            part = lsoas.geometry[lsoas["neighbourhood_id"] == i] if has_lsoa_geom else []
            geoms.append(shapely.union_all(np.asarray(part)) if len(part) else None)
    return _Outlines(ids=ids, names=names, geoms=geoms)


def _weights_frame(weights: pd.DataFrame | Mapping[str, Any] | None) -> pd.DataFrame | None:
    if weights is None:
        return None
    if isinstance(weights, pd.DataFrame):
        frame = weights.copy()
        if "indicator" in frame.columns:
            frame = frame.set_index("indicator")
        if "effective_weight" not in frame.columns and "weight" in frame.columns:
            frame = frame.rename(columns={"weight": "effective_weight"})
    else:
        rows = []
        for key, value in weights.items():
            if isinstance(value, tuple | list):
                rows.append({"indicator": key, "effective_weight": value[0], "label": value[1]})
            else:
                rows.append({"indicator": key, "effective_weight": value, "label": key})
        frame = pd.DataFrame(rows, columns=["indicator", "effective_weight", "label"])
        frame = frame.set_index("indicator")
    if "label" not in frame.columns:
        frame["label"] = [str(i) for i in frame.index]
    frame.index = frame.index.astype(str)
    frame.index.name = "indicator"
    return frame


def _stability_text(row: pd.Series) -> str:
    parts = []
    if not _missing(row.get("selection_frequency")):
        parts.append(f"core LSOA re-selected in {_pct(row['selection_frequency'])} of runs")
    if not _missing(row.get("mean_overlap")):
        parts.append(f"on average {_pct(row['mean_overlap'])} of its LSOAs re-selected")
    return "; ".join(parts)


def _stability_sentences(nb: pd.DataFrame) -> list[str]:
    """The most and the least stable neighbourhood, in plain words."""
    if nb.empty or not ({"selection_frequency", "mean_overlap"} & set(nb.columns)):
        return []
    key = "mean_overlap" if "mean_overlap" in nb.columns else "selection_frequency"
    values = pd.to_numeric(nb[key], errors="coerce")
    if values.isna().all():
        return []
    most, least = values.idxmax(), values.idxmin()
    out = [f"Most stable: {nb.loc[most, 'name']} ({_stability_text(nb.loc[most])})."]
    if least != most:
        out.append(f"Least stable: {nb.loc[least, 'name']} ({_stability_text(nb.loc[least])}).")
    return [" ".join(out)]


def _harm_periods(data: ReportData) -> list[str]:
    table = data.harm_table
    if table is None:
        return []
    names = [str(p) for p in data.periods if str(p) in table.columns]
    if names:
        return names
    cols = [str(c) for c in table.columns]
    if "Crime Type" in cols and "+/-" in cols:
        return cols[cols.index("Crime Type") + 1 : cols.index("+/-")]
    return []


def _total_harm_row(data: ReportData) -> pd.Series | None:
    table = data.harm_table
    if table is None or table.empty:
        return None
    if "crime_group" in table.columns:
        rows = table[table["crime_group"].astype(str).isin(_TOTAL_GROUPS)]
        if len(rows):
            return rows.iloc[0]
    if "Crime Type" in table.columns:
        rows = table[table["Crime Type"].astype(str).str.casefold().str.startswith("total")]
        if len(rows):
            return rows.iloc[0]
    return None


def _nb_heading(n: int) -> str:
    if n == 0:
        return SECTIONS[4][1]
    return "The " + _neighbourhood_word(n)[4:]


def _neighbourhood_word(n: int) -> str:
    return f"the {_count_word(n)} priority neighbourhood" + ("" if n == 1 else "s")


# --------------------------------------------------------------------------------------------
# Sections


def _section(anchor: str, heading: str, body: str, *, page: bool = False) -> str:
    cls = ' class="page"' if page else ""
    return f'<section id="{anchor}"{cls}><h2>{_esc(heading)}</h2>{body}</section>'


def _card(value: str, label: str) -> str:
    return (
        f'<div class="card"><div class="value">{_esc(value)}</div>'
        f'<div class="label">{_esc(label)}</div></div>'
    )


def _summary(data: ReportData, lsoas: gpd.GeoDataFrame, nb: pd.DataFrame) -> str:
    n = len(lsoas)
    n_nb = len(nb)
    in_nb = int((lsoas["neighbourhood_id"] > 0).sum())
    cards = [_card(f"{n:,}", "LSOAs in the study area")]
    borough_residents = None
    if "residents" in lsoas.columns and lsoas["residents"].notna().any():
        borough_residents = float(pd.to_numeric(lsoas["residents"], errors="coerce").sum())
        cards.append(_card(_int(borough_residents), "residents"))
    total = _total_harm_row(data)
    periods = _harm_periods(data)
    excluding = " excluding sexual offences" if _sexual_status(data) == "absent" else ""
    if total is not None and periods:
        last = periods[-1]
        cards.append(_card(_int(total[last]), f"days of harm (CCHI{excluding}), {last}"))
        offences = f"Offences {last}"
        if offences in total.index:
            cards.append(_card(_int(total[offences]), f"notifiable offences, {last}"))
    cards.append(
        _card(f"{n_nb}", f"priority neighbourhoods ({in_nb} LSOAs, {_pct(in_nb / max(n, 1))})")
    )
    nb_res = None
    if "residents" in nb.columns and nb["residents"].notna().any():
        nb_res = float(pd.to_numeric(nb["residents"], errors="coerce").sum())
        cards.append(_card(_int(nb_res), "residents in the priority neighbourhoods"))
    nb_harm = None
    if "share_of_borough_harm" in nb.columns and nb["share_of_borough_harm"].notna().any():
        nb_harm = float(pd.to_numeric(nb["share_of_borough_harm"], errors="coerce").sum())
        cards.append(_card(_pct(nb_harm), "of the borough's harm in them"))

    points = []
    words = _neighbourhood_word(n_nb)
    share = _pct(in_nb / max(n, 1))
    line = f"{words[0].upper()}{words[1:]} cover {in_nb} of the {n:,} LSOAs ({share})"
    if nb_res is not None:
        line += f" and {_int(nb_res)} residents"
        if borough_residents:
            line += f" ({_pct(nb_res / borough_residents)} of residents)"
    if nb_harm is not None:
        line += f", and hold {_pct(nb_harm)} of the borough's harm"
    points.append(line + ".")
    if n_nb:
        first = nb.iloc[0]
        text = f"Highest-ranked neighbourhood: {first['name']}"
        if "drivers" in nb.columns and not _missing(first.get("drivers")):
            text += f", driven by {first['drivers']}"
        points.append(text + ".")
    if len(lsoas) and "lsoa_name" in lsoas.columns and "rank" in lsoas.columns:
        top = lsoas.iloc[0]
        text = f"Highest-ranked LSOA: {top['lsoa_name']} ({top.name})"
        ward = top.get("ward_name") if "ward_name" in lsoas.columns else None
        if not _missing(ward) and str(ward).strip():
            text += f" in {str(ward).strip()}"
        if "top_drivers" in lsoas.columns and not _missing(top.get("top_drivers")):
            text += f"; drivers: {top['top_drivers']}"
        points.append(text + ".")
    if "fragile" in nb.columns and n_nb:
        fragile = nb["fragile"].fillna(False).astype(bool)
        k = int(fragile.sum())
        if k:
            names = ", ".join(str(v) for v in nb.loc[fragile, "name"])
            points.append(
                f"{k} of {words} {'is' if k == 1 else 'are'} fragile (selected in too few of "
                f"the Monte Carlo runs to be sure): {names}."
            )
        else:
            points.append(f"None of {words} is fragile under the Monte Carlo runs.")
    if "also_priority_before" in nb.columns and n_nb:
        before = nb["also_priority_before"].fillna(False).astype(bool)
        points.append(f"{int(before.sum())} of {words} were also priority areas last period.")
    conc = _concentration_statements(data)
    if conc:
        points.append(conc[0][1])
    if total is not None and "% +/-" in total.index and len(periods) >= 2:
        points.append(
            f"Harm from notifiable offences{excluding} changed by "
            f"{_signed(total['% +/-'], 1)}% between {periods[0]} and {periods[-1]}: harm at a "
            "fixed offence mix, so the change follows the counts (see What harm means here)."
        )
    body = [f'<div class="cards">{"".join(cards)}</div>']
    body.append("<ul>" + "".join(f"<li>{_esc(p)}</li>" for p in points) + "</ul>")
    return _section("summary", "Summary", "".join(body))


def _map_section(data: ReportData, lsoas: gpd.GeoDataFrame, outlines: _Outlines) -> str:
    has_geom = lsoas._geometry_column_name in lsoas.columns and lsoas.geometry.notna().any()
    if not has_geom or len(lsoas) == 0:
        return _section("map", SECTIONS[1][1], _unavailable("The map"))
    body = []
    if "decile" in lsoas.columns:
        decile = pd.to_numeric(lsoas["decile"], errors="coerce")
    elif "rank" in lsoas.columns:
        decile = np.ceil(10 * pd.to_numeric(lsoas["rank"], errors="coerce") / len(lsoas))
    else:
        decile = pd.Series(np.nan, index=lsoas.index)
    grey = (0.8, 0.8, 0.8)
    colors = [
        _rgb(DECILE_COLORS[int(d) - 1]) if not _missing(d) and 1 <= int(d) <= 10 else grey
        for d in decile
    ]
    legend = [
        (
            f"{k}" + (" (top 10%)" if k == 1 else " (bottom 10%)" if k == 10 else ""),
            _rgb(DECILE_COLORS[k - 1]),
        )
        for k in range(1, 11)
    ]
    drawn = _lsoa_paths(lsoas)
    png = _map_png(lsoas, drawn, colors, legend, "Index decile", outlines)
    body.append(
        _figure_html(
            png,
            alt="Map of the index deciles with the priority neighbourhoods outlined",
            caption=(
                "Priority Localities Index by LSOA, in deciles (1 = the 10% of LSOAs with the "
                "highest priority). Thick outlines: the priority neighbourhoods, numbered as in "
                "the tables."
            ),
        )
    )
    if "gi_bin" in lsoas.columns and lsoas["gi_bin"].notna().any():
        gi = pd.to_numeric(lsoas["gi_bin"], errors="coerce")
        by_bin = {v: _rgb(c) for v, _, c in GI_BIN_CLASSES}
        colors = [by_bin.get(int(b), grey) if not _missing(b) else grey for b in gi]
        legend = [(label, _rgb(c)) for _, label, c in GI_BIN_CLASSES]
        png = _map_png(lsoas, drawn, colors, legend, "Getis-Ord Gi*", outlines)
        n_hot = int((gi >= 2).sum())
        method = data.hotspot_method
        of = f" of {method['indicator']}" if method.get("indicator") else ""
        body.append(
            _figure_html(
                png,
                alt="Map of Getis-Ord Gi* hot and cold spots",
                caption=(
                    f"Getis-Ord Gi* hot and cold spots{of}: {n_hot} LSOAs are hot spots at 95% "
                    "confidence or more (clusters of high values, not single high LSOAs)."
                ),
            )
        )
        body.append("<h3>Reading the Gi* map</h3>")
        body += [_p(text) for text in _gi_explanation(method, lsoas, gi)]
    return _section("map", SECTIONS[1][1], "".join(body))


def _gi_explanation(method: Mapping[str, Any], lsoas: pd.DataFrame, gi: pd.Series) -> list[str]:
    what = str(method.get("indicator") or "the value tested")
    rule = f" ({method['weights']} neighbours)" if method.get("weights") else ""
    first = (
        f"Gi* describes an LSOA together with its neighbours{rule}, not the LSOA alone: it "
        f"asks whether the LSOA and the LSOAs around it, taken together, have more {what} "
        "than chance would give. So an LSOA with a low value of its own (and a low index "
        "score) next to the town centre can be a hot spot, and a high LSOA surrounded by low "
        "ones may not be."
    )
    perms = method.get("permutations")
    fdr = method.get("fdr")
    how = "The bins use the permutation pseudo p-value"
    if not _missing(perms) and perms:
        how += f" ({int(perms):,} random reshuffles of the values around each LSOA)"
    if fdr is None or fdr:
        how += (
            ", corrected for testing every LSOA at once with the Benjamini-Hochberg false "
            "discovery rate (the threshold p-value falls as more LSOAs are tested)"
        )
    how += ", not the z-score alone: an LSOA with a high z-score can still be 'not significant'."
    if "gi_z" in lsoas.columns:
        z = pd.to_numeric(lsoas["gi_z"], errors="coerce")
        k = int(((z >= 1.96) & (gi < 2)).sum())
        if k:
            how += (
                f" Here {k} LSOA{'s have' if k != 1 else ' has'} a z-score of 1.96 or more but "
                f"{'are' if k != 1 else 'is'} not in a 95% hot bin."
            )
    return [first, how]


def _top_section(lsoas: gpd.GeoDataFrame, nb: pd.DataFrame, top_n: int) -> str:
    heading = f"The top {top_n} LSOAs"
    if lsoas.empty:
        return _section("top-lsoas", heading, _unavailable("The LSOA index"))
    top = lsoas.head(top_n).copy()
    top["lsoa_code"] = top.index
    names = {int(i): str(n) for i, n in zip(nb.index, nb["name"], strict=True)}
    top["_nb"] = [
        names.get(int(i), f"Neighbourhood {i}") if i else "" for i in top["neighbourhood_id"]
    ]
    gi_labels = {v: label for v, label, _ in GI_BIN_CLASSES}
    if "gi_bin" in top.columns:
        top["_gi"] = [
            "" if _missing(b) else gi_labels.get(int(b), str(b)).replace(" confidence", "")
            for b in pd.to_numeric(top["gi_bin"], errors="coerce")
        ]
    if {"rank_p05", "rank_p95"} <= set(top.columns):
        top["_interval"] = [
            f"{_int(a)}\u2013{_int(b)}"
            for a, b in zip(top["rank_p05"], top["rank_p95"], strict=True)
        ]
    cols = [
        _Col("rank", "Rank", _int, True),
        _Col("lsoa_code", "LSOA"),
        _Col("lsoa_name", "Name"),
        _Col("ward_name", "Ward"),
        _Col("score", "Score", lambda v: _num(v, 2), True),
        _Col("decile", "Decile", _int, True),
        _Col("median_rank", "Median rank", _int, True),
        _Col("_interval", "90% interval", str, True),
        _Col("p_top_decile", "P(top 10%)", _pct, True),
        _Col("_nb", "Neighbourhood", str),
        _Col("_gi", "Gi*", str),
        _Col("top_drivers", "Top drivers", _text),
    ]
    intro = _p(
        f"The {min(top_n, len(lsoas))} LSOAs with the highest index score of {len(lsoas):,}. "
        "Median rank and 90% interval come from the Monte Carlo runs (weights and counts "
        "perturbed); P(top 10%) is the share of runs that put the LSOA in the top decile."
    )
    return _section("top-lsoas", heading, intro + _table(top, cols, css="small"))


def _uncertainty_section(lsoas: gpd.GeoDataFrame, n_show: int = 20) -> str:
    heading = SECTIONS[3][1]
    needed = {"rank", "median_rank", "rank_p05", "rank_p95"}
    if not needed <= set(lsoas.columns) or lsoas[list(needed)].isna().all().all():
        return _section("uncertainty", heading, _unavailable("Rank uncertainty"))
    top = lsoas.head(n_show).copy()
    if "lsoa_name" in top.columns:
        top["_label"] = [
            str(name) if not _missing(name) else code
            for code, name in zip(top.index, top["lsoa_name"], strict=True)
        ]
    else:
        top["_label"] = list(top.index)
    if "ward_name" in top.columns:
        top["_label"] = [
            textwrap.shorten(f"{label} \u2013 {ward}", 34, placeholder="\u2026")
            if isinstance(ward, str) and ward
            else label
            for label, ward in zip(top["_label"], top["ward_name"], strict=True)
        ]
    n_total = len(lsoas)
    top_k = max(1, int(np.floor(0.1 * n_total + 1e-9)))
    png = _rank_png(
        top, n_total=n_total, top_k=top_k, in_nb=(top["neighbourhood_id"] > 0).to_numpy()
    )
    fig = _figure_html(
        png,
        alt=f"Median rank and 90% interval of the top {len(top)} LSOAs",
        caption=(
            f"The {len(top)} highest-ranked LSOAs: rank (black tick), median rank over the "
            "Monte Carlo runs (dot) and 90% interval (bar). Dark red: in a priority "
            "neighbourhood."
        ),
    )
    text = []
    widths = (top["rank_p95"] - top["rank_p05"]).astype(float)
    if widths.notna().any():
        sure = top[(top["rank_p95"] <= top_k)]
        text.append(
            _p(
                f"{len(sure)} of the top {len(top)} LSOAs (the table above) stay in the top 10% "
                f"(rank {top_k} or better) in at least 95% of runs; the median width of their "
                f"90% interval is {_num(widths.median(), 0)} ranks."
            )
        )
    return _section("uncertainty", heading, "".join(text) + fig)


def _neighbourhood_section(data: ReportData, nb: pd.DataFrame) -> str:
    n_nb = len(nb)
    heading = _nb_heading(n_nb)
    if not n_nb:
        return _section("neighbourhoods", heading, _unavailable("Priority neighbourhoods"))
    frame = nb.copy()
    frame["_id"] = frame.index
    cols = [
        _Col("_id", "No.", _int, True),
        _Col("name", "Name"),
        _Col("n_lsoas", "LSOAs", _int, True),
        _Col("residents", "Residents", _int, True),
        _Col("total_harm", "Harm (days)", _int, True),
        _Col("violence_harm", "Violence harm (days)", _int, True),
        _Col("share_of_borough_harm", "Share of borough harm", lambda v: _pct(v, 1), True),
        _Col("gi_hot_share", "Gi* hot (95%+)", _pct, True),
        _Col("selection_frequency", "Core LSOA re-selected (runs)", _pct, True),
        _Col("mean_overlap", "Its LSOAs re-selected (mean)", _pct, True),
        _Col("fragile", "Fragile", _yes_no),
        _Col("also_priority_before", "Priority last period", _yes_no),
        _Col("drivers", "Main drivers", _text),
    ]

    def row_class(row: pd.Series) -> str:
        flag = row.get("fragile")
        return "fragile" if not _missing(flag) and bool(flag) else ""

    body = [
        _p(
            "Each neighbourhood is a contiguous group of LSOAs grown from a high-scoring seed; "
            "numbers match the map. Stability comes from re-running the selection on every "
            "Monte Carlo run (weights and counts perturbed). 'Core LSOA re-selected' is the "
            "share of runs in which the neighbourhood's highest-scoring LSOA is again inside a "
            "priority neighbourhood; 'Its LSOAs re-selected' is, on average over the runs, the "
            "share of the neighbourhood's LSOAs inside one. Fragile neighbourhoods (shaded) have "
            "their core re-selected in too few runs to be sure. Persistence: whether it was "
            "also a priority area in the previous period."
        ),
    ]
    body += [_p(s) for s in _stability_sentences(nb)]
    body.append(_table(frame, cols, row_class=row_class, css="small"))
    if data.selection_rule:
        body.append("<h3>The selection rule</h3>" + _p(data.selection_rule))
    body.append(_selection_exceptions(data))
    return _section("neighbourhoods", heading, "".join(body), page=True)


def _selection_exceptions(data: ReportData) -> str:
    """LSOAs borrowed below the threshold, and high-scoring LSOAs left out, with the reason."""
    lsoas = data.lsoa_index
    if "selection_role" not in lsoas or "excluded_because" not in lsoas:
        return ""
    frame = pd.DataFrame(lsoas.drop(columns="geometry", errors="ignore"))
    if "lsoa_code" not in frame:
        frame = frame.reset_index()
    borrowed = frame[frame["selection_role"] == "borrowed"].sort_values("rank")
    left_out = frame[frame["excluded_because"].fillna("") != ""].sort_values("rank")
    if borrowed.empty and left_out.empty:
        return _p("No LSOA was borrowed below the threshold and no LSOA above it was left out.")
    rows = pd.concat(
        [
            borrowed.assign(status="borrowed to reach the minimum size"),
            left_out.assign(status="left out: " + left_out["excluded_because"].astype(str)),
        ]
    )
    cols = [
        _Col("rank", "Rank", _plain_int, numeric=True),
        _Col("lsoa_code", "LSOA"),
        _Col("lsoa_name", "Name"),
        _Col("ward_name", "Ward"),
        _Col("neighbourhood_id", "Neighbourhood", _plain_int, numeric=True),
        _Col("status", "Why"),
        _Col("selection_detail", "Detail"),
    ]
    cols = [c for c in cols if c.key in rows]
    return (
        "<h3>Exceptions to the rule: borrowed and left-out LSOAs</h3>"
        + _p(
            f"{len(borrowed)} LSOA(s) below the threshold were borrowed so that a neighbourhood "
            f"reaches its minimum size; {len(left_out)} LSOA(s) above the threshold are not in "
            "any neighbourhood, each for the reason given (a full neighbourhood, separation "
            "from another, or all neighbourhoods already chosen)."
        )
        + _table(rows, cols, css="small")
    )


_SEXUAL = "sexual_offences"
_BLENDED = "violence_and_sexual"
_NOT_PUBLISHED = "not published at LSOA level"


def _group_offences(table: pd.DataFrame) -> dict[str, float]:
    """Crime group -> offences over every period of the harm table (harm when no counts)."""
    if "crime_group" not in table.columns:
        return {}
    cols = [c for c in table.columns if str(c).startswith("Offences ")]
    if not cols:
        cols = [c for c in table.columns if _is_numeric(table[c]) and str(c) not in ("+/-",)]
        cols = [c for c in cols if str(c) != "% +/-"]
    values = table[cols].apply(pd.to_numeric, errors="coerce").fillna(0.0).abs().sum(axis=1)
    return {str(g): float(v) for g, v in zip(table["crime_group"], values, strict=True)}


def _sexual_status(data: ReportData) -> str:
    """``"included"``, ``"blended"`` (police.uk's violence and sexual offences), ``"absent"``,
    or ``"unknown"`` (no harm table by crime group)."""
    table = data.harm_table
    if table is None or table.empty or "crime_group" not in table.columns:
        return "unknown"
    offences = _group_offences(table)
    if offences.get(_SEXUAL, 0.0) > 0:
        return "included"
    if offences.get(_BLENDED, 0.0) > 0:
        return "blended"
    return "absent"


def _weight_days(data: ReportData) -> dict[str, float]:
    hw = data.harm_weights
    if hw is None or hw.empty or not {"crime_group", "days"} <= set(hw.columns):
        return {}
    days = pd.to_numeric(hw["days"], errors="coerce")
    return {str(g): float(d) for g, d in zip(hw["crime_group"], days, strict=True) if d == d}


def _days(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _harm_meaning(data: ReportData) -> list[str]:
    """ "What harm means here": the paragraphs, in plain words, for the harm and method sections."""
    days = _weight_days(data)
    own = (
        f" Where the partnership's own table ({data.harm_weights_file}) gives a group's weight, "
        "that weight replaces the packaged one."
        if data.harm_weights_file
        else ""
    )
    paras = [
        "Harm is counted in Cambridge Crime Harm Index (CCHI) days. The CCHI gives each offence "
        "type the days of custody a first-time offender would receive at the starting point "
        "of the sentencing guideline; but police.uk and the Met's LSOA tables give only crime "
        "groups, not offence types. So each crime group carries the AVERAGE number of CCHI "
        "days per recorded offence of that group, calibrated from the CCHI totals for 2019 and "
        "2020 in the Safer Croydon Partnership's Strategic Assessment divided by the Met's "
        "Croydon counts for the same years (method and figures: "
        "priority_index/data/CCHI_DERIVATION.md). A group's harm is its count times that "
        "average (the 'Days per offence' column of the harm table); no offence is weighted on "
        "its own." + own,
        "Because the weights are fixed, a change in harm between periods is harm at a fixed "
        "offence mix: it moves with the counts of each group, weighted by group, not with a "
        "shift towards more or less serious offences within a group or with changes in "
        "sentencing severity.",
    ]
    status = _sexual_status(data)
    if status == "absent":
        paras.append(
            "Sexual offences are not published at LSOA level by the Met, and the counts used "
            "here have none, so harm here EXCLUDES sexual offences. In Croydon's published "
            "2019 CCHI they were about a third of all harm: every harm total in this report is "
            "lower than the partnership's own, and places where sexual offences concentrate "
            "may rank lower than they would with them."
        )
    elif status == "blended":
        mix = ""
        if {_BLENDED, "violence", _SEXUAL} <= set(days):
            mix = (
                f" ({_days(days[_BLENDED])} days: violence against the person at "
                f"{_days(days['violence'])} and sexual offences at {_days(days[_SEXUAL])} "
                "days, mixed at the national share of sexual offences)"
            )
        paras.append(
            "police.uk records violence and sexual offences as one crime type. Its weight "
            f"blends the two{mix}, so sexual-offence harm is included, but spread over each "
            "LSOA in proportion to all its violence and sexual offences: police.uk does not "
            "say which records are sexual offences."
        )
    elif status == "included":
        weight = f" ({_days(days[_SEXUAL])} days per offence)" if _SEXUAL in days else ""
        paras.append(
            f"Sexual offences are included with their own weight{weight}, derived from "
            "Croydon's published 2019 sexual-offence harm over an estimated count: the Met "
            "does not publish sexual offences at LSOA level, so the weight rests on a national "
            "ratio (see CCHI_DERIVATION.md)."
        )
    where = data.study_area_name or "this study area"
    if data.study_area_is_croydon is False:
        paras.append(
            f"The weights are Croydon-calibrated: they carry Croydon's 2019-20 mix of offences "
            f"within each group and the Met's recording practice. For {where} they are an "
            "approximation; a partnership with its own published CCHI totals can calibrate "
            "its own weights and give them in the pipeline file ([harm] table)."
        )
    elif data.study_area_is_croydon is True:
        paras.append(
            "The weights are Croydon's own 2019-20 averages; the mix of offences within each "
            "group may have moved since, which fixed weights cannot follow."
        )
    else:
        paras.append(
            "The weights are Croydon's 2019-20 averages; outside Croydon they are an "
            "approximation (Croydon-calibrated)."
        )
    return paras


def _outside_period_notes(data: ReportData, *, records: bool = True) -> list[str]:
    """Offences (and, with ``records``, point records) read but left out of every analysis
    period, per source."""
    q = data.quality
    if q is None or q.empty or "source" not in q.columns:
        return []
    out = []
    for _, row in q.iterrows():
        source = str(row["source"])
        read, used = row.get("offences_read"), row.get("offences_used")
        if not _missing(read) and not _missing(used) and float(read) - float(used) >= 0.5:
            diff = float(read) - float(used)
            rejected = row.get("rows_rejected")
            why = (
                "fall in months outside the analysis periods"
                if _missing(rejected) or int(rejected) == 0
                else "are not used (months outside the analysis periods, or rows rejected "
                "with a reason: see Data quality)"
            )
            out.append(
                f"{_int(diff)} of the {_int(read)} offences read from {source} {why}; they are "
                "not in these tables."
            )
        reasons = _reasons_of(row.get("rejected_by_reason"))
        n = reasons.get("outside_period")
        if records and not _missing(n) and float(n) > 0:
            out.append(
                f"{_int(n)} records of {source} fall in months outside the analysis periods "
                "and are not counted."
            )
    return out


def _harm_display(data: ReportData, table: pd.DataFrame, periods: list[str]) -> pd.DataFrame:
    """The harm table as printed: days per offence, sexual offences marked, total labelled."""
    frame = table.rename(columns=str).copy()
    days = _weight_days(data)
    if days and "crime_group" in frame.columns:
        frame.insert(
            frame.columns.get_loc("Crime Type") + 1 if "Crime Type" in frame.columns else 0,
            "Days per offence",
            [days.get(str(g), np.nan) for g in frame["crime_group"]],
        )
    if "crime_group" not in frame.columns:
        return frame
    offences = _group_offences(table)
    groups = frame["crime_group"].astype(str)
    unpublished = (groups == _SEXUAL) & np.array(
        [offences.get(g, 0.0) == 0 for g in groups], dtype=bool
    )
    if unpublished.any():
        numeric = [c for c in frame.columns if c != "Days per offence" and _is_numeric(frame[c])]
        frame[numeric] = frame[numeric].astype(float)
        frame.loc[unpublished, numeric] = np.nan
        if "Crime Type" in frame.columns:
            frame["Crime Type"] = frame["Crime Type"].astype(object)
            frame.loc[unpublished, "Crime Type"] = [
                f"{name} ({_NOT_PUBLISHED})" for name in frame.loc[unpublished, "Crime Type"]
            ]
    if _sexual_status(data) == "absent" and "Crime Type" in frame.columns:
        total = groups.isin(_TOTAL_GROUPS)
        frame["Crime Type"] = frame["Crime Type"].astype(object)
        frame.loc[total, "Crime Type"] = [
            f"{name} (excluding sexual offences)" for name in frame.loc[total, "Crime Type"]
        ]
    return frame


def _harm_section(data: ReportData) -> str:
    heading = SECTIONS[5][1]
    table = data.harm_table
    meaning = "<h3>What harm means here</h3>" + "".join(_p(t) for t in _harm_meaning(data))
    if table is None or table.empty:
        return _section("harm", heading, _unavailable("The harm table") + meaning)
    periods = _harm_periods(data)
    frame = _harm_display(data, table, periods)
    cols = [_Col("Crime Type", "Crime Type")]
    if "Days per offence" in frame.columns:
        cols.append(_Col("Days per offence", "Days per offence (CCHI average)", _days_cell, True))
    cols += [_Col(p, p, _int, True) for p in periods]
    cols += [
        _Col("+/-", "+/-", _signed, True),
        _Col("% +/-", "% +/-", lambda v: _signed(v, 1), True),
    ]
    shown = {"crime_group", "Crime Type", "Days per offence", "+/-", "% +/-", *periods}
    for c in frame.columns:
        if str(c) not in shown:
            numeric = _is_numeric(frame[c])
            cols.append(_Col(str(c), str(c), _int if numeric else _auto_value, numeric))

    def row_class(row: pd.Series) -> str:
        group = str(row.get("crime_group", ""))
        if group in _TOTAL_GROUPS or str(row.get("Crime Type", "")).casefold().startswith("total"):
            return "total"
        if group == "asb" or _NOT_PUBLISHED in str(row.get("Crime Type", "")):
            return "apart"
        return ""

    compare = f"{periods[0]} with {periods[-1]}" if len(periods) >= 2 else "the periods"
    intro = _p(
        f"Harm in CCHI days by crime group; columns compare {compare} (the change is harm at "
        "a fixed offence mix: it follows the counts). Anti-social behaviour, when present, is "
        "shown apart: it is not a notifiable offence."
    )
    body = [intro, meaning, _table(frame, cols, row_class=row_class)]
    notes = _outside_period_notes(data)
    if notes:
        body.append("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>")
    return _section("harm", heading, "".join(body))


def _days_cell(value: Any) -> str:
    return "" if _missing(value) else _num(value, 2)


def _plural(unit: str) -> str:
    """``"LSOA"`` -> ``"LSOAs"``; ``"150 m cell (points only)"`` -> ``"150 m cells (...)"``;
    ``"150 m cell, police.uk points"`` -> ``"150 m cells, police.uk points"``."""
    cut = min((i for i in (unit.find(" ("), unit.find(",")) if i >= 0), default=len(unit))
    head, tail = unit[:cut], unit[cut:]
    if not head or head.endswith("s"):
        return unit
    return f"{head}s{tail}"


def _unit_noun(unit: str) -> tuple[str, str]:
    """Singular and plural noun of a unit label: ``("cell", "cells")``, ``("LSOA", "LSOAs")``."""
    cut = min((i for i in (unit.find(" ("), unit.find(","), unit.find(";")) if i >= 0), default=-1)
    head = (unit[:cut] if cut >= 0 else unit).split()
    noun = head[-1] if head else "unit"
    if noun.endswith("s"):
        return noun[:-1], noun
    return noun, f"{noun}s"


def _is_lsoa_unit(unit: str) -> bool:
    return unit.strip().casefold() in ("lsoa", "lsoas")


def _concentration_statements(data: ReportData) -> list[tuple[str, str]]:
    """(unit label, sentence) per unit type with both a harm and a count row."""
    conc = data.concentration
    if conc is None or conc.empty or not {"measure", "gini"} <= set(conc.columns):
        return []
    frame = conc.copy()
    if "unit" not in frame.columns:
        frame["unit"] = "unit"
    out = []
    for unit, rows in frame.groupby("unit", sort=False):
        by = {str(m): r for m, r in zip(rows["measure"], rows.to_dict("records"), strict=True)}
        if "harm" not in by or "count" not in by:
            continue
        h, c = by["harm"], by["count"]
        label = str(unit)
        one, many = _unit_noun(label)
        n_units = h.get("units", c.get("units"))
        if _missing(n_units):
            across, them = f"Across {_plural(label)}", _plural(label)
        else:
            across, them = f"Across the {_int(n_units)} {many}", f"the {many}"
        share_h, share_c = h.get("share_of_units_for_half"), c.get("share_of_units_for_half")
        single = None
        if not _is_lsoa_unit(label) and len(data.point_groups) == 1:
            single = str(data.point_groups[0])
        same = abs(float(h["gini"]) - float(c["gini"])) < 1e-9 and (
            _missing(share_h) or _missing(share_c) or abs(float(share_h) - float(share_c)) < 1e-12
        )
        if single is not None or same:
            why = (
                f"only one crime group has points ({single}), so each {one}'s harm is its count "
                "times one weight"
                if single is not None
                else "harm is proportional to counts here, as when a single crime group is counted"
            )
            text = (
                f"{across}, harm cannot be compared with counts: {why}, and the two are spread "
                f"identically by construction (Gini {_num(c['gini'], 2)}). This row says "
                "nothing about harm against counts"
            )
            if not _missing(share_c):
                text += f"; {_pct(share_c)} of {them} hold half of the records"
            out.append((label, text + "."))
            continue
        diff = float(h["gini"]) - float(c["gini"])
        if abs(diff) < 0.005:
            how = "about as concentrated as"
        elif diff > 0:
            how = "more concentrated than"
        else:
            how = "less concentrated than"
        digits = 2 if _num(h["gini"], 2) != _num(c["gini"], 2) else 3
        text = (
            f"{across}, harm is {how} counts "
            f"(Gini {_num(h['gini'], digits)} against {_num(c['gini'], digits)})"
        )
        if not _missing(share_h):
            text += (
                f": {_pct(share_h)} of {them} hold half of the harm, "
                f"against {_pct(share_c)} for half of the offences"
            )
        out.append((label, text + "."))
    return out


def _concentration_section(data: ReportData) -> str:
    heading = SECTIONS[6][1]
    body = []
    statements = _concentration_statements(data)
    if statements:
        items = []
        for label, text in statements:
            one, _many = _unit_noun(label)
            lead = "" if label.strip() == one else f"<strong>{_esc(label)}</strong><br>"
            items.append(f"<li>{lead}{_esc(text)}</li>")
        body.append("<ul>" + "".join(items) + "</ul>")
    curves = {k: v for k, v in data.lorenz.items() if len(v[0]) >= 2}
    if curves:
        caption = (
            "Concentration curves: the top x% of units (highest first) hold y% of the "
            "total. Solid lines: harm; dashed lines: counts. Where a curve crosses the "
            "dotted 50% line is the share of units holding half of the total; the "
            "higher the curve, the more concentrated."
        )
        if len(data.point_groups) == 1:
            caption += (
                f" Cells: only {data.point_groups[0]} has points, so cell harm is count times "
                "one weight and one curve stands for both."
            )
        body.append(
            _figure_html(
                _lorenz_png(curves),
                alt="Concentration curves of harm and of counts",
                caption=caption,
            )
        )
    conc = data.concentration
    if conc is not None and not conc.empty:
        cols = [
            _Col("unit", "Unit"),
            _Col("measure", "Measure"),
            _Col("units", "Units (denominator)", _int, True),
            _Col("total", "Total", _int, True),
            _Col("gini", "Gini", lambda v: _num(v, 3), True),
            _Col("units_for_half", "Units for half", _int, True),
            _Col("share_of_units_for_half", "Share of units for half", lambda v: _pct(v, 1), True),
            _Col("top_unit", "Top unit"),
            _Col("top_unit_share", "Top unit's share", lambda v: _pct(v, 1), True),
        ]
        if "units" in conc.columns:
            body.append(
                _p(
                    "Units (denominator): how many units each row shares its total among, as "
                    "the run counted them; the unit label says which units are counted."
                )
            )
        body.append(_table(conc.rename(columns=str), cols))
    if not body:
        body.append(_unavailable("Concentration"))
    return _section("concentration", heading, "".join(body))


def _weights_section(data: ReportData) -> str:
    heading = SECTIONS[7][1]
    body = []
    weights = _weights_frame(data.weights)
    if weights is not None and not weights.empty:
        frame = weights.sort_values("effective_weight", ascending=False, kind="stable")
        frame = frame.assign(indicator=frame.index)
        body.append("<h3>Effective weights</h3>")
        body.append(
            _p("The weight each indicator carries in the index after rescaling to sum to 100%.")
        )
        body.append(
            _table(
                frame,
                [
                    _Col("label", "Indicator"),
                    _Col("indicator", "Field"),
                    _Col("effective_weight", "Weight", lambda v: _pct(v, 1), True),
                ],
            )
        )
    sens = data.sensitivity
    if sens is not None and not sens.empty:
        frame = sens.copy()
        if frame.index.name is not None:
            frame = frame.reset_index()
        body.append("<h3>Drop-one sensitivity</h3>")
        body.append(
            _p(
                "Each indicator in turn is dropped and the index recomputed. The table shows "
                "how many LSOAs leave and enter the top 10%; Jaccard is the overlap of the old "
                "and new top sets (1 = unchanged)."
            )
        )
        if "jaccard" in frame.columns and frame["jaccard"].notna().any():
            worst = frame.loc[frame["jaccard"].astype(float).idxmin()]
            label = worst.get("label", worst.get("dropped", ""))
            body.append(
                _p(
                    f"The index leans most on {label}: without it {_int(worst.get('n_left'))} "
                    f"LSOAs leave the top 10% (Jaccard {_num(worst['jaccard'], 2)})."
                )
            )
        cols = [
            _Col("label", "Indicator dropped"),
            _Col("dropped", "Field"),
            _Col("effective_weight", "Its weight", lambda v: _pct(v, 1), True),
            _Col("n_left", "Left top 10%", _int, True),
            _Col("n_entered", "Entered", _int, True),
            _Col("jaccard", "Jaccard", lambda v: _num(v, 2), True),
            _Col("left", "LSOAs leaving", _text),
            _Col("entered", "LSOAs entering", _text),
        ]
        known = {c.key for c in cols}
        extra = [
            _Col(str(c), _pretty(c), _auto_value, _is_numeric(frame[c]))
            for c in frame.columns
            if str(c) not in known
        ]
        body.append(_table(frame.rename(columns=str), cols + extra, css="small"))
    if not body:
        body.append(_unavailable("Weights and sensitivity"))
    return _section("weights", heading, "".join(body))


def _first_year(text: str) -> str | None:
    match = re.search(r"\b(?:19|20)\d{2}\b", text)
    return match.group(0) if match else None


def _face_pooled(fv: pd.DataFrame, lsoas: gpd.GeoDataFrame) -> tuple[int, int, float] | None:
    """Distinct LSOAs in the places' wards: (how many, how many selected, their median rank)."""
    from priority_index.face_validity import normalise_ward

    if "wards" not in fv.columns or "ward_name" not in lsoas.columns or "rank" not in lsoas:
        return None
    keys = {
        normalise_ward(w.strip())
        for text in fv["wards"]
        if isinstance(text, str)
        for w in text.split(";")
        if w.strip()
    }
    mine = lsoas[[normalise_ward(w) in keys for w in lsoas["ward_name"]]]
    if mine.empty:
        return None
    selected = int((mine["neighbourhood_id"] > 0).sum())
    ranks = pd.to_numeric(mine["rank"], errors="coerce")
    return len(mine), selected, float(ranks.median())


def _rank_words(value: Any) -> str:
    """A (median) rank as text: ``54``, or ``16.5`` between two ranks."""
    if _missing(value):
        return _MISSING
    v = float(value)
    return f"{v:.0f}" if v.is_integer() else f"{v:.1f}"


def _face_section(data: ReportData, lsoas: gpd.GeoDataFrame) -> str:
    heading = SECTIONS[8][1]
    fv = data.face_validity
    if fv is None or fv.empty:
        return _section("face-validity", heading, _unavailable("A list of places named unsafe"))
    fv = fv.copy()
    n_in = int(fv["in_priority"].fillna(False).astype(bool).sum()) if "in_priority" in fv else 0
    n_total = len(lsoas)
    lines = [
        f"Places residents named as unsafe, held against the index: {n_in} of {len(fv)} have "
        "at least one LSOA in a priority neighbourhood."
    ]
    pooled = _face_pooled(fv, lsoas)
    if pooled is not None:
        n, k, med = pooled
        lines.append(
            f"Of the {n} distinct LSOAs in their wards, {k} ({_pct(k / n)}) are selected, and "
            f"their median rank is {_rank_words(med)} of {n_total}."
        )
    if "share_of_lsoas_selected" in fv.columns and fv["share_of_lsoas_selected"].notna().any():
        share = pd.to_numeric(fv["share_of_lsoas_selected"], errors="coerce")
        low, high = share.idxmin(), share.idxmax()
        text = (
            f"Place by place, the share of a place's LSOAs selected runs from "
            f"{_pct(share[low])} ({fv.loc[low, 'place']}) to {_pct(share[high])} "
            f"({fv.loc[high, 'place']})"
        )
        if "median_rank" in fv.columns and fv["median_rank"].notna().any():
            med = pd.to_numeric(fv["median_rank"], errors="coerce")
            text += (
                f", and the median rank of its LSOAs from {_rank_words(med.min())} to "
                f"{_rank_words(med.max())} of {n_total}"
            )
        lines.append(text + ".")
    weak = [
        'This is a weak test. A place counts as "in" when any one LSOA of its wards is '
        "selected, however many are not."
    ]
    shared = _shared_wards(fv)
    if shared:
        weak.append(f"Places can share a ward, so one neighbourhood can confirm both: {shared}.")
    else:
        weak.append("Two places can share a ward, so one neighbourhood can confirm both.")
    sources = [str(s) for s in fv.get("source", pd.Series(dtype=object)) if _text(s).strip()]
    years = sorted({y for s in sources if (y := _first_year(s))})
    now = f" while the index uses {data.periods[-1]}" if data.periods else ""
    if years:
        named_by = "; ".join(dict.fromkeys(sources))
        weak.append(
            f"And the places were named in {_and_join(years)} ({named_by}){now}: reputations "
            "lag, and places change."
        )
    else:
        weak.append(f"And the survey that named the places may be years older than the data{now}.")
    weak.append(
        "A place outside the neighbourhoods is not necessarily a mistake: the explanation says "
        "what drives the difference."
    )
    body = [_p(" ".join(lines)), _p(" ".join(weak))]
    if {"n_selected", "n_lsoas"} <= set(fv.columns):
        fv["_selected"] = [
            f"{_int(k)} of {_int(n)}" if not _missing(n) else _MISSING
            for k, n in zip(fv["n_selected"], fv["n_lsoas"], strict=True)
        ]
    cols = [
        _Col("place", "Place"),
        _Col("wards", "Wards"),
        _Col("n_lsoas", "LSOAs", _int, True),
        _Col("_selected", "LSOAs selected", str, True),
        _Col("share_of_lsoas_selected", "Share selected", _pct, True),
        _Col("median_rank", "Median rank", _rank_words, True),
        _Col("best_rank", "Best rank", _int, True),
        _Col("in_priority", "Any LSOA selected", _yes_no),
        _Col("neighbourhoods", "Neighbourhoods", _text),
        _Col("gi_hot_share", "Gi* hot (95%+)", _pct, True),
        _Col("main_drivers", "Main drivers", _text),
    ]
    body.append(_table(fv.rename(columns=str), cols, css="small"))
    if "explanation" in fv.columns:
        items = "".join(
            f"<li><strong>{_esc(_text(p))}</strong>: {_esc(_text(e))}</li>"
            for p, e in zip(fv.get("place", [""] * len(fv)), fv["explanation"], strict=True)
        )
        body.append(f'<ul class="explain">{items}</ul>')
    return _section("face-validity", heading, "".join(body))


def _shared_wards(fv: pd.DataFrame) -> str:
    """``"Fairfield (West Croydon and Croydon Town Centre)"`` for wards named by two places."""
    if "wards" not in fv.columns or "place" not in fv.columns:
        return ""
    by_ward: dict[str, list[str]] = {}
    for place, wards in zip(fv["place"], fv["wards"], strict=True):
        if not isinstance(wards, str):
            continue
        for ward in dict.fromkeys(w.strip() for w in wards.split(";") if w.strip()):
            key = ward.casefold()
            by_ward.setdefault(key, [ward])
            by_ward[key].append(str(place))
    parts = [
        f"{names[0]} ({_and_join(list(dict.fromkeys(names[1:])))})"
        for names in by_ward.values()
        if len(dict.fromkeys(names[1:])) > 1
    ]
    return "; ".join(parts)


_CONTROL_KNOWN = (
    "neighbourhood_id",
    "name",
    "n_lsoas",
    "target_mean_score",
    "control_mean_score",
    "_gap",
    "target_residents",
    "control_residents",
    "target_trend",
    "control_trend",
    "distance",
    "match_quality",
    "control_lsoa_codes",
)


def _trend_unit(data: ReportData) -> str:
    if data.control_trend_unit:
        return data.control_trend_unit
    if len(data.periods) >= 2:
        return f"change in harm days from {data.periods[-2]} to {data.periods[-1]}"
    return "change in harm days between the two periods"


def _controls_html(data: ReportData, nb: pd.DataFrame) -> list[str]:
    names = {int(i): str(n) for i, n in zip(nb.index, nb["name"], strict=True)}
    frame = data.controls.copy()
    if "neighbourhood_id" not in frame.columns and frame.index.name == "neighbourhood_id":
        frame = frame.reset_index()
    if "neighbourhood_id" in frame.columns and "name" not in frame.columns:
        frame.insert(
            1,
            "name",
            [names.get(int(i), "") if not _missing(i) else "" for i in frame["neighbourhood_id"]],
        )
    body = [
        _p(
            "For each neighbourhood, a group of LSOAs outside every neighbourhood, as close as "
            "possible in mean index score, residents and recent harm change, for comparison."
        )
    ]
    has_scores = {"target_mean_score", "control_mean_score"} <= set(frame.columns)
    if has_scores:
        target = pd.to_numeric(frame["target_mean_score"], errors="coerce")
        control = pd.to_numeric(frame["control_mean_score"], errors="coerce")
        frame["_gap"] = target - control
        text = (
            "Controls are necessarily lower-scoring (less harm, less deprivation or both) than "
            "the places they are compared with: the highest-scoring LSOAs are already in the "
            "neighbourhoods, so the closest LSOAs left score lower."
        )
        gap = frame["_gap"]
        if gap.notna().any():
            i = gap.idxmax()
            who = frame.loc[i, "name"] if "name" in frame.columns else ""
            text += (
                f" The largest gap: {who}, mean score {_num(target[i], 2)} against "
                f"{_num(control[i], 2)} for its controls"
            )
            if gap.notna().sum() > 1:
                text += f" (gaps run from {_num(gap.min(), 2)} to {_num(gap.max(), 2)})"
            text += "."
        text += (
            " So do not compare levels: evaluate with difference-in-differences on trends (the "
            "change in harm in a neighbourhood minus the change in its controls over the same "
            "periods). Expect regression to the mean: places chosen because they scored high "
            "this period tend to score lower next period with no intervention, so part of any "
            "fall in the neighbourhoods would have happened anyway."
        )
        body.append(_p(text))
    if "target_trend" in frame.columns or "control_trend" in frame.columns:
        body.append(_p(f"Harm change: {_trend_unit(data)}."))
    if "match_quality" in frame.columns:
        quality = frame["match_quality"].astype(str).str.strip().str.casefold()
        poor = frame.loc[quality == "poor", "name"] if "name" in frame.columns else []
        if len(poor):
            body.append(
                _p(
                    f"Poor matches ({len(poor)}): {', '.join(str(n) for n in poor)}; compare "
                    "them with particular care."
                )
            )
    unit = "days"
    cols = [
        _Col("neighbourhood_id", "No.", _plain_int, True),
        _Col("name", "Neighbourhood"),
        _Col("n_lsoas", "LSOAs", _int, True),
        _Col("target_mean_score", "Mean score: neighbourhood", lambda v: _num(v, 2), True),
        _Col("control_mean_score", "Mean score: controls", lambda v: _num(v, 2), True),
        _Col("_gap", "Score gap", lambda v: _num(v, 2), True),
        _Col("target_residents", "Residents: neighbourhood", _int, True),
        _Col("control_residents", "Residents: controls", _int, True),
        _Col("target_trend", f"Harm change ({unit}): neighbourhood", _signed, True),
        _Col("control_trend", f"Harm change ({unit}): controls", _signed, True),
        _Col("distance", "Match distance (lower = closer)", lambda v: _num(v, 2), True),
        _Col("match_quality", "Match quality", _text),
        _Col("control_lsoa_codes", "Control LSOAs", _text),
    ]
    extra = [
        _Col(str(c), _pretty(c), _column_format(str(c), frame[c]), _is_numeric(frame[c]))
        for c in frame.columns
        if str(c) not in _CONTROL_KNOWN and str(c) != "geometry"
    ]
    body.append(_table(frame.rename(columns=str), cols + extra, css="small"))
    return body


def _ttt_section(data: ReportData, nb: pd.DataFrame, max_trial_rows: int = 40) -> str:
    heading = SECTIONS[9][1]
    body = [
        _p(
            "Target: the priority neighbourhoods. Test: compare their trends with those of "
            "control areas, or randomise the micro-places into treatment and control arms. "
            "Track: re-run the index each period and watch persistence."
        )
    ]
    body.append("<h3>Control (comparison) areas</h3>")
    if data.controls is not None and not data.controls.empty:
        body += _controls_html(data, nb)
    else:
        body.append(_unavailable("Control areas"))
    if data.trial is not None and not data.trial.empty:
        body.append("<h3>Trial allocation</h3>")
        trial = data.trial
        text = f"{len(trial)} units randomised in blocks"
        if "arm" in trial.columns:
            counts = trial["arm"].astype(str).value_counts(sort=False)
            text += " (" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ")"
        seeds = trial["seed"].dropna().unique() if "seed" in trial.columns else []
        if len(seeds) == 1:
            seed = _plain_int(seeds[0])
            text += f"; random seed {seed} (the same seed gives the same allocation)"
            trial = trial.drop(columns="seed")
        body.append(_p(text + "."))
        shown = trial.head(max_trial_rows)
        if len(trial) > len(shown):
            body.append(
                _p(
                    f"The first {len(shown)} of {len(trial)} units are listed; the full "
                    "allocation is in the trial-allocation table of the outputs."
                )
            )
        body.append(_auto_table(shown, css="small"))
    else:
        body.append("<h3>Trial allocation</h3>" + _unavailable("A trial allocation"))
    return _section("target-test-track", heading, "".join(body), page=True)


def _reasons_of(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value.strip().startswith("{"):
        with contextlib.suppress(ValueError):
            loaded = json.loads(value)
            if isinstance(loaded, dict):
                return loaded
    return {}


def _quality_section(data: ReportData) -> str:
    heading = SECTIONS[10][1]
    q = data.quality
    if q is None or q.empty:
        return _section("data-quality", heading, _unavailable("Data-quality tallies"))
    body = [
        _p(
            "Every input record is either used or rejected with a reason; nothing is dropped "
            "silently. A source reconciles when rows read = rows used + rows rejected."
        )
    ]
    if "reconciles" in q.columns:
        bad = [str(s) for s, ok in zip(q["source"], q["reconciles"], strict=True) if not bool(ok)]
        if bad:
            body.append(f'<p class="warn">{_esc("Does not reconcile: " + ", ".join(bad))}</p>')
        else:
            body.append(_p("Every source reconciles."))
    frame = q.copy()
    if "rejected_by_reason" in frame.columns:
        frame["_reasons"] = [
            "; ".join(f"{k}: {_auto_value(v)}" for k, v in _reasons_of(r).items())
            for r in frame["rejected_by_reason"]
        ]
    cols = [
        _Col("source", "Source"),
        _Col("files", "Files", _int, True),
        _Col("rows_read", "Rows read", _int, True),
        _Col("rows_used", "Rows used", _int, True),
        _Col("rows_rejected", "Rows rejected", _int, True),
        _Col("offences_read", "Offences read", _int, True),
        _Col("offences_used", "Offences used", _int, True),
        _Col("reconciles", "Reconciles", _yes_no),
        _Col("_reasons", "Rejected by reason", str),
    ]
    known = {c.key for c in cols} | {"rejected_by_reason"}
    extra = [
        _Col(str(c), _pretty(c), _auto_value, _is_numeric(frame[c]))
        for c in frame.columns
        if str(c) not in known
    ]
    body.append(_table(frame.rename(columns=str), cols + extra, css="small"))
    offences = _outside_period_notes(data, records=False)
    if offences:
        body.append(_p("Offences read against offences used: " + " ".join(offences)))
    rows = []
    if "rejected_by_reason" in q.columns:
        for source, reasons in zip(q["source"], q["rejected_by_reason"], strict=True):
            for reason, n in _reasons_of(reasons).items():
                rows.append(
                    {
                        "source": source,
                        "reason": reason,
                        "rows": n,
                        "meaning": data.reasons.get(str(reason), ""),
                    }
                )
    if rows:
        body.append("<h3>Records rejected, by reason</h3>")
        body.append(
            _table(
                pd.DataFrame(rows),
                [
                    _Col("source", "Source"),
                    _Col("reason", "Reason"),
                    _Col("rows", "Rows", _int, True),
                    _Col("meaning", "Meaning"),
                ],
                css="small",
            )
        )
    return _section("data-quality", heading, "".join(body), page=True)


def _method_section(data: ReportData) -> str:
    heading = SECTIONS[11][1]
    body = [_p(t) for t in data.method_text]
    body.append("<h3>What harm means here</h3>")
    body += [_p(t) for t in _harm_meaning(data)]
    if data.selection_rule:
        body.append("<h3>How the priority neighbourhoods are chosen</h3>" + _p(data.selection_rule))
    if data.config_toml:
        body.append("<h3>Configuration</h3>")
        body.append(
            _p(
                "The pipeline file this run used; re-running it on the same inputs gives the "
                "same outputs."
            )
        )
        body.append(f"<pre>{_esc(data.config_toml)}</pre>")
    return _section("method", heading, "".join(body), page=True)


def _size(value: Any) -> str:
    if isinstance(value, Mapping):
        value = value.get("bytes")
    if _missing(value):
        return _MISSING
    n = float(value)
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} kB"
    return f"{int(n)} B"


def _run_section(data: ReportData) -> str:
    heading = SECTIONS[12][1]
    body = []
    if data.timings:
        frame = pd.DataFrame(
            {"stage": list(data.timings), "seconds": [float(v) for v in data.timings.values()]}
        )
        body.append("<h3>Timings</h3>")
        body.append(
            _table(
                frame,
                [_Col("stage", "Stage"), _Col("seconds", "Seconds", lambda v: _num(v, 2), True)],
            )
        )
    if data.outputs:
        frame = pd.DataFrame({"file": list(data.outputs), "size": list(data.outputs.values())})
        body.append("<h3>Outputs</h3>")
        body.append(
            _table(frame, [_Col("file", "File"), _Col("size", "Size", _size, True)], css="small")
        )
    if data.notes:
        body.append("<h3>Notes</h3>")
        body.append("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in data.notes) + "</ul>")
    if not body:
        body.append(_unavailable("Run details"))
    return _section("run", heading, "".join(body))


# --------------------------------------------------------------------------------------------
# Public API


def render_report(data: ReportData, *, top_n: int = 20) -> str:
    """Render the board report as one self-contained HTML page.

    Parameters
    ----------
    data : ReportData
        The tables and text to print.
    top_n : int, optional
        Number of LSOAs in the top-LSOA table.

    Returns
    -------
    str
        The HTML document: inline CSS, figures as PNG data URIs, no external references, every
        text from the data escaped. The same ``data`` always gives the same string.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n!r}")
    lsoas = _lsoa_frame(data)
    nb = _nb_frame(data)
    outlines = _nb_outlines(nb, lsoas)
    sections = [
        _summary(data, lsoas, nb),
        _map_section(data, lsoas, outlines),
        _top_section(lsoas, nb, top_n),
        _uncertainty_section(lsoas, top_n),
        _neighbourhood_section(data, nb),
        _harm_section(data),
        _concentration_section(data),
        _weights_section(data),
        _face_section(data, lsoas),
        _ttt_section(data, nb),
        _quality_section(data),
        _method_section(data),
        _run_section(data),
    ]
    toc_names = dict(SECTIONS)
    toc_names["top-lsoas"] = f"The top {top_n} LSOAs"
    toc_names["neighbourhoods"] = _nb_heading(len(nb))
    toc = "".join(f'<li><a href="#{a}">{_esc(toc_names[a])}</a></li>' for a, _ in SECTIONS)
    header = [f"<h1>{_esc(data.title)}</h1>"]
    if data.subtitle:
        header.append(f'<p class="subtitle">{_esc(data.subtitle)}</p>')
    if data.generated_note:
        header.append(f'<p class="note">{_esc(data.generated_note)}</p>')
    header.append(f"<nav><ol>{toc}</ol></nav>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en-GB">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(data.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header>{''.join(header)}</header>\n<main>\n"
        + "\n".join(sections)
        + "\n</main>\n<footer>Priority Localities Index. Harm weights: Cambridge Crime Harm "
        "Index. Contains public sector information licensed under the Open Government Licence "
        "v3.0; contains OS data \u00a9 Crown copyright and database right.</footer>\n"
        "</body>\n</html>\n"
    )


def write_report(html: str, path: Path) -> None:
    """Write the report atomically (temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    html : str
        The page from :func:`render_report`.
    path : pathlib.Path
        Target file; its folder must exist.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(html)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------
# Adapter from a pipeline run


def _curves(per_unit: pd.DataFrame, unit: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from priority_index.harm import concentration

    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for measure in ("harm", "count"):
        if measure not in per_unit.columns:
            continue
        values = pd.to_numeric(per_unit[measure], errors="coerce").fillna(0.0).to_numpy(float)
        try:
            c = concentration(values)
        except ValueError:  # no units, or a zero total
            continue
        out[f"{unit} {measure}"] = (c.x, c.y)
    return out


def _generated_note(r: RunResult) -> str:
    from priority_index.crime_groups import GROUP_LABELS

    inputs = r.inputs
    by_source: dict[str, list[str]] = {}
    for group, source in sorted(inputs.count_sources.items()):
        by_source.setdefault(str(source), []).append(GROUP_LABELS.get(group, group))
    parts = [f"Counts from {src}: {', '.join(groups)}." for src, groups in by_source.items()]
    pts = inputs.points
    if len(pts):
        groups = sorted(str(g) for g in pts["crime_group"].dropna().unique())
        names = ", ".join(GROUP_LABELS.get(g, g) for g in groups)
        period = f" ({r.points_period})" if getattr(r, "points_period", None) else ""
        parts.append(f"Point locations{period} for: {names}.")
        area_only = sorted(set(inputs.count_sources) - set(groups))
        if area_only:
            parts.append(
                "Area-level only (no points, so no density surface or micro-places): "
                + ", ".join(GROUP_LABELS.get(g, g) for g in area_only)
                + "."
            )
    else:
        parts.append("No point locations: density surfaces and micro-places are not available.")
    if inputs.points_generated:
        parts.append(
            "Point positions are GENERATED (placed inside real LSOAs from real counts); they "
            "are not real locations."
        )
    return " ".join(parts)


def _indicator_words(names: Sequence[str]) -> str:
    """The kinds of indicator in the index, in plain words: "crime harm, deprivation and ..."."""
    from priority_index.indicators import indicator_spec

    kinds: dict[str, list[str]] = {}
    for name in names:
        try:
            spec = indicator_spec(str(name))
        except KeyError:
            kinds.setdefault("other", []).append(str(name))
            continue
        kinds.setdefault(spec.kind, []).append(spec.label)
    words = []
    if "crime" in kinds:
        harm_only = all("harm" in n.casefold() for n in kinds["crime"])
        words.append("crime harm" if harm_only else "crime")
    if "asb" in kinds:
        words.append("anti-social behaviour")
    if "deprivation" in kinds:
        words.append("deprivation")
    if "demography" in kinds:
        words.append(" and ".join(label.lower() for label in kinds["demography"]))
    if "other" in kinds:
        words.append("other agencies' data")
    return _and_join(words) or "indicators"


def _method_paragraphs(r: RunResult) -> list[str]:
    s = r.settings
    idx, unc, hs, sel = s.index, s.uncertainty, s.hotspots, s.selection
    what = _indicator_words([str(k) for k in r.index.result.effective_weights.keys()])
    where = "the weights listed under 'Weights and sensitivity'"
    paras = [
        "Each crime is weighted by the average Cambridge Crime Harm Index (CCHI) days per "
        "offence of its crime group, so one robbery counts for far more than one theft (see "
        "What harm means here, below). Harm is summed per LSOA and per crime group.",
        f"The indicators ({what}) are put on a common scale ({idx.normalisation} "
        f"normalisation) and combined with {where} ({idx.aggregation} aggregation) into one "
        "score per LSOA; rank 1 is the highest priority."
        + (
            " Rates per resident are shrunk towards the borough mean where few people live, so "
            "small LSOAs do not top the list by chance."
            if s.indicators.shrink_rates
            else ""
        ),
    ]
    if unc.draws:
        paras.append(
            f"To show how sure the ranks are, the index is recomputed {unc.draws:,} times with "
            f"each weight varied by up to {100 * unc.weight_spread:g}%"
            + (" and the crime counts resampled (Poisson)" if unc.resample_counts else "")
            + ". The median rank and 90% interval summarise these runs. The selection is "
            "re-run on every run too: a neighbourhood whose core LSOA is re-selected in fewer "
            f"than {100 * unc.fragile_below:g}% of them is flagged fragile."
        )
    paras.append(
        f"Hot spots are found with the Getis-Ord Gi* statistic ({hs.weights} neighbours, "
        f"{hs.permutations:,} permutations for a pseudo p-value"
        + (", Benjamini-Hochberg false discovery rate control" if hs.fdr else "")
        + "): an LSOA is a hot spot when it and its neighbours together are higher than chance "
        "would give."
    )
    paras.append(
        f"The {sel.n} priority neighbourhoods are contiguous groups of {sel.min_lsoas} to "
        f"{sel.max_lsoas} LSOAs grown from the highest-scoring LSOAs (see the rule below)"
        + (", kept apart so each working group has a distinct patch." if sel.separate else ".")
    )
    return paras


def _young_bands(r: RunResult) -> list[str]:
    pop = r.settings.sources.population
    if pop is None:
        return []
    if pop.young_columns:
        return [str(c) for c in pop.young_columns]
    return {"census_age_long": ["Aged 16 to 24 years"], "ons_mid_year": ["Persons_16-29"]}.get(
        pop.format, []
    )


def _study_area_name(r: RunResult) -> str:
    s = r.settings
    if s.pipeline.description.strip():
        return s.pipeline.description.strip().rstrip(".")
    named = [*s.study_area.lad_names, *s.study_area.lad_codes]
    return f"the study area ({', '.join(named)})" if named else ""


def _is_croydon(r: RunResult) -> bool | None:
    area = r.settings.study_area
    codes = [str(c).strip().upper() for c in area.lad_codes]
    names = [str(n).strip().casefold() for n in area.lad_names]
    if not codes and not names:
        return None
    return set(codes) <= {"E09000008"} and set(names) <= {"croydon"}


def _harm_weights_frame(r: RunResult) -> pd.DataFrame:
    from priority_index.crime_groups import GROUP_LABELS
    from priority_index.harm import default_harm_weights

    packaged = default_harm_weights().set_index("crime_group")
    own = str(r.settings.harm.table or "")
    rows = []
    for group, days in r.inputs.harm_weights.items():
        group = str(group)
        same = group in packaged.index and abs(float(packaged.loc[group, "days"]) - days) < 1e-9
        if group == "asb":
            source = "configured (asb_weight): ASB has no CCHI"
        elif same:
            source = str(packaged.loc[group, "source"])
        else:
            source = f"partnership table {own}" if own else "configured"
        rows.append(
            {
                "crime_group": group,
                "label": GROUP_LABELS.get(group, group),
                "days": float(days),
                "source": source,
            }
        )
    return pd.DataFrame(rows, columns=["crime_group", "label", "days", "source"])


def build_report_data(
    r: RunResult, lsoa_index: gpd.GeoDataFrame, neighbourhoods: gpd.GeoDataFrame
) -> ReportData:
    """Gather a pipeline run's tables into a :class:`ReportData`.

    Parameters
    ----------
    r : priority_index.pipeline.RunResult
        The run.
    lsoa_index : geopandas.GeoDataFrame
        The ``lsoa_index`` layer written to the GeoPackage (``lsoa_code`` column).
    neighbourhoods : geopandas.GeoDataFrame
        The ``priority_neighbourhoods`` layer (``neighbourhood_id`` column).

    Returns
    -------
    ReportData
        Plain tables and text. ``timings`` and ``outputs`` are left empty: wall-clock times
        differ from run to run (the report of the same inputs stays byte-identical) and the
        report is written before the files are listed; both are in the run's manifest.
    """
    from priority_index.indicators import indicator_spec
    from priority_index.sources.quarantine import REASONS

    s = r.settings
    study = r.inputs.study
    names = [p.name for p in s.periods]
    periods_text = "; ".join(f"{p.name} ({p.start} to {p.end})" for p in s.periods)
    described = s.pipeline.description.strip().rstrip(".") or f"{len(study):,} LSOAs"
    subtitle = f"{described}. Periods: {periods_text}; the index uses {names[-1]}."

    lorenz: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ind = r.index.indicators
    lorenz.update(
        _curves(
            pd.DataFrame(
                {"harm": ind.get("harm_total", 0.0), "count": ind.get("crime_count", 0.0)}
            ),
            "LSOA",
        )
    )
    point_groups: list[str] = []
    try:
        from priority_index import micro
        from priority_index import pipeline as _pipeline
        from priority_index.crime_groups import GROUP_LABELS

        pts = _pipeline.current_points(s, r.inputs)
        pts = pts[pts["crime_group"] != "asb"]
        if len(pts):
            point_groups = [
                GROUP_LABELS.get(str(g), str(g)) for g in sorted(pts["crime_group"].unique())
            ]
            size = s.micro.cell_size_m
            cells = micro.cell_totals(pts, cell_size=size)
            study_cells = getattr(_pipeline, "study_cells", None)
            if study_cells is not None:  # every cell of the study area, as the table counts
                every = study_cells(r.inputs.study, size).union(cells.index.astype(str))
                cells = cells.reindex(every, fill_value=0)
            curves = _curves(
                pd.DataFrame({"harm": cells["harm"], "count": cells["n_records"]}),
                f"{size:g} m cell",
            )
            if len(point_groups) == 1:  # harm = count x one weight: one curve says it all
                curves.pop(f"{size:g} m cell harm", None)
            lorenz.update(curves)
    except (ImportError, AttributeError, KeyError, ValueError):
        pass

    young = _young_bands(r)
    weights = []
    for key, w in r.index.result.effective_weights.items():
        try:
            label = indicator_spec(str(key)).label
        except (KeyError, ValueError):
            label = str(key)
        if str(key) == "young_share" and young:
            label = f"{label} ({', '.join(young)})"
        weights.append({"indicator": str(key), "effective_weight": float(w), "label": label})
    weights_frame = pd.DataFrame(weights, columns=["indicator", "effective_weight", "label"])

    quality = pd.DataFrame([t.as_dict() for t in r.inputs.quarantine.tallies.values()])
    notes = list(r.inputs.notes)
    if getattr(r.hotspots, "density_note", ""):
        notes.append(r.hotspots.density_note)

    return ReportData(
        title=s.pipeline.title or s.pipeline.name,
        subtitle=subtitle,
        generated_note=_generated_note(r),
        lsoa_index=lsoa_index,
        neighbourhoods=neighbourhoods,
        harm_table=r.harm_table,
        periods=names,
        concentration=r.concentration,
        lorenz=lorenz,
        quality=quality,
        reasons=dict(REASONS),
        sensitivity=r.index.sensitivity,
        controls=r.selection.controls,
        trial=r.selection.trial,
        face_validity=getattr(r, "face_validity", None),
        weights=weights_frame,
        method_text=_method_paragraphs(r),
        selection_rule=r.selection.rule,
        config_toml=s.toml_text,
        timings={},  # wall-clock times differ run to run: they live in the manifest
        notes=notes,
        harm_weights=_harm_weights_frame(r),
        harm_weights_file=str(s.harm.table or ""),
        study_area_is_croydon=_is_croydon(r),
        study_area_name=_study_area_name(r),
        point_groups=point_groups,
        hotspot_method=_hotspot_method(r),
        control_trend_unit=(
            f"mean change per LSOA in harm days (CCHI), from {names[-2]} to {names[-1]}"
            if len(names) >= 2
            else ""
        ),
    )


def _hotspot_method(r: RunResult) -> dict[str, Any]:
    from priority_index.indicators import indicator_spec

    hs = r.settings.hotspots
    first = next(iter(r.hotspots.gi), None)
    label = ""
    if first is not None:
        try:
            label = indicator_spec(str(first)).label.lower()
        except KeyError:
            label = str(first)
    return {
        "indicator": label,
        "weights": hs.weights,
        "permutations": max(int(hs.permutations), 1),
        "fdr": bool(hs.fdr),
        "alpha": float(hs.alpha),
    }
