"""The web interface and the 3D viewer in headless Chromium, against the real backend and worker.

Uses the ``live_stack`` fixture (tests/conftest.py): the backend on a loopback port plus a worker
with a tiny random Depth Anything model and every feature flag on. Everything goes through the
pages, as a user would: upload with the file input, watch the grid, open the viewer.
WebGL runs on SwiftShader (software), so no GPU is needed.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import dataclasses
import io
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from redis import Redis

from backend.app import create_app
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
    # Playwright's wait_for_function evaluates strings, which the pages' CSP forbids (no eval);
    # tests/browser/test_csp.py checks the pages under their real policy.
    context = browser.new_context(viewport={"width": 1000, "height": 750}, bypass_csp=True)
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


def wait_for_jobs_settled(
    page, item_id: str, tasks: list[str], settled=("completed", "failed", "cancelled", "skipped")
) -> dict[str, str]:
    """Wait (on the library page, which polls) until the card shows every task in a ``settled`` state."""
    card = page.locator(f".card[data-item-id='{item_id}']")
    card.wait_for()
    page.wait_for_function(
        """([id, tasks, settled]) => {
            const card = document.querySelector(`.card[data-item-id="${id}"]`);
            if (!card) return false;
            return tasks.every((task) => {
                const row = card.querySelector(`.job[data-task="${task}"]`);
                return row && settled.includes(row.dataset.jobStatus);
            });
        }""",
        arg=[item_id, tasks, list(settled)],
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
    # The thumbnail is the server's small WebP preview; nothing is drawn over it.
    thumb = card.locator(".thumb img")
    thumb.wait_for()
    thumb.evaluate("img => img.decode()")
    assert thumb.evaluate("img => img.naturalWidth") == 160
    assert f"/api/media/{item_id}/thumbnail" in thumb.get_attribute("src")
    assert card.locator(".card-media").inner_text().strip() == ""

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
    names = dict(
        links.evaluate_all("anchors => anchors.map((a) => [a.getAttribute('download'), a.getAttribute('href')])")
    )
    assert names["portrait.jpg"] == f"/api/media/{item_id}/original?download=1"
    assert set(names) == {"portrait.jpg", "portrait_depth.png", "portrait_cutout_transparent.png"}
    # A download link serves the real file, under its name.
    status, content_type, disposition = page.evaluate(
        "async (url) => { const r = await fetch(url);"
        " return [r.status, r.headers.get('Content-Type'), r.headers.get('Content-Disposition')]; }",
        names["portrait_depth.png"],
    )
    assert status == 200 and content_type.startswith("image/png") and "portrait_depth.png" in disposition
    # Each result panel links its own download too.
    assert page.locator("#depth-extra a.result-download").get_attribute("download") == "portrait_depth.png"


def test_video_viewer_follows_seeking(live_stack, page, tmp_path):
    clip = make_video(tmp_path / "walk.mp4", seconds=3.0, fps=10, width=160, height=120)
    item_id = upload_through_page(page, live_stack.url, clip)
    statuses = wait_for_jobs_settled(page, item_id, ["video_depth"])
    assert statuses["video_depth"] == "completed"

    page.goto(f"{live_stack.url}/viewer/{item_id}?depth=frames")  # the depth frames, not the RGB-D video
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


def test_video_cut_out_plays_on_a_checkerboard_with_a_download(live_stack, page, tmp_path):
    clip = make_video(tmp_path / "Beach day.mp4", seconds=1.0, fps=5, width=96, height=64)
    item_id = upload_through_page(page, live_stack.url, clip)
    assert wait_for_jobs_settled(page, item_id, ["video_cutout"]) == {"video_cutout": "completed"}

    page.goto(f"{live_stack.url}/items/{item_id}")
    video = page.locator("#cutout-frame video")
    video.wait_for()
    page.wait_for_function("document.querySelector('#cutout-frame video').readyState >= 1")  # the browser can play it
    assert page.locator("#cutout-frame").evaluate("el => el.classList.contains('checkerboard')")
    link = page.locator("#cutout-extra a.result-download")
    name = link.get_attribute("download")
    assert name.startswith("Beach day_cutout_") and name.endswith(".webm")
    assert page.locator(f"#downloads a[download='{name}']").count() == 1


@contextlib.contextmanager
def serve(app):
    """The app on a loopback port without a worker (pages and the API only)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def _api_upload(base_url: str, path: Path) -> dict:
    with open(path, "rb") as fh:
        response = requests.post(f"{base_url}/api/media/upload", files={"media": (path.name, fh)}, timeout=60)
    assert response.status_code in (200, 202), response.text
    return response.json()


