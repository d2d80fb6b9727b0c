"""The dashboard in headless Chromium (Debian's chromium and chromedriver) against a real
`smokewatch serve`: the cameras with their status and latest annotated frame, the live events,
and an event page with its snapshot and clip. Screenshots are taken and checked where the
elements are: the frame shows a picture, the status badges and the alert have their colours."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from browser import Browser, missing
from PIL import Image
from stream_helpers import ServeProcess, wait_until

_why = missing()
pytestmark = pytest.mark.skipif(_why is not None, reason=f"no headless browser: {_why}")

ONLINE_GREEN = (0x1F, 0x9D, 0x55)
OFFLINE_RED = (0xC0, 0x39, 0x2B)
ALERT_RED = (0xD6, 0x2D, 0x20)


def share(image: Image.Image, rect: dict, colour: tuple[int, int, int], tolerance: int = 12) -> float:
    """Share of the pixels inside an element's rectangle that have (nearly) the given colour."""
    scale = image.width / 1280  # device pixels per CSS pixel
    box = [round(v * scale) for v in (rect["x"], rect["y"], rect["x"] + rect["width"], rect["y"] + rect["height"])]
    pixels = np.asarray(image.convert("RGB").crop(box)).reshape(-1, 3).astype(int)
    return float((np.abs(pixels - colour).max(axis=1) <= tolerance).mean())


@pytest.fixture(scope="module")
def server(tmp_path_factory, make_clip, tiny_bundle_dir):
    home = tmp_path_factory.mktemp("dashboard")
    clips = home / "clips"
    clips.mkdir()
    make_clip(clips / "plume.mp4", frames=36, fps=12, size=(320, 192))
    streams = home / "streams.yaml"
    streams.write_text(
        "streams:\n"
        f"  - {{id: ridge, name: Ridge north, url: '{clips / 'plume.mp4'}', loop: true, interval_s: 0.3}}\n"
        "  - {id: down, name: Valley east, url: 'rtsp://viewer:hunter22@127.0.0.1:9/live'}\n"
    )
    env = {
        "SMOKEWATCH_DATA_DIR": str(home / "data"), "SMOKEWATCH_STREAMS_FILE": str(streams),
        "SMOKEWATCH_STREAM_FOLDERS": json.dumps([str(clips)]), "SMOKEWATCH_UPLOAD_DIR": str(home / "uploads"),
        "SMOKEWATCH_ALERT_THRESHOLD": "0", "SMOKEWATCH_ALERT_CLEAR_S": "600", "SMOKEWATCH_CLIP_FRAMES_BEFORE": "2",
        "SMOKEWATCH_CLIP_FRAMES_AFTER": "2", "SMOKEWATCH_STREAM_TIMEOUT_S": "1", "SMOKEWATCH_SSE_MAX_S": "5",
    }
    process = ServeProcess(tiny_bundle_dir, home, env).wait_ready()
    try:
        with httpx.Client(base_url=process.url) as client:
            # The event's clip exists once two frames after the confirmation were seen.
            wait_until(lambda: any(e["clip_url"] for e in client.get("/events").json()["events"]), 60, what="an event with its clip")
        yield process, home
    finally:
        process.stop(30)
        process.kill()


@pytest.fixture(scope="module")
def browser(server):
    _, home = server
    b = Browser(home / "chromium-profile", home / "chromedriver.log")
    yield b
    b.close()


def test_the_camera_wall_shows_status_frames_and_live_events(server, browser):
    process, home = server
    browser.get(process.url + "/")
    online = browser.wait_for('.camera[data-stream-id="ridge"] .state.online')[0]
    offline = browser.wait_for('.camera[data-stream-id="down"] .state.offline')[0]
    browser.wait_until('return [...document.querySelectorAll(".camera img.frame")].some(i => i.complete && i.naturalWidth > 0 && !i.hidden)')
    alert = browser.wait_for('.camera[data-stream-id="ridge"] .alert-link')[0]
    event = browser.wait_for("#events .event.open")[0]
    frame = browser.find_all('.camera[data-stream-id="ridge"] img.frame')[0]

    assert browser.text(online) == "ONLINE" and browser.text(offline) == "OFFLINE"
    assert browser.text(alert).startswith("SMOKE: event #")
    assert "Ridge north" in browser.text(event)
    names = browser.run('return [...document.querySelectorAll(".camera .name")].map(n => n.textContent)')
    assert names == ["Ridge north", "Valley east"]
    page_text = browser.run("return document.body.innerText")
    assert "hunter22" not in page_text and "Connection refused" in page_text
    assert browser.run('return document.getElementById("live-status").textContent') == "live"

    shot = browser.screenshot()
    (home / "dashboard.png").write_bytes(shot)
    image = Image.open(io.BytesIO(shot))
    assert image.width >= 1280
    assert share(image, browser.rect(online), ONLINE_GREEN) > 0.4
    assert share(image, browser.rect(offline), OFFLINE_RED) > 0.4
    assert share(image, browser.rect(alert), ALERT_RED) > 0.5
    pixels = np.asarray(image.convert("RGB").crop(_box(image, browser.rect(frame)))).astype(float)
    assert pixels.std() > 20  # a real picture (sky, ridge, plume, boxes), not an empty box
    sky = (pixels[..., 2] > pixels[..., 0] + 30).mean()
    assert sky > 0.2  # the clip's blue sky is there


def test_the_event_page_shows_snapshot_and_clip(server, browser):
    process, home = server
    with httpx.Client(base_url=process.url) as client:
        event = next(e for e in client.get("/events").json()["events"] if e["clip_url"])
    browser.get(f"{process.url}/ui/events/{event['id']}")
    browser.wait_until('const i = document.getElementById("snapshot"); return i.complete && i.naturalWidth > 0')
    browser.wait_until('return document.getElementById("clip").readyState >= 2', timeout=30)  # the MP4 decodes here
    width, height = browser.run('const v = document.getElementById("clip"); return [v.videoWidth, v.videoHeight]')
    assert (width, height) == (320, 192)
    details = browser.text(browser.wait_for("#details")[0])
    assert "Ridge north (ridge)" in details and "open" in details
    snapshot = browser.find_all("#snapshot")[0]
    shot = browser.screenshot()
    (home / "event.png").write_bytes(shot)
    image = Image.open(io.BytesIO(shot))
    pixels = np.asarray(image.convert("RGB").crop(_box(image, browser.rect(snapshot)))).astype(int)
    assert pixels.std() > 20
    # The snapshot carries the red alert banner along its bottom edge.
    bottom = pixels[-max(3, pixels.shape[0] // 20) :].reshape(-1, 3)
    assert (np.abs(bottom - np.array([214, 80, 80])).max(axis=1) < 60).mean() > 0.3


def _box(image: Image.Image, rect: dict) -> list[int]:
    scale = image.width / 1280
    return [round(v * scale) for v in (rect["x"], rect["y"], rect["x"] + rect["width"], rect["y"] + rect["height"])]
