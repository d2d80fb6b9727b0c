"""The monitoring API in the same app as /detect: streams, events, media, live feed, metrics, key."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest
from api_helpers import TestClient, wait_ready
from pydantic import SecretStr
from stream_helpers import ALERT_ANYTHING, wait_until

from service.app import create_app
from service.settings import Settings, get_settings
from service.store import EventStore


@pytest.fixture(scope="module")
def clips(tmp_path_factory, make_clip):
    folder = tmp_path_factory.mktemp("api-clips")
    make_clip(folder / "plume.mp4", frames=36, fps=12)
    return folder


def monitor_settings(tiny_bundle_dir, data, clips, **changes) -> Settings:
    values = {
        "api_key": None, "model": tiny_bundle_dir, "data_dir": data, "stream_folders": [clips], "upload_dir": data / "uploads",
        "stream_backoff_s": 0.1, "stream_backoff_max_s": 0.5, "stream_timeout_s": 1.0, "clip_frames_before": 2,
        "clip_frames_after": 2, "sse_max_s": 1.5, **ALERT_ANYTHING,
    }
    values.update(changes)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="module")
def client(tiny_bundle_dir, clips, tmp_path_factory):
    settings = monitor_settings(tiny_bundle_dir, tmp_path_factory.mktemp("api-data"), clips)
    with TestClient(create_app(settings)) as c:
        wait_ready(c.get)
        yield c


def wait_stream(client, stream_id, predicate, timeout=30.0):
    return wait_until(lambda: (s := client.get(f"/streams/{stream_id}").json()) and predicate(s) and s, timeout)


def test_add_watch_and_remove_a_stream(client, clips):
    response = client.post("/streams", json={"name": "Ridge North", "url": str(clips / "plume.mp4"), "loop": True, "interval_s": 0.1})
    assert response.status_code == 201, response.text
    view = response.json()
    assert view["id"] == "ridge-north" and response.headers["location"] == "/streams/ridge-north"
    assert view["kind"] == "file" and view["origin"] == "api" and view["alert"]["threshold"] == 0.0
    assert [s["id"] for s in client.get("/streams").json()] == ["ridge-north"]

    stream = wait_stream(client, "ridge-north", lambda s: s["status"]["open_event_id"] is not None)
    assert stream["status"]["online"] and stream["status"]["frames_processed"] >= 2
    frame = client.get("/streams/ridge-north/frame.jpg")
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(frame.content, np.uint8), cv2.IMREAD_COLOR).shape == (96, 160, 3)

    event_id = stream["status"]["open_event_id"]
    event = client.get(f"/events/{event_id}").json()
    assert event["stream_id"] == "ridge-north" and event["state"] == "open" and event["snapshot_url"] == f"/events/{event_id}/snapshot.jpg"
    snapshot = client.get(event["snapshot_url"])
    assert snapshot.status_code == 200 and snapshot.headers["content-type"] == "image/jpeg"
    wait_until(lambda: client.get(f"/events/{event_id}").json()["clip_url"], 20)
    clip = client.get(f"/events/{event_id}/clip.mp4")
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4" and clip.content[4:8] == b"ftyp"

    assert client.delete("/streams/ridge-north").status_code == 204
    assert client.get("/streams/ridge-north").json()["error"]["code"] == "stream_not_found"
    assert client.delete("/streams/ridge-north").status_code == 404
    closed = client.get(f"/events/{event_id}").json()
    assert closed["state"] == "closed" and closed["close_reason"] == "the stream was removed"


def test_event_filters(client, clips):
    for stream_id in ("f1", "f2"):  # an event each: enough for two pages
        client.post("/streams", json={"id": stream_id, "url": str(clips / "plume.mp4"), "interval_s": 0.1, "realtime": False})
    for stream_id in ("f1", "f2"):
        wait_stream(client, stream_id, lambda s: s["status"]["state"] == "ended")
    everything = client.get("/events").json()["events"]
    mine = client.get("/events", params={"stream": "f1"}).json()["events"]
    assert len(mine) == 1 and mine[0]["state"] == "closed" and mine[0]["close_reason"] == "the source ended"
    theirs = client.get("/events", params={"stream": "f2"}).json()["events"]
    assert len(theirs) == 1 and {mine[0]["id"], theirs[0]["id"]} <= {e["id"] for e in everything}
    assert {e["id"] for e in client.get("/events", params={"state": "closed"}).json()["events"]} >= {mine[0]["id"]}
    assert client.get("/events", params={"until": mine[0]["opened_at"] - 3600}).json()["events"] == []
    assert client.get("/events", params={"since": time.time() + 3600}).json()["events"] == []
    # Pages of one: each names the next, newest first, until the last says null; together they are everything.
    paged, before = [], None
    while True:
        page = client.get("/events", params={"limit": 1, **({"before": before} if before else {})}).json()
        assert len(page["events"]) == 1
        paged.append(page["events"][0]["id"])
        if page["next_before"] is None:
            break
        assert page["next_before"] == page["events"][0]["id"]
        before = page["next_before"]
    assert len(paged) == len(everything) >= 2
    assert paged == [e["id"] for e in everything] == sorted(paged, reverse=True)
    bad = client.get("/events", params={"state": "burning"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    assert client.get("/events/999999").json()["error"]["code"] == "event_not_found"
    assert client.get("/events/999999/snapshot.jpg").status_code == 404
    assert client.delete("/streams/f1").status_code == 204 and client.delete("/streams/f2").status_code == 204


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"url": "/etc/passwd"}, 403, "path_not_allowed"),
        ({"url": "CLIPS/../../etc/hostname"}, 403, "path_not_allowed"),
        ({"url": "CLIPS/missing.mp4"}, 422, "invalid_stream"),
        ({"url": "ftp://u:hunter22@x/y"}, 422, "invalid_request"),
        ({"url": "rtsp://x/y", "treshold": 0.5}, 422, "invalid_request"),
        ({"url": "rtsp://x/y", "interval_s": 0}, 422, "invalid_request"),
        ({"url": "rtsp://x/y", "alert": {"confirm_k": 5}}, 422, "invalid_stream"),
        ({"id": "Not An Id", "url": "rtsp://x/y"}, 422, "invalid_request"),
    ],
)
def test_bad_streams_are_refused(client, clips, body, status, code):
    body = {k: v.replace("CLIPS", str(clips)) if isinstance(v, str) else v for k, v in body.items()}
    response = client.post("/streams", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert "hunter22" not in response.text


def test_a_taken_id_is_refused(client):
    assert client.post("/streams", json={"id": "dup", "url": "rtsp://127.0.0.1:9/x"}).status_code == 201
    again = client.post("/streams", json={"id": "dup", "url": "rtsp://127.0.0.1:9/y"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "stream_exists"
    assert client.delete("/streams/dup").status_code == 204


def test_credentials_are_never_echoed(client):
    response = client.post("/streams", json={"id": "secret", "url": "rtsp://admin:hunter22@127.0.0.1:9/live?token=tok12345"})
    assert response.status_code == 201
    wait_stream(client, "secret", lambda s: s["status"]["last_error"])
    for text in (response.text, client.get("/streams").text, client.get("/streams/secret").text):
        assert "hunter22" not in text and "tok12345" not in text and "admin" not in text
    assert client.get("/streams/secret").json()["url"] == "rtsp://***@127.0.0.1:9/live?token=***"
    assert client.delete("/streams/secret").status_code == 204


def test_live_feed_sends_stream_and_event_messages_and_replays(client, clips):
    client.post("/streams", json={"id": "live", "url": str(clips / "plume.mp4"), "interval_s": 0.1, "realtime": False})
    wait_stream(client, "live", lambda s: s["status"]["state"] == "ended")
    # The response lasts sse_max_s (1.5 s); a fresh connection with Last-Event-ID 0 replays the history.
    with client.stream("GET", "/events/live", headers={"Last-Event-ID": "0"}, params={"stream": "live"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    messages = [block for block in text.split("\n\n") if block.startswith("id:")]
    kinds = [next(line[7:] for line in m.splitlines() if line.startswith("event: ")) for m in messages]
    assert "stream.status" in kinds and "event.opened" in kinds and "event.closed" in kinds
    assert kinds.index("event.opened") < kinds.index("event.closed")
    opened = next(m for m in messages if "event: event.opened" in m)
    data = json.loads(next(line[6:] for line in opened.splitlines() if line.startswith("data: ")))
    assert data["stream_id"] == "live" and data["state"] == "open"
    ids = [int(m.splitlines()[0][4:]) for m in messages]
    assert ids == sorted(ids)
    with client.stream("GET", "/events/live", headers={"Last-Event-ID": str(ids[-1])}, params={"stream": "live"}) as response:
        assert "event: event." not in "".join(response.iter_text())  # nothing new since
    client.delete("/streams/live")


def test_metrics_include_streams_events_and_webhooks(client, clips):
    client.post("/streams", json={"id": "m1", "url": str(clips / "plume.mp4"), "interval_s": 0.2, "loop": True})
    wait_stream(client, "m1", lambda s: s["status"]["frames_processed"] >= 1)
    text = client.get("/metrics").text
    assert 'smokewatch_stream_up{stream="m1"} 1.0' in text
    assert 'smokewatch_stream_frames_processed_total{stream="m1"}' in text
    assert 'smokewatch_events{state="open"}' in text and 'smokewatch_webhooks{state="pending"}' in text
    client.delete("/streams/m1")


def test_api_key_header_for_changes_cookie_for_reading(client, clips):
    app = client.app
    original = app.dependency_overrides[get_settings]
    keyed = original().model_copy(update={"api_key": SecretStr("k3y")})
    app.dependency_overrides[get_settings] = lambda: keyed
    try:
        for method, path in (("get", "/streams"), ("get", "/events"), ("get", "/events/live"), ("post", "/streams"), ("delete", "/streams/x")):
            assert getattr(client, method)(path).status_code == 401, path
        assert client.get("/streams", headers={"X-API-Key": "k3y"}).status_code == 200
        client.cookies.set("smokewatch_api_key", "k3y")
        assert client.get("/streams").status_code == 200 and client.get("/events").status_code == 200
        # A cookie is not enough to change anything (another site could make a browser send it).
        assert client.post("/streams", json={"url": "rtsp://x/y"}).status_code == 401
        assert client.get("/").status_code == 200  # the page itself holds no data
    finally:
        client.cookies.clear()
        app.dependency_overrides[get_settings] = original


def test_streams_added_through_the_api_survive_a_restart(tiny_bundle_dir, clips, tmp_path):
    settings = monitor_settings(tiny_bundle_dir, tmp_path / "data", clips)
    with TestClient(create_app(settings)) as c:
        wait_ready(c.get)
        assert c.post("/streams", json={"id": "kept", "url": str(clips / "plume.mp4"), "loop": True, "interval_s": 1}).status_code == 201
    with TestClient(create_app(settings)) as c:
        wait_ready(c.get)
        kept = c.get("/streams/kept").json()
        assert kept["origin"] == "api" and kept["loop"] is True
        assert c.delete("/streams/kept").status_code == 204
    with TestClient(create_app(settings)) as c:
        wait_ready(c.get)
        assert c.get("/streams").json() == []


def test_monitoring_unavailable_leaves_detection_working(tiny_bundle_dir, clips, tmp_path, clip_path):
    holder = EventStore(tmp_path / "data")  # another process holds the folder
    try:
        with TestClient(create_app(monitor_settings(tiny_bundle_dir, tmp_path / "data", clips))) as c:
            wait_ready(c.get)
            for path in ("/streams", "/events"):
                response = c.get(path)
                assert response.status_code == 503 and response.json()["error"]["code"] == "monitor_unavailable"
                assert "in use by another smokewatch" in response.json()["error"]["message"]
            assert c.post("/detect", files={"file": ("c.mp4", clip_path.read_bytes())}).status_code == 200
    finally:
        holder.close()


def test_dashboard_pages_are_served_from_the_package(client):
    index = client.get("/")
    assert index.status_code == 200 and 'id="cameras"' in index.text and 'id="events"' in index.text
    assert "http://" not in index.text and "https://" not in index.text  # nothing from elsewhere
    page = client.get("/ui/events/1")
    assert page.status_code == 200 and 'id="snapshot"' in page.text and 'id="clip"' in page.text
    for asset in ("style.css", "common.js", "dashboard.js", "event.js"):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200 and "http://" not in response.text and "https://" not in response.text, asset


def test_documented_examples_are_valid():
    from service.api.events import EventList
    from service.streams.config import StreamSpec
    from service.streams.views import EventView, StreamView

    for model in (StreamView, EventView, EventList, StreamSpec):
        for example in model.model_config["json_schema_extra"]["examples"]:
            model.model_validate(example)


@pytest.mark.parametrize(
    "content, message",
    [
        ("streams:\n  - {id: a, url: 'rtsp://u:hunter22@x/y', intervall_s: 2}\n", "intervall_s"),
        ("streams:\n  - {id: a, url: '/etc/hostname'}\n", "outside the folders allowed"),
    ],
)
def test_a_broken_streams_file_stops_the_start(tiny_bundle_dir, clips, tmp_path, content, message):
    from pipeline.errors import ConfigError

    streams = tmp_path / "streams.yaml"
    streams.write_text(content)
    settings = monitor_settings(tiny_bundle_dir, tmp_path / "data", clips, streams_file=streams)
    with pytest.raises(ConfigError, match=message) as info:
        with TestClient(create_app(settings)):
            pass
    assert "hunter22" not in str(info.value)
    EventStore(tmp_path / "data").close()  # the failed start left the data folder free
    assert list((tmp_path / "data" / "uploads").iterdir()) == []  # and no smokewatch-uploads-* folder behind


def wait_unavailable(c) -> dict:
    """Wait until /streams says monitoring is unavailable (the monitor's start runs after the model load)."""
    return wait_until(lambda: (r := c.get("/streams")).status_code == 503 and r.json()["error"], 60, what="monitoring to give up")


def test_a_monitor_that_cannot_start_refuses_streams_and_says_why(tiny_bundle_dir, clips, tmp_path, clip_path):
    settings = monitor_settings(tiny_bundle_dir, tmp_path / "data", clips, stream_overrides={"extractor.backbone": "resnet18"})
    with TestClient(create_app(settings)) as c:
        wait_ready(c.get)
        error = wait_unavailable(c)
        assert error["code"] == "monitor_unavailable" and "stream_overrides" in error["message"]
        added = c.post("/streams", json={"id": "cam", "url": str(clips / "plume.mp4")})
        assert added.status_code == 503, added.text
        assert added.json()["error"]["code"] == "monitor_unavailable" and "extractor.backbone" in added.json()["error"]["message"]
        ready = c.get("/readyz")
        assert ready.status_code == 200  # clips are still verified
        assert ready.json()["monitoring"] == "unavailable" and "stream_overrides" in ready.json()["monitoring_error"]
        assert c.get("/events").status_code == 200  # what is stored stays readable
        assert c.post("/detect", files={"file": ("c.mp4", clip_path.read_bytes())}).status_code == 200
    with TestClient(create_app(monitor_settings(tiny_bundle_dir, tmp_path / "data", clips))) as c:
        wait_ready(c.get)
        assert c.get("/streams").json() == []  # the refused stream was never saved


def test_streams_are_refused_when_the_model_failed_to_load(tiny_bundle_dir, clips, tmp_path):
    settings = monitor_settings(tiny_bundle_dir, tmp_path / "data", clips, model=tmp_path / "no-bundle")
    with TestClient(create_app(settings)) as c:
        error = wait_unavailable(c)
        assert error["code"] == "monitor_unavailable" and "the model failed to load" in error["message"]
        added = c.post("/streams", json={"id": "cam", "url": str(clips / "plume.mp4")})
        assert added.status_code == 503 and "model bundle folder not found" in added.json()["error"]["message"]
