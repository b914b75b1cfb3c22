"""Answers for requests the server cannot serve right now, instead of a generic 500: PostgreSQL
unreachable (503 with Retry-After, after at most DATABASE_TIMEOUT_SECONDS) and a full disk (507)."""

from __future__ import annotations

import logging

from flask import Flask, request

from backend.api.common import api_error
from backend.db import UNAVAILABLE_ERRORS
from backend.storage import OUT_OF_SPACE_MESSAGE, is_out_of_space

log = logging.getLogger("parallax")
RETRY_AFTER_S = 5


def database_unavailable(exc: Exception):
    log.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
    response, status = api_error(503, "database_unavailable", "database unavailable, try again in a few seconds")
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response, status


def out_of_space(exc: OSError):
    if not is_out_of_space(exc):
        raise exc  # answered like any other unexpected error (500, logged)
    log.error("out of space on %s %s: %s", request.method, request.path, exc)
    return api_error(507, "insufficient_storage", f"{OUT_OF_SPACE_MESSAGE}; free some space and try again")


def register(app: Flask) -> None:
    for error in UNAVAILABLE_ERRORS:
        app.register_error_handler(error, database_unavailable)
    app.register_error_handler(OSError, out_of_space)
