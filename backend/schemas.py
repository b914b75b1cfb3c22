"""The API's one schema: request parameters and response bodies as pydantic models.

Requests are validated with these models on the way in (flask-openapi3 reads the views' annotations),
the OpenAPI document is generated from them, and the worker's task handlers validate a job's stored
parameters with the same models, so every bound below exists once. This module imports nothing but
pydantic: the settings, the task handlers and the API can all use it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

# --- bounds (the only place they are written) -----------------------------------------------------
FPS_MAX = 120.0
MAX_FRAMES_MAX = 100_000
FRAME_HEIGHT_MIN = 16
FRAME_HEIGHT_MAX = 8192
PER_PAGE_MAX = 500
# page * per_page must stay far inside PostgreSQL's bigint OFFSET; a million pages is more than any library.
PAGE_MAX = 1_000_000
MODEL_NAME_MAX = 300
INFERENCE_WAIT_MAX_S = 300.0

FrameMethod = Literal["interval", "keyframes"]
Polarity = Literal["near_dark", "near_bright"]
BitDepth = Literal[8, 16]
Fps = Annotated[float, Field(gt=0, le=FPS_MAX, allow_inf_nan=False, description="frames per second to extract")]
MaxFrames = Annotated[int, Field(ge=1, le=MAX_FRAMES_MAX, description="at most this many frames")]
FrameHeight = Annotated[
    int, Field(ge=FRAME_HEIGHT_MIN, le=FRAME_HEIGHT_MAX, description="height of extracted frames in pixels")
]
ModelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MODEL_NAME_MAX)]
BACKGROUND_PATTERN = r"^(transparent|mask|green|blue|white|black|#?[0-9a-f]{6})$"
Background = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=BACKGROUND_PATTERN),
    Field(description="transparent, mask (photos), green, blue, white, black or a colour like #ff8800"),
]


def background_variant(value: str | None) -> str:
    """How a background is named in stored results and file names: ``transparent``, ``green``, ``ff8800``."""
    return (value or "transparent").strip().lower().lstrip("#")


JobStatusName = Literal["pending", "queued", "processing", "completed", "failed", "cancelled", "skipped"]
# The task registry's names (backend/tasks/registry.py); a test checks the two agree.
TaskName = Literal[
    "depth",
    "cutout",
    "video_depth",
    "video_cutout",
    "depth_video",
    "stereo",
    "video_stereo",
    "video_frames",
    "immich_import",
    "immich_writeback",
]
MediaKind = Literal["photo", "video"]
ItemStatus = Literal["processing", "completed", "failed", "cancelled", "skipped", "none"]


class Strict(BaseModel):
    """Unknown fields are refused: a misspelt parameter is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    """Query strings: empty values mean 'not given' (forms send them), unknown keys are ignored
    (cache-busters and the like)."""

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v not in ("", None)}
        return data


class OptionalBody(Strict):
    """A JSON body that may be left out entirely."""

    model_config = ConfigDict(extra="forbid", openapi_extra={"required": False})  # type: ignore[typeddict-unknown-key]

    @model_validator(mode="before")
    @classmethod
    def _none_is_empty(cls, data: Any) -> Any:
        return {} if data is None else data


# --- task parameters: shared by reprocess, the inference endpoints and the task handlers -----------
class FrameParams(Strict):
    method: FrameMethod | None = Field(None, description="interval (every 1/fps s) or keyframes")
    fps: Fps | None = None
    max_frames: MaxFrames | None = None
    height: FrameHeight | Literal["source"] | None = Field(None, description="pixels, or 'source' to keep it")


class DepthParams(Strict):
    bit_depth: BitDepth | None = Field(None, description="8 or 16 bit PNGs")
    polarity: Polarity | None = Field(None, description="near_dark: darker is nearer")
    model: ModelName | None = Field(None, description="a Depth Anything model id or folder")


class VideoDepthParams(FrameParams, DepthParams):
    include_color: bool | None = Field(None, description="store the matching colour frames too")


class CutoutParams(Strict):
    background: Background | None = None
    model: ModelName | None = Field(None, description="a rembg model name")
    prores: bool | None = Field(None, description="videos: ProRes 4444 MOV instead of WebM (transparent only)")