def test_skipped_work_waits_and_is_queued_from_the_page(live_stack, make_app, page, tmp_path):
    # Two photos arrive while both features are off, then the server runs with them on (live_stack).
    with serve(make_app(enable_depth=False, enable_background_removal=False)) as features_off:
        first = _api_upload(features_off, make_photo(tmp_path / "first.jpg", seed=5))["item"]["id"]
        second = _api_upload(features_off, make_photo(tmp_path / "second.jpg", seed=6))["item"]["id"]

    page.goto(f"{live_stack.url}/items/{first}")
    page.locator("#depth-frame", has_text="Waiting: its feature was turned on").wait_for()
    assert "ENABLE_" not in page.locator("main").inner_text()
    page.locator("#depth-status button", has_text="Make it now").click()
    page.locator("#depth-frame img").wait_for(timeout=JOB_TIMEOUT_MS)
    page.wait_for_function("document.querySelector('#depth-frame img').naturalWidth > 0")
    assert page.locator("#cutout-frame").inner_text().startswith("Waiting")  # only what was asked for ran

    page.goto(live_stack.url + "/")
    waiting = page.locator("#waiting")
    waiting.wait_for()
    assert "3 jobs skipped" in page.locator("#waiting-text").inner_text()
    page.locator("#waiting-button", has_text="Process 3 now").click()
    ran = ("completed", "failed", "cancelled")  # until the page refreshes the cards still say skipped
    statuses = wait_for_jobs_settled(page, second, ["depth", "cutout"], settled=ran)
    assert statuses == {"depth": "completed", "cutout": "completed"}
    assert wait_for_jobs_settled(page, first, ["cutout"], settled=ran) == {"cutout": "completed"}
    page.reload()
    page.locator(".card").first.wait_for()
    assert page.locator("#waiting").is_hidden()


def test_banner_says_when_work_cannot_run(make_app, services, page, tmp_path):
    app = make_app(enable_depth=True, enable_background_removal=False)
    with serve(app) as url:  # no worker listening
        page.goto(url + "/")
        banner = page.locator("#work-banner")
        banner.locator("text=No worker is running").wait_for()
        item_id = _api_upload(url, make_photo(tmp_path / "p.jpg"))["item"]["id"]
        page.goto(f"{url}/items/{item_id}")
        page.locator("#depth-frame", has_text="Queued, next in line").wait_for()
        page.locator("#work-banner", has_text="No worker is running").wait_for()

    settings = app.extensions["parallax"].settings
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    no_redis = create_app(settings, dataclasses.replace(services, settings=settings, redis=unreachable))
    with serve(no_redis) as url:
        page.goto(url + "/")
        page.locator("#work-banner", has_text="job queue (Redis) is not reachable").wait_for()
        page.set_input_files("#file-input", str(make_photo(tmp_path / "later.jpg", seed=2)))
        row = page.locator(".upload[data-state='done']", has_text="later.jpg")
        row.wait_for()
        assert "waits for the job queue" in row.locator(".upload-status").inner_text()
        card = page.locator(f".card[data-item-id='{row.get_attribute('data-item-id')}']")
        card.locator(".job[data-task='depth']", has_text="waiting for the job queue").wait_for()


def test_navigation_immich_link_phone_layout_and_features_panel(make_app, browser, page, tmp_path):
    app = make_app(
        immich_url="http://ann:s3cret@photos.example:2283/api",
        immich_api_key="not-shown",
        depth_model="/srv/models/depth/Depth-Anything-V2-Small-hf",
    )
    with serve(app) as url:
        ids = [_api_upload(url, make_photo(tmp_path / f"{n}.jpg", seed=n))["item"]["id"] for n in range(3)]
        newest, middle, oldest = ids[2], ids[1], ids[0]

        page.goto(f"{url}/items/{middle}")
        page.locator("#older-link:not([hidden])").wait_for()
        assert page.locator("#newer-link").get_attribute("href") == f"/items/{newest}"
        page.locator("#older-link").click()
        page.wait_for_url(f"**/items/{oldest}")
        page.locator("#newer-link:not([hidden])").wait_for()
        assert page.locator("#older-link").is_hidden()  # the oldest item has no next
        page.keyboard.press("ArrowLeft")
        page.wait_for_url(f"**/items/{middle}")

        link = page.locator("#immich-header-link")
        link.wait_for()
        assert link.get_attribute("href") == "http://photos.example:2283"

        page.goto(url + "/")
        page.locator(".card").nth(2).wait_for()
        features = page.locator("#features-title").locator("xpath=..").inner_text()
        assert "Depth-Anything-V2-Small-hf" in features
        assert "/srv/models" not in features and "ENABLE_" not in features and "near_dark" not in features
        for card in page.locator(".card").all():
            assert card.locator(".card-media").inner_text().strip() == ""

        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, bypass_csp=True)
        try:
            small = phone.new_page()
            small.goto(url + "/")
            small.locator(".card").first.wait_for()
            library_top = small.locator(".library").bounding_box()["y"]
            assert library_top < small.locator(".upload-panel").bounding_box()["y"]
            assert library_top < small.locator("#immich-panel").bounding_box()["y"]
            assert library_top < 300, "the library should be the first thing on a phone"
            overflow = small.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the page is {overflow} px wider than a phone's screen"
        finally:
            phone.close()


