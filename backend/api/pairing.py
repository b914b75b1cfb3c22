"""Pairing a device (a headset's browser) with a short one-time code instead of the API key.

Someone holding the key (the desktop UI, or ``parallax pair``) creates a code; the headset opens
``/pair`` (or the one-time link ``/pair?code=…``) and claims it, which sets the ``parallax_session``
cookie. Pairings are listed and revoked here (and with ``parallax pairings``).
"""

from __future__ import annotations

import uuid

from flask import jsonify, request
from flask_openapi3 import APIBlueprint, Tag
from werkzeug.exceptions import Forbidden, NotFound

from backend.api.common import api_error, services
from backend.api.web import page
from backend.auth import SESSION_COOKIE, SESSION_MAX_AGE_S, Access, Pairings, format_code, pairing_state
from backend.schemas import (
    Error,
    PairingAnswer,
    PairingClaimBody,
    PairingCreateBody,
    PairingCreated,
    PairingList,
    PairingPath,
    json_response,
)
from backend.serializers import _iso

bp = APIBlueprint(
    "pairing", __name__, abp_tags=[Tag(name="pairing", description="pairing a headset without the API key")]
)
PAIRED_DEVICE_403 = json_response(Error, "a paired device's session may not manage pairings: that needs the API key")


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


@bp.get("/pair", doc_ui=False)
def pair_page():
    return page("pair.html")


@bp.post(
    "/api/pairing",
    summary="A one-time code (10 minutes) that pairs a device; needs the API key, not a paired session",
    responses={201: PairingCreated, 400: Error, 403: PAIRED_DEVICE_403},
)
def create_pairing(body: PairingCreateBody):
    new = _pairings().create(body.label or "")
    return jsonify(
        {
            "pairing": pairing_json(new.row),
            "code": format_code(new.code),
            # One-time link: opening it pairs that browser (the code is in the query, used once).
            "link": f"/pair?code={new.code}",
        }
    ), 201


@bp.post(
    "/api/pairing/claim",
    summary="Exchange a pairing code for the parallax_session cookie (no API key needed)",
    responses={
        200: json_response(PairingAnswer, "paired: the response sets the parallax_session cookie"),
        400: Error,
        404: json_response(Error, "the code is not valid: expired, used or revoked (invalid_code)"),
    },
)
def claim_pairing(body: PairingClaimBody):
    claimed = Pairings(services().db).claim(body.code, request.headers.get("User-Agent", ""))
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


@bp.get(
    "/api/pairings",
    summary="Paired devices and open codes, newest first",
    responses={200: PairingList, 403: PAIRED_DEVICE_403},
)
def list_pairings():
    return jsonify({"pairings": [pairing_json(row) for row in _pairings().list()]})


@bp.delete(
    "/api/pairings/<pairing_id>",
    summary="Revoke a pairing: that device is signed out at once",
    responses={200: PairingAnswer, 403: PAIRED_DEVICE_403, 404: Error},
)
def revoke_pairing(path: PairingPath):
    pairing_id = path.pairing_id
    try:
        uuid.UUID(pairing_id)
    except ValueError:
        raise NotFound(f"no pairing with id {pairing_id}") from None
    row = _pairings().revoke(pairing_id)
    if row is None:
        raise NotFound(f"no pairing with id {pairing_id}")
    return jsonify({"pairing": pairing_json(row)})
