"""What every blueprint uses: the request's services and the JSON error shape. Kept apart from
``backend.app`` so blueprints never import the app factory (which imports them)."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify

from backend.services import Services


def api_error(status: int, code: str, message: str, **extra: Any):
    body = {"error": {"code": code, "message": message, **extra}}
    return jsonify(body), status


def services() -> Services:
    svc: Services = current_app.extensions["parallax"]
    return svc