class TaskParameters(VideoDepthParams, CutoutParams):
    """Every parameter any media task takes; each task reads the ones it knows."""


# --- requests ------------------------------------------------------------------------------------
class ItemPath(BaseModel):
    item_id: str = Field(description="the media item's id (UUID)")


class JobPath(BaseModel):
    job_id: str = Field(description="the job's id (UUID)")


class FramePath(ItemPath):
    index: int = Field(ge=1, description="frame number, from 1")


class PageQuery(Query):
    page: int = Field(1, ge=1, le=PAGE_MAX, description="page number")
    per_page: int = Field(50, ge=1, le=PER_PAGE_MAX, description="items per page")


class MediaListQuery(PageQuery):
    kind: MediaKind | None = Field(None, description="filter by kind")
    status: ItemStatus | None = Field(None, description="filter by state (the newest job of each task)")
    source: Literal["upload", "immich"] | None = Field(None, description="filter by where it came from")


class JobListQuery(PageQuery):
    status: JobStatusName | None = None
    task: TaskName | None = None
    media_id: UUID | None = Field(None, description="only jobs of this item")


class OriginalQuery(Query):
    download: Literal["1"] | None = Field(None, description="1: as an attachment")


class DepthQuery(Query):
    version: Literal["full_resolution"] | None = Field(
        None, description="accepted for compatibility: the stored depth map is always full resolution"
    )


class KindQuery(Query):
    kind: MediaKind | None = Field(None, description="only among this kind")


class VersionQuery(Query):
    v: str | None = Field(None, description="the version from thumbnail_url: cached for good")


class AssetPath(ItemPath):
    asset_id: str = Field(description="the result's id (UUID)")


class StereoQuery(Query):
    format: str | None = Field(None, description="stereo layout: full_sbs (default), half_sbs, tb or anaglyph")


class CutoutQuery(Query):
    background: Background | None = None


class ReprocessBody(OptionalBody):
    tasks: list[TaskName] | None = Field(None, description="default: every task that applies to the item")
    parameters: TaskParameters = Field(default_factory=TaskParameters)


class RequeueBody(OptionalBody):
    task: TaskName | None = Field(None, description="only this task")


# --- responses -----------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(description="stable machine-readable code, e.g. not_found, bad_request")
    message: str = Field(description="what went wrong, in plain words")


class Error(BaseModel):
    error: ErrorDetail


class Item(Strict):
    id: str
    kind: MediaKind
    original_filename: str
    mime_type: str
    size_bytes: int
    sha256: str
    width: int | None
    height: int | None
    duration: float | None
    fps: float | None
    frame_count: int | None
    rotation: int
    has_audio: bool
    captured_at: str | None
    source: Literal["upload", "immich"]
    immich_asset_id: str | None
    immich_url: str | None = Field(description="the item in Immich's web app (without credentials)")
    immich_removed: Literal["deleted", "trashed", "archived", "not_on_timeline"] | None = Field(
        description="why the Immich asset left the timeline; such items are hidden from the list"
    )
    status: ItemStatus | None = Field(description="made of the newest job of each task")
    created_at: str
    original_url: str
    thumbnail_url: str = Field(description="a WebP preview, at most 512 px, upright")


class JobProgress(Strict):
    done: int
    total: int | None
    stage: str | None


class Job(Strict):
    id: str
    media_id: str | None
    task: TaskName
    status: JobStatusName
    parameters: dict[str, Any]
    progress: JobProgress
    attempts: int
    max_attempts: int
    error: str | None = Field(description="what went wrong, in words a user understands")
    error_kind: str | None
    skip_reason: str | None
    enable_with: str | None = Field(description="the variable(s) that enable a skipped task")
    timeout_s: int | None
    result: dict[str, Any] | None
    created_at: str
    queued_at: str | None
    started_at: str | None
    finished_at: str | None
    jobs_ahead: int | None = Field(description="for a queued job: how many queued jobs start before it")
    url: str


