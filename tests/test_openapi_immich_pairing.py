"""The Immich and pairing routes are described by the served OpenAPI document like every other route
(generated from backend/schemas.py models, not written by hand), and refuse a bad parameter with the
same 400 answer as the rest of the API."""

from __future__ import annotations

from typing import get_args

import pytest

from backend.immich import importer
from backend.schemas import ImportMode, ImportTrigger, RemovedAssetsAction
from backend.settings import IMMICH_REMOVED_ACTIONS

OPERATIONS = {
    ("/api/immich/status", "get"): {"200"},
    ("/api/immich/test", "post"): {"200", "400", "502"},
    ("/api/immich/import", "post"): {"202", "400", "409"},
    ("/api/immich/imports", "get"): {"200", "400"},
    ("/api/immich/imports/{run_id}", "get"): {"200", "404"},
    ("/api/pairing", "post"): {"201", "400", "403"},
    ("/api/pairing/claim", "post"): {"200", "400", "404"},
    ("/api/pairings", "get"): {"200", "403"},
    ("/api/pairings/{pairing_id}", "delete"): {"200", "403", "404"},
}


class Spec:
    def __init__(self, document: dict) -> None:
        self.document = document

    def resolve(self, schema: dict) -> dict:
        while "$ref" in schema:
            node = self.document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema

    def operation(self, path: str, method: str) -> dict:
        return self.document["paths"][path][method]

    def response(self, path: str, method: str, status: str) -> dict:
        """The JSON schema an answer with this status has (resolved)."""
        response = self.resolve(self.operation(path, method)["responses"][status])
        return self.resolve(response["content"]["application/json"]["schema"])

    def body(self, path: str, method: str) -> dict:
        body = self.resolve(self.operation(path, method)["requestBody"])
        return self.resolve(body["content"]["application/json"]["schema"])

    def ref_name(self, schema: dict) -> str | None:
        """The component a (possibly nullable) schema points at."""
        if "$ref" in schema:
            return schema["$ref"].rsplit("/", 1)[1]
        refs = [s["$ref"].rsplit("/", 1)[1] for s in schema.get("anyOf", []) if "$ref" in s]
        return refs[0] if len(refs) == 1 else None

    def nullable(self, schema: dict) -> bool:
        options = schema.get("anyOf", [schema])
        return any(o.get("type") == "null" or "null" in (o.get("type") or []) for o in options)


@pytest.fixture
def spec(client) -> Spec:
    document = client.get("/api/openapi.json").get_json()
    from openapi_spec_validator import validate

    validate(document)
    return Spec(document)


