"""/docs in headless Chromium: Swagger UI renders our OpenAPI 3.1 document and lists the operations."""

from __future__ import annotations

import threading

import pytest

from tests.browser.test_web import browser, page  # noqa: F401  (pytest fixtures: Debian's Chromium)

pytestmark = [pytest.mark.browser]


@pytest.fixture
def served(make_app):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def test_docs_page_lists_the_operations(page, served):
    offline = []
    page.on("request", lambda r: offline.append(r.url) if not r.url.startswith(served) else None)
    page.goto(served + "/docs")
    page.locator(".opblock").first.wait_for()
    assert page.locator(".errors-wrapper").count() == 0, page.locator(".errors-wrapper").inner_text()
    assert "Unable to render this definition" not in page.content()
    operations = {
        (block.locator(".opblock-summary-method").inner_text(), block.locator(".opblock-summary-path").inner_text())
        for block in page.locator(".opblock").all()
    }
    assert {("POST", "/api/media/upload"), ("GET", "/api/media/{item_id}/depth"), ("GET", "/api/jobs")} <= operations
    assert offline == []  # Swagger UI comes from this server, not a CDN
