"""The OpenAPI 3.1 description of the backend's API (served at /api/openapi.json, browsable at /docs)."""

from __future__ import annotations

from typing import Any

from backend.tasks.registry import TASKS as REGISTERED_TASKS
from backend.tasks.registry import JobStatus

ERROR = {"$ref": "#/components/responses/Error"}


def _json(schema_ref: str, description: str = "OK") -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


def _file(description: str, *types: str) -> dict:
    return {
        "description": description,
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in types},
    }


def _id(name: str = "item_id", what: str = "media item") -> dict:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
        "description": f"the {what}'s id",
    }


def _q(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


PAGE = [
    _q("page", {"type": "integer", "minimum": 1, "default": 1}, "page number"),
    _q("per_page", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "items per page"),
]

JOB_STATUS = [s.value for s in JobStatus]
TASKS = list(REGISTERED_TASKS)


def build_spec() -> dict[str, Any]:
    nullable_str = {"type": ["string", "null"]}
    nullable_int = {"type": ["integer", "null"]}
    nullable_num = {"type": ["number", "null"]}
    schemas = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                }
            },
        },
        "Item": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "kind": {"enum": ["photo", "video"]},
                "original_filename": {"type": "string"},
                "mime_type": {"type": "string"},
                "size_bytes": {"type": "integer"},
                "sha256": {"type": "string"},
                "width": nullable_int,
                "height": nullable_int,
                "duration": nullable_num,
                "fps": nullable_num,
                "frame_count": nullable_int,
                "rotation": {"type": "integer"},
                "has_audio": {"type": "boolean"},
                "captured_at": nullable_str,
                "source": {"enum": ["upload", "immich"]},
                "immich_asset_id": nullable_str,
                "immich_url": nullable_str,
                "immich_removed": {
                    "enum": ["deleted", "trashed", "archived", "not_on_timeline", None],
                    "description": "why the Immich asset left the timeline; such items are hidden from the list",
                },
                "status": {"type": ["string", "null"], "description": "made of the newest job of each task"},
                "created_at": {"type": "string"},
                "original_url": {"type": "string"},
                "thumbnail_url": {"type": "string", "description": "a WebP preview, at most 512 px, upright"},
            },
        },
        "Job": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "media_id": {"type": ["string", "null"]},
                "task": {"enum": TASKS},
                "status": {"enum": JOB_STATUS},
                "parameters": {"type": "object"},
                "progress": {
                    "type": "object",
                    "properties": {"done": {"type": "integer"}, "total": nullable_int, "stage": nullable_str},
                },
                "attempts": {"type": "integer"},
                "max_attempts": {"type": "integer"},
                "error": {"type": ["string", "null"], "description": "what went wrong, in words a user understands"},
                "error_kind": nullable_str,
                "skip_reason": nullable_str,
                "enable_with": {
                    "type": ["string", "null"],
                    "description": "the variable(s) that enable a skipped task",
                },
                "timeout_s": nullable_int,
                "result": {"type": ["object", "null"]},
                "created_at": {"type": "string"},
                "queued_at": nullable_str,
                "started_at": nullable_str,
                "finished_at": nullable_str,
                "jobs_ahead": {
                    "type": ["integer", "null"],
                    "description": "for a queued job: how many queued jobs start before it",
                },
                "url": {"type": "string"},
            },
        },
        "Asset": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "media_id": {"type": "string"},
                "job_id": nullable_str,
                "kind": {"enum": ["depth", "depth_frames", "cutout", "cutout_video"]},
                "variant": {"type": "string"},
                "model": nullable_str,
                "parameters": {"type": "object"},
                "mime_type": {"type": "string"},
                "size_bytes": {"type": "integer"},
                "width": nullable_int,
                "height": nullable_int,
                "metadata": {"type": "object"},
                "url": {"type": "string", "description": "the result to show or play"},
                "download_url": {"type": "string", "description": "the file as an attachment"},
                "download_name": {"type": "string", "description": "e.g. holiday_cutout_green.webm"},
                "thumbnail_url": {"type": "string", "description": "a WebP preview, at most 512 px"},
            },
        },
        "Neighbours": {
            "type": "object",
            "properties": {
                "newer": {"$ref": "#/components/schemas/Neighbour"},
                "older": {"$ref": "#/components/schemas/Neighbour"},
            },
        },
        "Neighbour": {
            "type": ["object", "null"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "kind": {"enum": ["photo", "video"]},
                "original_filename": {"type": "string"},
                "thumbnail_url": {"type": "string"},
            },
        },
        "ItemDetail": {
            "type": "object",
            "properties": {
                "item": {"$ref": "#/components/schemas/Item"},
                "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                "assets": {"type": "array", "items": {"$ref": "#/components/schemas/Asset"}},
                "duplicate": {"type": "boolean"},
            },
        },
        "UploadResult": {
            "type": "object",
            "properties": {
                "item": {"$ref": "#/components/schemas/Item"},
                "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                "duplicate": {"type": "boolean"},
            },
        },
        "ItemList": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                "page": {"type": "integer"},
                "per_page": {"type": "integer"},
                "total": {"type": "integer"},
            },
        },
        "JobList": {
            "type": "object",
            "properties": {
                "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                "page": {"type": "integer"},
                "per_page": {"type": "integer"},
                "total": {"type": "integer"},
            },
        },
        "Manifest": {
            "type": "object",
            "description": "depth frames for the viewer; a photo has one frame",
            "properties": {
                "version": {"type": "integer"},
                "media_id": {"type": "string"},
                "kind": {"enum": ["photo", "video"]},
                "model": nullable_str,
                "method": nullable_str,
                "requested_fps": nullable_num,
                "effective_fps": nullable_num,
                "frame_width": {"type": "integer"},
                "frame_height": {"type": "integer"},
                "frame_count": {"type": "integer"},
                "polarity": {"enum": ["near_dark", "near_bright"]},
                "frames": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer"},
                            "time": {"type": "number"},
                            "depth_url": {"type": "string"},
                            "color_url": nullable_str,
                        },
                    },
                },
                "source_url": {"type": "string"},
            },
        },
        "Health": {
            "type": "object",
            "properties": {"status": {"enum": ["ok", "degraded", "error"]}, "checks": {"type": "object"}},
        },
        "Reprocess": {
            "type": "object",
            "properties": {
                "tasks": {
                    "type": "array",
                    "items": {"enum": [t.name for t in REGISTERED_TASKS.values() if t.media_kind]},
                },
                "parameters": {
                    "type": "object",
                    "description": "fps, max_frames, method, height, bit_depth, polarity,"
                    " include_color, model, background, output, prores",
                },
            },
        },
    }
    paths: dict[str, Any] = {
        "/api/health": {
            "get": {
                "tags": ["system"],
                "summary": "Database, Redis, workers and ffmpeg",
                "security": [],
                "responses": {"200": _json("Health"), "503": _json("Health", "core service down")},
            }
        },
        "/api/config": {
            "get": {
                "tags": ["system"],
                "summary": "Effective feature flags and limits (never secrets)",
                "responses": {"200": {"description": "OK"}},
            }
        },
        "/api/media/upload": {
            "post": {
                "tags": ["media"],
                "summary": "Upload a photo or video; its type is read from the content",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {"media": {"type": "string", "format": "binary"}},
                                "required": ["media"],
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json("UploadResult", "stored; jobs created (skipped where a feature is off)"),
                    "200": _json("ItemDetail", "the same bytes were already stored: the existing item"),
                    "400": ERROR,
                    "413": ERROR,
                    "422": ERROR,
                },
            }
        },
        "/api/media": {
            "get": {
                "tags": ["media"],
                "summary": "List media items",
                "parameters": PAGE
                + [
                    _q("kind", {"enum": ["photo", "video"]}, "filter by kind"),
                    _q(
                        "status",
                        {"enum": ["processing", "completed", "failed", "cancelled", "skipped", "none"]},
                        "filter by state",
                    ),
                    _q("source", {"enum": ["upload", "immich"]}, "filter by where it came from"),
                ],
                "responses": {"200": _json("ItemList"), "400": ERROR},
            }
        },
        "/api/media/{item_id}": {
            "get": {
                "tags": ["media"],
                "summary": "One item with its jobs and results",
                "parameters": [_id()],
                "responses": {"200": _json("ItemDetail"), "404": ERROR},
            },
            "delete": {
                "tags": ["media"],
                "summary": "Delete an item with all its files",
                "parameters": [_id()],
                "responses": {"204": {"description": "deleted"}, "404": ERROR},
            },
        },
        "/api/media/{item_id}/original": {
            "get": {
                "tags": ["media"],
                "summary": "Download the original (byte ranges)",
                "parameters": [_id(), _q("download", {"enum": ["1"]}, "as an attachment")],
                "responses": {"200": _file("the file", "*/*"), "206": _file("a range", "*/*"), "404": ERROR},
            }
        },
        "/api/media/{item_id}/thumbnail": {
            "get": {
                "tags": ["media"],
                "summary": "A small upright preview of the original (a video's poster frame)",
                "parameters": [_id(), _q("v", {"type": "string"}, "the version from thumbnail_url: cached for good")],
                "responses": {"200": _file("WebP, at most 512 px on its longest side", "image/webp"), "404": ERROR},
            }
        },
        "/api/media/{item_id}/neighbours": {
            "get": {
                "tags": ["media"],
                "summary": "The newer and older item next to this one, in the library's order",
                "parameters": [_id(), _q("kind", {"enum": ["photo", "video"]}, "only among this kind")],
                "responses": {"200": _json("Neighbours"), "404": ERROR},
            }
        },
        "/api/media/{item_id}/assets/{asset_id}": {
            "get": {
                "tags": ["results"],
                "summary": "Any result's file (depth map, depth ZIP, cut-out image or video)",
                "parameters": [_id(), _id("asset_id", "result"), _q("download", {"enum": ["1"]}, "as an attachment")],
                "responses": {"200": _file("the file", "*/*"), "206": _file("a range", "*/*"), "404": ERROR},
            }
        },
        "/api/media/{item_id}/assets/{asset_id}/thumbnail": {
            "get": {
                "tags": ["results"],
                "summary": "A small preview of a result (transparency kept)",
                "parameters": [_id(), _id("asset_id", "result"), _q("v", {"type": "string"}, "version")],
                "responses": {"200": _file("WebP, at most 512 px on its longest side", "image/webp"), "404": ERROR},
            }
        },
        "/api/media/{item_id}/reprocess": {
            "post": {
                "tags": ["media"],
                "summary": "Run an item's tasks again, optionally with new parameters",
                "parameters": [_id()],
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Reprocess"}}}
                },
                "responses": {"202": _json("JobList"), "400": ERROR, "404": ERROR, "409": ERROR},
            }
        },
        "/api/media/{item_id}/depth": {
            "get": {
                "tags": ["results"],
                "summary": "Depth map: PNG for a photo, ZIP for a video",
                "parameters": [_id()],
                "responses": {
                    "200": _file("header X-Depth-Polarity tells which way", "image/png", "application/zip"),
                    "404": ERROR,
                },
            }
        },
        "/api/media/{item_id}/depth/info": {
            "get": {
                "tags": ["results"],
                "summary": "The depth result's metadata",
                "parameters": [_id()],
                "responses": {"200": _json("Asset"), "404": ERROR},
            }
        },
        "/api/media/{item_id}/depth/manifest": {
            "get": {
                "tags": ["viewer"],
                "summary": "Frames with times and URLs for the viewer",
                "parameters": [_id()],
                "responses": {"200": _json("Manifest"), "304": {"description": "not modified"}, "404": ERROR},
            }
        },
        "/api/media/{item_id}/depth/frames/{index}": {
            "get": {
                "tags": ["viewer"],
                "summary": "One depth frame (PNG), read from the stored ZIP",
                "parameters": [
                    _id(),
                    {"name": "index", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}},
                ],
                "responses": {
                    "200": _file("depth frame", "image/png"),
                    "304": {"description": "not modified"},
                    "404": ERROR,
                },
            }
        },
        "/api/media/{item_id}/depth/frames/{index}/color": {
            "get": {
                "tags": ["viewer"],
                "summary": "The matching colour frame",
                "parameters": [
                    _id(),
                    {"name": "index", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}},
                ],
                "responses": {"200": _file("colour frame", "image/jpeg", "image/png"), "404": ERROR},
            }
        },
        "/api/media/{item_id}/cutout": {
            "get": {
                "tags": ["results"],
                "summary": "Background-removed result; asking for a background not rendered yet queues it",
                "parameters": [
                    _id(),
                    _q(
                        "background",
                        {"type": "string"},
                        "transparent (default), mask (photos), green, blue, white, black or #rrggbb",
                    ),
                ],
                "responses": {
                    "200": _file(
                        "PNG for a photo; WebM (alpha) or MP4 for a video", "image/png", "video/webm", "video/mp4"
                    ),
                    "202": {"description": "being rendered; poll the job"},
                    "400": ERROR,
                    "404": ERROR,
                },
            }
        },
        "/api/media/{item_id}/depth/video": {
            "get": {
                "tags": ["results"],
                "summary": "RGB-D video of a video (colour left, depth right, H.264 MP4); byte ranges",
                "parameters": [_id()],
                "responses": {
                    "200": _file("H.264 MP4 with the source's audio", "video/mp4"),
                    "206": _file("a byte range", "video/mp4"),
                    "304": {"description": "not modified (ETag)"},
                    "404": ERROR,
                },
            }
        },
        "/api/media/{item_id}/stereo": {
            "get": {
                "tags": ["results"],
                "summary": "Stereo 3D export (named with the VR player tags); not made yet: queues it",
                "parameters": [
                    _id(),
                    _q(
                        "format",
                        {"enum": ["full_sbs", "half_sbs", "tb", "anaglyph"]},
                        "stereo layout (default full_sbs)",
                    ),
                ],
                "responses": {
                    "200": _file("JPEG or PNG for a photo, MP4 for a video", "image/jpeg", "image/png", "video/mp4"),
                    "202": {"description": "being made; poll the job"},
                    "400": ERROR,
                    "404": ERROR,
                },
            }
        },
        "/api/media/{item_id}/stereo/info": {
            "get": {
                "tags": ["results"],
                "summary": "The stored stereo export's record (parameters, size, depth source)",
                "parameters": [
                    _id(),
                    _q(
                        "format",
                        {"enum": ["full_sbs", "half_sbs", "tb", "anaglyph"]},
                        "stereo layout (default full_sbs)",
                    ),
                ],
                "responses": {"200": _json("Asset"), "400": ERROR, "404": ERROR},
            }
        },
        "/api/jobs": {
            "get": {
                "tags": ["jobs"],
                "summary": "List jobs",
                "parameters": PAGE
                + [
                    _q("status", {"enum": JOB_STATUS}, "filter by status"),
                    _q("task", {"enum": TASKS}, "filter by task"),
                    _q("media_id", {"type": "string", "format": "uuid"}, "jobs of one item"),
                ],
                "responses": {"200": _json("JobList"), "400": ERROR},
            }
        },
        "/api/jobs/{job_id}": {
            "get": {
                "tags": ["jobs"],
                "summary": "One job with its progress",
                "parameters": [_id("job_id", "job")],
                "responses": {"200": _json("Job"), "404": ERROR},
            }
        },
        "/api/jobs/{job_id}/cancel": {
            "post": {
                "tags": ["jobs"],
                "summary": "Cancel a pending, queued or running job",
                "parameters": [_id("job_id", "job")],
                "responses": {"200": _json("Job"), "404": ERROR, "409": ERROR},
            }
        },
        "/api/jobs/{job_id}/retry": {
            "post": {
                "tags": ["jobs"],
                "summary": "Run a failed or cancelled job again",
                "parameters": [_id("job_id", "job")],
                "responses": {"202": _json("Job"), "404": ERROR, "409": ERROR},
            }
        },
        "/api/jobs/requeue-skipped": {
            "get": {
                "tags": ["jobs"],
                "summary": "How many skipped jobs are waiting: their feature has been turned on since",
                "responses": {"200": {"description": "count, and by_task"}},
            },
            "post": {
                "tags": ["jobs"],
                "summary": "Queue skipped jobs whose feature is now on",
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"type": "object", "properties": {"task": {"enum": TASKS}}}}
                    }
                },
                "responses": {"200": {"description": "what was queued, and what is still off"}},
            },
        },
        "/api/queue/stats": {
            "get": {
                "tags": ["jobs"],
                "summary": "Job counts by status and task, queue length, workers",
                "responses": {"200": {"description": "OK"}},
            }
        },
        "/api/queue/recover": {
            "post": {
                "tags": ["jobs"],
                "summary": "Re-queue work Redis lost and jobs of dead workers",
                "responses": {"200": {"description": "counts of what was recovered"}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Parallax API",
            "version": "0.1.0",
            "description": "Depth maps and cut-outs for an Immich library. Errors are JSON: "
            '{"error": {"code", "message"}}. When API_KEY is set, every /api route except '
            "/api/health needs the X-API-Key header.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": [{"apiKey": []}],
    }


def add_paths(spec: dict, extra: dict) -> dict:
    spec["paths"].update(extra)
    return spec
