"""A local fake of the Earth Engine REST API that the real earthengine-api client talks to.

It serves the discovery document and the algorithm list shipped in the installed earthengine-api
wheel (``ee/tests/``), so ``ee.Initialize(credentials, url=fake.url, project=...)`` builds the
real client, and every later call goes over HTTP to this server, which records it. It also plays
the Google OAuth token endpoint (``/token``), so service-account keys whose ``token_uri`` points
here go through google-auth's real JWT flow.

Answers are canned but plausible, derived from the request the way Earth Engine would:

* ``value:compute`` recognises the two queries s2ac sends: the scene listing (strata = the states
  of India from FAO/GAUL/2015/level1, or the ``s2ac_stratum`` features of a GeoJSON region;
  scenes every 5 days per MGRS tile inside the requested dates, with a per-scene cloud share
  filtered by the requested maximum) and the chip centres (UTM coordinates per image id).
* ``image:export`` creates an operation (idempotent on ``requestId``). Each ``GET`` of the
  operation advances it PENDING -> RUNNING -> SUCCEEDED; on success the "export" writes what
  Earth Engine would into the GCS emulator (``STORAGE_EMULATOR_HOST`` must be set): TFRecord
  patch files ``<prefix>-00000.tfrecord.gz`` in the s2ac schema, or a ``<prefix>.tif``.
* ``image:computePixels`` answers NPY bytes of a structured array with the requested grid.

Scripting for error tests: :meth:`FakeEarthEngine.inject` (HTTP errors such as 429 or 401 for N
requests on a route), :meth:`fail_task` (an operation that ends FAILED with a message),
``reject_tokens`` (the token endpoint answers ``invalid_grant``).

The state table below is canned: names and centres are approximate, for plausibility only.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import ee
import numpy as np

EE_TESTS_DIR = Path(ee.__file__).resolve().parent / "tests"
DISCOVERY_PATH = EE_TESTS_DIR / "cloud_api_discovery_document.json"
ALGORITHMS_PATH = EE_TESTS_DIR / "algorithms.json"

#: Approximate centre (lon, lat) of each first-level unit of India, as canned boundary data.
INDIA_STATES: dict[str, tuple[float, float]] = {
    "Andaman and Nicobar": (92.8, 11.7),
    "Andhra Pradesh": (79.7, 15.9),
    "Arunachal Pradesh": (94.7, 28.2),
    "Assam": (92.9, 26.2),
    "Bihar": (85.3, 25.8),
    "Chandigarh": (76.8, 30.7),
    "Chhattisgarh": (81.9, 21.3),
    "Dadra and Nagar Haveli": (73.0, 20.2),
    "Daman and Diu": (72.8, 20.4),
    "Delhi": (77.1, 28.7),
    "Goa": (74.1, 15.3),
    "Gujarat": (71.6, 22.3),
    "Haryana": (76.1, 29.1),
    "Himachal Pradesh": (77.2, 31.9),
    "Jammu and Kashmir": (75.3, 33.8),
    "Jharkhand": (85.3, 23.6),
    "Karnataka": (75.7, 15.3),
    "Kerala": (76.3, 10.4),
    "Lakshadweep": (72.6, 10.6),
    "Madhya Pradesh": (78.7, 23.5),
    "Maharashtra": (75.7, 19.7),
    "Manipur": (93.9, 24.7),
    "Meghalaya": (91.4, 25.5),
    "Mizoram": (92.9, 23.2),
    "Nagaland": (94.6, 26.2),
    "Orissa": (84.8, 20.5),
    "Puducherry": (79.8, 11.9),
    "Punjab": (75.3, 31.1),
    "Rajasthan": (74.2, 27.0),
    "Sikkim": (88.5, 27.5),
    "Tamil Nadu": (78.7, 11.1),
    "Tripura": (91.9, 23.9),
    "Uttar Pradesh": (80.9, 26.8),
    "Uttarakhand": (79.0, 30.1),
    "West Bengal": (87.9, 22.9),
}
PROJECT = "test-project"
CLIENT_EMAIL = f"s2ac-export@{PROJECT}.iam.gserviceaccount.com"
_LAT_BANDS = "CDEFGHJKLMNPQRSTUVWX"  # MGRS latitude bands of 8 degrees from 80 S
_SQUARE_LETTERS = "ABCDEFGHJKLMNPQRSTUV"
_REVISIT_DAYS = 5
_PATH_REFLECTANCE = np.array([0.085, 0.055, 0.035, 0.02], dtype=np.float32)  # B2, B3, B4, B8


@dataclass
class Recorded:
    """One request as the fake received it (header names lower-case, ``body`` parsed JSON)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0

    @property
    def text(self) -> str:
        """The body as JSON text, for substring assertions."""
        return self.body if isinstance(self.body, str) else json.dumps(self.body)


