"""The web interface and the VR viewer: static pages from backend/web (no CDN at run time)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_from_directory

bp = Blueprint("web", __name__)
WEB_ROOT = Path(__file__).resolve().parent.parent / "web"


def page(name: str):
    response = send_from_directory(WEB_ROOT, name, max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/")
def index():
    return page("index.html")


@bp.get("/items/<item_id>")
def item_page(item_id: str):
    return page("item.html")


@bp.get("/viewer/<item_id>")
def viewer_page(item_id: str):
    return page("viewer.html")


@bp.get("/static/<path:name>")
def static_files(name: str):
    response = send_from_directory(WEB_ROOT, name, max_age=300)
    response.headers["Cache-Control"] = "public, max-age=300, must-revalidate"
    return response
