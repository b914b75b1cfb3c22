"""The viewer in VR, in headless Chromium with Meta's WebXR emulation runtime (iwer, vendored).

Against the real backend and worker (``live_stack``): enter an immersive session, check both eyes
are drawn, open the in-VR gallery and pick a video with an emulated controller's ray and trigger,
pause and seek it from the VR seek bar and check the depth frame follows the time, step to the next
item with the thumbstick, exit. Then the headset path over HTTPS: gunicorn with the self-signed
certificate, an API key, and a browser that gets in by pairing with a one-time code.
"""

from __future__ import annotations

import bisect
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.browser.test_web import CHROMIUM_ARGS, JOB_TIMEOUT_MS, VIEWER_BACKGROUND, browser, canvas_pixels, page
from tests.conftest import worker_env
from tests.media_factory import make_photo, make_video

pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

__all__ = ["CHROMIUM_ARGS", "browser", "page"]  # fixtures shared with test_web.py
ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("completed", "failed", "cancelled", "skipped")

# Point the emulated right controller from beside the user's hip at a world point (three.js world =
# the local-floor space = iwer's global space), as a person aims a ray.
AIM = """([target, input]) => {
  const c = window.parallaxXRDevice[input].right;
  const from = [0.15, 1.2, -0.1];
  c.position.set(...from);
  let d = target.map((v, i) => v - from[i]);
  const n = Math.hypot(...d); d = d.map((v) => v / n);
  // The rotation taking the controller's forward a = (0, 0, -1) onto d: (a × d, 1 + a · d), normalised.
  let q = [d[1], -d[0], 0, 1 - d[2]];
  const m = Math.hypot(...q); q = q.map((v) => v / m);
  c.quaternion.set(q[0], q[1], q[2], q[3]);
}"""