@dataclass
class _Injection:
    route: str
    status: int
    remaining: int
    message: str


@dataclass
class _Operation:
    name: str
    request: dict[str, Any]
    polls: int = 0
    state: str = "PENDING"
    fail_message: str | None = None
    outputs: list[str] = field(default_factory=list)


def _hash(*parts: object) -> int:
    text = "|".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def walk(node: Any) -> Iterator[tuple[str | None, Any]]:
    """Every ``(key, value)`` pair in a JSON tree (key None for list items), depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield None, value
            yield from walk(value)


def inline(expression: dict[str, Any]) -> Any:
    """The expression graph as one tree: ``valueReference`` s and function bodies resolved.

    The client shares repeated sub-expressions by reference; the tree repeats them where used.
    """
    values = expression.get("values", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"valueReference"}:
                return resolve(values[node["valueReference"]])
            resolved = {key: resolve(value) for key, value in node.items()}
            body = node.get("body")
            if "argumentNames" in node and isinstance(body, str):
                resolved["body"] = resolve(values[body])
            return resolved
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(values[expression["result"]])


def function_names(expression: dict[str, Any]) -> list[str]:
    """Names of every function invoked in a serialized expression graph."""
    return [v for k, v in walk(inline(expression)) if k == "functionName"]


def constants(expression: dict[str, Any]) -> list[Any]:
    """Every leaf constant (strings, numbers) under a ``constantValue`` of the graph."""
    found: list[Any] = []
    for key, value in walk(expression.get("values", {})):
        if key == "constantValue":
            if isinstance(value, dict | list):
                found.extend(v for _, v in walk(value) if not isinstance(v, dict | list))
            else:
                found.append(value)
    return found


def invocations(expression: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Arguments (references resolved) of every invocation of function ``name``."""
    return [
        v.get("arguments", {})
        for k, v in walk(inline(expression))
        if k == "functionInvocationValue" and v.get("functionName") == name
    ]


def constant(argument: Any) -> Any:
    """The constant of a resolved argument node (arrays of constants too), or None."""
    if not isinstance(argument, dict):
        return None
    if "arrayValue" in argument:
        return [constant(value) for value in argument["arrayValue"].get("values", [])]
    return argument.get("constantValue")