def test_every_immich_and_pairing_operation_is_generated_from_the_models(spec):
    for (path, method), statuses in OPERATIONS.items():
        operation = spec.operation(path, method)
        assert operation["tags"] == ["immich" if "immich" in path else "pairing"], path
        assert statuses <= set(operation["responses"]), (path, method, sorted(operation["responses"]))
        for status in statuses:  # every answer, errors too, has a schema from the models
            assert spec.response(path, method, status)["type"] == "object", (path, method, status)
        for status in statuses - {"200", "201", "202"}:
            error = spec.operation(path, method)["responses"][status]
            schema = spec.resolve(error)["content"]["application/json"]["schema"]
            assert spec.ref_name(schema) == "Error", (path, method, status)
    assert "/pair" not in spec.document["paths"]  # the web page, not API

    # The import: its body's fields and bounds, and the run it answers with.
    body = spec.body("/api/immich/import", "post")
    assert set(body["properties"]) == {"mode", "album_ids", "page_size"} and body["additionalProperties"] is False
    assert spec.operation("/api/immich/import", "post")["requestBody"].get("required") is not True
    mode = body["properties"]["mode"]
    assert {v for o in mode["anyOf"] for v in o.get("enum", [])} == {"full", "incremental"}
    assert mode["default"] == "incremental"
    album_ids = next(o for o in body["properties"]["album_ids"]["anyOf"] if o.get("type") == "array")
    assert album_ids["items"] == {"type": "string", "format": "uuid"}
    page_size = next(o for o in body["properties"]["page_size"]["anyOf"] if o.get("type") == "integer")
    assert (page_size["minimum"], page_size["maximum"]) == (1, 1000)

    started = spec.response("/api/immich/import", "post", "202")
    assert spec.ref_name(started["properties"]["run"]) == "ImportRun"
    assert spec.ref_name(started["properties"]["job"]) == "Job"
    run = spec.resolve(started["properties"]["run"])
    assert run["additionalProperties"] is False
    for field in ("id", "mode", "status", "trigger", "summary", "failures", "skips", "removals", "error", "job", "url"):
        assert field in run["required"], field
    assert run["properties"]["summary"]["type"] == "string"
    entry = spec.resolve(run["properties"]["failures"]["items"])
    assert set(entry["required"]) == {"asset_id", "file_name", "reason"}
    for nullable in ("updated_after", "started_at", "finished_at", "total", "error", "job"):
        assert spec.nullable(run["properties"][nullable]), nullable
    for not_null in ("created_at", "seen", "imported", "summary", "url"):
        assert not spec.nullable(run["properties"][not_null]), not_null
    job_options = {spec.ref_name(o) for o in run["properties"]["job"]["anyOf"] if "$ref" in o}
    assert job_options == {"ImportRunJob", "ImportRunJobRef"}

    # Listing, one run, the status and the connection test.
    (limit,) = spec.operation("/api/immich/imports", "get")["parameters"]
    assert limit["name"] == "limit" and limit["in"] == "query" and limit.get("required") is not True
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"], limit["schema"]["default"]) == (1, 200, 20)
    runs = spec.response("/api/immich/imports", "get", "200")["properties"]["runs"]
    assert spec.ref_name(runs["items"]) == "ImportRun"
    (run_id,) = spec.operation("/api/immich/imports/{run_id}", "get")["parameters"]
    assert (run_id["name"], run_id["in"], run_id["required"]) == ("run_id", "path", True)
    assert spec.ref_name(spec.operation("/api/immich/imports/{run_id}", "get")["responses"]["200"]) is None
    assert spec.response("/api/immich/imports/{run_id}", "get", "200") == spec.resolve(started["properties"]["run"])
    status = spec.response("/api/immich/status", "get", "200")
    assert spec.ref_name(status["properties"]["last_run"]) == "ImportRun" and spec.nullable(
        status["properties"]["running"]
    )
    assert status["properties"]["server"]["type"] == "null"
    assert {"configured", "url", "removed_assets", "last_success_at"} <= set(status["required"])
    # write_back: on (settings and counts) or off (only what turns it on), unknown fields refused.
    write_back = status["properties"]["write_back"]
    assert "write_back" in status["required"]
    assert [spec.ref_name(o) for o in write_back["anyOf"]] == ["ImmichWriteBackOn", "ImmichWriteBackOff"]
    on, off = (spec.resolve(o) for o in write_back["anyOf"])
    assert on["additionalProperties"] is False and off["additionalProperties"] is False
    assert (on["properties"]["enabled"]["const"], off["properties"]["enabled"]["const"]) == (True, False)
    assert set(off["required"]) == {"enabled", "enable_with"}
    for field in ("album", "layout", "uploaded", "jobs_waiting", "jobs_failed", "last_failure"):
        assert field in on["required"], field
    for nullable in ("album_id", "album_url", "last_failure"):
        assert spec.nullable(on["properties"][nullable]), nullable
    failure = spec.resolve(next(o for o in on["properties"]["last_failure"]["anyOf"] if "$ref" in o))
    assert {"job_id", "media_id", "reason", "url"} <= set(failure["required"])
    tested = spec.response("/api/immich/test", "post", "200")
    assert set(tested["required"]) == {
        "ok",
        "url",
        "server",
        "permissions",
        "user",
        "statistics",
        "albums",
        "warnings",
    }
    for nullable in ("user", "statistics", "albums"):
        assert spec.nullable(tested["properties"][nullable]), nullable
    assert (
        "immich_permission"
        in spec.resolve(spec.operation("/api/immich/test", "post")["responses"]["400"])["description"]
    )

    # Pairing: the bodies, the code shown once, the pairings listed.
    assert set(spec.body("/api/pairing", "post")["properties"]) == {"label"}
    claim = spec.body("/api/pairing/claim", "post")
    assert claim["required"] == ["code"] and claim["properties"]["code"]["minLength"] == 1
    created = spec.response("/api/pairing", "post", "201")
    assert set(created["required"]) == {"pairing", "code", "link"}
    pairing = spec.resolve(created["properties"]["pairing"])
    assert set(pairing["properties"]["state"]["enum"]) == {"waiting", "expired", "paired", "revoked"}
    assert spec.nullable(pairing["properties"]["revoked_at"]) and not spec.nullable(pairing["properties"]["label"])
    listed = spec.response("/api/pairings", "get", "200")["properties"]["pairings"]
    assert spec.ref_name(listed["items"]) == "Pairing"
    (pairing_id,) = spec.operation("/api/pairings/{pairing_id}", "delete")["parameters"]
    assert (pairing_id["name"], pairing_id["in"]) == ("pairing_id", "path")


