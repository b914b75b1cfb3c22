"""The web interface and the 3D viewer in headless Chromium, against the real backend and worker.

Uses the ``live_stack`` fixture (tests/conftest.py): the backend on a loopback port plus a worker
with a tiny random Depth Anything model and every feature flag on. Everything goes through the
pages, as a user would: upload with the file input, watch the grid, open the viewer.
WebGL runs on SwiftShader (software), so no GPU is needed.
"""

from __future__ import annotations

import base64
import bisect
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.media_factory import make_photo, make_video

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
JOB_TIMEOUT_MS = 180_000  # a worker on 2 shared CPU cores; the tiny model makes this seconds in practice
PAGE_TIMEOUT_MS = 60_000
VIEWER_BACKGROUND = np.array([7, 8, 11])  # renderer clear colour in viewer.js


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() or not shutil.which(str(CHROMIUM)):
        pytest.skip("Debian's Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 750})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    tab = context.new_page()
    tab.page_errors = []  # uncaught exceptions in the page's scripts fail the test
    tab.on("pageerror", lambda error: tab.page_errors.append(str(error)))
    yield tab
    context.close()
    assert not tab.page_errors, f"JavaScript errors in the page: {tab.page_errors}"


def upload_through_page(page, base_url: str, path: Path) -> str:
    """Upload a file with the library page's file input; returns the new item's id."""
    page.goto(base_url + "/")
    page.set_input_files("#file-input", str(path))
    row = page.locator(".upload[data-state='done'], .upload[data-state='failed']", has_text=path.name)
    row.wait_for()
    assert row.get_attribute("data-state") == "done", row.inner_text()
    item_id = row.get_attribute("data-item-id")
    assert item_id
    return item_id


def wait_for_jobs_settled(page, item_id: str, tasks: list[str]) -> dict[str, str]:
    """Wait (on the library page, which polls) until the card shows every task finished."""
    card = page.locator(f".card[data-item-id='{item_id}']")
    card.wait_for()
    page.wait_for_function(
        """([id, tasks]) => {
            const card = document.querySelector(`.card[data-item-id="${id}"]`);
            if (!card) return false;
            return tasks.every((task) => {
                const row = card.querySelector(`.job[data-task="${task}"]`);
                return row && ['completed', 'failed', 'cancelled', 'skipped'].includes(row.dataset.jobStatus);
            });
        }""",
        arg=[item_id, tasks],
        timeout=JOB_TIMEOUT_MS,
    )
    return {task: card.locator(f".job[data-task='{task}']").get_attribute("data-job-status") for task in tasks}


def canvas_pixels(page) -> np.ndarray:
    """The viewer's WebGL canvas as an RGB array (preserveDrawingBuffer makes it readable)."""
    data_url = page.evaluate("document.getElementById('viewer-canvas').toDataURL('image/png')")
    png = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.float64)


def wait_for_viewer(page) -> dict:
    page.wait_for_function(
        "window.parallaxViewer && (window.parallaxViewer.ready || window.parallaxViewer.error)", timeout=JOB_TIMEOUT_MS
    )
    state = page.evaluate(
        "({error: parallaxViewer.error, mode: parallaxViewer.mode, "
        "index: parallaxViewer.currentDepthIndex, manifest: parallaxViewer.manifest})"
    )
    assert state["error"] is None, state["error"]
    return state


def render_after(page, script: str) -> np.ndarray:
    """Run a script in the viewer, wait for two animation frames, read the canvas."""
    page.evaluate(script)
    page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    return canvas_pixels(page)


def test_photo_upload_jobs_and_viewer(live_stack, page, tmp_path):
    photo = make_photo(tmp_path / "garden.jpg", width=160, height=120)
    item_id = upload_through_page(page, live_stack.url, photo)

    card = page.locator(f".card[data-item-id='{item_id}']")
    assert "garden.jpg" in card.locator(".card-title").inner_text()
    statuses = wait_for_jobs_settled(page, item_id, ["depth", "cutout"])
    assert statuses == {"depth": "completed", "cutout": "completed"}
    # The thumbnail is the original, decoded by the browser.
    thumb = card.locator(".thumb img")
    thumb.wait_for()
    thumb.evaluate("img => img.decode()")
    assert thumb.evaluate("img => img.naturalWidth") == 160

    viewer_link = card.locator(".viewer-link")
    assert viewer_link.is_visible()
    viewer_link.click()
    page.wait_for_url(f"**/viewer/{item_id}")
    state = wait_for_viewer(page)
    assert state["mode"] == "photo"
    assert state["manifest"]["kind"] == "photo"
    assert state["index"] == state["manifest"]["frames"][0]["index"]

    pixels = canvas_pixels(page)
    assert pixels.std() > 20, "the canvas is (nearly) uniform: the photo was not drawn"
    covered = np.abs(pixels - VIEWER_BACKGROUND).sum(axis=2) > 30
    assert covered.mean() > 0.3, f"the photo covers only {covered.mean():.0%} of the canvas"
    # The photo's bright yellow square (make_photo) must be on screen: colours are passed through.
    yellow = (pixels[..., 0] > 200) & (pixels[..., 1] > 190) & (pixels[..., 2] < 90)
    assert yellow.mean() > 0.01

    # The depth map really displaces the mesh: with the camera still, flat and deep renders differ.
    flat = render_after(
        page,
        "document.getElementById('depth-slider').value = '0';"
        "document.getElementById('depth-slider').dispatchEvent(new Event('input'))",
    )
    deep = render_after(
        page,
        "document.getElementById('depth-slider').value = '0.8';"
        "document.getElementById('depth-slider').dispatchEvent(new Event('input'))",
    )
    change = float(np.abs(flat - deep).mean())
    assert change > 1.0, f"changing the depth strength did not change the picture (mean change {change:.2f})"


