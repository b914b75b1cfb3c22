"""The viewer with the VR outputs (issue 13), against the real backend and worker (``live_stack``):
a video with an RGB-D video plays from that one file (depth follows every frame, no depth frames
fetched), and a stereo photo shows each eye its own view in an emulated immersive session."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.browser.test_vr import covered, eye_halves, upload, wait_until_processed
from tests.browser.test_web import JOB_TIMEOUT_MS, browser, canvas_pixels, page, wait_for_viewer
from tests.media_factory import make_photo, make_video

pytestmark = [pytest.mark.browser, pytest.mark.slow]
pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

__all__ = ["browser", "page"]  # fixtures shared with test_web.py


def seek_and_sample(page, seconds: float) -> float:
    """Seek the paused video, wait for the frame, and read the mean nearness of its depth half."""
    page.evaluate("(t) => { parallaxViewer.video.currentTime = t; }", seconds)
    page.wait_for_function(
        "(t) => !parallaxViewer.video.seeking && Math.abs(parallaxViewer.video.currentTime - t) < 1e-3", arg=seconds
    )
    return page.evaluate("parallaxViewer.sampleDepth()")


def test_rgbd_video_plays_with_depth_from_the_same_frames(live_stack, page, tmp_path):
    api = live_stack.api
    item_id = upload(api, make_video(tmp_path / "walk.mp4", seconds=3.0, fps=10, width=160, height=120))
    body = wait_until_processed(api, item_id)
    assert {j["task"]: j["status"] for j in body["jobs"]}["depth_video"] == "completed"
    manifest = api.get(f"{live_stack.url}/api/media/{item_id}/depth/manifest").json()
    assert manifest["rgbd_video"]["layout"] == "colour_left_depth_right"

    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{live_stack.url}/viewer/{item_id}")
    state = wait_for_viewer(page)
    assert state["mode"] == "rgbd-video"
    assert any(url.endswith(f"/api/media/{item_id}/depth/video") for url in requested), requested
    frame_requests = [url for url in requested if "/depth/frames" in url or url.endswith(".zip")]
    assert frame_requests == [], "the RGB-D video carries the depth: no depth frames may be fetched"
    assert canvas_pixels(page).std() > 20

    page.evaluate("parallaxViewer.video.pause()")
    duration = page.evaluate("parallaxViewer.video.duration")
    samples = [seek_and_sample(page, t) for t in (0.0, duration * 0.5, duration - 0.05, 0.0)]
    assert all(0.0 <= s <= 1.0 for s in samples), samples
    assert max(samples[:3]) - min(samples[:3]) > 0.005, f"the depth did not change with the frame: {samples}"
    assert abs(samples[3] - samples[0]) < 0.01, f"the same frame gave another depth: {samples}"


def stereo_eyes(page, url: str) -> tuple[np.ndarray, np.ndarray]:
    """Open a stereo photo, enter the emulated immersive session, and read both eyes' images."""
    page.goto(url)
    state = wait_for_viewer(page)
    assert state["mode"] == "stereo-photo"
    page.locator("#vr-button").click()
    page.wait_for_function("parallaxViewer.xr.presenting && parallaxViewer.xr.frames > 5")
    return eye_halves(page)


def test_stereo_photo_shows_each_eye_its_view(live_stack, page, tmp_path):
    api = live_stack.api
    item_id = upload(api, make_photo(tmp_path / "beach.jpg", width=320, height=240, seed=3))
    wait_until_processed(api, item_id)
    stereo_url = f"{live_stack.url}/api/media/{item_id}/stereo?format=full_sbs"
    assert api.get(stereo_url).status_code == 202  # queued: the worker makes it
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while (status := api.get(stereo_url).status_code) == 202 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert status == 200

    # A flat screen shows one view, as a plain picture.
    page.goto(f"{live_stack.url}/viewer/{item_id}?stereo=full_sbs")
    wait_for_viewer(page)
    assert covered(canvas_pixels(page)) > 0.2

    left, right = stereo_eyes(page, f"{live_stack.url}/viewer/{item_id}?stereo=full_sbs&xr-emulate=1")
    assert covered(left) > 0.02 and covered(right) > 0.02, (covered(left), covered(right))
    assert float(np.abs(left - right).mean()) > 0.5, "the two eyes show the same image"
    # The same head pose with the halves swapped: each eye's image changes, so each eye was shown
    # its own half of the file (not one picture seen from two points).
    swapped_left, swapped_right = stereo_eyes(
        page, f"{live_stack.url}/viewer/{item_id}?stereo=full_sbs&eyes=swap&xr-emulate=1"
    )
    assert float(np.abs(left - swapped_left).mean()) > 0.2, "the left eye does not see the left half"
    assert float(np.abs(right - swapped_right).mean()) > 0.2, "the right eye does not see the right half"
