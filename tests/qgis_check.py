"""Open a GeoPackage with QGIS itself, report what a user would see, render it to a PNG.

Run with the system Python that has Debian's ``python3-qgis`` (QGIS 3.22), not the project venv;
this script imports nothing from the project or the venv::

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis_check.py FILE.gpkg OUT.png \
        [--combined bottom_layer,...,top_layer]

It prints one JSON document on the last line of stdout:

``sublayers``
    The layers QGIS offers when the file is dropped on the map (name, geometry type).
``layers``
    Per layer: valid, feature count, CRS, geometry type, renderer type and classes, labels,
    whether a default style from the GeoPackage was applied (``style_from_db``: QGIS loads one
    from ``layer_styles`` and the layer as opened carries exactly that style), the renderer the
    layer has without it (``plain_renderer``), field aliases, metadata abstract and history.
``messages``
    Everything QGIS and GDAL logged while opening and rendering (e.g. GDAL's "may only be
    partially supported" warning on GeoPackage versions newer than it knows).
``png``
    The rendered image: one tile per spatial layer plus, last, all layers of ``--combined``
    (default: every spatial layer, outline-only ones on top), each with its name.

The exit status is 0 when every layer opened as a valid layer, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from osgeo import gdal  # noqa: E402  (GDAL of the QGIS install, not the venv's)
from qgis.core import (  # noqa: E402
    Qgis,
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsGraduatedSymbolRenderer,
    QgsMapLayerStyle,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsProviderRegistry,
    QgsRectangle,
    QgsRuleBasedRenderer,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QRectF, QSize, Qt  # noqa: E402
from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter  # noqa: E402

TILE = 420
CAPTION = 26
MESSAGES: list[dict[str, object]] = []


def _on_qgis_message(message: str, tag: str, level: object) -> None:
    MESSAGES.append({"source": "qgis", "tag": tag, "level": int(level), "message": message})


def _on_gdal_error(err_class: int, err_no: int, message: str) -> None:
    MESSAGES.append({"source": "gdal", "tag": str(err_no), "level": err_class, "message": message})


def _symbol_layers(symbol) -> list[dict[str, object]]:
    out = []
    if symbol is None:
        return out
    for sl in symbol.symbolLayers():
        info: dict[str, object] = {"class": sl.layerType()}
        if sl.layerType() == "SimpleFill":
            info.update(
                fill=sl.color().name(QColor.HexArgb),
                no_fill=sl.brushStyle() == Qt.NoBrush,
                outline=sl.strokeColor().name(QColor.HexArgb),
                outline_style=int(sl.strokeStyle()),
                dashed=sl.strokeStyle() in (Qt.DashLine, Qt.DashDotLine, Qt.DashDotDotLine),
                outline_width=sl.strokeWidth(),
            )
        out.append(info)
    return out


def _renderer_info(renderer) -> dict[str, object]:
    if renderer is None:
        return {"type": None}
    info: dict[str, object] = {"type": renderer.type()}
    if isinstance(renderer, QgsGraduatedSymbolRenderer):
        info["field"] = renderer.classAttribute()
        info["classes"] = [
            {
                "lower": r.lowerValue(),
                "upper": r.upperValue(),
                "label": r.label(),
                "color": r.symbol().color().name(),
            }
            for r in renderer.ranges()
        ]
    elif isinstance(renderer, QgsCategorizedSymbolRenderer):
        info["field"] = renderer.classAttribute()
        info["classes"] = [
            {"value": c.value(), "label": c.label(), "color": c.symbol().color().name()}
            for c in renderer.categories()
        ]
    elif isinstance(renderer, QgsRuleBasedRenderer):
        rules = []

        def walk(rule, depth: int) -> None:
            for child in rule.children():
                rules.append(
                    {
                        "depth": depth,
                        "label": child.label(),
                        "filter": child.filterExpression(),
                        "active": child.active(),
                        "color": child.symbol().color().name() if child.symbol() else None,
                    }
                )
                walk(child, depth + 1)

        walk(renderer.rootRule(), 0)
        info["classes"] = rules
    elif isinstance(renderer, QgsSingleSymbolRenderer):
        info["symbol_layers"] = _symbol_layers(renderer.symbol())
    return info


def _style_xml(layer: QgsVectorLayer) -> str:
    style = QgsMapLayerStyle()
    style.readFromLayer(layer)
    return style.xmlData()


def _is_outline_only(layer: QgsVectorLayer) -> bool:
    renderer = layer.renderer()
    if not isinstance(renderer, QgsSingleSymbolRenderer):
        return False
    layers = _symbol_layers(renderer.symbol())
    return bool(layers) and all(sl.get("no_fill") for sl in layers)


def _render(layers: list[QgsVectorLayer], extent: QgsRectangle) -> QImage:
    settings = QgsMapSettings()
    settings.setLayers(list(reversed(layers)))  # QgsMapSettings: index 0 is drawn on top
    settings.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:27700"))
    settings.setOutputSize(QSize(TILE, TILE))
    settings.setExtent(extent)
    settings.setBackgroundColor(QColor("white"))
    settings.setFlag(QgsMapSettings.Antialiasing, True)
    settings.setFlag(QgsMapSettings.DrawLabeling, True)
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def _compose(tiles: list[tuple[str, QImage]], path: str) -> None:
    cols = min(3, len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    sheet = QImage(cols * TILE, rows * (TILE + CAPTION), QImage.Format_ARGB32)
    sheet.fill(QColor("white"))
    painter = QPainter(sheet)
    font = QFont("DejaVu Sans")
    font.setPixelSize(15)
    painter.setFont(font)
    for i, (title, img) in enumerate(tiles):
        x, y = (i % cols) * TILE, (i // cols) * (TILE + CAPTION)
        painter.setPen(QColor("black"))
        painter.drawText(QRectF(x + 6, y, TILE - 12, CAPTION), Qt.AlignVCenter, title)
        painter.drawImage(x, y + CAPTION, img)
        painter.setPen(QColor(180, 180, 180))
        painter.drawRect(x, y + CAPTION, TILE - 1, TILE - 1)
    painter.end()
    sheet.save(path, "PNG")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gpkg")
    parser.add_argument("png")
    parser.add_argument("--combined", default=None, help="comma-separated layers, bottom first")
    args = parser.parse_args(argv)
    path = os.path.abspath(args.gpkg)

    app = QgsApplication([], False)
    app.initQgis()
    QgsApplication.messageLog().messageReceived.connect(_on_qgis_message)
    gdal.PushErrorHandler(_on_gdal_error)

    sublayers = [
        {"name": d.name(), "geometry": QgsWkbTypes.displayString(d.wkbType())}
        for d in QgsProviderRegistry.instance().querySublayers(path)
    ]

    report: dict[str, object] = {
        "qgis_version": Qgis.QGIS_VERSION,
        "gdal_version": gdal.__version__,
        "sublayers": sublayers,
    }

    layers: dict[str, QgsVectorLayer] = {}
    infos: dict[str, dict[str, object]] = {}
    all_ok = bool(sublayers)
    for sub in sublayers:
        name = str(sub["name"])
        uri = f"{path}|layername={name}"
        layer = QgsVectorLayer(uri, name, "ogr")
        options = QgsVectorLayer.LayerOptions(False, False)  # no default style
        plain = QgsVectorLayer(uri, name, "ogr", options)
        probe = QgsVectorLayer(uri, name, "ogr", options)
        # ("Loaded from Provider", True) when the GeoPackage's layer_styles has a default style
        load_message, loaded = probe.loadDefaultStyle()
        info: dict[str, object] = {"valid": layer.isValid()}
        if not layer.isValid():
            all_ok = False
            infos[name] = info
            continue
        n_related, _ids, style_names, _desc, _err = layer.listStylesInDatabase()
        fields = layer.fields()
        info.update(
            feature_count=layer.featureCount(),
            crs=layer.crs().authid(),
            spatial=layer.isSpatial(),
            geometry=QgsWkbTypes.displayString(layer.wkbType()),
            renderer=_renderer_info(layer.renderer()),
            plain_renderer=plain.renderer().type() if plain.renderer() else None,
            styles_in_database=list(style_names)[:n_related],
            default_style_message=load_message,
            # the layer as QGIS opened it carries exactly the style stored in the file
            style_from_db=bool(loaded) and _style_xml(layer) == _style_xml(probe),
            labels_enabled=layer.labelsEnabled(),
            label_field=(
                layer.labeling().settings().fieldName
                if layer.labelsEnabled() and layer.labeling() is not None
                else None
            ),
            fields=[f.name() for f in fields],
            aliases={
                f.name(): layer.attributeAlias(i)
                for i, f in enumerate(fields)
                if layer.attributeAlias(i)
            },
            display_expression=layer.displayExpression(),
            abstract=layer.metadata().abstract(),
            history=list(layer.metadata().history()),
        )
        if layer.isSpatial():
            ext = layer.extent()
            info["extent"] = [ext.xMinimum(), ext.yMinimum(), ext.xMaximum(), ext.yMaximum()]
            layers[name] = layer
        infos[name] = info
    report["layers"] = infos

    tiles: list[tuple[str, QImage]] = []
    if layers:
        extent = QgsRectangle()
        extent.setMinimal()
        for layer in layers.values():
            extent.combineExtentWith(layer.extent())
        extent.grow(max(extent.width(), extent.height()) * 0.05)
        for name, layer in layers.items():
            tiles.append((f"{name} ({infos[name]['renderer']['type']})", _render([layer], extent)))
        if args.combined:
            order = [n for n in args.combined.split(",") if n in layers]
        else:
            order = [n for n in layers if not _is_outline_only(layers[n])]
            order += [n for n in layers if _is_outline_only(layers[n])]
        tiles.append(("all: " + ", ".join(order), _render([layers[n] for n in order], extent)))
        _compose(tiles, args.png)
        report["png"] = {"path": os.path.abspath(args.png), "tiles": [t for t, _ in tiles]}
    report["messages"] = MESSAGES
    report["ok"] = all_ok

    gdal.PopErrorHandler()
    sys.stdout.flush()
    print(json.dumps(report, default=str))
    sys.stdout.flush()
    # QgsApplication.exitQgis() can crash on teardown in offscreen mode; the report is out.
    os._exit(0 if all_ok else 1)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
