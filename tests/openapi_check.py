"""Every response the API tests receive is checked against the OpenAPI document the app serves
(openapi-core, as tests/fake_immich.py holds our Immich client to Immich's spec): a body, status or
content type the document does not describe fails the test that got it."""

from __future__ import annotations

import json
from functools import lru_cache

from flask.testing import FlaskClient


@lru_cache(maxsize=4)
def _validator(spec_json: str):
    from openapi_core import OpenAPI

    return OpenAPI.from_dict(json.loads(spec_json))


def check_response(app, request, response) -> None:
    from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
    from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound

    class RequestWithoutBody(WerkzeugOpenAPIRequest):
        body = None  # the app consumed the upload already; only the response is checked here

    spec = app.extensions.get("parallax.spec_json")
    if spec is None:
        with app.test_request_context():
            from backend.api.docs import build_spec

            spec = app.extensions["parallax.spec_json"] = json.dumps(build_spec(), sort_keys=True)
    if response.mimetype == "application/json" or not response.status_code < 300:
        adapted = WerkzeugOpenAPIResponse(response)
    else:  # a file: its status and content type are checked, not its bytes
        adapted = FileResponse(response)
    try:
        _validator(spec).validate_response(RequestWithoutBody(request), adapted)
    except (PathNotFound, OperationNotFound):
        return  # web pages, /docs, an unknown path or method: nothing documented to hold it to
    except Exception as exc:
        cause = exc.__cause__ or exc.__context__
        details = getattr(cause, "schema_errors", None) or getattr(exc, "schema_errors", None) or []
        problem = f"{type(exc).__name__}: {exc} {[str(d.message)[:300] for d in details]}"
        raise AssertionError(
            f"{request.method} {request.full_path} -> {response.status}: the response does not match the"
            f" OpenAPI document: {problem[:2000]}\nbody: {response.get_data()[:300]!r}"
        ) from None


class FileResponse:
    """openapi-core's response protocol for a file answer: its bytes stand in as a short string."""

    def __init__(self, response) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self.content_type = response.content_type
        self.data = b"file"


class SpecCheckingClient(FlaskClient):
    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        check_response(self.application, response.request, response)
        return response