def test_item_page_shows_results_and_downloads(live_stack, page, tmp_path):
    photo = make_photo(tmp_path / "portrait.jpg", width=120, height=160, seed=3)
    item_id = upload_through_page(page, live_stack.url, photo)
    wait_for_jobs_settled(page, item_id, ["depth", "cutout"])

    page.goto(f"{live_stack.url}/items/{item_id}")
    page.locator("#item-title", has_text="portrait.jpg").wait_for()
    for frame in ("#original-frame img", "#depth-frame img", "#cutout-frame img"):
        page.locator(frame).wait_for()
        page.wait_for_function(
            f"document.querySelector('{frame}').complete && document.querySelector('{frame}').naturalWidth > 0"
        )
    assert page.locator("#cutout-frame").evaluate("el => el.classList.contains('checkerboard')")
    assert page.locator("#viewer-link").is_visible()
    assert page.locator("#viewer-link").get_attribute("href") == f"/viewer/{item_id}"

    jobs = page.locator("#job-list .job-card")
    assert sorted(jobs.evaluate_all("rows => rows.map((row) => row.dataset.task)")) == ["cutout", "depth"]
    assert set(jobs.evaluate_all("rows => rows.map((row) => row.dataset.jobStatus)")) == {"completed"}

    links = page.locator("#downloads a")
    hrefs = links.evaluate_all("anchors => anchors.map((a) => a.getAttribute('href'))")
    assert f"/api/media/{item_id}/original" in hrefs
    assert any(href.startswith(f"/api/media/{item_id}/depth") for href in hrefs)
    # A download link serves the real file.
    depth_href = next(href for href in hrefs if href.startswith(f"/api/media/{item_id}/depth"))
    status, content_type = page.evaluate(
        "async (url) => { const r = await fetch(url); return [r.status, r.headers.get('Content-Type')]; }", depth_href
    )
    assert status == 200 and content_type.startswith("image/png")


def test_video_viewer_follows_seeking(live_stack, page, tmp_path):
    clip = make_video(tmp_path / "walk.mp4", seconds=3.0, fps=10, width=160, height=120)
    item_id = upload_through_page(page, live_stack.url, clip)
    statuses = wait_for_jobs_settled(page, item_id, ["video_depth"])
    assert statuses["video_depth"] == "completed"

    page.goto(f"{live_stack.url}/viewer/{item_id}")
    state = wait_for_viewer(page)
    manifest = state["manifest"]
    assert manifest["kind"] == "video"
    assert state["mode"] == "video", "Chromium should play the H.264 source itself"
    frames = manifest["frames"]
    assert len(frames) >= 4, f"expected several depth frames for a 3 s clip, got {len(frames)}"
    page.wait_for_function(
        "parallaxViewer.loadedDepthFrames === parallaxViewer.manifest.frames.length", timeout=PAGE_TIMEOUT_MS
    )
    assert canvas_pixels(page).std() > 20

    times = [f["time"] for f in frames]

    def expected_index(t: float) -> int:
        # The last frame whose time <= t (the first frame before it starts).
        return frames[max(0, bisect.bisect_right(times, t) - 1)]["index"]

    page.evaluate("parallaxViewer.video.pause()")
    duration = page.evaluate("parallaxViewer.video.duration")
    # Land between frames, exactly on one, and go back: each step expects a different frame.
    targets = [min(times[-1] + 0.01, duration - 0.005), times[len(times) // 2] + 0.01, times[1], 0.0]
    seen = []
    for target in targets:
        want = expected_index(target)
        page.evaluate("(t) => { parallaxViewer.video.currentTime = t; }", target)
        try:
            page.wait_for_function(
                "([want, t]) => Math.abs(parallaxViewer.video.currentTime - t) < 1e-3 "
                "&& parallaxViewer.currentDepthIndex === want",
                arg=[want, target],
                timeout=20_000,
            )
        except sync_api.TimeoutError:
            shown = page.evaluate("[parallaxViewer.video.currentTime, parallaxViewer.currentDepthIndex]")
            pytest.fail(
                f"after seeking to {target:.3f} s the viewer shows depth frame {shown[1]} "
                f"(video at {shown[0]:.3f} s); the manifest says frame {want}"
            )
        seen.append(want)
    assert len(set(seen)) == len(seen), f"the chosen seek targets did not exercise different frames: {seen}"


def test_bad_upload_shows_the_server_reason(live_stack, page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n" * 50)
    page.goto(live_stack.url + "/")
    page.set_input_files("#file-input", str(notes))
    row = page.locator(".upload[data-state='failed']", has_text="notes.txt")
    row.wait_for()
    message = row.locator(".upload-status").inner_text()
    assert message and "Upload failed" not in message, "the server's own explanation should be shown"
    page.reload()
    page.locator("#grid-empty, .card").first.wait_for()
    assert page.locator(".card", has_text="notes.txt").count() == 0


def test_viewer_for_unknown_item_explains(live_stack, page):
    page.goto(f"{live_stack.url}/viewer/00000000-0000-4000-8000-000000000000")
    page.wait_for_function("window.parallaxViewer && window.parallaxViewer.error")
    assert "does not exist" in page.evaluate("parallaxViewer.error")
    assert page.locator("#viewer-message").is_visible()
