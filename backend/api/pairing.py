"""Pairing a device (a headset's browser) with a short one-time code instead of the API key.

Someone holding the key (the desktop UI, or ``parallax pair``) creates a code; the headset opens
``/pair`` (or the one-time link ``/pair?code=…``) and claims it, which sets the ``parallax_session``
cookie. Pairings are listed and revoked here (and with ``parallax pairings``).
"""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import BadRequest, Forbidden, NotFound

from backend.api.common import api_error, services
from backend.api.web import page
from backend.auth import SESSION_COOKIE, SESSION_MAX_AGE_S, Access, Pairings, format_code, pairing_state
from backend.serializers import _iso

bp = Blueprint("pairing", __name__)

_PAIRING = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "label": {"type": "string"},
        "state": {"enum": ["waiting", "expired", "paired", "revoked"]},
        "user_agent": {"type": ["string", "null"]},
        "created_at": {"type": "string"},
        "code_expires_at": {"type": "string"},
        "claimed_at": {"type": ["string", "null"]},
        "last_seen_at": {"type": ["string", "null"]},
        "revoked_at": {"type": ["string", "null"]},
    },
}


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ONE = {"type": "object", "properties": {"pairing": _PAIRING}}
OPENAPI_PATHS: dict = {
    "/api/pairing": {
        "post": {
            "tags": ["pairing"],
            "summary": "A one-time code (10 minutes) that pairs a device; needs the API key, not a paired session",
            "requestBody": {
                "content": {
                    "application/json": {"schema": {"type": "object", "properties": {"label": {"type": "string"}}}}
                }
            },
            "responses": {
                "201": _json(
                    "the code, shown once",
                    {
                        "type": "object",
                        "properties": {"pairing": _PAIRING, "code": {"type": "string"}, "link": {"type": "string"}},
                    },
                ),
                "400": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
            },
        }
    },
    "/api/pairing/claim": {
        "post": {
            "tags": ["pairing"],
            "summary": "Exchange a pairing code for the parallax_session cookie (no API key needed)",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "required": ["code"], "properties": {"code": {"type": "string"}}}
                    }
                },
            },
            "responses": {
                "200": _json("paired: the response sets the session cookie", _ONE),
                "400": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
            },
        }
    },
    "/api/pairings": {
        "get": {
            "tags": ["pairing"],
            "summary": "Paired devices and open codes, newest first",
            "responses": {
                "200": _json(
                    "pairings", {"type": "object", "properties": {"pairings": {"type": "array", "items": _PAIRING}}}
                ),
                "403": {"$ref": "#/components/responses/Error"},
            },
        }
    },
    "/api/pairings/{pairing_id}": {
        "delete": {
            "tags": ["pairing"],
            "summary": "Revoke a pairing: that device is signed out at once",
            "parameters": [{"name": "pairing_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": _json("the revoked pairing", _ONE),
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
            },
        }
    },
}


def pairing_json(row: dict) -> dict:
    return {
        "id": str(row["id"]),
        "label": row["label"],
        "state": pairing_state(row),
        "user_agent": row["user_agent"],
        "created_at": _iso(row["created_at"]),
        "code_expires_at": _iso(row["code_expires_at"]),
        "claimed_at": _iso(row["claimed_at"]),
        "last_seen_at": _iso(row["last_seen_at"]),
        "revoked_at": _iso(row["revoked_at"]),
    }


def _pairings() -> Pairings:
    # A paired device may browse, but not pair further devices or revoke others: that takes the key.
    if request.environ.get("parallax.access") == Access.PAIRED:
        raise Forbidden("managing pairings needs the API key, not a paired device's session")
    return Pairings(services().db)


@bp.get("/pair")
def pair_page():
    return page("pair.html")


@bp.post("/api/pairing")
def create_pairing():
    body = request.get_json(silent=True) or {}
    label = body.get("label") or ""
    if not isinstance(label, str):
        raise BadRequest("label must be a string")
    new = _pairings().create(label)
    return jsonify(
        {
            "pairing": pairing_json(new.row),
            "code": format_code(new.code),
            # One-time link: opening it pairs that browser (the code is in the query, used once).
            "link": f"/pair?code={new.code}",
        }
    ), 201


@bp.post("/api/pairing/claim")
def claim_pairing():
    body = request.get_json(silent=True) or {}
    code = body.get("code")
    if not isinstance(code, str) or not code.strip():
        raise BadRequest('send the pairing code as JSON: {"code": "ABCD-EFGH"}')
    claimed = Pairings(services().db).claim(code, request.headers.get("User-Agent", ""))
    if claimed is None:
        return api_error(
            404, "invalid_code", "this pairing code is not valid: it may have expired, been used or been revoked"
        )
    row, token = claimed
    response = jsonify({"pairing": pairing_json(row)})
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_MAX_AGE_S,
        path="/",
        secure=request.is_secure,
        httponly=True,  # page scripts never need it; a script injection could not steal it
        samesite="Strict",
    )
    return response


@bp.get("/api/pairings")
def list_pairings():
    return jsonify({"pairings": [pairing_json(row) for row in _pairings().list()]})


@bp.delete("/api/pairings/<pairing_id>")
def revoke_pairing(pairing_id: str):
    try:
        uuid.UUID(pairing_id)
    except ValueError:
        raise NotFound(f"no pairing with id {pairing_id}") from None
    row = _pairings().revoke(pairing_id)
    if row is None:
        raise NotFound(f"no pairing with id {pairing_id}")
    return jsonify({"pairing": pairing_json(row)})
