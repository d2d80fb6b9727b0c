"""A real `smokewatch serve` with monitoring: streams from a YAML file at start, webhooks to a
receiver on loopback that is down at first, SIGKILL mid-alert and a restart that loses nothing,
the live feed over a real socket, credentials absent from the log, and a clean SIGTERM."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time

import httpx
import pytest
from stream_helpers import Receiver, ServeProcess, wait_until

SETTINGS = {
    "SMOKEWATCH_ALERT_THRESHOLD": "0",  # random weights: every window counts (see stream_helpers.ALERT_ANYTHING)
    "SMOKEWATCH_ALERT_CONFIRM_K": "2",
    "SMOKEWATCH_ALERT_CONFIRM_N": "3",
    "SMOKEWATCH_ALERT_CLEAR_S": "600",
    "SMOKEWATCH_WEBHOOK_BACKOFF_S": "0.2",
    "SMOKEWATCH_WEBHOOK_BACKOFF_MAX_S": "0.5",
    "SMOKEWATCH_STREAM_TIMEOUT_S": "1",
    "SMOKEWATCH_STREAM_BACKOFF_S": "0.2",
    "SMOKEWATCH_STREAM_BACKOFF_MAX_S": "1",
    "SMOKEWATCH_SSE_MAX_S": "3",
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, make_clip):
    home = tmp_path_factory.mktemp("monitor-server")
    clips = home / "clips"
    clips.mkdir()
    make_clip(clips / "plume.mp4", frames=36, fps=12)
    streams = home / "streams.yaml"
    streams.write_text(
        "streams:\n"
        f"  - {{id: ridge, name: Ridge north, url: '{clips / 'plume.mp4'}', loop: true, interval_s: 0.2}}\n"
        "  - {id: locked, url: 'rtsp://admin:hunter22@127.0.0.1:9/live', interval_s: 1}\n"
    )
    receiver = Receiver()
    env = {
        **SETTINGS,
        "SMOKEWATCH_DATA_DIR": str(home / "data"),
        "SMOKEWATCH_STREAMS_FILE": str(streams),
        "SMOKEWATCH_STREAM_FOLDERS": json.dumps([str(clips)]),
        "SMOKEWATCH_WEBHOOK_URLS": json.dumps([receiver.url]),
        "SMOKEWATCH_UPLOAD_DIR": str(home / "uploads"),
    }
    yield home, clips, env, receiver
    receiver.stop()


def test_sigkill_mid_alert_then_restart_keeps_the_database_and_delivers_the_webhook(setup, tiny_bundle_dir):
    home, clips, env, receiver = setup
    first = ServeProcess(tiny_bundle_dir, home, env).wait_ready()
    try:
        with httpx.Client(base_url=first.url, timeout=30) as client:
            events = wait_until(lambda: client.get("/events").json()["events"], 60, what="an event")
            (event,) = events
            assert event["stream_id"] == "ridge" and event["state"] == "open"
            # The receiver is down: the webhook is tried, fails, and waits in the outbox.
            wait_until(lambda: 'smokewatch_webhooks{state="pending"} 1.0' in client.get("/metrics").text, 30)
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    assert first.process.returncode == -signal.SIGKILL

    db = sqlite3.connect(home / "data" / "smokewatch.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT id, state FROM events").fetchall() == [(event["id"], "open")]
        (row,) = db.execute("SELECT kind, state, attempts FROM outbox").fetchall()
        assert row[0] == "event.opened" and row[1] == "pending" and row[2] >= 1
    finally:
        db.close()

    receiver.start()  # the receiver comes up; smokewatch restarts
    second = ServeProcess(tiny_bundle_dir, home, env).wait_ready()
    try:
        wait_until(lambda: receiver.accepted, 30, what="the pending webhook")
        delivered = receiver.accepted[0]["body"]
        assert delivered["type"] == "event.opened" and delivered["event"]["id"] == event["id"]
        assert delivered["snapshot_url"].endswith(f"/events/{event['id']}/snapshot.jpg")
        with httpx.Client(base_url=second.url, timeout=30) as client:
            wait_until(lambda: client.get("/streams/ridge").json()["status"]["frames_processed"] >= 3, 30)
            events = client.get("/events").json()["events"]
            assert [(e["id"], e["state"]) for e in events] == [(event["id"], "open")]  # the same fire continues
            assert events[0]["positive_frames"] > event["positive_frames"]
            assert client.get(f"/events/{event['id']}/snapshot.jpg").status_code == 200

            # The live feed over a real socket: a stream added now raises an event that arrives there.
            messages: list[str] = []

            def listen() -> None:
                with httpx.Client(base_url=second.url, timeout=30) as sse, sse.stream("GET", "/events/live") as response:
                    for line in response.iter_lines():
                        messages.append(line)

            listener = threading.Thread(target=listen, daemon=True)
            listener.start()
            time.sleep(0.3)
            added = client.post("/streams", json={"id": "east", "url": str(clips / "plume.mp4"), "loop": True, "interval_s": 0.2})
            assert added.status_code == 201, added.text
            wait_until(lambda: any('"stream_id":"east"' in m for m in messages if m.startswith("data:")), 30, what="SSE")
            wait_until(lambda: any(r["body"]["event"]["stream_id"] == "east" for r in receiver.accepted), 30)
            assert "hunter22" not in client.get("/streams").text

        # SIGTERM with a live-feed client connected: the feed ends within sse_max_s, the server exits cleanly.
        start = time.monotonic()
        assert second.stop(60) in (0, -signal.SIGTERM)
        assert time.monotonic() - start < 20
        listener.join(10)
    finally:
        second.kill()
    for process in (first, second):
        log = process.log.read_text()
        assert "hunter22" not in log and "Traceback" not in log
    assert "rtsp://***@127.0.0.1:9/live" in second.log.read_text()
    assert "Application shutdown complete" in second.log.read_text()
