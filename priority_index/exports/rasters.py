"""Cloud-Optimised GeoTIFF export of density surfaces, with a QGIS style beside each file.

Files are written to a temporary name in the destination folder and moved into place with
``os.replace``, so a reader never sees half a file, and they are byte-for-byte identical for the
same surface (no timestamps or host names in the tags), so re-running the pipeline does not
churn version control or caches. The ``<name>.qml`` written beside ``<name>.tif`` is loaded by
QGIS (3.22 or later) as the layer's default style: a single-band pseudocolour YlOrRd ramp from
transparent at zero to dark red at a high quantile of the surface.
"""

from __future__ import annotations

import math
import os
import secrets
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import rasterio
import rasterio.shutil

from priority_index.density import DensityGrid

__all__ = ["YLORRD", "qml_for_grid", "write_cog"]

#: ColorBrewer YlOrRd, 7 classes (light to dark).
YLORRD: tuple[str, ...] = (
    "#ffffb2",
    "#fed976",
    "#feb24c",
    "#fd8d3c",
    "#fc4e2a",
    "#e31a1c",
    "#b10026",
)


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name (not mkstemp, whose 0600 mode would survive the rename) in the same folder.
    tmp_path = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _overview_count(shape: tuple[int, int], min_overview_size: int) -> int:
    largest = max(shape)
    if largest <= min_overview_size:
        return 0
    return int(math.ceil(math.log2(largest / min_overview_size)))


def write_cog(
    grid: DensityGrid,
    path: Path | str,
    *,
    description: str,
    style: bool = True,
    nodata: float = -9999.0,
    compress: str = "DEFLATE",
    blocksize: int = 512,
    min_overview_size: int = 256,
    overview_resampling: str = "AVERAGE",
    style_quantile: float = 0.995,
) -> None:
    """Write a density surface as a Cloud-Optimised GeoTIFF (and a QGIS ``.qml`` style).

    Parameters
    ----------
    grid
        Surface to write; ``NaN`` cells become ``nodata``.
    path
        Destination ``.tif``; its folder is created if needed and an existing file replaced.
    description
        Band description and ``TIFFTAG_IMAGEDESCRIPTION`` (for example
        ``"Burglary density, quartic kernel, 400 m search radius"``).
    style
        Also write ``<path stem>.qml`` beside the raster (see :func:`qml_for_grid`).
    nodata
        Value stored for cells outside the study area.
    compress
        ``"DEFLATE"``, ``"ZSTD"`` or ``"LZW"`` (lossless, with the floating-point predictor).
    blocksize
        Tile side in pixels.
    min_overview_size
        Overviews halve the grid until its longer side is at most this many pixels.
    overview_resampling
        GDAL resampling used for the overviews (``"AVERAGE"`` keeps densities' means).
    style_quantile
        Quantile of the positive cells mapped to the darkest colour in the style.

    Returns
    -------
    None
    """
    if compress.upper() not in {"DEFLATE", "ZSTD", "LZW"}:
        raise ValueError(f"compress must be DEFLATE, ZSTD or LZW (lossless), not {compress!r}")
    path = Path(path)
    values = np.where(np.isfinite(grid.values), grid.values, nodata).astype(np.float32)
    rows, cols = values.shape
    tags = {
        "TIFFTAG_IMAGEDESCRIPTION": description,
        "units": grid.units,
        "kernel": grid.kernel,
        "bandwidth_m": f"{grid.bandwidth:g}",
        "cell_size_m": f"{grid.cell_size:g}",
    }
    options = {
        "COMPRESS": compress.upper(),
        "PREDICTOR": "YES",
        "BLOCKSIZE": str(int(blocksize)),
        "OVERVIEW_COUNT": str(_overview_count((rows, cols), min_overview_size)),
        "OVERVIEW_RESAMPLING": overview_resampling,
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "1",
    }

    def _write(tmp: Path) -> None:
        with rasterio.Env(GDAL_PAM_ENABLED="NO"):
            with rasterio.open(
                f"/vsimem/priority_index_{secrets.token_hex(8)}",
                "w",
                driver="MEM",
                width=cols,
                height=rows,
                count=1,
                dtype="float32",
                crs=grid.crs,
                transform=grid.transform,
                nodata=nodata,
            ) as src:
                src.write(values, 1)
                src.set_band_description(1, description)
                src.set_band_unit(1, grid.units)
                src.update_tags(**tags)
                src.update_tags(1, units=grid.units)
                rasterio.shutil.copy(src, str(tmp), driver="COG", **options)

    _atomic_write(path, _write)
    if style:
        qml = qml_for_grid(grid, quantile=style_quantile)
        _atomic_write(path.with_suffix(".qml"), lambda tmp: tmp.write_text(qml, encoding="utf-8"))


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _num(value: float) -> str:
    return f"{value:.6g}"


