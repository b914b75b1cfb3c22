"""The OpenAPI description and an interactive docs page (Swagger UI shipped by swagger-ui-bundle, no CDN)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, send_from_directory

from backend.openapi import build_spec

bp = Blueprint("docs", __name__)

DOCS_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Parallax API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head><body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#ui", deepLinking: true,
requestInterceptor: (req) => { const k = localStorage.getItem("parallax.apiKey"); if (k) req.headers["X-API-Key"] = k; return req; }});
</script></body></html>"""


@bp.get("/api/openapi.json")
def openapi():
    from backend.api import immich_paths
    from backend.api.pairing import OPENAPI_PATHS as pairing_paths

    spec = build_spec()
    spec["paths"].update(immich_paths())
    spec["paths"].update(pairing_paths)
    return jsonify(spec)


@bp.get("/docs")
def docs_page():
    return Response(DOCS_PAGE, mimetype="text/html")


@bp.get("/docs/assets/<path:name>")
def docs_assets(name: str):
    from swagger_ui_bundle import swagger_ui_path

    return send_from_directory(swagger_ui_path, name, max_age=86400)