def test_immich_panel_shows_write_back(make_app, services, page, tmp_path):
    immich = {"immich_url": "https://ann:s3cret@photos.example/api", "immich_api_key": "not-shown"}
    features_off = {"enable_depth": False, "enable_background_removal": False}
    with serve(make_app(**immich, **features_off)) as url:
        page.goto(url + "/")
        line = page.locator("#immich-writeback:not([hidden])")
        line.wait_for()
        assert line.inner_text() == "Write-back to Immich: off (IMMICH_WRITE_BACK=true to turn it on)"

    # On: two 3D versions in Immich, one item whose upload failed (as the worker records them).
    services.db.execute("TRUNCATE immich_writeback_albums")
    with serve(make_app(**immich, **features_off, immich_write_back=True)) as url:
        items = [_api_upload(url, make_photo(tmp_path / f"{n}.jpg", seed=n))["item"]["id"] for n in range(3)]
        server = "https://photos.example"
        services.db.execute(
            "INSERT INTO immich_writeback_albums (server_url, album_id, name, created) VALUES (%s, 'a1b2', %s, true)",
            (server, "Parallax 3D"),
        )
        for n, item_id in enumerate(items[:2]):
            services.db.execute(
                "INSERT INTO immich_writebacks (id, media_id, server_url, original_asset_id, kind, layout, state,"
                " sha256, checksum, filename, asset_id, album_id, stack_id) VALUES (gen_random_uuid(), %s, %s, %s,"
                " 'stereo', 'full_sbs', 'done', %s, %s, %s, %s, 'a1b2', %s)",
                (item_id, server, f"orig{n}", f"{n:064x}", f"sum{n}", f"{n}_LRF_Full_SBS.jpg", f"up{n}", f"st{n}"),
            )
        reason = "Immich write-back failed: the API key lacks the permission stack.create"
        services.db.execute(
            "INSERT INTO processing_jobs (id, media_id, task, status, attempts, last_error, error_kind, finished_at)"
            " VALUES (gen_random_uuid(), %s, 'immich_writeback', 'failed', 1, %s, 'immich', now())",
            (items[2], reason),
        )
        page.goto(url + "/")
        line = page.locator("#immich-writeback[data-enabled='true']")
        line.wait_for()
        assert line.inner_text() == (
            f"Write-back to Immich: on — 2 uploaded to album 'Parallax 3D' (Full SBS), 1 failed: {reason} (item)"
        )
        assert line.locator("a", has_text="Parallax 3D").get_attribute("href") == f"{server}/albums/a1b2"
        assert line.locator("a", has_text="item").get_attribute("href") == f"/items/{items[2]}"
        assert "s3cret" not in page.locator("#immich-panel").inner_html()
    services.db.execute("TRUNCATE immich_writeback_albums")


def test_results_of_other_kinds_get_a_preview_and_a_download(make_app, services, page, tmp_path):
    """A result kind without a panel of its own (an RGB-D video, as the depth_video task stores it)."""
    from backend.tasks.context import TaskContext

    app = make_app(enable_experimental_video=False)
    with serve(app) as url:
        item_id = _api_upload(url, make_video(tmp_path / "Walk.mp4", seconds=1, fps=5))["item"]["id"]
        job = services.db.fetchone(
            "UPDATE processing_jobs SET status = 'processing' WHERE media_id = %s AND task = 'video_depth' RETURNING *",
            (item_id,),
        )
        row = services.db.fetchone("SELECT * FROM media_items WHERE id = %s", (item_id,))
        tmp = services.storage.temp_path(".mp4")
        tmp.write_bytes(make_video(tmp_path / "rgbd.mp4", seconds=1, fps=5, width=320, height=120).read_bytes())
        TaskContext(services, job, row).store_asset(
            tmp, kind="depth_video", filename="depth_video.mp4", mime_type="video/mp4"
        )

        page.goto(f"{url}/items/{item_id}")
        tile = page.locator("#more-results .more-result[data-kind='depth_video']")
        tile.wait_for()
        page.wait_for_function(
            "document.querySelector('#more-results video') && document.querySelector('#more-results video').readyState >= 1"
        )
        assert tile.locator("a").get_attribute("download") == "Walk_depth_video.mp4"
        assert page.locator("#downloads a[download='Walk_depth_video.mp4']").count() == 1
