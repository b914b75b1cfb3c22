"""The pages work under their Content-Security-Policy (scripts from this server only, the viewer's
import map allowed by its hash): no violation is reported and the viewer starts."""

from __future__ import annotations

import time

import pytest

from tests.browser.test_web import PAGE_TIMEOUT_MS, browser  # noqa: F401 (fixture)
from tests.media_factory import make_photo

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Runs before any page script (injected by the browser, not subject to the page's CSP).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
    (e) => window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI));
"""


def _poll(page, expression: str, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        page.wait_for_timeout(200)  # the page keeps running meanwhile; this only paces the polling
    raise AssertionError(f"{expression} stayed false for {timeout_s} s")


def test_pages_run_under_their_csp(browser, live_stack, tmp_path):
    with open(make_photo(tmp_path / "p.jpg", 96, 64), "rb") as fh:
        body = live_stack.api.post("/api/media/upload", files={"media": ("p.jpg", fh)}).json()
    item_id = body["item"]["id"]
    depth = next(j for j in body["jobs"] if j["task"] == "depth")
    deadline = time.monotonic() + 180
    while live_stack.api.get(f"/api/jobs/{depth['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline, live_stack.worker.log()[-3000:]
        time.sleep(0.2)
    context = browser.new_context(viewport={"width": 800, "height": 600})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # What the browser refused because of a policy (a 404 for a missing favicon is not our business here).
    page.on("console", lambda msg: errors.append(msg.text) if "olicy" in msg.text or "sandbox" in msg.text else None)
    try:
        for path in ("/", f"/items/{item_id}", f"/viewer/{item_id}", "/pair", "/docs"):
            response = page.goto(live_stack.url + path)
            assert "script-src 'self'" in response.headers["content-security-policy"], path
            page.wait_for_load_state("networkidle")
            assert page.evaluate("window.__cspViolations") == [], path
        # The viewer's modules loaded through the import map: it comes up (ready or with its own error).
        page.goto(f"{live_stack.url}/viewer/{item_id}")
        # A second visit: the page now comes from the browser's cache (304) and must keep its own policy.
        _poll(page, "window.parallaxViewer && (window.parallaxViewer.ready || window.parallaxViewer.error)")
        assert page.evaluate("window.__cspViolations") == []
    finally:
        context.close()
    assert errors == []
