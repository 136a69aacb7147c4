"""QGIS layer styles (QML) for the layers of the priority-index GeoPackage.

Every function here is pure: it takes plain values (field names, class breaks, colours, and for
:func:`default_styles` the layers themselves) and returns the text of a QGIS ``.qml`` style. Nothing
is read from or written to disk; :mod:`priority_index.exports.geopackage` stores the strings in the
GeoPackage's ``layer_styles`` table, where QGIS finds them as each layer's default style.

The QML follows what QGIS 3.22 LTR writes (the oldest QGIS the partnership's analysts run) and is
read unchanged by later releases. Polygon layers get cartographic styles (fill symbols), and
so does ``micro_hotspots`` when its micro-places are street segments (line symbols). The
cartography:

* ``lsoa_index``: graduated by ``decile``, 10 classes from dark red (decile 1, highest priority)
  to pale;
* ``hotspots_gi`` and any Gi* layer: ``gi_bin`` in the seven ArcGIS classes, red (hot spot, 99 %
  confidence) through pale yellow (not significant) to blue (cold spot, 99 % confidence). A layer
  holding several indicators gets one group of classes per indicator, only one switched on;
* ``priority_neighbourhoods``: thick dark outlines with a white halo, no fill, labelled by name;
* ``micro_hotspots``: graduated by harm (quantile classes of the data), pink to dark purple:
  filled squares for grid cells; for street segments, lines over a white casing that also grow
  wider with harm;
* ``control_areas``: dashed blue outlines; ``lsoa_boundaries``: thin grey outlines;
  ``ward_boundaries`` and other polygon layers: dark grey outlines;
* attribute tables (no geometry): no symbology, only field aliases and a display expression.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence

import geopandas as gpd
import numpy as np
import pandas as pd

from priority_index.crime_groups import GROUP_LABELS

__all__ = [
    "CONTROL_AREA_COLOR",
    "DECILE_COLORS",
    "GI_BIN_CLASSES",
    "HARM_COLORS",
    "HARM_LINE_WIDTHS",
    "NEIGHBOURHOOD_COLOR",
    "QGIS_VERSION",
    "attribute_table_qml",
    "control_areas_qml",
    "decile_qml",
    "default_styles",
    "gi_bins_qml",
    "graduated_line_qml",
    "graduated_qml",
    "lsoa_boundaries_qml",
    "micro_hotspots_qml",
    "neighbourhood_outline_qml",
    "outline_qml",
    "quantile_breaks",
    "renderer_type",
    "with_field_aliases",
]

#: QGIS version written into each style: the 3.22 LTR release the styles were checked with.
QGIS_VERSION = "3.22.16-Białowieża"

_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"
_UNIT_SCALE = "3x:0,0,0,0,0,0"
# QgsWkbTypes geometry types, checked by QGIS against the layer's geometry type on loading.
_LINE = 1
_POLYGON = 2

Color = tuple[int, int, int] | tuple[int, int, int, int]


def _hex(value: str) -> tuple[int, int, int]:
    value = value.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def _interpolate(stops: Sequence[tuple[int, int, int]], n: int) -> tuple[tuple[int, int, int], ...]:
    """``n`` colours evenly spaced along the piecewise-linear ramp through ``stops``."""
    stops_arr = np.asarray(stops, dtype=float)
    positions = np.linspace(0.0, 1.0, len(stops))
    wanted = np.linspace(0.0, 1.0, n)
    channels = [np.interp(wanted, positions, stops_arr[:, c]) for c in range(3)]
    return tuple(
        (int(round(r)), int(round(g)), int(round(b))) for r, g, b in zip(*channels, strict=True)
    )


# ColorBrewer "Reds" (9 classes), darkest first, stretched to 10 classes.
_REDS = tuple(
    _hex(c)
    for c in (
        "#67000d",
        "#a50f15",
        "#cb181d",
        "#ef3b2c",
        "#fb6a4a",
        "#fc9272",
        "#fcbba1",
        "#fee0d2",
        "#fff5f0",
    )
)

#: Fill colours of deciles 1..10: dark red (decile 1, highest priority) to pale.
DECILE_COLORS: tuple[tuple[int, int, int], ...] = _interpolate(_REDS, 10)

#: ``(gi_bin value, legend label, fill colour)`` in legend order, the ArcGIS Hot Spot Analysis
#: classes and colours.
GI_BIN_CLASSES: tuple[tuple[int, str, tuple[int, int, int]], ...] = (
    (3, "Hot spot - 99% confidence", (214, 47, 39)),
    (2, "Hot spot - 95% confidence", (237, 117, 81)),
    (1, "Hot spot - 90% confidence", (250, 185, 132)),
    (0, "Not significant", (255, 255, 191)),
    (-1, "Cold spot - 90% confidence", (192, 204, 190)),
    (-2, "Cold spot - 95% confidence", (132, 158, 186)),
    (-3, "Cold spot - 99% confidence", (69, 117, 181)),
)
_NO_DATA_COLOR = (204, 204, 204)

#: ColorBrewer "RdPu" (5 classes), palest first: harm of micro-hotspot cells.
HARM_COLORS: tuple[tuple[int, int, int], ...] = tuple(
    _hex(c) for c in ("#feebe2", "#fbb4b9", "#f768a1", "#c51b8a", "#7a0177")
)

#: Line widths (mm) of the harm classes of street-segment micro-places, thinnest first.
HARM_LINE_WIDTHS: tuple[float, ...] = (0.8, 1.2, 1.7, 2.3, 3.0)

#: Outline colour of priority neighbourhoods (near black, drawn over a white halo).
NEIGHBOURHOOD_COLOR: tuple[int, int, int] = (20, 20, 20)
#: Dashed outline colour of control areas.
CONTROL_AREA_COLOR: tuple[int, int, int] = (33, 102, 172)
_BOUNDARY_COLOR = (128, 128, 128)
_WARD_COLOR = (80, 80, 80)
_FILL_OUTLINE = (110, 110, 110, 150)


# --------------------------------------------------------------------------------------------
# XML building blocks
# --------------------------------------------------------------------------------------------


def _rgba(color: Color) -> str:
    if len(color) not in (3, 4) or not all(isinstance(c, int | np.integer) for c in color):
        raise ValueError(f"colour must be 3 or 4 integers 0-255, got {color!r}")
    values = tuple(int(c) for c in color) + ((255,) if len(color) == 3 else ())
    if not all(0 <= c <= 255 for c in values):
        raise ValueError(f"colour components must lie in 0-255, got {color!r}")
    return ",".join(str(c) for c in values)


def _number(value: float) -> str:
    """Shortest text that reads back as the same float (deterministic)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"class break must be finite, got {value!r}")
    return repr(value)