def qml_for_grid(
    grid: DensityGrid, *, quantile: float = 0.995, colours: tuple[str, ...] = YLORRD
) -> str:
    """QGIS layer style (QML) for a density surface: single-band pseudocolour, zero transparent.

    Parameters
    ----------
    grid
        Surface the style is for; its positive cells set the top of the ramp.
    quantile
        Quantile of the positive cells given the darkest colour (values above it keep that
        colour), so that one extreme cell does not wash out the rest of the map.
    colours
        Hex colours of the ramp, light to dark, evenly spaced from 0 to the top value.

    Returns
    -------
    str
        QML text for ``QgsMapLayer.loadNamedStyle`` (QGIS 3.22 or later).
    """
    vals = grid.values[np.isfinite(grid.values)]
    positive = vals[vals > 0]
    top = float(np.quantile(positive.astype(np.float64), quantile)) if positive.size else 1.0
    top = float(np.float32(top)) if top > 0 else 1.0
    n = len(colours)
    stops = [top * i / (n - 1) for i in range(n)]
    items = []
    for i, (value, colour) in enumerate(zip(stops, colours, strict=True)):
        alpha = 0 if i == 0 else 255
        label = _num(value)
        items.append(
            f'          <item alpha="{alpha}" value="{_num(value)}" label={quoteattr(label)}'
            f' color="{colour}"/>'
        )
    c1 = ",".join(map(str, _rgb(colours[0]))) + ",255"
    c2 = ",".join(map(str, _rgb(colours[-1]))) + ",255"
    ramp_stops = ":".join(
        f"{i / (n - 1):.4f};" + ",".join(map(str, _rgb(c))) + ",255"
        for i, c in enumerate(colours[1:-1], start=1)
    )
    units = quoteattr(grid.units)
    return "\n".join(
        [
            "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>",
            '<qgis version="3.22.0-Białowieża" styleCategories="AllStyleCategories"'
            ' hasScaleBasedVisibilityFlag="0" minScale="1e+08" maxScale="0">',
            "  <flags>",
            "    <Identifiable>1</Identifiable>",
            "    <Removable>1</Removable>",
            "    <Searchable>0</Searchable>",
            "    <Private>0</Private>",
            "  </flags>",
            "  <customproperties>",
            '    <Option type="Map">',
            f'      <Option type="QString" name="priority_index/units" value={units}/>',
            "    </Option>",
            "  </customproperties>",
            "  <pipe>",
            "    <provider>",
            '      <resampling enabled="false" maxOversampling="2"'
            ' zoomedInResamplingMethod="nearestNeighbour"'
            ' zoomedOutResamplingMethod="nearestNeighbour"/>',
            "    </provider>",
            '    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1"'
            f' alphaBand="-1" classificationMin="0" classificationMax="{_num(top)}"'
            ' nodataColor="">',
            "      <rasterTransparency>",
            "        <singleValuePixelList>",
            '          <pixelListEntry min="0" max="0" percentTransparent="100"/>',
            "        </singleValuePixelList>",
            "      </rasterTransparency>",
            "      <minMaxOrigin>",
            "        <limits>None</limits>",
            "        <extent>WholeRaster</extent>",
            "        <statAccuracy>Exact</statAccuracy>",
            "        <cumulativeCutLower>0.02</cumulativeCutLower>",
            "        <cumulativeCutUpper>0.98</cumulativeCutUpper>",
            "        <stdDevFactor>2</stdDevFactor>",
            "      </minMaxOrigin>",
            "      <rastershader>",
            '        <colorrampshader colorRampType="INTERPOLATED" classificationMode="2"'
            f' clip="0" minimumValue="0" maximumValue="{_num(top)}" labelPrecision="4">',
            '          <colorramp type="gradient" name="[source]">',
            '            <Option type="Map">',
            f'              <Option type="QString" name="color1" value="{c1}"/>',
            f'              <Option type="QString" name="color2" value="{c2}"/>',
            '              <Option type="QString" name="discrete" value="0"/>',
            '              <Option type="QString" name="rampType" value="gradient"/>',
            f'              <Option type="QString" name="stops" value="{ramp_stops}"/>',
            "            </Option>",
            f'            <prop k="color1" v="{c1}"/>',
            f'            <prop k="color2" v="{c2}"/>',
            '            <prop k="discrete" v="0"/>',
            '            <prop k="rampType" v="gradient"/>',
            f'            <prop k="stops" v="{ramp_stops}"/>',
            "          </colorramp>",
            *items,
            "        </colorrampshader>",
            "      </rastershader>",
            "    </rasterrenderer>",
            '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>',
            '    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"'
            ' colorizeRed="255" colorizeGreen="128" colorizeBlue="128" colorizeStrength="100"'
            ' invertColors="0"/>',
            '    <rasterresampler maxOversampling="2"/>',
            "    <resamplingStage>resamplingFilter</resamplingStage>",
            "  </pipe>",
            "  <blendMode>0</blendMode>",
            "</qgis>",
            "",
        ]
    )
