"""Read Sentinel-2 Level-1C products as ESA distributes them: a ``.SAFE`` folder or its ``.zip``.

Scene correction needs more than pixels: the DN offset and quantification turn DN into TOA
reflectance, and the sun/view geometry and sensing time drive the physics. :func:`open_safe`
reads them from ``MTD_MSIL1C.xml`` (product) and ``GRANULE/*/MTD_TL.xml`` (tile) and returns
band paths rasterio opens directly (``/vsizip/`` for a zip), so a zip is never extracted.
Everything a user can fix (wrong level, partial download, broken archive) raises
:class:`~s2ac.errors.InputDataError` naming the file. XML is parsed by the standard library,
whose expat parser never fetches external entities; elements are matched by local name because
ESA changes namespace URLs between product-specification versions.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree as ET

import numpy as np

from s2ac.bands import BAND_NAMES, ESA_BAND_NAMES, band_index, dn_offset
from s2ac.errors import InputDataError

PRODUCT_XML = "MTD_MSIL1C.xml"
L2A_XML = "MTD_MSIL2A.xml"
TILE_XML = "MTD_TL.xml"
#: The band_id / bandId attributes of the metadata index this list.
ESA_BAND_ORDER = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
SATELLITES = {"Sentinel-2A": "S2A", "Sentinel-2B": "S2B", "Sentinel-2C": "S2C"}
#: L1C DN of pixels outside the swath (Special_Values NODATA).
NODATA_DN = 0
_REDOWNLOAD = "re-download the product: it is incomplete or damaged"


@dataclass(frozen=True)
class SafeProduct:
    """What scene correction needs from one L1C product; angles in degrees."""

    path: str
    band_paths: dict[str, str]
    processing_baseline: str
    quantification: float
    offsets: dict[str, float]
    satellite: str
    sensing_time: str
    solar_zenith: float
    solar_azimuth: float
    view_zenith: float
    view_azimuth: float
    footprint: list[tuple[float, float]]
    tile_id: str | None

    @property
    def relative_azimuth(self) -> float:
        """Sun-view azimuth difference in [0, 180]: the geometry is symmetric about 180."""
        difference = abs(self.solar_azimuth - self.view_azimuth) % 360.0
        return 360.0 - difference if difference > 180.0 else difference


@dataclass(frozen=True)
class _Source:
    """A SAFE root seen the same way whether folder or zip: file names relative to the root."""

    names: frozenset[str]
    read: Callable[[str], bytes]
    raster_path: Callable[[str], str]
    label: Callable[[str], str]

    def glob(self, pattern: str) -> list[str]:
        return sorted(name for name in self.names if fnmatch.fnmatchcase(name, pattern))


def is_safe(path: str | os.PathLike[str]) -> bool:
    """True for a ``*.SAFE`` folder holding MTD_MSIL1C.xml or a zip holding one.

    A zip is judged from its central directory only, so this is cheap enough to route inputs.
    """
    target = Path(path)
    if target.is_dir():
        return target.suffix.upper() == ".SAFE" and (target / PRODUCT_XML).is_file()
    try:
        with zipfile.ZipFile(target) as archive:
            return _zip_prefix(archive.namelist(), PRODUCT_XML) is not None
    except (OSError, zipfile.BadZipFile):
        return False


def open_safe(path: str | os.PathLike[str]) -> SafeProduct:
    """Read an L1C product's metadata and locate its B2, B3, B4 and B8 rasters."""
    source = _source(path)
    product = _parse(source, PRODUCT_XML, "Level-1C_User_Product")
    label = source.label(PRODUCT_XML)
    if not any(name.startswith("GRANULE/") for name in source.names):
        raise InputDataError(source.label("GRANULE"), "the product has no granule", _REDOWNLOAD)
    band_files = _band_files(source, product)
    tile_xml = _tile_xml(source, band_files[BAND_NAMES[0]])
    tile = _parse(source, tile_xml, "Level-1C_Tile_ID")
    tile_label = source.label(tile_xml)

    baseline = _text(product, "PROCESSING_BASELINE", label)
    try:  # products of baseline >= 04.00 without the list (none seen) get ESA's documented -1000
        default_offset = float(-dn_offset(processing_baseline=baseline))
    except ValueError as exc:
        raise InputDataError(label, f"PROCESSING_BASELINE {baseline!r} is not NN.NN") from exc
    radio = {el.get("band_id"): _number(el, label) for el in _iter(product, "RADIO_ADD_OFFSET")}
    spacecraft = _text(product, "SPACECRAFT_NAME", label)
    if spacecraft not in SATELLITES:
        raise InputDataError(
            label, f"SPACECRAFT_NAME {spacecraft!r} is not one of {', '.join(SATELLITES)}"
        )
    sensing_time = _text(product, "PRODUCT_START_TIME", label)
    try:
        datetime.fromisoformat(sensing_time)
    except ValueError as exc:
        raise InputDataError(label, f"PRODUCT_START_TIME {sensing_time!r} is not ISO 8601") from exc

    sun = _first(tile, "Mean_Sun_Angle", tile_label)
    views = {el.get("bandId"): el for el in _iter(tile, "Mean_Viewing_Incidence_Angle")}
    ours = [views[i] for band in BAND_NAMES if (i := _band_id(band)) in views]
    if not ours:
        raise InputDataError(tile_label, "no Mean_Viewing_Incidence_Angle for B2, B3, B4 or B8")
    view_zenith = [_angle(el, "ZENITH_ANGLE", tile_label) for el in ours]
    return SafeProduct(
        path=os.fspath(path),
        band_paths={band: source.raster_path(name) for band, name in band_files.items()},
        processing_baseline=baseline,
        quantification=_number(_first(product, "QUANTIFICATION_VALUE", label), label),
        offsets={band: radio.get(_band_id(band), default_offset) for band in BAND_NAMES},
        satellite=SATELLITES[spacecraft],
        sensing_time=sensing_time,
        solar_zenith=_angle(sun, "ZENITH_ANGLE", tile_label),
        solar_azimuth=_angle(sun, "AZIMUTH_ANGLE", tile_label),
        view_zenith=sum(view_zenith) / len(view_zenith),
        view_azimuth=_circular_mean([_angle(el, "AZIMUTH_ANGLE", tile_label) for el in ours]),
        footprint=_footprint(_text(product, "EXT_POS_LIST", label), label),
        tile_id=_mgrs_tile(tile, tile_xml),
    )


