"""GET /api/health and GET /api/config."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from functools import lru_cache

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag

from backend.api.common import services
from backend.jobs import live_workers
from backend.schemas import Health, PublicConfig, json_response

bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="system", description="health and configuration")])
# The checks run side by side and the answer comes within this, whatever hangs (a blackholed host).
CHECK_DEADLINE_S = 1.5


@lru_cache(maxsize=1)
def _ffmpeg_version() -> str | None:
    path = shutil.which("ffmpeg")
    if not path or not shutil.which("ffprobe"):
        return None
    try:
        out = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.split("\n", 1)[0].replace("ffmpeg version ", "").split(" ")[0] or "unknown"


def _check(fn):
    started = time.perf_counter()
    try:
        detail = fn()
        detail = detail if isinstance(detail, dict) else {}
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1), **detail}
    except Exception as exc:
        return {"ok": False, "error": str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}


def _checks_within(probes: dict[str, Callable], seconds: float) -> dict[str, dict]:
    results: dict[str, dict] = {}
    threads = [
        threading.Thread(target=lambda n=name, p=probe: results.__setitem__(n, _check(p)), daemon=True)
        for name, probe in probes.items()
    ]
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    late = {"ok": False, "error": f"no answer within {seconds:g} s"}
    return {name: dict(results.get(name) or late) for name in probes}


@bp.get(
    "/api/health",
    summary="Database, Redis, workers and ffmpeg (never needs the API key)",
    responses={200: Health, 503: json_response(Health, "the database or Redis is down")},
)
def health():
    svc = services()
    checks = _checks_within(
        {
            "database": svc.db.ping,
            "redis": svc.redis.ping,
            "workers": lambda: {"workers": live_workers(svc)},
        },
        CHECK_DEADLINE_S,
    )
    workers = checks["workers"]
    if workers["ok"]:
        workers["count"] = len(workers["workers"])
        workers["ok"] = workers["count"] > 0
        if not workers["ok"]:
            workers["error"] = "no worker is listening; start one with: python -m backend worker"
    checks["workers"] = workers
    version = _ffmpeg_version()
    checks["ffmpeg"] = (
        {"ok": True, "version": version}
        if version
        else {"ok": False, "error": "ffmpeg/ffprobe not found on PATH (apt-get install ffmpeg)"}
    )
    core_ok = checks["database"]["ok"] and checks["redis"]["ok"]
    status = "ok" if all(c["ok"] for c in checks.values()) else ("degraded" if core_ok else "error")
    return jsonify(status=status, checks=checks), 200 if core_ok else 503


@bp.get("/api/config", summary="Effective feature flags and limits (never secrets)", responses={200: PublicConfig})
def config():
    return jsonify(services().settings.public())
