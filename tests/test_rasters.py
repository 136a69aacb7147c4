"""Tests for priority_index.exports.rasters: COG writer and QGIS style."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.enums import Compression

from priority_index.density import DensityGrid, kernel_density
from priority_index.exports.rasters import YLORRD, qml_for_grid, write_cog

DESCRIPTION = "Test harm density, quartic kernel, 300 m search radius"


@pytest.fixture(scope="module")
def grid() -> DensityGrid:
    """A 600 x 640 surface (25 m cells) of clustered points, masked to a disc."""
    rng = np.random.default_rng(11)
    x = np.r_[rng.normal(537000, 1200, 1500), rng.uniform(530000, 546000, 500)]
    y = np.r_[rng.normal(167000, 900, 1500), rng.uniform(160000, 175000, 500)]
    disc = shapely.Point(538000, 167500).buffer(7000)
    return kernel_density(
        x,
        y,
        weights=rng.choice([1.0, 30.0, 365.0], x.size),
        bounds=(530000, 160000, 546000, 175000),
        cell_size=25.0,
        bandwidth=300.0,
        mask_geometry=disc,
        units="harm days per km2",
    )


def test_cog_reads_back_with_layout_tags_and_values(grid, tmp_path):
    path = tmp_path / "out" / "harm_density.tif"  # the folder is created
    write_cog(grid, path, description=DESCRIPTION)
    assert grid.shape == (600, 640)
    with rasterio.open(path) as src:
        assert src.driver == "GTiff"
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        assert src.compression == Compression.deflate
        assert src.profile["tiled"] and src.block_shapes == [(512, 512)]
        assert src.overviews(1) == [2, 4]  # 640 -> 320 -> 160 (<= 256)
        assert src.crs.to_epsg() == 27700
        assert src.transform == grid.transform
        assert src.dtypes == ("float32",)
        assert src.nodata == -9999.0
        assert src.descriptions == (DESCRIPTION,)
        assert src.units == ("harm days per km2",)
        tags = src.tags()
        assert tags["TIFFTAG_IMAGEDESCRIPTION"] == DESCRIPTION
        assert tags["kernel"] == "quartic" and tags["bandwidth_m"] == "300"
        assert tags["cell_size_m"] == "25" and tags["units"] == "harm days per km2"
        assert not any("DATETIME" in k.upper() for k in tags)
        data = src.read(1, masked=True)
        np.testing.assert_array_equal(data.mask, np.isnan(grid.values))
        np.testing.assert_array_equal(data.filled(np.nan), grid.values)
        # The first overview holds the mean of each 2 x 2 block of valid cells.
        ov = src.read(1, out_shape=(300, 320), masked=True)
    blocks = grid.values.reshape(300, 2, 320, 2).astype(np.float64)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning, match="Mean of empty"):
        expected = np.nanmean(blocks, axis=(1, 3))
    full = np.isfinite(blocks).all(axis=(1, 3))
    np.testing.assert_allclose(ov.data[full], expected[full], rtol=1e-5, atol=1e-3)
    assert ov.mask[~np.isfinite(expected)].all()
    assert sorted(p.name for p in path.parent.iterdir()) == ["harm_density.qml", "harm_density.tif"]


def test_writes_are_byte_deterministic_and_atomic(grid, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_cog(grid, a / "d.tif", description=DESCRIPTION)
    write_cog(grid, b / "d.tif", description=DESCRIPTION)
    assert (a / "d.tif").read_bytes() == (b / "d.tif").read_bytes()
    assert (a / "d.qml").read_bytes() == (b / "d.qml").read_bytes()
    # Overwriting in place gives the same bytes and leaves no temporary files behind.
    first = (a / "d.tif").read_bytes()
    write_cog(grid, a / "d.tif", description=DESCRIPTION)
    assert (a / "d.tif").read_bytes() == first
    assert sorted(p.name for p in a.iterdir()) == ["d.qml", "d.tif"]
    # A different description changes the file.
    write_cog(grid, b / "d.tif", description="Another", style=False)
    assert (b / "d.tif").read_bytes() != first


def test_zstd_small_grid_without_overviews_or_style(tmp_path):
    g = kernel_density([500.0], [500.0], bounds=(0, 0, 1000, 1000), cell_size=50, bandwidth=200)
    write_cog(g, tmp_path / "small.tif", description="one point", compress="ZSTD", style=False)
    assert not (tmp_path / "small.qml").exists()
    with rasterio.open(tmp_path / "small.tif") as src:
        assert src.compression == Compression.zstd
        assert src.overviews(1) == []
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(src.read(1), g.values)
    with pytest.raises(ValueError, match="lossless"):
        write_cog(g, tmp_path / "x.tif", description="x", compress="JPEG")


def test_qml_is_a_singleband_pseudocolor_style(grid, tmp_path):
    write_cog(grid, tmp_path / "d.tif", description=DESCRIPTION)
    root = ET.parse(tmp_path / "d.qml").getroot()
    assert root.tag == "qgis"
    renderer = root.find("./pipe/rasterrenderer")
    assert renderer is not None
    assert renderer.get("type") == "singlebandpseudocolor" and renderer.get("band") == "1"
    positive = grid.values[np.isfinite(grid.values) & (grid.values > 0)].astype(np.float64)
    top = np.quantile(positive, 0.995)
    assert float(renderer.get("classificationMax")) == pytest.approx(top, rel=1e-5)
    assert float(renderer.get("classificationMin")) == 0.0
    shader = renderer.find("./rastershader/colorrampshader")
    assert shader.get("colorRampType") == "INTERPOLATED"
    items = shader.findall("item")
    assert [i.get("color") for i in items] == list(YLORRD)
    assert items[0].get("value") == "0" and items[0].get("alpha") == "0"
    assert all(i.get("alpha") == "255" for i in items[1:])
    values = [float(i.get("value")) for i in items]
    np.testing.assert_allclose(values, np.linspace(0, top, len(YLORRD)), rtol=1e-5)
    entry = renderer.find("./rasterTransparency/singleValuePixelList/pixelListEntry")
    assert (entry.get("min"), entry.get("max"), entry.get("percentTransparent")) == (
        "0",
        "0",
        "100",
    )
    # A surface with nothing in it still gets a usable ramp.
    empty = DensityGrid(
        np.zeros((3, 3), np.float32), grid.transform, 25.0, 300.0, "quartic", "records per km2"
    )
    root = ET.fromstring(qml_for_grid(empty).split("\n", 1)[1])
    assert root.find("./pipe/rasterrenderer").get("classificationMax") == "1"


QGIS_CHECK = r"""
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from qgis.core import QgsApplication, QgsRasterLayer
app = QgsApplication([], False)
app.initQgis()
layer = QgsRasterLayer(sys.argv[1], "density")  # picks up the .qml beside it as default style
r = layer.renderer()
items = r.shader().rasterShaderFunction().colorRampItemList()
print(layer.isValid(), r.type(), len(items), r.rasterTransparency().alphaValue(0.0),
      r.rasterTransparency().alphaValue(1.0), layer.crs().authid(),
      layer.dataProvider().sourceNoDataValue(1), flush=True)
del items, r, layer
app.exitQgis()
"""


@pytest.mark.qgis
def test_qgis_loads_raster_with_its_style(grid, tmp_path):
    python = shutil.which("python3", path="/usr/bin")
    if python is None:
        pytest.skip("no system python3")
    probe = subprocess.run([python, "-c", "import qgis.core"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("python3-qgis not installed")
    path = tmp_path / "d.tif"
    write_cog(grid, path, description=DESCRIPTION)
    done = subprocess.run(
        [python, "-c", QGIS_CHECK, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-7:] == [
        "True",
        "singlebandpseudocolor",
        "7",
        "0",
        "255",
        "EPSG:27700",
        "-9999.0",
    ]
