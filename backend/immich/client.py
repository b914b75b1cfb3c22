"""A small, strict client for the parts of the Immich REST API that Parallax uses.

Design points (see docs/immich.md):

* Every request carries the ``x-api-key`` header. The key is kept in one private attribute and is
  never put into an exception message, a ``repr`` or a log line.
* 5xx answers, connection errors and timeouts are retried with exponential backoff; 4xx answers are
  not (they will not get better by asking again) and map to specific exceptions.
* Downloads stream into a temporary file next to the destination and are renamed only once every
  byte announced by ``Content-Length`` has arrived, so a half file is never left behind.
* ``ImmichAsset`` hides the differences between v2 and v3 servers (duration format, archive flag).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Immich's own full-size rendition: a JPEG for originals a browser cannot show (RAW, HEIC...).
FULLSIZE = "fullsize"
_MAX_REDIRECTS = 5
_ASSET_TYPES = ("IMAGE", "VIDEO")
# Only timeline assets are imported: archived, hidden (live-photo motion parts) and locked-folder
# assets are left alone.
_SKIPPED_VISIBILITY = {"archive", "hidden", "locked"}


# ----------------------------------------------------------------------------------------- errors
class ImmichError(Exception):
    """Base class of every error raised by :class:`ImmichClient`. ``status`` is the HTTP status
    when there was an answer."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ImmichConnectionError(ImmichError):
    """The server could not be reached (wrong URL, server down, connection dropped, timeout), or
    what answers at that URL is not an Immich API."""


class ImmichIncompleteDownload(ImmichConnectionError):
    """The connection ended before the whole file arrived (after retries). No file was kept."""


class ImmichAuthError(ImmichError):
    """HTTP 401: the API key was rejected (or no key was configured)."""


class ImmichPermissionError(ImmichError):
    """HTTP 403: the API key works but lacks a permission. ``permission`` is e.g. ``asset.read``
    when Immich names it."""

    def __init__(self, message: str, permission: str | None = None):
        super().__init__(message, status=403)
        self.permission = permission


class ImmichNotFound(ImmichError):
    """HTTP 404: the asset (or endpoint) does not exist, e.g. it was deleted meanwhile."""


class ImmichRequestError(ImmichError):
    """Another 4xx answer (400: the server refused the request); carries Immich's message."""


class ImmichServerError(ImmichError):
    """HTTP 5xx that persisted through every retry."""


class _Retryable(Exception):
    """Internal: an attempt failed in a way that another attempt may fix."""

    def __init__(self, final: ImmichError):
        super().__init__(str(final))
        self.final = final


# ------------------------------------------------------------------------------------ data types
@dataclass(frozen=True)
class ImmichAsset:
    """One Immich asset, normalised across v2 and v3 servers. ``raw`` is the server's dict."""

    id: str
    type: str  # "IMAGE" | "VIDEO" (Immich also knows AUDIO/OTHER; iter_assets never yields those)
    original_filename: str
    original_mime_type: str | None
    checksum: str  # base64 SHA-1 of the original file: changes when the file changes
    file_created_at: datetime | None
    updated_at: datetime
    duration_seconds: float | None  # None for still images
    is_archived: bool
    is_trashed: bool
    is_offline: bool  # an external-library file Immich can no longer find on disk
    visibility: str
    width: int | None
    height: int | None
    raw: dict = field(repr=False, compare=False, hash=False)

    @classmethod
    def from_api(cls, data: dict) -> ImmichAsset:
        exif = data.get("exifInfo") or {}
        visibility = data.get("visibility") or ("archive" if data.get("isArchived") else "timeline")
        return cls(
            id=data["id"],
            type=data.get("type", "OTHER"),
            original_filename=data.get("originalFileName") or data["id"],
            original_mime_type=data.get("originalMimeType"),
            checksum=data.get("checksum", ""),
            file_created_at=parse_immich_datetime(data.get("fileCreatedAt")),
            updated_at=parse_immich_datetime(data.get("updatedAt")) or datetime.fromtimestamp(0, UTC),
            duration_seconds=parse_duration(data.get("duration")),
            is_archived=visibility == "archive" or bool(data.get("isArchived")),
            is_trashed=bool(data.get("isTrashed")),
            is_offline=bool(data.get("isOffline")),
            visibility=visibility,
            width=data.get("width") if data.get("width") is not None else exif.get("exifImageWidth"),
            height=data.get("height") if data.get("height") is not None else exif.get("exifImageHeight"),
            raw=data,
        )

    @property
    def is_video(self) -> bool:
        return self.type == "VIDEO"

    @property
    def on_timeline(self) -> bool:
        """Whether the asset is one Parallax imports: not trashed, archived, hidden or locked."""
        return not self.is_trashed and not self.is_archived and self.visibility not in _SKIPPED_VISIBILITY