def test_the_models_name_the_importers_modes_and_triggers():
    assert get_args(ImportMode) == importer.MODES and get_args(ImportTrigger) == importer.TRIGGERS
    assert get_args(RemovedAssetsAction) == IMMICH_REMOVED_ACTIONS


def test_only_the_claim_is_open_when_a_key_is_set(make_app):
    client = make_app(api_key="s3cret").test_client()
    spec = Spec(client.get("/api/openapi.json", headers={"X-API-Key": "s3cret"}).get_json())
    assert spec.operation("/api/pairing/claim", "post")["security"] == []
    assert "401" not in spec.operation("/api/pairing/claim", "post")["responses"]
    for path, method in set(OPERATIONS) - {("/api/pairing/claim", "post")}:
        assert spec.operation(path, method).get("security") != [], path
        assert "401" in spec.operation(path, method)["responses"], path
    assert client.post("/api/pairing/claim", json={"code": "ABCD-EFGH"}).status_code == 404
    assert client.get("/api/immich/imports").status_code == 401


@pytest.mark.parametrize(
    "method, url, body, word",
    [
        ("get", "/api/immich/imports?limit=0", None, "limit"),
        ("get", "/api/immich/imports?limit=201", None, "limit"),
        ("get", "/api/immich/imports?limit=many", None, "limit"),
        ("post", "/api/immich/import", {"mode": "sometimes"}, "mode"),
        ("post", "/api/immich/import", {"album_ids": "x"}, "album_ids"),
        ("post", "/api/immich/import", {"album_ids": ["not-a-uuid"]}, "album_ids"),
        ("post", "/api/immich/import", {"page_size": 0}, "page_size"),
        ("post", "/api/immich/import", {"page_size": 1001}, "page_size"),
        ("post", "/api/immich/import", {"page_size": True}, "page_size"),
        ("post", "/api/immich/import", {"page_size": "50"}, "page_size"),
        ("post", "/api/immich/import", {"mdoe": "full"}, "mdoe"),
        ("post", "/api/immich/import", ["full"], "dictionary"),
        ("post", "/api/pairing", {"label": 5}, "label"),
        ("post", "/api/pairing/claim", {}, "code"),
        ("post", "/api/pairing/claim", {"code": "   "}, "code"),
        ("post", "/api/pairing/claim", {"code": 12345678}, "code"),
    ],
)
def test_bad_parameters_are_400_naming_them(client, method, url, body, word):
    response = getattr(client, method)(url, json=body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "bad_request" and word in error["message"], error


def test_good_parameters_pass_and_unknown_ids_are_404(client):
    # Valid, so the answer is about Immich not being configured rather than the parameters.
    good = {"mode": "full", "album_ids": ["0E3B1A0C-1234-4ABC-8DEF-0123456789AB"], "page_size": 1000}
    for body in (good, {}, None, {"mode": None, "album_ids": None, "page_size": None}):
        response = client.post("/api/immich/import", json=body)
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "immich_not_configured"
    for data in (None, "null", "not json"):  # no body, JSON null, not JSON at all: the defaults
        response = client.post("/api/immich/import", data=data, content_type="application/json")
        assert response.get_json()["error"]["code"] == "immich_not_configured", data
    assert client.get("/api/immich/imports?limit=200").get_json() == {"runs": []}
    assert client.get("/api/immich/imports?limit=").status_code == 200  # blank: the default
    for url in ("/api/immich/imports/not-a-run", "/api/immich/imports/00000000-0000-0000-0000-000000000000"):
        response = client.get(url)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    for pairing_id in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        response = client.delete(f"/api/pairings/{pairing_id}")
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    made = client.post("/api/pairing")  # no body at all: no label
    assert made.status_code == 201 and made.get_json()["pairing"]["label"] == ""