def _empty_properties(parent: ET.Element, tag: str = "data_defined_properties") -> None:
    ddp = ET.SubElement(parent, tag)
    opt = ET.SubElement(ddp, "Option", type="Map")
    ET.SubElement(opt, "Option", name="name", value="", type="QString")
    ET.SubElement(opt, "Option", name="properties")
    ET.SubElement(opt, "Option", name="type", value="collection", type="QString")


def _fill_layer(
    *,
    fill: Color | None,
    outline: Color,
    width_mm: float,
    outline_style: str = "solid",
) -> dict[str, str]:
    """Properties of one QGIS ``SimpleFill`` symbol layer (``fill=None``: outline only)."""
    return {
        "border_width_map_unit_scale": _UNIT_SCALE,
        "color": _rgba(fill if fill is not None else (0, 0, 0, 0)),
        "joinstyle": "round" if fill is None else "bevel",
        "offset": "0,0",
        "offset_map_unit_scale": _UNIT_SCALE,
        "offset_unit": "MM",
        "outline_color": _rgba(outline),
        "outline_style": outline_style,
        "outline_width": _number(width_mm),
        "outline_width_unit": "MM",
        "style": "solid" if fill is not None else "no",
    }


def _line_layer(*, color: Color, width_mm: float) -> dict[str, str]:
    """Properties of one QGIS ``SimpleLine`` symbol layer (solid, round caps and joins)."""
    return {
        "align_dash_pattern": "0",
        "capstyle": "round",
        "customdash": "5;2",
        "customdash_map_unit_scale": _UNIT_SCALE,
        "customdash_unit": "MM",
        "dash_pattern_offset": "0",
        "dash_pattern_offset_map_unit_scale": _UNIT_SCALE,
        "dash_pattern_offset_unit": "MM",
        "draw_inside_polygon": "0",
        "joinstyle": "round",
        "line_color": _rgba(color),
        "line_style": "solid",
        "line_width": _number(width_mm),
        "line_width_unit": "MM",
        "offset": "0",
        "offset_map_unit_scale": _UNIT_SCALE,
        "offset_unit": "MM",
        "ring_filter": "0",
        "tweak_dash_pattern_on_corners": "0",
        "use_custom_dash": "0",
        "width_map_unit_scale": _UNIT_SCALE,
    }


_SYMBOL_LAYER_CLASS = {"fill": "SimpleFill", "line": "SimpleLine"}


def _symbol(
    parent: ET.Element,
    name: str,
    layers: Sequence[Mapping[str, str]],
    *,
    kind: str = "fill",
    locked: Sequence[bool] | None = None,
) -> ET.Element:
    """A ``fill`` symbol of ``SimpleFill`` layers or a ``line`` symbol of ``SimpleLine`` layers
    (first = bottom). A locked layer keeps its colour when the symbol's colour is changed (and
    QGIS reports the symbol's colour from its first unlocked layer): right for a casing."""
    sym = ET.SubElement(
        parent,
        "symbol",
        name=name,
        type=kind,
        alpha="1",
        clip_to_extent="1",
        force_rhr="0",
    )
    _empty_properties(sym)
    flags = list(locked) if locked is not None else [False] * len(layers)
    for props, lock in zip(layers, flags, strict=True):
        lyr = ET.SubElement(
            sym,
            "layer",
            {"class": _SYMBOL_LAYER_CLASS[kind]},
            enabled="1",
            locked="1" if lock else "0",
        )
        lyr.set("pass", "0")
        opts = ET.SubElement(lyr, "Option", type="Map")
        for key, value in props.items():
            ET.SubElement(opts, "Option", name=key, value=value, type="QString")
        # QGIS before 3.16 reads the same properties from <prop> elements.
        for key, value in props.items():
            ET.SubElement(lyr, "prop", k=key, v=value)
        _empty_properties(lyr)
    return sym