@dataclass(frozen=True)
class ImmichDownload:
    """A finished download. Usable wherever a path is expected (``open(download)`` works)."""

    path: Path
    content_type: str | None
    size: int

    def __fspath__(self) -> str:
        return os.fspath(self.path)


@dataclass(frozen=True)
class ImmichAlbum:
    id: str
    name: str
    asset_count: int
    # Bumped by Immich when assets are added to the album (an asset's own updatedAt is not).
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ImmichUpload:
    """The answer to an upload: the asset's id, and whether Immich already held these very bytes
    (same checksum: ``duplicate``, and ``id`` is that existing asset; nothing new was created)."""

    id: str
    duplicate: bool


@dataclass(frozen=True)
class ImmichUser:
    id: str
    name: str
    email: str


@dataclass(frozen=True)
class ImmichStatistics:
    images: int
    videos: int
    total: int


# ---------------------------------------------------------------------------------- conversions
def format_immich_datetime(value: datetime) -> str:
    """``2026-01-01T00:00:00.000Z``: the only form Immich accepts in request bodies (its spec has a
    regex ending in ``Z``; Python's ``+00:00`` is refused with 400). Naive datetimes are taken as
    UTC. Microseconds are truncated to milliseconds, i.e. rounded *down*, which keeps the inclusive
    ``updatedAfter`` filter from missing an asset (at worst one is listed again)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_immich_datetime(value: str | None) -> datetime | None:
    """Immich's ISO 8601 timestamps (``...Z`` or with an offset) as aware datetimes."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_DURATION_RE = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")


def parse_duration(value: Any) -> float | None:
    """Seconds, or None for still images. v3 sends integer milliseconds or null; v2 sent a string
    ``"H:MM:SS.ffffff"`` (``"0:00:00.00000"`` for photos)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value) / 1000.0
    else:
        match = _DURATION_RE.match(str(value).strip())
        if not match:
            return None
        hours, minutes, secs = match.groups()
        seconds = int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)
    return seconds if seconds > 0 else None


def _error_message(response: requests.Response) -> str:
    """Immich answers errors as ``{"message": str | [str], "error": ..., "statusCode": ...}``."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip()[:200]
    if not isinstance(body, dict):
        return str(body)[:200]
    message = body.get("message") or body.get("error") or ""
    if isinstance(message, list):
        message = "; ".join(str(m) for m in message)
    return str(message)[:500]


_PERMISSION_RE = re.compile(r"permission[s]?:?\s*([a-zA-Z]+\.[a-zA-Z.]+)", re.IGNORECASE)


class _MultipartUpload:
    """A ``multipart/form-data`` body streamed from an open file: the form fields, then the file,
    read in chunks, its length known up front (so ``Content-Length`` is sent, not chunked
    encoding, and a large video never sits in memory). ``requests`` sends it through ``read()``."""

    def __init__(self, fields: dict[str, str], file_field: str, file: IO[bytes], filename: str, mime_type: str):
        self.boundary = uuid.uuid4().hex
        quoted = filename.replace("\\", "_").replace('"', "%22").replace("\r", " ").replace("\n", " ")
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        )
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{quoted}"\r\n'
            f"Content-Type: {mime_type}\r\n\r\n"
        ).encode()
        self._head = head
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._file = file
        file.seek(0, os.SEEK_END)
        self._size = file.tell()
        file.seek(0)
        self._stage = 0  # 0 head, 1 file, 2 tail, 3 done
        self._offset = 0

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1 << 20):
            yield chunk

    def read(self, size: int = -1) -> bytes:
        size = size if size and size > 0 else 1 << 20
        while self._stage < 3:
            if self._stage == 1:
                chunk = self._file.read(size)
                if chunk:
                    return chunk
            else:
                part = self._head if self._stage == 0 else self._tail
                if self._offset < len(part):
                    chunk = part[self._offset : self._offset + size]
                    self._offset += len(chunk)
                    return chunk
            self._stage += 1
            self._offset = 0
        return b""