class Asset(Strict):
    id: str
    media_id: str
    job_id: str | None
    kind: str = Field(description="depth, depth_frames, cutout, cutout_video")
    variant: str
    model: str | None
    parameters: dict[str, Any]
    mime_type: str
    size_bytes: int
    width: int | None
    height: int | None
    metadata: dict[str, Any] | None
    created_at: str | None
    url: str = Field(description="the result to show or play")
    download_url: str = Field(description="the file as an attachment")
    download_name: str = Field(description="e.g. holiday_cutout_green.webm")
    thumbnail_url: str = Field(description="a WebP preview, at most 512 px")


class ItemDetail(Strict):
    item: Item
    jobs: list[Job]
    assets: list[Asset]


class UploadResult(ItemDetail):
    duplicate: bool = Field(description="the same bytes were already stored: this is the existing item")
    # The original design's upload answer, kept so its documented clients keep working.
    success: bool
    message: str
    mediaItemId: str
    queueId: str | None = Field(description="the first job's id: GET /api/queue/items/{queueId}")
    filename: str
    size: int
    type: str = Field(description="the detected MIME type")


class Page(Strict):
    page: int
    per_page: int
    total: int


class ItemList(Page):
    items: list[Item]


class JobList(Page):
    jobs: list[Job]


class JobsCreated(Strict):
    jobs: list[Job]


class RequeueResult(Strict):
    requeued: list[Job]
    count: int
    still_disabled: dict[str, str] = Field(description="tasks still turned off, with the variable to set")


class RequeueableCounts(Strict):
    count: int
    by_task: dict[str, int]


class WorkerInfo(Strict):
    name: str
    state: str
    current_job: str | None
    last_heartbeat: str | None


class QueueStats(Strict):
    by_status: dict[str, int]
    by_task: dict[str, dict[str, int]]
    redis_queue_length: int | None
    workers: list[WorkerInfo]


class RecoverCounts(Strict):
    queued: int
    requeued: int
    recovered: int
    failed: int


class Check(BaseModel):
    model_config = ConfigDict(extra="allow")
    ok: bool
    error: str | None = None


class Health(Strict):
    status: Literal["ok", "degraded", "error"]
    checks: dict[str, Check]


class PublicConfig(BaseModel):
    """Effective flags and limits; never secrets, never URLs with credentials."""

    model_config = ConfigDict(extra="allow")
    features: dict[str, Any]
    limits: dict[str, Any]
    api_key_required: bool


class ManifestFrame(BaseModel):
    model_config = ConfigDict(extra="allow")
    index: int
    time: float
    depth_url: str
    color_url: str | None


class Manifest(BaseModel):
    """Depth frames for the viewer; a photo has one frame."""

    model_config = ConfigDict(extra="allow")
    version: int
    media_id: str
    kind: MediaKind
    model: str | None
    frame_width: int | None
    frame_height: int | None
    frame_count: int
    polarity: Polarity
    frames: list[ManifestFrame]
    source_url: str


class Neighbour(Strict):
    id: str
    kind: MediaKind
    original_filename: str
    thumbnail_url: str


class Neighbours(Strict):
    newer: Neighbour | None
    older: Neighbour | None


class ResultQueued(Strict):
    status: Literal["queued", "processing"]
    message: str
    job: Job


def binary(description: str, *media_types: str) -> dict:
    """An OpenAPI response of raw bytes: OpenAPI 3.1 describes them by their media type alone."""
    return {"description": description, "content": {t: {} for t in media_types}}


def json_response(model: type[BaseModel], description: str) -> dict:
    """An OpenAPI response of ``model`` with its own description (the model must also be some
    operation's plain response, which is what puts it in the document's components)."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
    }


# --- turning validation errors into one readable message ------------------------------------------
def describe_validation_error(exc: ValidationError) -> str:
    """``fps=-1 is not valid: Input should be greater than 0; method=...`` naming every bad field."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            parts.append(f"unknown parameter {where!r}")
        elif where:
            given = error.get("input")
            shown = f"={given!r}" if isinstance(given, str | int | float | bool) else ""
            parts.append(f"{where}{shown} is not valid: {message}")
        else:
            parts.append(message)
    return "; ".join(parts)