def _root(*, labels: bool) -> ET.Element:
    return ET.Element(
        "qgis",
        version=QGIS_VERSION,
        styleCategories="AllStyleCategories",
        hasScaleBasedVisibilityFlag="0",
        minScale="100000000",
        maxScale="0",
        readOnly="0",
        simplifyAlgorithm="0",
        simplifyDrawingHints="1",
        simplifyDrawingTol="1",
        simplifyLocal="1",
        simplifyMaxScale="1",
        symbologyReferenceScale="-1",
        labelsEnabled="1" if labels else "0",
    )


def _renderer(root: ET.Element, kind: str, **attrs: str) -> ET.Element:
    return ET.SubElement(
        root,
        "renderer-v2",
        type=kind,
        **attrs,
        symbollevels="0",
        enableorderby="0",
        forceraster="0",
        referencescale="-1",
    )


def _finish(
    root: ET.Element,
    *,
    geometry_type: int | None = _POLYGON,
    display_expression: str | None = None,
) -> str:
    ET.SubElement(root, "blendMode").text = "0"
    ET.SubElement(root, "featureBlendMode").text = "0"
    ET.SubElement(root, "layerOpacity").text = "1"
    if display_expression is not None:
        ET.SubElement(root, "previewExpression").text = display_expression
    if geometry_type is not None:
        ET.SubElement(root, "layerGeometryType").text = str(geometry_type)
    return _serialise(root)