# ------------------------------------------------------------------------------------- client
class ImmichClient:
    """Talks to one Immich server with one API key.

    ``base_url`` may be given with or without the ``/api`` suffix (``http://immich:2283`` or
    ``http://immich:2283/api``). ``retries`` is the number of extra attempts after the first one for
    5xx answers and connection problems; attempt *n* waits ``backoff * 2**(n-1)`` seconds first.
    One client may be shared by several download threads: its only state is the cached server
    version, and requests' connection pool is thread-safe.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: tuple[float, float] | float = (5, 60),
        retries: int = 3,
        backoff: float = 0.5,
        session: requests.Session | None = None,
        public_url: str | None = None,
    ):
        base = (base_url or "").strip().rstrip("/")
        if base.endswith("/api"):
            base = base[: -len("/api")]
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ImmichConnectionError(
                f"The Immich URL {base_url!r} is not valid: it should look like http://immich.local:2283"
            )
        if not api_key or not api_key.strip():
            raise ImmichAuthError("No Immich API key is configured (IMMICH_API_KEY).")
        self.base_url = base
        self.api_url = base + "/api"
        # What messages show: without any user:password@ part of the URL.
        self._shown_url = parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()
        # Where browsers reach Immich (IMMICH_PUBLIC_URL) when that differs from the server's view.
        self.public_url = (public_url or "").strip().rstrip("/") or base
        if self.public_url.endswith("/api"):
            self.public_url = self.public_url[: -len("/api")]
        self.__api_key = api_key.strip()  # only ever read by _headers(), never formatted anywhere
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))
        self.session = session or requests.Session()
        self._server_version: tuple[int, int, int] | None = None

    def __repr__(self) -> str:
        return f"ImmichClient(base_url={self._shown_url!r}, api_key='***')"

    __str__ = __repr__

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> ImmichClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ server info
    def server_version(self) -> tuple[int, int, int]:
        """``(major, minor, patch)`` from ``GET /api/server/version``; asked once, then cached.
        Also the cheapest way to check that the URL points at an Immich server."""
        if self._server_version is None:
            try:
                body = self._get_json("/server/version", authenticated=False)
            except ImmichNotFound:
                raise ImmichConnectionError(
                    f"No Immich API answers at {self._shown_url}/api (HTTP 404): check the Immich URL.", status=404
                ) from None
            try:
                self._server_version = (int(body["major"]), int(body["minor"]), int(body["patch"]))
            except (KeyError, TypeError, ValueError):
                raise ImmichConnectionError(
                    f"{self._shown_url}/api/server/version did not answer like an Immich server: check the Immich URL."
                ) from None
        return self._server_version

    @property
    def is_v2(self) -> bool:
        """True for servers older than v3 (string durations, ``isArchived`` flag, ...)."""
        return self.server_version()[0] < 3

    def me(self) -> ImmichUser | None:
        """The key's user, or None when the key lacks the optional ``user.read`` permission."""
        try:
            body = self._get_json("/users/me")
        except ImmichPermissionError:
            return None
        return ImmichUser(id=body["id"], name=body.get("name", ""), email=body.get("email", ""))

    def statistics(self) -> ImmichStatistics | None:
        """Timeline image/video counts (``GET /api/assets/statistics``, not archived, not trashed),
        or None when the key lacks the ``asset.statistics`` permission (it is optional)."""
        try:
            body = self._get_json("/assets/statistics", params={"isTrashed": "false", "visibility": "timeline"})
        except ImmichPermissionError:
            return None
        return ImmichStatistics(images=int(body["images"]), videos=int(body["videos"]), total=int(body["total"]))

    def albums(self) -> list[ImmichAlbum]:
        """Albums the key's user owns or that are shared with them."""
        return [_album(a) for a in self._get_json("/albums")]

    def key_permissions(self) -> frozenset[str] | None:
        """The permissions of this API key (``GET /api/api-keys/me``; any key may read itself), or
        None when the server cannot tell (an old server without the endpoint)."""
        try:
            body = self._get_json("/api-keys/me")
        except ImmichNotFound:
            return None
        return frozenset(str(p) for p in body.get("permissions") or [])

    # ----------------------------------------------------------------------------------- assets
    def iter_assets(
        self,
        *,
        asset_type: str | None = None,
        updated_after: datetime | None = None,
        album_ids: Iterable[str] | None = None,
        page_size: int = 250,
        with_archived: bool = False,
        include_removed: bool = False,
    ) -> Iterator[ImmichAsset]:
        """Every image/video asset of the library, page by page (``POST /api/search/metadata``).

        ``updated_after`` is inclusive (assets updated at exactly that instant are listed again).
        ``album_ids`` limits the listing to assets in *any* of those albums (Immich's own filter
        means *all* of them, so each album is searched separately and duplicates are dropped).
        Trashed assets are never yielded; archived ones only with ``with_archived``; hidden and
        locked-folder assets never. ``include_removed`` also yields trashed and archived assets
        (check ``on_timeline``): how an incremental sync learns that assets left the timeline, since
        trashing, archiving and restoring all bump ``updatedAt``.
        """
        if asset_type is not None and asset_type not in _ASSET_TYPES:
            raise ValueError(f"asset_type must be one of {_ASSET_TYPES} or None, not {asset_type!r}")
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000 (Immich's limit)")
        base: dict[str, Any] = {"size": page_size, "withExif": True}
        if asset_type:
            base["type"] = asset_type
        if updated_after is not None:
            base["updatedAfter"] = format_immich_datetime(updated_after)
        if include_removed:
            base["withDeleted"] = True

        visibilities: list[str | None] = [None]  # None: the server's default, the timeline
        if with_archived or include_removed:
            visibilities.append("archive")
        albums: list[str | None] = list(dict.fromkeys(album_ids)) if album_ids else [None]

        seen: set[str] = set()
        for album_id in albums:
            for visibility in visibilities:
                query = dict(base)
                if album_id:
                    query["albumIds"] = [album_id]
                if visibility:
                    query["visibility"] = visibility
                for asset in self._search_pages(query):
                    if asset.id in seen or asset.type not in _ASSET_TYPES:
                        continue
                    if not include_removed and (asset.is_trashed or (asset.is_archived and not with_archived)):
                        continue
                    if asset.visibility in _SKIPPED_VISIBILITY - {"archive"}:
                        continue
                    if asset_type and asset.type != asset_type:
                        continue
                    seen.add(asset.id)
                    yield asset

    def _search_pages(self, query: dict) -> Iterator[ImmichAsset]:
        page = 1
        while True:
            body = self._request_json("POST", "/search/metadata", json={**query, "page": page})
            assets = body.get("assets") or {}
            for item in assets.get("items") or []:
                yield ImmichAsset.from_api(item)
            next_page = assets.get("nextPage")
            if next_page in (None, ""):
                return
            try:
                following = int(next_page)
            except (TypeError, ValueError):
                raise ImmichError(f"Immich returned an unexpected page token {next_page!r}") from None
            if following <= page:  # a server bug would otherwise loop forever
                raise ImmichError(f"Immich returned page token {next_page!r} after page {page}")
            page = following

    def asset(self, asset_id: str) -> ImmichAsset:
        """One asset by id (``GET /api/assets/{id}``); ImmichNotFound once it is deleted."""
        return ImmichAsset.from_api(self._get_json(f"/assets/{asset_id}"))

    def download_original(self, asset_id: str, dest: Path | str, chunk_size: int = 1 << 20) -> ImmichDownload:
        """The original file, byte for byte, written to ``dest`` (``GET /api/assets/{id}/original``)."""
        return self._download(f"/assets/{asset_id}/original", None, Path(dest), chunk_size)

    def download_fullsize(self, asset_id: str, dest: Path | str, chunk_size: int = 1 << 20) -> ImmichDownload:
        """Immich's full-size rendition (``GET /api/assets/{id}/thumbnail?size=fullsize``). The
        server redirects to the original for browser formats and to its preview JPEG for RAW/HEIC
        (unless it generates full-size images); the redirects are followed."""
        return self._download(f"/assets/{asset_id}/thumbnail", {"size": FULLSIZE}, Path(dest), chunk_size)

    def asset_url(self, asset_id: str) -> str:
        """Link to the asset in Immich's web UI (at ``public_url`` when one was given)."""
        return f"{self.public_url}/photos/{asset_id}"

    def find_by_checksum(self, checksum: str) -> list[ImmichAsset]:
        """Assets whose file has this checksum (base64 SHA-1), trashed ones included."""
        return list(self._search_pages({"checksum": checksum, "withDeleted": True, "size": 10}))

    # ------------------------------------------------------------------ writing (write-back)
    def upload_asset(
        self,
        file: IO[bytes],
        *,
        filename: str,
        mime_type: str,
        file_created_at: datetime,
        file_modified_at: datetime,
        checksum: str | None = None,
        device_asset_id: str | None = None,
        device_id: str | None = None,
    ) -> ImmichUpload:
        """Upload a file as a new asset (``POST /api/assets``, multipart, streamed from ``file``,
        an open binary file read from its start on every attempt). Immich keeps one asset per
        checksum and user: uploading the same bytes again answers ``duplicate`` with the existing
        asset's id, so a retry after a lost answer never creates a second one. ``checksum`` (base64
        SHA-1) lets Immich answer that before the body is sent. ``device_asset_id``/``device_id``
        are required by v2 servers only (v3 dropped them) and sent only to those."""
        fields = {
            "fileCreatedAt": format_immich_datetime(file_created_at),
            "fileModifiedAt": format_immich_datetime(file_modified_at),
            "filename": filename,
        }
        if self.is_v2:
            fields["deviceAssetId"] = device_asset_id or filename
            fields["deviceId"] = device_id or "parallax"
        headers = {"x-immich-checksum": checksum} if checksum else {}
        url = self.api_url + "/assets"

        def attempt() -> ImmichUpload:
            body = _MultipartUpload(fields, "assetData", file, filename, mime_type)
            response = self._send("POST", url, data=body, extra_headers={**headers, "Content-Type": body.content_type})
            try:
                answer = response.json()
                return ImmichUpload(id=str(answer["id"]), duplicate=answer.get("status") == "duplicate")
            except (ValueError, KeyError, TypeError):
                raise ImmichConnectionError(
                    f"{self._shown_url}/api/assets did not answer an upload like Immich (HTTP {response.status_code})"
                ) from None

        return self._with_retries("upload", attempt)

    def restore_from_trash(self, asset_ids: list[str]) -> None:
        """Take assets out of the trash (``POST /api/trash/restore/assets``)."""
        self._request_json("POST", "/trash/restore/assets", json={"ids": list(asset_ids)})

    def delete_assets(self, asset_ids: list[str], *, force: bool = False) -> None:
        """Move assets to Immich's trash, or delete them for good with ``force`` (``DELETE /api/assets``)."""
        self._request_empty("DELETE", "/assets", json={"ids": list(asset_ids), "force": force})

    def album(self, album_id: str) -> ImmichAlbum:
        """One album (``GET /api/albums/{id}``); ImmichNotFound once it is deleted."""
        return _album(self._get_json(f"/albums/{album_id}"))

    def owned_albums(self) -> list[ImmichAlbum]:
        """The albums the key's user owns (``GET /api/albums?isOwned=true``)."""
        return [_album(a) for a in self._get_json("/albums", params={"isOwned": "true"})]

    def create_album(self, name: str, description: str = "") -> ImmichAlbum:
        """A new, empty album (``POST /api/albums``)."""
        return _album(self._request_json("POST", "/albums", json={"albumName": name, "description": description}))

    def add_to_album(self, album_id: str, asset_ids: list[str]) -> dict[str, str | None]:
        """Add assets to an album (``PUT /api/albums/{id}/assets``): asset id -> None when added or
        already there, else Immich's reason (``no_permission``, ``not_found``...)."""
        answer = self._request_json("PUT", f"/albums/{album_id}/assets", json={"ids": list(asset_ids)})
        return {
            str(r["id"]): None
            if r.get("success") or r.get("error") == "duplicate"
            else str(r.get("error") or "unknown")
            for r in answer
        }

    def delete_album(self, album_id: str) -> None:
        """Delete an album (``DELETE /api/albums/{id}``); its assets stay in the library."""
        self._request_empty("DELETE", f"/albums/{album_id}")

    def create_stack(self, asset_ids: list[str]) -> str:
        """Stack assets, the first one on top (``POST /api/stacks``; a stack the first one already
        tops is merged into the new one). Returns the stack's id."""
        return str(self._request_json("POST", "/stacks", json={"assetIds": list(asset_ids)})["id"])

    # -------------------------------------------------------------------------------- internals
    def _headers(self, url: str, authenticated: bool = True) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        # The key only ever goes to the configured server, never to a host a redirect names.
        if authenticated and self._same_origin(url):
            headers["x-api-key"] = self.__api_key
        return headers

    def _same_origin(self, url: str) -> bool:
        a, b = urlsplit(url), urlsplit(self.base_url)
        return (a.scheme, a.netloc) == (b.scheme, b.netloc)

    def _with_retries(self, what: str, attempt: Callable[[], T]) -> T:
        """``attempt()``, tried again after a backoff while it fails in a retryable way."""
        number = 0
        while True:
            try:
                return attempt()
            except _Retryable as exc:
                if number >= self.retries:
                    raise exc.final from None
                number += 1
                delay = self.backoff * (2 ** (number - 1))
                log.warning("Immich %s failed (%s); retry %d/%d in %.1fs", what, exc.final, number, self.retries, delay)
                time.sleep(delay)

    def _send(
        self,
        method: str,
        url: str,
        *,
        authenticated: bool = True,
        follow_redirects: bool = True,
        extra_headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One HTTP exchange (redirects followed by hand, see ``_headers``), turning transport
        failures and retryable statuses into ``_Retryable`` and 4xx into ImmichError."""
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                response = self.session.request(
                    method,
                    url,
                    headers={**self._headers(url, authenticated), **(extra_headers or {})},
                    timeout=self.timeout,
                    allow_redirects=False,
                    **kwargs,
                )
            except requests.Timeout:
                raise _Retryable(
                    ImmichConnectionError(
                        f"Immich at {self._shown_url} did not answer in time ({method} {self._path(url)})"
                    )
                ) from None
            except requests.RequestException as exc:
                raise _Retryable(
                    ImmichConnectionError(f"Could not connect to Immich at {self._shown_url}: {_reason(exc)}")
                ) from None
            if follow_redirects and response.is_redirect and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                response.close()
                # Follow as a plain GET; the Location carries its own query string.
                method, kwargs, extra_headers = "GET", {k: v for k, v in kwargs.items() if k == "stream"}, None
                continue
            self._raise_for_status(method, url, response)
            return response
        raise ImmichError(f"Immich redirected too many times ({method} {self._path(url)})")

    def _raise_for_status(self, method: str, url: str, response: requests.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        message = _error_message(response)
        response.close()
        where = f"{method} {self._path(url)}"
        if status >= 500:
            raise _Retryable(
                ImmichServerError(
                    f"Immich at {self._shown_url} had an internal error (HTTP {status}) on {where}"
                    + (f": {message}" if message else ""),
                    status=status,
                )
            )
        if status == 401:
            raise ImmichAuthError(
                f"Immich at {self._shown_url}: the API key was rejected (HTTP 401). "
                "Create a new key in Immich (Account Settings > API Keys) and update IMMICH_API_KEY.",
                status=401,
            )
        if status == 403:
            match = _PERMISSION_RE.search(message)
            permission = match.group(1) if match else None
            what = f"the permission {permission}" if permission else f"a permission ({message or 'forbidden'})"
            raise ImmichPermissionError(
                f"Immich at {self._shown_url}: the API key lacks {what} (needed for {where}). "
                "Edit the key's permissions in Immich.",
                permission=permission,
            )
        # Immich answers 400 "Not found or no asset.read access" for a missing (or foreign) id.
        if status == 404 or (status == 400 and message.lower().startswith("not found")):
            raise ImmichNotFound(f"Immich has no {where}" + (f": {message}" if message else ""), status=404)
        raise ImmichRequestError(
            f"Immich refused {where} (HTTP {status})" + (f": {message}" if message else ""), status=status
        )

    def _path(self, url: str) -> str:
        return urlsplit(url).path

    def _request_json(self, method: str, path: str, *, authenticated: bool = True, **kwargs: Any) -> Any:
        url = self.api_url + path

        def attempt() -> Any:
            response = self._send(method, url, authenticated=authenticated, **kwargs)
            try:
                return response.json()
            except ValueError:
                raise ImmichConnectionError(
                    f"{self._shown_url}{self._path(url)} did not answer with JSON: is it really an Immich server?"
                ) from None

        return self._with_retries(f"{method} {path}", attempt)

    def _get_json(self, path: str, *, authenticated: bool = True, params: dict | None = None) -> Any:
        return self._request_json("GET", path, authenticated=authenticated, params=params)

    def _request_empty(self, method: str, path: str, **kwargs: Any) -> None:
        """A request whose answer has no body (204)."""
        url = self.api_url + path
        self._with_retries(f"{method} {path}", lambda: self._send(method, url, **kwargs).close())

    def _download(self, path: str, params: dict | None, dest: Path, chunk_size: int) -> ImmichDownload:
        dest.parent.mkdir(parents=True, exist_ok=True)
        url = self.api_url + path
        return self._with_retries(f"download {path}", lambda: self._download_once(url, params, dest, chunk_size))

    def _download_once(self, url: str, params: dict | None, dest: Path, chunk_size: int) -> ImmichDownload:
        response = self._send("GET", url, params=params, stream=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with response, os.fdopen(fd, "wb") as out:
                expected = _content_length(response)
                for chunk in response.iter_content(chunk_size):
                    out.write(chunk)
                written = out.tell()
            if expected is not None and written != expected:
                raise _Retryable(
                    ImmichIncompleteDownload(
                        f"The download from Immich stopped after {written} of {expected} bytes ({self._path(url)})"
                    )
                )
            os.replace(tmp, dest)
        except requests.RequestException as exc:
            tmp.unlink(missing_ok=True)
            raise _Retryable(
                ImmichIncompleteDownload(
                    f"The connection to Immich at {self._shown_url} dropped during a download "
                    f"({self._path(url)}): {_reason(exc)}"
                )
            ) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip() or None
        return ImmichDownload(path=dest, content_type=content_type, size=written)


def _album(data: dict) -> ImmichAlbum:
    return ImmichAlbum(
        id=data["id"],
        name=data.get("albumName", ""),
        asset_count=int(data.get("assetCount", 0)),
        updated_at=parse_immich_datetime(data.get("updatedAt")),
    )


def _content_length(response: requests.Response) -> int | None:
    # With a Content-Encoding, Content-Length counts compressed bytes, not what we write.
    if response.headers.get("Content-Encoding", "identity") != "identity":
        return None
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _reason(exc: BaseException) -> str:
    """A short, key-free reason for a transport error (requests' messages can be very long)."""
    text = str(exc)
    for hint, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "host name not found"),
        ("nodename nor servname", "host name not found"),
        ("timed out", "timed out"),
        ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted"),
        ("IncompleteRead", "connection closed before the end of the file"),
        ("Connection broken", "connection closed before the end of the file"),
        ("reset by peer", "connection reset"),
    ):
        if hint in text:
            return reason
    return type(exc).__name__