def mgrs_tile(lon: float, lat: float, salt: int) -> str:
    """A plausible MGRS tile name near (lon, lat): UTM zone, latitude band, 100 km square."""
    zone = int((lon + 180) // 6) + 1
    band = _LAT_BANDS[int((lat + 80) // 8)]
    first = _SQUARE_LETTERS[(salt >> 3) % len(_SQUARE_LETTERS)]
    second = _SQUARE_LETTERS[(salt >> 11) % len(_SQUARE_LETTERS)]
    return f"{zone}{band}{first}{second}"


def utm_centre(lon: float, lat: float) -> tuple[float, float]:
    """Rough UTM easting/northing (m) of a point, good enough for canned chip centres."""
    zone_centre = (int((lon + 180) // 6) + 1) * 6 - 183
    return 500_000.0 + (lon - zone_centre) * 111_320.0 * np.cos(np.radians(lat)), lat * 110_574.0


def synthetic_pair(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth surface (SR) and its TOA under a plausible atmosphere, float32 (size, size, 4)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.5 * np.sin(2 * np.pi * (x * rng.uniform(0.5, 2) + y * rng.uniform(0.5, 2)))
    levels = np.array([0.06, 0.09, 0.1, 0.3], dtype=np.float32) * rng.uniform(0.8, 1.2, 4)
    sr = (levels * (0.6 + 0.8 * base[..., None])).astype(np.float32)
    toa = (_PATH_REFLECTANCE + 0.85 * sr).astype(np.float32)
    return toa, sr


def write_service_account_key(
    path: Path, token_uri: str, project_id: str | None = PROJECT
) -> tuple[Path, str]:
    """A real service-account JSON key (fresh RSA key) whose token endpoint is ``token_uri``.

    Returns the path and a line of the private key, to check that no message leaks it.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    }
    if project_id:
        info["project_id"] = project_id
    path.write_text(json.dumps(info))
    return path, pem.splitlines()[5]


class FakeEarthEngine:
    """The fake server. Use as a context manager, or call :meth:`start` / :meth:`stop`."""

    def __init__(self, project: str = PROJECT, port: int = 0) -> None:
        self.project = project
        self._port = port
        self.requests: list[Recorded] = []
        self.reject_tokens = False
        self.polls_to_finish = 2
        self.issued_tokens: set[str] = set()
        self._injections: list[_Injection] = []
        self._failures: dict[str, str] = {}
        self._operations: dict[str, _Operation] = {}
        self._by_request_id: dict[str, str] = {}
        self._scene_places: dict[str, tuple[float, float]] = {}  # index -> lon, lat
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeEarthEngine:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeEarthEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL to pass to ``ee.Initialize(url=...)``."""
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    # --- scripting ---------------------------------------------------------------------------

    def inject(self, route: str, status: int, times: int = 1, message: str | None = None) -> None:
        """Answer the next ``times`` requests whose path contains ``route`` with ``status``."""
        default = {
            401: "Request had invalid authentication credentials.",
            403: "The caller does not have permission",
            429: "Too many concurrent aggregations.",
        }.get(status, "Internal error")
        with self._lock:
            self._injections.append(_Injection(route, status, times, message or default))

    def fail_task(self, description_part: str, message: str) -> None:
        """Make exports whose description contains ``description_part`` end FAILED."""
        self._failures[description_part] = message

    def reset(self) -> None:
        """Forget recorded requests, scripted errors and operations (keep tokens)."""
        with self._lock:
            self.requests.clear()
            self._injections.clear()
            self._failures.clear()
            self._operations.clear()
            self._by_request_id.clear()
            self.reject_tokens = False
            self.polls_to_finish = 2

    def recorded(self, route: str, method: str | None = None) -> list[Recorded]:
        """Recorded requests whose path contains ``route`` (and of ``method``)."""
        return [
            r
            for r in list(self.requests)
            if route in r.path and (method is None or r.method == method)
        ]

    def _take_injection(self, path: str) -> _Injection | None:
        with self._lock:
            for injection in self._injections:
                if injection.route in path and injection.remaining > 0:
                    injection.remaining -= 1
                    return injection
        return None

    # --- API ---------------------------------------------------------------------------------

    def discovery(self, version: str) -> dict[str, Any]:
        text = DISCOVERY_PATH.read_text().replace("v1alpha", version)
        document = json.loads(text)
        document["rootUrl"] = document["baseUrl"] = self.url + "/"
        return document

    def algorithms(self) -> dict[str, Any]:
        return json.loads(ALGORITHMS_PATH.read_text())

    def compute_value(self, body: dict[str, Any]) -> Any:
        expression = body["expression"]
        names = function_names(expression)
        if "Geometry.centroid" in names:
            return self._chip_centres(expression)
        if "Collection.reduceColumns" in names:
            return self._scene_listing(expression)
        raise ValueError(f"the fake cannot evaluate an expression using {sorted(set(names))}")

    @staticmethod
    def _strata(expression: Any) -> tuple[list[str], dict[str, tuple[float, float]]]:
        """Strata the expression selects, with a centre (lon, lat) for each."""
        values = constants(expression)
        if any(isinstance(v, str) and "GAUL" in v for v in values):
            if "India" not in values:
                return [], {}
            chosen = list(INDIA_STATES)
            for arguments in invocations(expression, "Filter.listContains"):
                if constant(arguments.get("rightField")) == "ADM1_NAME":
                    listed = constant(arguments.get("leftValue")) or []
                    chosen = [name for name in listed if name in INDIA_STATES]
            return chosen, {name: INDIA_STATES[name] for name in chosen}
        centres: dict[str, tuple[float, float]] = {}
        for arguments in invocations(expression, "Feature"):
            name = (constant(arguments.get("metadata")) or {}).get("s2ac_stratum")
            if name is None:
                continue
            numbers = [
                v
                for _, v in walk(arguments.get("geometry"))
                if isinstance(v, float | int) and not isinstance(v, bool)
            ]
            lons, lats = numbers[0::2] or [78.0], numbers[1::2] or [22.0]
            centres[name] = (float(np.mean(lons)), float(np.mean(lats)))
        return list(centres), centres

    @staticmethod
    def _dates(expression: Any) -> tuple[date, date]:
        for arguments in invocations(expression, "DateRange"):
            start, end = constant(arguments.get("start")), constant(arguments.get("end"))
            if isinstance(start, str) and isinstance(end, str):
                return date.fromisoformat(start[:10]), date.fromisoformat(end[:10])
        raise ValueError("the fake found no DateRange in the listing expression")

    @staticmethod
    def _max_cloud(expression: Any) -> float:
        for name in ("Filter.greaterThan", "Filter.lessThanOrEquals"):  # lte is not(gt)
            for arguments in invocations(expression, name):
                if constant(arguments.get("leftField")) == "CLOUDY_PIXEL_PERCENTAGE":
                    return float(constant(arguments.get("rightValue")))
        return 100.0

    def _scene_listing(self, expression: Any) -> dict[str, Any]:
        strata, centres = self._strata(expression)
        start, end = self._dates(expression)  # end is exclusive, as in filterDate
        max_cloud = self._max_cloud(expression)
        rows = []
        for stratum in strata:
            lon, lat = centres[stratum]
            n_tiles = 1 + _hash(stratum) % 3
            for tile_number in range(n_tiles):
                tile = mgrs_tile(lon, lat, _hash(stratum, tile_number))
                day = start + timedelta(days=_hash(tile) % _REVISIT_DAYS)
                while day < end:
                    cloud = round((_hash(tile, day) % 10_000) / 100.0, 2)
                    if cloud <= max_cloud:
                        stamp = datetime(day.year, day.month, day.day, 5, 16, 41, tzinfo=UTC)
                        when = f"{day:%Y%m%d}T051641"
                        index = f"{when}_{day:%Y%m%d}T05{_hash(tile, day) % 60:02d}12_T{tile}"
                        millis = int(stamp.timestamp() * 1000)
                        rows.append([index, stratum, cloud, millis, tile])
                        jitter = (_hash(index) % 1000) / 2000 - 0.25  # degrees
                        self._scene_places[index] = (lon + jitter, lat - jitter)
                    day += timedelta(days=_REVISIT_DAYS)
        return {"strata": strata, "known": list(INDIA_STATES), "images": rows}

    def _chip_centres(self, expression: Any) -> dict[str, list[float]]:
        ids = [
            v.rsplit("/", 1)[-1]
            for v in constants(expression)
            if isinstance(v, str) and v.startswith("COPERNICUS/S2_HARMONIZED/")
        ]
        centres = {}
        for index in dict.fromkeys(ids):
            lon, lat = self._scene_places.get(index, (78.0, 22.0))
            east, north = utm_centre(lon, lat)
            centres[index] = [round(east, 2) + 0.37, round(north, 2) + 0.81]
        for arguments in invocations(expression, "Dictionary.fromLists"):
            keys = constant(arguments.get("keys"))
            if isinstance(keys, list):
                return {key: centres.get(key, []) for key in keys}
        return centres

    def create_export(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            request_id = body.get("requestId")
            if request_id and request_id in self._by_request_id:
                return self._operation_json(self._operations[self._by_request_id[request_id]])
            op_id = uuid.uuid4().hex.upper()[:24]
            name = f"projects/{self.project}/operations/{op_id}"
            operation = _Operation(name=name, request=copy.deepcopy(body))
            for part, message in self._failures.items():
                if part in body.get("description", ""):
                    operation.fail_message = message
            self._operations[name] = operation
            if request_id:
                self._by_request_id[request_id] = name
            return self._operation_json(operation)

    def get_operation(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            operation = self._operations.get(name)
        if operation is None:
            return None
        if operation.state in ("PENDING", "RUNNING"):
            operation.polls += 1
            if operation.polls >= self.polls_to_finish:
                if operation.fail_message:
                    operation.state = "FAILED"
                else:
                    operation.outputs = self._run_export(operation.request)
                    operation.state = "SUCCEEDED"
            else:
                operation.state = "RUNNING"
        return self._operation_json(operation)

    def list_operations(self) -> dict[str, Any]:
        with self._lock:
            operations = list(self._operations.values())
        return {"operations": [self._operation_json(op) for op in operations]}

    def _operation_json(self, operation: _Operation) -> dict[str, Any]:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.earthengine.v1.OperationMetadata",
            "state": operation.state,
            "description": operation.request.get("description", ""),
            "type": "EXPORT_IMAGE",
            "createTime": now,
            "updateTime": now,
        }
        if operation.outputs:  # like Earth Engine: the folder in the Cloud console, not files
            bucket, key = operation.outputs[0][len("gs://") :].split("/", 1)
            folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
            console = "https://console.developers.google.com/storage/browser"
            metadata["destinationUris"] = [f"{console}/{bucket}/{folder}"]
        result: dict[str, Any] = {"name": operation.name, "metadata": metadata}
        if operation.state in ("SUCCEEDED", "FAILED"):
            result["done"] = True
        if operation.state == "FAILED":
            result["error"] = {"code": 3, "message": operation.fail_message}
        elif operation.state == "SUCCEEDED":
            result["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
        return result

    # --- what an export writes ---------------------------------------------------------------

    @staticmethod
    def grid_size(expression: Any) -> tuple[int, int]:
        """(width, height) in pixels of the export grid folded into the expression."""
        for arguments in invocations(expression, "Image.clipToBoundsAndScale"):
            geometry = arguments.get("geometry", {}).get("functionInvocationValue", {})
            corners = constant(geometry.get("arguments", {}).get("coordinates"))
            if geometry.get("functionName") == "GeometryConstructors.Rectangle" and corners:
                x0, y0, x1, y1 = corners
                return int(x1 - x0), int(y1 - y0)
        raise ValueError("the fake found no export dimensions in the expression")

    def _run_export(self, request: dict[str, Any]) -> list[str]:
        from s2ac.data.tfrecord import write_tfrecord
        from s2ac.io import storage

        options = request["fileExportOptions"]
        destination = options["cloudStorageDestination"]
        bucket, prefix = destination["bucket"], destination["filenamePrefix"]
        width, height = self.grid_size(request["expression"])
        seed = _hash(prefix)
        if options["fileFormat"] == "TF_RECORD_IMAGE":
            tile = options["tfRecordOptions"]["tileDimensions"]
            patch_w, patch_h = int(tile["width"]), int(tile["height"])
            if patch_w != patch_h:
                raise ValueError("the fake writes square patches only")
            n = (width // patch_w) * (height // patch_h)
            pairs = [synthetic_pair(seed + i, patch_w) for i in range(n)]
            gz = options["tfRecordOptions"].get("compress", False)
            uri = f"gs://{bucket}/{prefix}-00000.tfrecord{'.gz' if gz else ''}"
            write_tfrecord(uri, pairs)
            return [uri]
        toa, sr = synthetic_pair(seed, max(width, height))
        stacked = np.concatenate([toa, sr], axis=-1)[:height, :width]
        buffer = io.BytesIO()
        np.save(buffer, stacked)  # the fake stores the bytes; s2ac never reads them back
        uri = f"gs://{bucket}/{prefix}.tif"
        storage.write_bytes(uri, buffer.getvalue())
        return [uri]

    def compute_pixels(self, body: dict[str, Any]) -> bytes:
        from s2ac.data.tfrecord import SR_KEYS, TOA_KEYS

        dims = body["grid"]["dimensions"]
        width, height = int(dims["width"]), int(dims["height"])
        toa, sr = synthetic_pair(
            _hash(json.dumps(body["grid"], sort_keys=True)), max(width, height)
        )
        keys = TOA_KEYS + SR_KEYS
        array = np.zeros((height, width), dtype=[(key, "<f4") for key in keys])
        for index, key in enumerate(keys):
            source = toa if index < len(TOA_KEYS) else sr
            array[key] = source[:height, :width, index % len(TOA_KEYS)]
        buffer = io.BytesIO()
        np.save(buffer, array)
        return buffer.getvalue()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeEarthEngine
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        content_type = self.headers.get("Content-Type", "")
        if "json" in content_type:
            return json.loads(raw)
        if "x-www-form-urlencoded" in content_type:
            return {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        return raw.decode(errors="replace")

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        reason = {
            400: "INVALID_ARGUMENT",
            401: "UNAUTHENTICATED",
            403: "PERMISSION_DENIED",
            404: "NOT_FOUND",
            429: "RESOURCE_EXHAUSTED",
        }.get(status, "INTERNAL")
        self._send(status, {"error": {"code": status, "message": message, "status": reason}})

    def _handle(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        record = Recorded(
            method,
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in self.headers.items()},
            self._read_body(),
        )
        with fake._lock:
            fake.requests.append(record)
        injection = fake._take_injection(parts.path)
        if injection is not None:
            record.status = injection.status
            return self._error(injection.status, injection.message)
        try:
            status, payload, content_type = self._route(method, parts.path, record)
        except ValueError as exc:
            status, payload, content_type = 400, None, ""
            record.status = 400
            return self._error(400, str(exc))
        record.status = status
        if status >= 400 and isinstance(payload, str):
            return self._error(status, payload)
        self._send(status, payload, content_type or "application/json")

    def _route(self, method: str, path: str, record: Recorded) -> tuple[int, Any, str]:
        fake = self.fake
        if path == "/token" and method == "POST":
            return self._token(record)
        if path.endswith("/$discovery/rest") or path == "/$discovery/rest":
            version = (record.query.get("version") or ["v1"])[0]
            return 200, fake.discovery(version), ""
        auth = record.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in fake.issued_tokens:
            return 401, "Request had invalid authentication credentials.", ""
        match = re.fullmatch(r"/v1[a-z0-9]*/(projects/[^/]+)(/.*|:.*)?", path)
        if not match:
            return 404, f"unknown path {path}", ""
        rest = match.group(2) or ""
        if rest == "/algorithms" and method == "GET":
            return 200, fake.algorithms(), ""
        if rest == "/value:compute" and method == "POST":
            return 200, {"result": fake.compute_value(record.body)}, ""
        if rest == "/image:export" and method == "POST":
            return 200, fake.create_export(record.body), ""
        if rest == "/image:computePixels" and method == "POST":
            return 200, fake.compute_pixels(record.body), "application/octet-stream"
        if rest == "/operations" and method == "GET":
            return 200, fake.list_operations(), ""
        if rest.startswith("/operations/") and method == "GET":
            operation = fake.get_operation(path.split("/", 2)[2])
            if operation is None:
                return 404, f"operation {path} not found", ""
            return 200, operation, ""
        return 404, f"the fake does not serve {method} {path}", ""

    def _token(self, record: Recorded) -> tuple[int, Any, str]:
        fake = self.fake
        form = record.body if isinstance(record.body, dict) else {}
        assertion = form.get("assertion", "")
        if fake.reject_tokens or assertion.count(".") != 2:
            refusal = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            return 400, refusal, ""
        claims = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
        token = f"fake-token-{uuid.uuid4().hex[:12]}"
        fake.issued_tokens.add(token)
        record.body = {"iss": claims.get("iss"), "scope": claims.get("scope")}  # no signature
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}, ""


def main() -> None:
    """Serve the fake until interrupted (for demos): ``python tests/fakes/earthengine.py KEY``.

    Writes a service-account key file for the fake's token endpoint to KEY and prints the URL to
    export as EE_API_URL. Exports write into the GCS emulator named by STORAGE_EMULATOR_HOST.
    """
    import argparse
    import time

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("key", type=Path, help="where to write the service-account key file")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with FakeEarthEngine(port=args.port) as fake:
        write_service_account_key(args.key, fake.token_uri)
        print(fake.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