def _serialise(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return _DOCTYPE + "\n" + ET.tostring(root, encoding="unicode") + "\n"


def _labeling(
    root: ET.Element,
    field: str,
    *,
    size_pt: float,
    bold: bool,
    color: Color = NEIGHBOURHOOD_COLOR,
    show_all: bool = True,
) -> None:
    """Simple labels from ``field``: text with a white buffer, over the polygon's interior.

    ``show_all`` draws every label even where labels collide (right for a handful of priority
    neighbourhoods); otherwise QGIS drops colliding ones (right for many wards).
    """
    lab = ET.SubElement(root, "labeling", type="simple")
    settings = ET.SubElement(lab, "settings", calloutType="simple")
    style = ET.SubElement(
        settings,
        "text-style",
        fieldName=field,
        isExpression="0",
        fontFamily="Arial",
        namedStyle="Bold" if bold else "Regular",
        fontWeight="75" if bold else "50",
        fontItalic="0",
        fontSize=_number(size_pt),
        fontSizeUnit="Point",
        fontSizeMapUnitScale=_UNIT_SCALE,
        textColor=_rgba(color),
        textOpacity="1",
        blendMode="0",
        allowHtml="0",
        capitalization="0",
        fontKerning="1",
        fontLetterSpacing="0",
        fontWordSpacing="0",
        fontStrikeout="0",
        fontUnderline="0",
        multilineHeight="1",
        previewBkgrdColor="255,255,255,255",
        textOrientation="horizontal",
        useSubstitutions="0",
        legendString="Aa",
    )
    ET.SubElement(
        style,
        "text-buffer",
        bufferDraw="1",
        bufferSize="1",
        bufferSizeUnits="MM",
        bufferSizeMapUnitScale=_UNIT_SCALE,
        bufferColor="255,255,255,255",
        bufferOpacity="0.85",
        bufferNoFill="1",
        bufferJoinStyle="128",
        bufferBlendMode="0",
    )
    ET.SubElement(
        settings,
        "text-format",
        wrapChar="",
        autoWrapLength="0",
        useMaxLineLengthForAutoWrap="1",
        multilineAlign="3",
        formatNumbers="0",
        decimals="3",
        plussign="0",
        addDirectionSymbol="0",
        placeDirectionSymbol="0",
        reverseDirectionSymbol="0",
    )
    ET.SubElement(
        settings,
        "placement",
        placement="1",  # "offset from centroid" (QgsPalLayerSettings.OverPoint)
        centroidInside="1",
        centroidWhole="0",
        fitInPolygonOnly="0",
        polygonPlacementFlags="2",
        placementFlags="10",
        quadOffset="4",
        offsetType="0",
        xOffset="0",
        yOffset="0",
        dist="0",
        distUnits="MM",
        offsetUnits="MM",
        priority="10",
        rotationAngle="0",
        preserveRotation="1",
    )
    ET.SubElement(
        settings,
        "rendering",
        drawLabels="1",
        displayAll="1" if show_all else "0",
        obstacle="1",
        obstacleFactor="1",
        obstacleType="1",
        upsidedownLabels="0",
        labelPerPart="0",
        mergeLines="0",
        minFeatureSize="0",
        limitNumLabels="0",
        maxNumLabels="2000",
        scaleVisibility="0",
        scaleMin="0",
        scaleMax="0",
        fontLimitPixelSize="0",
        fontMinPixelSize="0",
        fontMaxPixelSize="10000",
        zIndex="0",
        unplacedVisibility="0",
    )


# --------------------------------------------------------------------------------------------
# Generic builders
# --------------------------------------------------------------------------------------------


def _check_classes(
    breaks: Sequence[float], n_per_class: Mapping[str, Sequence[object]]
) -> list[float]:
    n = len(breaks) - 1
    if n < 1:
        raise ValueError("a graduated style needs at least two class limits")
    if any(len(v) != n for v in n_per_class.values()):
        got = ", ".join(f"{len(v)} {k}" for k, v in n_per_class.items())
        raise ValueError(f"{n} classes need {n} of each of {', '.join(n_per_class)}, got {got}")
    limits = [float(b) for b in breaks]
    if any(b > a for a, b in zip(limits[1:], limits[:-1], strict=True)):
        raise ValueError(f"class limits must be ascending, got {limits}")
    return limits


def _graduated(
    *,
    field: str,
    limits: Sequence[float],
    labels: Sequence[str],
    symbols: Sequence[Sequence[Mapping[str, str]]],
    kind: str,
    locked: Sequence[bool] | None,
    geometry_type: int,
    display_expression: str | None,
) -> str:
    """A ``graduatedSymbol`` renderer: class ``i`` from ``limits[i]`` to ``limits[i + 1]``."""
    root = _root(labels=False)
    rend = _renderer(root, "graduatedSymbol", attr=field, graduatedMethod="GraduatedColor")
    ranges = ET.SubElement(rend, "ranges")
    for i in range(len(limits) - 1):
        ET.SubElement(
            ranges,
            "range",
            lower=_number(limits[i]),
            upper=_number(limits[i + 1]),
            label=str(labels[i]),
            symbol=str(i),
            render="true",
        )
    parent = ET.SubElement(rend, "symbols")
    for i, layers in enumerate(symbols):
        _symbol(parent, str(i), layers, kind=kind, locked=locked)
    method = ET.SubElement(rend, "classificationMethod", id="Custom")
    ET.SubElement(method, "symmetricMode", enabled="0", symmetrypoint="0", astride="0")
    ET.SubElement(
        method, "labelFormat", format="%1 - %2", labelprecision="4", trimtrailingzeroes="1"
    )
    ET.SubElement(ET.SubElement(method, "parameters"), "Option")
    ET.SubElement(method, "extraInformation")
    ET.SubElement(rend, "rotation")
    ET.SubElement(rend, "sizescale")
    return _finish(root, geometry_type=geometry_type, display_expression=display_expression)


def graduated_qml(
    *,
    field: str,
    breaks: Sequence[float],
    colors: Sequence[Color],
    labels: Sequence[str],
    outline: Color = _FILL_OUTLINE,
    outline_width_mm: float = 0.1,
    display_expression: str | None = None,
) -> str:
    """Graduated polygon fills: class ``i`` covers ``breaks[i]`` to ``breaks[i + 1]``.

    Parameters
    ----------
    field : str
        Numeric field classified.
    breaks : sequence of float
        ``n + 1`` ascending class limits for ``n`` classes. QGIS puts a value equal to a limit in
        the lower class (the first class also holds its lower limit).
    colors : sequence of colour tuples
        ``n`` fill colours, ``(r, g, b)`` or ``(r, g, b, a)`` with integers 0-255.
    labels : sequence of str
        ``n`` legend labels.
    outline : colour tuple, optional
        Outline colour of every class.
    outline_width_mm : float, optional
        Outline width in millimetres.
    display_expression : str, optional
        QGIS expression naming a feature in identify results and tooltips.

    Returns
    -------
    str
        QML text of a ``graduatedSymbol`` renderer.
    """
    limits = _check_classes(breaks, {"colours": colors, "labels": labels})
    return _graduated(
        field=field,
        limits=limits,
        labels=labels,
        symbols=[
            [_fill_layer(fill=color, outline=outline, width_mm=outline_width_mm)]
            for color in colors
        ],
        kind="fill",
        locked=None,
        geometry_type=_POLYGON,
        display_expression=display_expression,
    )


def graduated_line_qml(
    *,
    field: str,
    breaks: Sequence[float],
    colors: Sequence[Color],
    widths_mm: Sequence[float],
    labels: Sequence[str],
    casing: Color | None = (255, 255, 255, 230),
    casing_extra_mm: float = 0.8,
    display_expression: str | None = None,
) -> str:
    """Graduated lines: class ``i`` (``breaks[i]`` to ``breaks[i + 1]``) drawn in ``colors[i]``
    at ``widths_mm[i]``, for a line layer.

    Parameters
    ----------
    field : str
        Numeric field classified.
    breaks : sequence of float
        ``n + 1`` ascending class limits for ``n`` classes (as :func:`graduated_qml`).
    colors : sequence of colour tuples
        ``n`` line colours.
    widths_mm : sequence of float
        ``n`` line widths in millimetres.
    labels : sequence of str
        ``n`` legend labels.
    casing : colour tuple or None, optional
        Colour of a wider line drawn underneath each class (locked, so it keeps its colour), so
        the line reads over any fill or basemap; ``None``: no casing.
    casing_extra_mm : float, optional
        How much wider than the class line the casing is, in millimetres.
    display_expression : str, optional
        QGIS expression naming a feature in identify results and tooltips.

    Returns
    -------
    str
        QML text of a ``graduatedSymbol`` renderer with ``line`` symbols.
    """
    limits = _check_classes(breaks, {"colours": colors, "widths": widths_mm, "labels": labels})
    if any(not (math.isfinite(float(w)) and float(w) > 0) for w in widths_mm):
        raise ValueError(f"line widths must be positive, got {list(widths_mm)}")
    symbols = []
    for color, width in zip(colors, widths_mm, strict=True):
        layers = [_line_layer(color=color, width_mm=float(width))]
        if casing is not None:
            layers.insert(0, _line_layer(color=casing, width_mm=float(width) + casing_extra_mm))
        symbols.append(layers)
    return _graduated(
        field=field,
        limits=limits,
        labels=labels,
        symbols=symbols,
        kind="line",
        locked=[True, False] if casing is not None else None,
        geometry_type=_LINE,
        display_expression=display_expression,
    )


def outline_qml(
    *,
    color: Color,
    width_mm: float,
    dashed: bool = False,
    halo: bool = False,
    label_field: str | None = None,
    label_size_pt: float = 10.0,
    label_bold: bool = True,
    label_color: Color = NEIGHBOURHOOD_COLOR,
    label_all: bool = True,
    display_expression: str | None = None,
) -> str:
    """Polygons drawn as outlines only (no fill), optionally labelled.

    Parameters
    ----------
    color : colour tuple
        Outline colour.
    width_mm : float
        Outline width in millimetres.
    dashed : bool, optional
        Dashed instead of solid outline.
    halo : bool, optional
        Draw a white outline twice as wide underneath, so the line reads on any fill.
    label_field : str, optional
        Field whose value labels each polygon (bold, with a white buffer).
    label_size_pt : float, optional
        Label size in points.
    label_bold : bool, optional
        Bold labels.
    label_color : colour tuple, optional
        Label text colour.
    label_all : bool, optional
        Draw every label even where labels collide (otherwise QGIS drops colliding ones).
    display_expression : str, optional
        QGIS expression naming a feature in identify results and tooltips.

    Returns
    -------
    str
        QML text of a ``singleSymbol`` renderer.
    """
    layers = []
    if halo:
        layers.append(_fill_layer(fill=None, outline=(255, 255, 255, 220), width_mm=2 * width_mm))
    layers.append(
        _fill_layer(
            fill=None, outline=color, width_mm=width_mm, outline_style="dash" if dashed else "solid"
        )
    )
    root = _root(labels=label_field is not None)
    rend = _renderer(root, "singleSymbol")
    _symbol(ET.SubElement(rend, "symbols"), "0", layers)
    ET.SubElement(rend, "rotation")
    ET.SubElement(rend, "sizescale")
    if label_field is not None:
        _labeling(
            root,
            label_field,
            size_pt=label_size_pt,
            bold=label_bold,
            color=label_color,
            show_all=label_all,
        )
    return _finish(root, display_expression=display_expression)


def attribute_table_qml(*, display_expression: str | None = None) -> str:
    """A style for a table without geometry: no symbology, only the display expression.

    Field aliases are added by :func:`with_field_aliases`.

    Parameters
    ----------
    display_expression : str, optional
        QGIS expression naming a row (shown in the attribute form and relation widgets).

    Returns
    -------
    str
        QML text with no renderer.
    """
    return _finish(_root(labels=False), geometry_type=None, display_expression=display_expression)


# --------------------------------------------------------------------------------------------
# The project's layers
# --------------------------------------------------------------------------------------------


def decile_qml(*, field: str = "decile", display_expression: str | None = None) -> str:
    """The index map: 10 graduated classes of ``decile``, dark red (1) to pale (10).

    Parameters
    ----------
    field : str, optional
        Integer decile field, 1 = top 10 % (highest priority) ... 10 = lowest.
    display_expression : str, optional
        QGIS expression naming a feature in identify results and tooltips.

    Returns
    -------
    str
        QML text of a ``graduatedSymbol`` renderer with classes 0.5-1.5, ..., 9.5-10.5.
    """
    labels = []
    for k in range(1, 11):
        label = f"Decile {k} ({10 * (k - 1)}-{10 * k}%)"
        if k == 1:
            label += " - highest priority"
        elif k == 10:
            label += " - lowest priority"
        labels.append(label)
    return graduated_qml(
        field=field,
        breaks=[k + 0.5 for k in range(11)],
        colors=DECILE_COLORS,
        labels=labels,
        display_expression=display_expression,
    )


def _quote_field(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def gi_bins_qml(
    *,
    field: str = "gi_bin",
    indicator_field: str = "indicator",
    indicators: Sequence[str] | None = None,
    active_indicator: str | None = None,
    indicator_labels: Mapping[str, str] | None = None,
    display_expression: str | None = None,
) -> str:
    """Getis-Ord Gi* confidence bins in the ArcGIS classes and colours.

    With ``indicators=None`` the style is a ``categorizedSymbol`` renderer on ``field`` (values
    3 .. -3, plus a grey "No data" class for anything else, e.g. LSOAs without neighbours). When a
    layer stacks one polygon per LSOA *per indicator*, pass the indicators: the style becomes a
    ``RuleRenderer`` with one group of the same classes per indicator, of which only
    ``active_indicator`` is switched on (each group has a check box in the QGIS layers panel), so
    the map never shows several indicators on top of each other.

    Parameters
    ----------
    field : str, optional
        Integer bin field: +3/+2/+1 hot spot at 99/95/90 % confidence, 0 not significant,
        -1/-2/-3 cold spot.
    indicator_field : str, optional
        Field naming the indicator of each row (used with ``indicators``).
    indicators : sequence of str, optional
        Indicators present in the layer, in legend order.
    active_indicator : str, optional
        The indicator shown when the layer is opened; default the first.
    indicator_labels : mapping, optional
        Legend titles of the indicator groups; default the indicator names.
    display_expression : str, optional
        QGIS expression naming a feature in identify results and tooltips.

    Returns
    -------
    str
        QML text.
    """
    if indicators is None:
        root = _root(labels=False)
        rend = _renderer(root, "categorizedSymbol", attr=field)
        cats = ET.SubElement(rend, "categories")
        symbols = ET.SubElement(rend, "symbols")
        classes = [(str(v), label, color) for v, label, color in GI_BIN_CLASSES]
        classes.append(("", "No data", _NO_DATA_COLOR))  # "" = all other values, NULL included
        for i, (value, label, color) in enumerate(classes):
            ET.SubElement(cats, "category", value=value, label=label, symbol=str(i), render="true")
            _symbol(symbols, str(i), [_fill_layer(fill=color, outline=_FILL_OUTLINE, width_mm=0.1)])
        ET.SubElement(rend, "rotation")
        ET.SubElement(rend, "sizescale")
        return _finish(root, display_expression=display_expression)

    names = [str(i) for i in indicators]
    if not names:
        raise ValueError("indicators must not be empty")
    if len(set(names)) != len(names):
        raise ValueError(f"indicators must be unique, got {names}")
    active = names[0] if active_indicator is None else str(active_indicator)
    if active not in names:
        raise ValueError(f"active_indicator {active!r} is not one of {names}")
    titles = dict(indicator_labels or {})
    root = _root(labels=False)
    rend = _renderer(root, "RuleRenderer")
    rules = ET.SubElement(rend, "rules", key="gi-root")
    symbols = ET.SubElement(rend, "symbols")
    n_symbol = 0
    for i, name in enumerate(names):
        group = ET.SubElement(
            rules,
            "rule",
            key=f"gi-{i}",
            label=f"Gi* hot spots: {titles.get(name, name)}",
            filter=f"{_quote_field(indicator_field)} = {_quote_literal(name)}",
        )
        if name != active:
            group.set("checkstate", "0")
        classes = [
            (f"{_quote_field(field)} = {value}", label, color)
            for value, label, color in GI_BIN_CLASSES
        ]
        classes.append(("ELSE", "No data", _NO_DATA_COLOR))
        for j, (expr, label, color) in enumerate(classes):
            ET.SubElement(
                group, "rule", key=f"gi-{i}-{j}", label=label, filter=expr, symbol=str(n_symbol)
            )
            _symbol(
                symbols,
                str(n_symbol),
                [_fill_layer(fill=color, outline=_FILL_OUTLINE, width_mm=0.1)],
            )
            n_symbol += 1
    return _finish(root, display_expression=display_expression)


def neighbourhood_outline_qml(
    *, label_field: str = "name", display_expression: str | None = None
) -> str:
    """Priority neighbourhoods: thick near-black outline over a white halo, no fill, labelled.

    Parameters
    ----------
    label_field : str, optional
        Field labelling each neighbourhood.
    display_expression : str, optional
        QGIS expression naming a feature in identify results and tooltips.

    Returns
    -------
    str
        QML text of a ``singleSymbol`` renderer with labels enabled.
    """
    return outline_qml(
        color=NEIGHBOURHOOD_COLOR,
        width_mm=0.9,
        halo=True,
        label_field=label_field,
        label_size_pt=10.0,
        display_expression=display_expression,
    )


def control_areas_qml(*, display_expression: str | None = None) -> str:
    """Control (comparison) areas: dashed blue outlines, no fill.

    Parameters
    ----------
    display_expression : str, optional
        QGIS expression naming a feature in identify results and tooltips.

    Returns
    -------
    str
        QML text of a ``singleSymbol`` renderer.
    """
    return outline_qml(
        color=CONTROL_AREA_COLOR,
        width_mm=0.6,
        dashed=True,
        display_expression=display_expression,
    )


def lsoa_boundaries_qml(*, display_expression: str | None = None) -> str:
    """LSOA boundaries: thin grey outlines, no fill.

    Parameters
    ----------
    display_expression : str, optional
        QGIS expression naming a feature in identify results and tooltips.

    Returns
    -------
    str
        QML text of a ``singleSymbol`` renderer.
    """
    return outline_qml(color=_BOUNDARY_COLOR, width_mm=0.2, display_expression=display_expression)


def quantile_breaks(values: Iterable[float], *, n_classes: int = 5) -> list[float]:
    """Class limits at the quantiles of ``values``, duplicates removed.

    Parameters
    ----------
    values : iterable of float
        Data values; NaN and infinite values are ignored.
    n_classes : int, optional
        Wanted number of classes. Fewer come back when there are fewer distinct values, or
        when values tie at a quantile.

    Returns
    -------
    list of float
        Ascending limits, first = minimum, last = maximum; ``[v, v]`` when every value is ``v``
        and ``[0.0, 1.0]`` when there is no finite value.
    """
    if n_classes < 1:
        raise ValueError("n_classes must be at least 1")
    arr = np.asarray(list(values), dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return [0.0, 1.0]
    n_classes = min(n_classes, int(np.unique(arr).size))  # no more classes than values
    qs = np.quantile(arr, np.linspace(0.0, 1.0, n_classes + 1))
    limits = [float(q) for q in np.unique(qs)]
    if len(limits) == 1:
        limits = limits * 2
    return limits


def _format_limit(value: float, span: float) -> str:
    if span >= 100 or abs(value) >= 1000:
        return f"{value:,.0f}"
    if span >= 1:
        return f"{value:,.1f}"
    return f"{value:.3g}"


def _spread(n: int, size: int) -> list[int]:
    """``n`` indices spread over ``0 .. size - 1``, the last always ``size - 1``."""
    if n == 1:
        return [size - 1]
    return [int(i) for i in np.round(np.linspace(0, size - 1, n)).astype(int)]


def micro_hotspots_qml(
    *,
    breaks: Sequence[float],
    field: str = "harm",
    geometry: str = "polygon",
    display_expression: str | None = None,
) -> str:
    """Micro-places graduated by harm, pale pink to dark purple.

    Parameters
    ----------
    breaks : sequence of float
        Ascending class limits (2 to 6 of them), e.g. from :func:`quantile_breaks`.
    field : str, optional
        Numeric field classified (``harm``, or ``harm_share``).
    geometry : {"polygon", "line"}, optional
        ``"polygon"``: filled grid cells. ``"line"``: street segments, drawn over a white casing
        in the darker four colours of the ramp (the palest would vanish on a light map) and
        wider as harm grows (:data:`HARM_LINE_WIDTHS`, 0.8 to 3 mm).
    display_expression : str, optional
        QGIS expression naming a feature in identify results and tooltips.

    Returns
    -------
    str
        QML text of a ``graduatedSymbol`` renderer.
    """
    if geometry not in ("polygon", "line"):
        raise ValueError(f"geometry must be 'polygon' or 'line', got {geometry!r}")
    n = len(breaks) - 1
    if not 1 <= n <= len(HARM_COLORS):
        raise ValueError(f"micro_hotspots_qml takes 2 to {len(HARM_COLORS) + 1} class limits")
    span = float(breaks[-1]) - float(breaks[0])
    labels = [
        f"{_format_limit(float(lo), span)} - {_format_limit(float(hi), span)}"
        for lo, hi in zip(breaks[:-1], breaks[1:], strict=True)
    ]
    if geometry == "line":
        # Spread the classes over the ramp, so the top class is always the darkest and widest.
        ramp = HARM_COLORS[1:]
        return graduated_line_qml(
            field=field,
            breaks=breaks,
            colors=[ramp[i] for i in _spread(n, len(ramp))],
            widths_mm=[HARM_LINE_WIDTHS[i] for i in _spread(n, len(HARM_LINE_WIDTHS))],
            labels=labels,
            display_expression=display_expression,
        )
    return graduated_qml(
        field=field,
        breaks=breaks,
        colors=[HARM_COLORS[i] for i in _spread(n, len(HARM_COLORS))],
        labels=labels,
        outline=(122, 1, 119, 180),
        outline_width_mm=0.15,
        display_expression=display_expression,
    )


def with_field_aliases(qml: str, aliases: Mapping[str, str]) -> str:
    """Return ``qml`` with its ``<aliases>`` replaced by ``aliases`` (field name -> alias).

    QGIS 3.22 does not read field alternative names from a GeoPackage, but it does apply the
    aliases of a layer's default style: the attribute table and identify results then show
    readable names.

    Parameters
    ----------
    qml : str
        A QML document.
    aliases : mapping
        Field name -> alias, in field order.

    Returns
    -------
    str
        The QML document with the aliases.
    """
    body = qml.split("\n", 1)[1] if qml.startswith("<!DOCTYPE") else qml
    root = ET.fromstring(body)
    if root.tag != "qgis":
        raise ValueError(f"a QML document has a <qgis> root element, not <{root.tag}>")
    for old in root.findall("aliases"):
        root.remove(old)
    if aliases:
        elem = ET.Element("aliases")
        for field, alias in aliases.items():
            ET.SubElement(elem, "alias", field=str(field), name=str(alias))
        # QGIS does not mind the position; keep it before the trailing layer-level elements.
        position = next(
            (
                i
                for i, child in enumerate(root)
                if child.tag in ("previewExpression", "layerGeometryType")
            ),
            len(root),
        )
        root.insert(position, elem)
    return _serialise(root)


def renderer_type(qml: str) -> str | None:
    """The ``renderer-v2`` type of a QML document (``None`` when it has no renderer)."""
    body = qml.split("\n", 1)[1] if qml.startswith("<!DOCTYPE") else qml
    rend = ET.fromstring(body).find("renderer-v2")
    return None if rend is None else rend.get("type")


def _is_spatial(frame: pd.DataFrame) -> bool:
    return isinstance(frame, gpd.GeoDataFrame) and frame.active_geometry_name in frame.columns


def _expression_or_none(frame: pd.DataFrame, *fields: str) -> str | None:
    present = [f for f in fields if f in frame.columns]
    if not present:
        return None
    if len(present) == 1:
        return _quote_field(present[0])
    return " || ' ' || ".join(f"coalesce({_quote_field(f)}, '')" for f in present)


def _is_polygonal(frame: pd.DataFrame) -> bool:
    if not _is_spatial(frame):
        return False
    kinds = frame.geometry.geom_type.dropna()
    return len(kinds) > 0 and bool(kinds.isin(["Polygon", "MultiPolygon"]).all())


def _is_linear(frame: pd.DataFrame) -> bool:
    if not _is_spatial(frame):
        return False
    kinds = frame.geometry.geom_type.dropna()
    return len(kinds) > 0 and bool(kinds.isin(["LineString", "MultiLineString"]).all())


def _first_present(frame: pd.DataFrame, *fields: str) -> str | None:
    return next((f for f in fields if f in frame.columns), None)


def default_styles(layers: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """The project's default QML for each layer it knows, keyed by layer name.

    Polygon layers are recognised by name (and need the classified field): ``lsoa_index``,
    ``hotspots_gi``, ``priority_neighbourhoods``, ``micro_hotspots``, ``control_areas``,
    ``lsoa_boundaries``, ``ward_boundaries`` (dark grey outlines labelled by ward name). Any
    other polygon layer gets thin dark-grey outlines (rather than QGIS's random opaque fill,
    which would hide the layers under it); any other table without geometry gets
    :func:`attribute_table_qml`. ``micro_hotspots`` made of lines (street segments) gets the
    line form of :func:`micro_hotspots_qml`; other point and line layers get no style.

    Parameters
    ----------
    layers : mapping
        Layer name -> GeoDataFrame (or DataFrame for attribute tables), as handed to
        :func:`priority_index.exports.geopackage.write_geopackage`.

    Returns
    -------
    dict
        Layer name -> QML text.
    """
    styles: dict[str, str] = {}
    for name, frame in layers.items():
        cols = frame.columns
        if not _is_spatial(frame):
            styles[name] = attribute_table_qml()
        elif name == "micro_hotspots" and "harm" in cols and _is_linear(frame):
            styles[name] = micro_hotspots_qml(
                breaks=quantile_breaks(frame["harm"].to_numpy(dtype=float, na_value=np.nan)),
                geometry="line",
                display_expression=_expression_or_none(frame, "cell_id", "street"),
            )
        elif not _is_polygonal(frame):
            continue
        elif name == "lsoa_index" and "decile" in cols:
            styles[name] = decile_qml(
                display_expression=_expression_or_none(frame, "lsoa_code", "lsoa_name")
            )
        elif name == "hotspots_gi" and "gi_bin" in cols:
            display = _expression_or_none(frame, "lsoa_code", "indicator")
            if "indicator" in cols and frame["indicator"].nunique(dropna=True) > 1:
                names = [str(v) for v in pd.unique(frame["indicator"].dropna())]
                styles[name] = gi_bins_qml(
                    indicators=names,
                    active_indicator="score" if "score" in names else names[0],
                    indicator_labels={"score": "Priority score", **GROUP_LABELS},
                    display_expression=display,
                )
            else:
                styles[name] = gi_bins_qml(display_expression=display)
        elif name == "priority_neighbourhoods" and "name" in cols:
            styles[name] = neighbourhood_outline_qml(
                display_expression=_expression_or_none(frame, "name")
            )
        elif name == "micro_hotspots" and "harm" in cols:
            styles[name] = micro_hotspots_qml(
                breaks=quantile_breaks(frame["harm"].to_numpy(dtype=float, na_value=np.nan)),
                display_expression=_expression_or_none(frame, "cell_id"),
            )
        elif name == "control_areas":
            styles[name] = control_areas_qml(display_expression=_expression_or_none(frame, "name"))
        elif name == "lsoa_boundaries":
            styles[name] = lsoa_boundaries_qml(
                display_expression=_expression_or_none(frame, "lsoa_code", "lsoa_name")
            )
        elif name == "ward_boundaries":
            label = _first_present(frame, "ward_name", "name", "WD22NM", "WD23NM", "WD24NM")
            styles[name] = outline_qml(
                color=_WARD_COLOR,
                width_mm=0.4,
                label_field=label,
                label_size_pt=8.0,
                label_bold=False,
                label_color=_WARD_COLOR,
                label_all=False,
                display_expression=None if label is None else _quote_field(label),
            )
        else:
            styles[name] = outline_qml(color=_WARD_COLOR, width_mm=0.3)
    return styles