def upload(api: requests.Session, path: Path, base: str = "") -> str:
    with path.open("rb") as fh:
        response = api.post(f"{base}/api/media/upload", files={"media": (path.name, fh)}, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()["item"]["id"]


def wait_until_processed(api: requests.Session, item_id: str, base: str = "") -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        body = api.get(f"{base}/api/media/{item_id}").json()
        if body["jobs"] and all(job["status"] in TERMINAL for job in body["jobs"]):
            return body
        time.sleep(0.3)
    raise AssertionError(f"the jobs of {item_id} did not finish: {body['jobs']}")


def xr_frames(page) -> int:
    return page.evaluate("parallaxViewer.xr.frames")


def next_frames(page, count: int = 3) -> None:
    """Let the emulated headset run a few frames (input is applied at the start of a frame), or end."""
    start = xr_frames(page)
    page.wait_for_function("(n) => parallaxViewer.xr.frames >= n || !parallaxViewer.xr.presenting", arg=start + count)


PRESS = {
    "controllers": "(v) => window.parallaxXRDevice.controllers.right.updateButtonValue('trigger', v)",
    "hands": "(v) => window.parallaxXRDevice.hands.right.updatePinchValue(v)",
}


def select(page, name: str, u: float = 0.5, v: float = 0.5, input: str = "controllers") -> None:
    """Aim the right controller (or hand) at a named VR control and pull the trigger (or pinch)."""
    target = page.evaluate("([n, u, v]) => parallaxViewer.vr.targetPoint(n, u, v)", [name, u, v])
    assert target is not None, f"no VR control named {name}"
    page.evaluate(AIM, [target, input])
    next_frames(page)
    page.evaluate(PRESS[input], 1)
    next_frames(page)
    page.evaluate(PRESS[input], 0)
    next_frames(page)


def push_thumbstick(page, x: float, y: float = 0.0) -> None:
    page.evaluate("([x, y]) => window.parallaxXRDevice.controllers.right.updateAxes('thumbstick', x, y)", [x, y])
    next_frames(page)
    page.evaluate("window.parallaxXRDevice.controllers.right.updateAxes('thumbstick', 0, 0)")
    next_frames(page)


def eye_halves(page) -> tuple[np.ndarray, np.ndarray]:
    pixels = canvas_pixels(page)
    half = pixels.shape[1] // 2
    return pixels[:, :half], pixels[:, half : 2 * half]


def covered(pixels: np.ndarray) -> float:
    return float((np.abs(pixels - VIEWER_BACKGROUND).sum(axis=2) > 30).mean())


def test_vr_session_gallery_video_and_thumbstick(live_stack, page, tmp_path):
    api = live_stack.api
    older = upload(api, make_photo(tmp_path / "older.jpg", width=160, height=120, seed=1))
    clip = upload(api, make_video(tmp_path / "clip.mp4", seconds=3.0, fps=10, width=160, height=120))
    newest = upload(api, make_photo(tmp_path / "newest.jpg", width=120, height=160, seed=2))
    for item_id in (older, clip, newest):
        wait_until_processed(api, item_id)

    page.goto(f"{live_stack.url}/viewer/{newest}?xr-emulate=1&depth=frames")  # the video's depth frames
    page.wait_for_function("parallaxViewer.ready || parallaxViewer.error", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("parallaxViewer.error") is None
    page.locator("#vr-button").click()
    page.wait_for_function("parallaxViewer.xr.presenting && parallaxViewer.xr.frames > 5")
    assert page.evaluate("parallaxViewer.vr.mode") == "item"

    # Both eyes: the canvas holds the left and the right view side by side, each showing the
    # picture, seen from two points 63 mm apart (so not the same image).
    left, right = eye_halves(page)
    assert covered(left) > 0.02 and covered(right) > 0.02, (covered(left), covered(right))
    assert float(np.abs(left - right).mean()) > 0.5, "the two eyes show the same image"

    # The gallery: newest first, a tile per item; pick the video with the controller.
    select(page, "gallery")
    page.wait_for_function("parallaxViewer.vr.mode === 'gallery'")
    assert page.evaluate("parallaxViewer.vr.tiles") == [newest, clip, older]
    select(page, "tile:1")
    page.wait_for_function(f"parallaxViewer.itemId === '{clip}' && parallaxViewer.ready", timeout=60_000)
    assert page.evaluate("[parallaxViewer.vr.mode, parallaxViewer.mode]") == ["item", "video"]
    page.wait_for_function("parallaxViewer.loadedDepthFrames === parallaxViewer.manifest.frames.length")

    # Play / pause from the toolbar, then seek with the seek bar: the depth frame follows the time.
    if page.evaluate("parallaxViewer.video.paused"):
        select(page, "play")
        page.wait_for_function("!parallaxViewer.video.paused")
    select(page, "play")
    page.wait_for_function("parallaxViewer.video.paused")
    frames = page.evaluate("parallaxViewer.manifest.frames")
    times = [f["time"] for f in frames]
    duration = page.evaluate("parallaxViewer.video.duration")
    seen = []
    for fraction in (0.8, 0.35):
        select(page, "seek", u=fraction)
        page.wait_for_function(
            "(t) => Math.abs(parallaxViewer.video.currentTime - t) < 0.1", arg=fraction * duration, timeout=20_000
        )
        now = page.evaluate("parallaxViewer.video.currentTime")
        want = frames[max(0, bisect.bisect_right(times, now) - 1)]["index"]
        page.wait_for_function("(want) => parallaxViewer.currentDepthIndex === want", arg=want, timeout=20_000)
        seen.append(want)
    assert seen[0] != seen[1], f"the two seeks showed the same depth frame {seen}"

    # Thumbstick right: the next (older) item.
    push_thumbstick(page, 1.0)
    page.wait_for_function(f"parallaxViewer.itemId === '{older}' && parallaxViewer.ready", timeout=60_000)
    assert page.evaluate("parallaxViewer.mode") == "photo"
    assert page.url.endswith(f"/viewer/{older}?xr-emulate=1&depth=frames")

    # Hands: a pinch selects like the trigger (here: more depth).
    page.evaluate("window.parallaxXRDevice.primaryInputMode = 'hand'")
    next_frames(page)
    before = float(page.locator("#depth-slider").input_value())
    select(page, "depth-more", input="hands")
    page.wait_for_function("(b) => Number(document.getElementById('depth-slider').value) > b + 0.01", arg=before)

    select(page, "exit-item", input="hands")
    page.wait_for_function("!parallaxViewer.xr.presenting")
    assert page.locator("#vr-button").inner_text() == "Enter VR"


def test_without_a_headset_the_viewer_says_why(live_stack, page, tmp_path):
    item_id = upload(live_stack.api, make_photo(tmp_path / "flat.jpg"))
    wait_until_processed(live_stack.api, item_id)
    page.goto(f"{live_stack.url}/viewer/{item_id}")  # no emulator: Chromium headless has no headset
    page.wait_for_function("parallaxViewer.xr.available === false", timeout=JOB_TIMEOUT_MS)
    hint = page.locator("#vr-hint")
    assert hint.get_attribute("data-reason") in ("No VR headset found", "No WebXR in this browser")
    assert page.locator("#vr-button").count() == 0
    assert "headset" in hint.locator(".vr-hint-detail").inner_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def tls_server(live_stack, tmp_path):
    """The web app under gunicorn with the self-signed certificate and a generated API key, as
    ``./scripts/run --lan`` starts it (bound to loopback here), sharing live_stack's database and worker."""
    from backend.launcher import web_server_command
    from backend.tls import prepare_serving

    settings = live_stack.worker.settings.replace(host="0.0.0.0", data_dir=tmp_path / "lan")
    serving = prepare_serving(settings)
    port = _free_port()
    env = {**os.environ, **serving.settings.as_env(), "ALLOW_XR_EMULATION": "true"}
    with open(tmp_path / "gunicorn.log", "wb") as log:
        proc = subprocess.Popen(
            web_server_command(serving, "--bind", f"127.0.0.1:{port}", "--workers", "1"),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(url + "/api/health", verify=str(serving.tls.cert), timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):  # still starting
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("gunicorn did not serve HTTPS:\n" + (tmp_path / "gunicorn.log").read_text())
                time.sleep(0.2)
        yield url, serving
        proc.terminate()
        proc.wait(20)


def test_headset_pairs_over_https(tls_server, live_stack, browser, tmp_path):
    url, serving = tls_server
    key = serving.settings.secret("api_key")
    desktop = requests.Session()
    desktop.trust_env = False  # else REQUESTS_CA_BUNDLE would replace `verify`
    desktop.verify = str(serving.tls.cert)  # the generated certificate names 127.0.0.1
    desktop.headers["X-API-Key"] = key
    item_id = upload(desktop, make_photo(tmp_path / "quest.jpg"), base=url)
    wait_until_processed(desktop, item_id, base=url)
    assert requests.get(f"{url}/api/media", verify=desktop.verify).status_code == 401  # the key is required
    made = desktop.post(f"{url}/api/pairing", json={"label": "test headset"}).json()
    code = made["code"]

    headset = browser.new_context(ignore_https_errors=True, viewport={"width": 900, "height": 700}, bypass_csp=True)
    try:
        tab = headset.new_page()
        errors = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto(f"{url}/pair?code={code.replace('-', '')}")
        tab.wait_for_function("document.getElementById('pair-status').dataset.state === 'paired'")
        assert tab.url == f"{url}/pair", "the one-time code must leave the address bar"
        cookie = next(c for c in headset.cookies() if c["name"] == "parallax_session")
        assert cookie["secure"] and cookie["httpOnly"]

        tab.goto(f"{url}/viewer/{item_id}?xr-emulate=1")
        tab.wait_for_function("parallaxViewer.ready || parallaxViewer.error", timeout=JOB_TIMEOUT_MS)
        assert tab.evaluate("[parallaxViewer.error, window.isSecureContext]") == [None, True]
        tab.locator("#vr-button").click()
        tab.wait_for_function("parallaxViewer.xr.presenting && parallaxViewer.xr.frames > 3")
        assert not errors, errors
    finally:
        headset.close()
    pairings = {p["id"]: p["state"] for p in desktop.get(f"{url}/api/pairings").json()["pairings"]}
    assert pairings[made["pairing"]["id"]] == "paired"


def test_item_without_depth_is_shown_flat_then_gains_depth(live_stack, page, tmp_path, start_worker, tiny_depth_model):
    live_stack.worker.kill()  # nobody processes the depth job: the item has no depth yet
    item_id = upload(live_stack.api, make_photo(tmp_path / "later.jpg"))
    page.goto(f"{live_stack.url}/viewer/{item_id}")
    page.wait_for_function("parallaxViewer.ready || parallaxViewer.error", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("[parallaxViewer.error, parallaxViewer.mode, parallaxViewer.depthState]") == [
        None,
        "flat-photo",
        "waiting",
    ]
    assert "Flat for now" in page.locator("#viewer-status").inner_text()
    assert covered(canvas_pixels(page)) > 0.3, "the photo itself is shown while its depth is missing"

    # A worker comes back: the viewer notices the depth map on its own and shows it.
    start_worker(live_stack.worker.settings, **worker_env(tiny_depth_model))
    page.wait_for_function("parallaxViewer.mode === 'photo' && parallaxViewer.ready", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("parallaxViewer.depthState") == "ready"
    assert page.locator("#viewer-status").is_hidden()