def to_reflectance(dn: np.ndarray, product: SafeProduct, band: str) -> np.ndarray:
    """TOA reflectance ``(DN + offset) / quantification`` as float32; NODATA (DN 0) becomes NaN."""
    name = BAND_NAMES[band_index(band)]
    values = np.asarray(dn)
    reflectance = (values.astype(np.float64) + product.offsets[name]) / product.quantification
    return np.where(values == NODATA_DN, np.nan, reflectance).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Locating the product: folder or zip
# ---------------------------------------------------------------------------------------------


def _source(path: str | os.PathLike[str]) -> _Source:
    target = Path(path)
    if not target.exists():
        raise InputDataError(target, "does not exist", "check the path")
    if target.is_dir():
        return _folder_source(target)
    if target.suffix.lower() != ".zip" and not zipfile.is_zipfile(target):
        raise InputDataError(
            target,
            "not a Sentinel-2 SAFE product (expected a .SAFE folder or a .zip of one)",
            "pass the product folder or the zip downloaded from the Copernicus Data Space",
        )
    return _zip_source(target)


def _folder_source(root: Path) -> _Source:
    names = frozenset(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    _check_level(root, names)
    return _Source(
        names=names,
        read=lambda name: (root / name).read_bytes(),
        raster_path=lambda name: str(root / name),
        label=lambda name: str(root / name),
    )


def _zip_source(path: Path) -> _Source:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [name for name in archive.namelist() if not name.endswith("/")]
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputDataError(path, f"not a readable zip archive ({exc})", _REDOWNLOAD) from exc
    prefix = _zip_prefix(members, PRODUCT_XML)
    if prefix is None:  # an L2A zip still gets its own message
        prefix = _zip_prefix(members, L2A_XML) or ""
    names = frozenset(name[len(prefix) :] for name in members if name.startswith(prefix))
    _check_level(path, names)
    zip_path = path.resolve()

    def read(name: str) -> bytes:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                return archive.read(prefix + name)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise InputDataError(
                f"{path}/{prefix}{name}", f"unreadable ({exc})", _REDOWNLOAD
            ) from exc

    return _Source(
        names=names,
        read=read,
        raster_path=lambda name: f"/vsizip/{zip_path}/{prefix}{name}",
        label=lambda name: f"{path}/{prefix}{name}",
    )


def _zip_prefix(members: list[str], filename: str) -> str | None:
    """Folder (``X.SAFE/``, or ``""`` at the root) of the shallowest ``filename`` in a zip."""
    hits = [m for m in members if PurePosixPath(m).name == filename and m.count("/") <= 1]
    return min(hits, key=len)[: -len(filename)] if hits else None


def _check_level(path: Path, names: frozenset[str]) -> None:
    """Reject Level-2A products and folders that are no product at all, with the reason."""
    if PRODUCT_XML in names:
        return
    if L2A_XML in names:
        raise InputDataError(
            path,
            f"a Level-2A product ({L2A_XML}): it is already atmospherically corrected, "
            "and s2ac corrects Level-1C (top-of-atmosphere) products",
            "pass the matching MSIL1C product instead",
        )
    if path.suffix.upper() == ".SAFE":
        raise InputDataError(
            path / PRODUCT_XML, "file missing: every SAFE product has one", _REDOWNLOAD
        )
    raise InputDataError(
        path, f"not a Sentinel-2 SAFE product (no {PRODUCT_XML})", "pass a .SAFE folder or its .zip"
    )


def _band_files(source: _Source, product: ET.Element) -> dict[str, str]:
    """Band -> file name: the IMAGE_FILE entries, else a glob of the granule's IMG_DATA."""
    listed = [(el.text or "").strip() + ".jp2" for el in _iter(product, "IMAGE_FILE")]
    files: dict[str, str] = {}
    for band in BAND_NAMES:
        suffix = f"_{ESA_BAND_NAMES[band]}.jp2"
        expected = next((name for name in listed if name.endswith(suffix)), None)
        if expected in source.names:
            files[band] = expected
            continue
        found = source.glob(f"GRANULE/*/IMG_DATA/*{suffix}")
        if len(found) > 1:
            raise InputDataError(
                source.label("GRANULE"),
                f"{len(found)} files for band {band} ({', '.join(found)}): several granules",
                "s2ac reads single-tile products (names like S2A_MSIL1C_..._T18TWL_...)",
            )
        if not found:
            where = source.label(expected or f"GRANULE/*/IMG_DATA/*{suffix}")
            raise InputDataError(where, f"band {band} file missing", _REDOWNLOAD)
        files[band] = found[0]
    return files


def _tile_xml(source: _Source, band_file: str) -> str:
    granule = "/".join(band_file.split("/")[:2])
    name = f"{granule}/{TILE_XML}"
    if name in source.names:
        return name
    found = source.glob(f"GRANULE/*/{TILE_XML}")
    if len(found) != 1:
        raise InputDataError(source.label(name), "tile metadata file missing", _REDOWNLOAD)
    return found[0]


# ---------------------------------------------------------------------------------------------
# XML
# ---------------------------------------------------------------------------------------------


def _parse(source: _Source, name: str, root_name: str) -> ET.Element:
    label = source.label(name)
    try:
        root = ET.fromstring(source.read(name))
    except ET.ParseError as exc:
        raise InputDataError(label, f"malformed XML ({exc})", _REDOWNLOAD) from exc
    if _local(root.tag) != root_name:
        raise InputDataError(label, f"root element is <{_local(root.tag)}>, expected <{root_name}>")
    return root


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _iter(element: ET.Element, name: str) -> Iterator[ET.Element]:
    return (el for el in element.iter() if _local(el.tag) == name)


def _first(element: ET.Element, name: str, label: str) -> ET.Element:
    found = next(_iter(element, name), None)
    if found is None:
        raise InputDataError(label, f"no <{name}> element", _REDOWNLOAD)
    return found


def _text(element: ET.Element, name: str, label: str) -> str:
    text = (_first(element, name, label).text or "").strip()
    if not text:
        raise InputDataError(label, f"<{name}> is empty", _REDOWNLOAD)
    return text


def _number(element: ET.Element, label: str) -> float:
    try:
        value = float((element.text or "").strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputDataError(label, f"<{_local(element.tag)}> is {element.text!r}, not a number")
    return value


def _angle(element: ET.Element, name: str, label: str) -> float:
    return _number(_first(element, name, label), label)


def _band_id(band: str) -> str:
    return str(ESA_BAND_ORDER.index(ESA_BAND_NAMES[band]))


def _circular_mean(degrees: list[float]) -> float:
    """Mean azimuth that stays right across north (359 and 1 give 0, not 180)."""
    radians = np.deg2rad(degrees)
    mean = math.degrees(math.atan2(np.sin(radians).mean(), np.cos(radians).mean()))
    return mean % 360.0


def _footprint(text: str, label: str) -> list[tuple[float, float]]:
    """EXT_POS_LIST ``lat lon lat lon ...`` -> closed ring of (lon, lat)."""
    try:
        values = [float(v) for v in text.split()]
    except ValueError as exc:
        raise InputDataError(label, f"EXT_POS_LIST is not numbers ({exc})") from exc
    if len(values) % 2 or len(values) < 6:
        raise InputDataError(label, f"EXT_POS_LIST has {len(values)} numbers, not lat/lon pairs")
    ring = [(lon, lat) for lat, lon in zip(values[::2], values[1::2], strict=True)]
    return ring if ring[0] == ring[-1] else [*ring, ring[0]]


def _mgrs_tile(tile: ET.Element, tile_xml: str) -> str | None:
    """MGRS tile (``T18TWL``) from TILE_ID, else from the granule folder name."""
    tile_id = next(_iter(tile, "TILE_ID"), None)
    text = f"{tile_id.text if tile_id is not None else ''} {tile_xml}"
    match = re.search(r"_(T\d{2}[A-Z]{3})_", text)
    return match.group(1) if match else None