# --- Immich: connection, imports (backend/api/immich.py) -----------------------------------------
# The importer's modes and triggers (backend/immich/importer.py MODES, TRIGGERS) and the settings'
# IMMICH_REMOVED_ACTIONS; a test checks they agree.
ImportMode = Literal["full", "incremental"]
ImportTrigger = Literal["manual", "schedule", "cli"]
RemovedAssetsAction = Literal["hide", "delete"]
ImportRunStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
RECENT_RUNS_DEFAULT = 20
RECENT_RUNS_MAX = 200
IMPORT_PAGE_SIZE_MAX = 1000


class ImportBody(OptionalBody):
    mode: ImportMode | None = Field("incremental", description="the first import is always full")
    album_ids: list[UUID] | None = Field(
        None,
        description="only assets in any of these Immich albums (UUIDs, as POST /api/immich/test lists them);"
        " default: IMMICH_ALBUM_IDS",
    )
    page_size: Annotated[int, Field(strict=True, ge=1, le=IMPORT_PAGE_SIZE_MAX)] | None = Field(
        None, description="assets per listing request (default 250)"
    )


class ImportListQuery(Query):
    limit: int = Field(RECENT_RUNS_DEFAULT, ge=1, le=RECENT_RUNS_MAX, description="at most this many runs")


class ImportRunPath(BaseModel):
    run_id: str = Field(description="the import run's id (UUID)")


class ImmichAssetEntry(Strict):
    asset_id: str
    file_name: str
    reason: str


class ImportRunJob(Strict):
    """The job carrying a run: its status and progress."""

    id: str
    status: JobStatusName
    progress: JobProgress
    attempts: int
    max_attempts: int
    error: str | None
    error_kind: str | None
    url: str


class ImportRunJobRef(Strict):
    """The job carrying a run, when its row is no longer there to say more."""

    id: str
    url: str


class ImportRun(Strict):
    id: str
    mode: ImportMode
    status: ImportRunStatus
    trigger: ImportTrigger
    album_ids: list[str] = Field(description="the albums it was limited to; empty: the whole library")
    updated_after: str | None = Field(description="only assets updated since then were listed")
    created_at: str
    started_at: str | None
    finished_at: str | None
    total: int | None = Field(description="assets listed, once known")
    seen: int
    imported: int
    unchanged: int
    skipped: int
    failed: int
    removed: int = Field(description="items hidden or deleted: their asset left Immich's timeline")
    restored: int = Field(description="hidden items shown again: their asset came back")
    summary: str = Field(description='e.g. "completed", "completed with 3 failures", "failed: <why>"')
    failures: list[ImmichAssetEntry] = Field(description="assets that failed, with the reason (at most 500)")
    skips: list[ImmichAssetEntry] = Field(description="assets not taken, with the reason (at most 500)")
    removals: list[ImmichAssetEntry] = Field(description="what this run removed, with the reason (at most 500)")
    error: str | None
    job: ImportRunJob | ImportRunJobRef | None
    url: str


class ImportStarted(Strict):
    run: ImportRun
    job: Job


class ImportRunList(Strict):
    runs: list[ImportRun] = Field(description="newest first")


class ImmichWriteBackFailure(Strict):
    """The newest failed write-back job (of those not retried since)."""

    job_id: str
    media_id: str | None = Field(description="the item whose 3D version was not written back")
    reason: str = Field(description="the job's error, e.g. Immich's refusal (never the API key)")
    error_kind: str | None = Field(description="immich (refused: fix, then retry), or how else it failed")
    finished_at: str | None
    url: str = Field(description="the job (GET; retry with POST .../retry)")


class ImmichWriteBackOn(Strict):
    """IMMICH_WRITE_BACK=true: the settings and how far the uploads are (as ``parallax immich-status``)."""

    enabled: Literal[True]
    album: str = Field(description="IMMICH_WRITE_BACK_ALBUM, the album the 3D versions go to")
    album_id: str | None = Field(description="its Immich id, once found or created (null before the first upload)")
    album_url: str | None = Field(description="the album in Immich's web app (without credentials), once known")
    layout: str = Field(description="IMMICH_WRITE_BACK_FORMAT: full_sbs, half_sbs, tb or anaglyph")
    uploaded: int = Field(description="3D versions in Immich, in the album and stacked: up to date")
    in_progress: int = Field(description="uploads started whose album or stack step is still to do")
    replaced: int = Field(description="old versions replaced by a changed result, still to be moved to the trash")
    jobs_waiting: int = Field(description="write-back jobs pending, queued or running")
    jobs_failed: int = Field(description="items whose latest write-back job failed")
    last_failure: ImmichWriteBackFailure | None = Field(description="the newest of those failures; null: none")


