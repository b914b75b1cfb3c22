"""Flask app factory: one blueprint per resource, JSON errors with a stable shape, optional API key.

The app is flask-openapi3's ``OpenAPI`` (a Flask subclass): views declare pydantic models for their
path, query, form and body (backend/schemas.py), which are validated before the view runs and make up
the OpenAPI document served at /api/openapi.json."""

from __future__ import annotations

import logging

from flask import Flask, Request, current_app, make_response, request
from flask.json.provider import DefaultJSONProvider
from flask_openapi3 import Info, OpenAPI
from flask_openapi3.types import SecuritySchemesDict
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from ai.errors import InvalidMediaError
from backend import outages, request_limits, security
from backend.api import docs, health, immich, inference, jobs, library, media, pairing, results, vr, web
from backend.api.common import api_error
from backend.auth import OPEN_API_PATHS, Pairings, authorise
from backend.jobs import JobError
from backend.schemas import Error, describe_validation_error
from backend.services import Services
from backend.settings import Settings, get_settings

API_KEY_SCHEME: SecuritySchemesDict = {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
# Blueprints whose every route is API (the inference endpoints keep the original design's paths,
# outside /api/); everything under /api/ is API too.
API_BLUEPRINTS = ("inference",)


class StreamingRequest(Request):
    """Multipart uploads stream straight to a file under MEDIA_ROOT/tmp (same filesystem as the
    final place, so storing them is a rename), and memory stays flat whatever the file's size."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        services: Services = current_app.extensions["parallax"]
        path = services.storage.temp_path(".upload")
        self.environ.setdefault("parallax.upload_paths", []).append(path)
        stream = open(path, "w+b")  # noqa: SIM115 (closed by remove_upload_temps after the request)
        self.environ.setdefault("parallax.upload_streams", []).append(stream)
        return stream


def _json_in_given_order(app: Flask) -> DefaultJSONProvider:
    provider = DefaultJSONProvider(app)
    provider.sort_keys = False  # keys in the order the serializers write them
    return provider


def validation_error(exc: ValidationError):
    """A request that does not fit its model: 400 naming every bad parameter."""
    return make_response(*api_error(400, "bad_request", describe_validation_error(exc)))


def create_app(settings: Settings | None = None, services_: Services | None = None) -> Flask:
    settings = settings or (services_.settings if services_ else get_settings())
    svc = services_ or Services.create(settings)
    app = OpenAPI(
        "parallax",
        static_folder=None,
        info=Info(title="Parallax API", version="1", description="Depth maps and cut-outs for an Immich library."),
        security_schemes=API_KEY_SCHEME if settings.api_key else None,
        validation_error_status=400,
        validation_error_model=Error,
        validation_error_callback=validation_error,
        doc_ui=False,  # backend/api/docs.py serves the spec and Swagger UI at our own paths
    )
    app.request_class = StreamingRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + 64 * 1024  # room for multipart framing
    app.json = _json_in_given_order(app)
    app.extensions["parallax"] = svc

    security.register(app, settings)
    outages.register(app)
    request_limits.register(app, settings)

    for module in (health, media, results, library, jobs, vr, inference, immich, pairing):
        app.register_api(module.bp)
    for module in (docs, web):
        app.register_blueprint(module.bp)

    @app.before_request
    def require_api_key():
        is_api = request.path.startswith("/api/") or request.blueprint in API_BLUEPRINTS
        if not is_api or request.path in OPEN_API_PATHS:
            return None
        access = authorise(settings.secret("api_key"), Pairings(svc.db), request)
        if access is None:
            return api_error(
                401, "unauthorized", "this server requires an API key (header X-API-Key) or a paired device (/pair)"
            )
        request.environ["parallax.access"] = access
        return None

    @app.teardown_request
    def remove_upload_temps(exc):
        # Upload temp files that a handler did not move into storage (errors, rejected input). Closed
        # too: an open file keeps its space until garbage collection, even once removed.
        for stream in request.environ.get("parallax.upload_streams", []):
            stream.close()
        for path in request.environ.get("parallax.upload_paths", []):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 413:
            return api_error(
                413,
                "too_large",
                f"the upload is larger than the limit of {settings.max_upload_bytes // (1024 * 1024)} MB"
                " (MAX_UPLOAD_MB)",
            )
        code = (exc.name or "error").lower().replace(" ", "_")
        response = make_response(*api_error(exc.code or 500, code, exc.description or exc.name))
        # Headers the error carries (Allow on a 405, WWW-Authenticate...) go out with our JSON body.
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(InvalidMediaError)
    def invalid_media(exc):
        return api_error(422, "invalid_media", str(exc))

    @app.errorhandler(JobError)
    def job_error(exc: JobError):
        return api_error(exc.status, exc.code, str(exc))

    @app.errorhandler(Exception)
    def unexpected(exc):
        logging.getLogger("parallax").exception("unhandled error on %s %s", request.method, request.path)
        return api_error(500, "internal_error", "an unexpected error occurred; see the server log")

    return app