class ImmichWriteBackOff(Strict):
    """IMMICH_WRITE_BACK is off."""

    enabled: Literal[False]
    enable_with: str = Field(description='what turns it on: "IMMICH_WRITE_BACK=true"')


class ImmichStatus(Strict):
    """Whether Immich is configured (never the key), the last and the running import, write-back."""

    configured: bool
    url: str | None = Field(description="IMMICH_URL without any user:password@ part")
    public_url: str | None = Field(description="IMMICH_PUBLIC_URL, for links to Immich's web app")
    server: None = Field(description="always null: POST /api/immich/test asks the server")
    album_ids: list[str] = Field(description="IMMICH_ALBUM_IDS")
    sync_interval_minutes: int = Field(description="IMMICH_SYNC_INTERVAL_MINUTES; 0: no scheduled sync")
    import_concurrency: int = Field(description="IMMICH_IMPORT_CONCURRENCY")
    removed_assets: RemovedAssetsAction = Field(description="IMMICH_REMOVED_ASSETS")
    last_success_at: str | None = Field(description="start of the last successful import of the configured selection")
    last_run: ImportRun | None = Field(description="the newest finished run")
    running: ImportRun | None = Field(description="the run queued or running now")
    write_back: ImmichWriteBackOn | ImmichWriteBackOff = Field(
        description="IMMICH_WRITE_BACK: uploading each Immich item's 3D version into Immich (docs/immich.md)"
    )


class ImmichServerVersion(Strict):
    version: str = Field(description="e.g. 1.135.3")
    major: int
    minor: int
    patch: int


class ImmichPermissionNeed(Strict):
    permission: str = Field(description="an Immich API key permission, e.g. asset.download")
    needed_for: str


class ImmichPermissions(Strict):
    """The key's permissions (Immich's GET /api/api-keys/me) against what the enabled features need."""

    checked: bool = Field(description="false when the server could not say")
    missing: list[ImmichPermissionNeed]
    missing_optional: list[ImmichPermissionNeed]


class ImmichUserInfo(Strict):
    id: str
    name: str
    email: str


class ImmichAssetCounts(Strict):
    images: int
    videos: int
    total: int


class ImmichAlbumInfo(Strict):
    id: str
    name: str
    asset_count: int


class ImmichTestResult(Strict):
    ok: bool
    url: str
    server: ImmichServerVersion
    permissions: ImmichPermissions
    user: ImmichUserInfo | None = Field(description="null without the user.read permission")
    statistics: ImmichAssetCounts | None = Field(description="null without asset.statistics")
    albums: list[ImmichAlbumInfo] | None = Field(description="null without album.read")
    warnings: list[str] = Field(description="optional details that could not be had (the test still passes)")


# --- pairing a device (backend/api/pairing.py) ----------------------------------------------------
class PairingCreateBody(OptionalBody):
    label: str | None = Field(None, description="a name to recognise the device by (kept to 100 characters)")


class PairingClaimBody(Strict):
    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] = Field(
        description="the code shown when it was made, e.g. ABCD-EFGH (case, spaces and dashes do not matter)"
    )


class PairingPath(BaseModel):
    pairing_id: str = Field(description="the pairing's id (UUID)")


class Pairing(Strict):
    id: str
    label: str
    state: Literal["waiting", "expired", "paired", "revoked"]
    user_agent: str | None = Field(description="the browser that claimed it")
    created_at: str
    code_expires_at: str
    claimed_at: str | None
    last_seen_at: str | None
    revoked_at: str | None


class PairingCreated(Strict):
    pairing: Pairing
    code: str = Field(description="shown once; valid for 10 minutes")
    link: str = Field(description="a one-time link that pairs the browser opening it: /pair?code=…")


class PairingAnswer(Strict):
    pairing: Pairing


class PairingList(Strict):
    pairings: list[Pairing] = Field(description="newest first")
