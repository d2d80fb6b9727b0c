"""A real RTSP camera on loopback (GStreamer's RTSP server, RTP interleaved over TCP) streaming a
synthetic smoke clip: one event, offline when the server stops, back without a restart of
smokewatch when it returns, and credentials never shown or logged."""

from __future__ import annotations

import json
import logging

import pytest
from stream_helpers import ALERT_ANYTHING, RtspServer, rtsp_unavailable, wait_until

from pipeline.bundle import ModelBundle
from service.settings import Settings
from service.store import EventStore
from service.streams.config import StreamSpec
from service.streams.monitor import Monitor

_why = rtsp_unavailable()
pytestmark = pytest.mark.skipif(_why is not None, reason=f"no RTSP server on this machine: {_why}")


@pytest.fixture
def rtsp(tmp_path, make_clip):
    clip = make_clip(tmp_path / "smoke.mp4", frames=360, fps=12)  # 30 s: longer than the test
    server = RtspServer(clip, tmp_path / "rtsp.log").start()
    yield server
    server.stop()


def test_rtsp_camera_alerts_once_goes_offline_and_comes_back(tmp_path, rtsp, tiny_bundle_dir, caplog):
    caplog.set_level(logging.INFO, logger="smokewatch")
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "data", stream_timeout_s=1.5, stream_stall_s=2.0,
        stream_backoff_s=0.2, stream_backoff_max_s=0.5, **ALERT_ANYTHING,
    )
    store = EventStore(settings.resolved_data_dir)
    monitor = Monitor(settings, store)
    try:
        monitor.add(StreamSpec(id="cam", url=rtsp.url("viewer:hunter22"), interval_s=0.2))
        monitor.add(StreamSpec(id="quiet", url=rtsp.url(), interval_s=0.2, alert={"threshold": 1.0}))
        monitor.start(ModelBundle.load(tiny_bundle_dir, heads=["lstm"]))
        cam, quiet = monitor.get("cam"), monitor.get("quiet")

        wait_until(lambda: cam.event is not None, 30, what="an event on the RTSP stream")
        wait_until(lambda: cam.processed >= 8 and quiet.processed >= 8, 30)
        assert cam.status().source.startswith("160x96 h264") and cam.state == "online"
        (event,) = store.list_events()  # exactly one, and none for the stream that must stay quiet
        assert event.stream_id == "cam" and event.state == "open"

        rtsp.stop()
        wait_until(lambda: cam.state != "online" and quiet.state != "online", 15, what="offline")
        assert cam.last_error and "hunter22" not in cam.last_error
        before = cam.processed

        rtsp.start()  # same port, smokewatch untouched
        wait_until(lambda: cam.state == "online" and quiet.state == "online", 20, what="back online")
        wait_until(lambda: cam.processed >= before + 5, 20)
        assert cam.reconnects >= 1 and quiet.reconnects >= 1
        events = store.list_events()
        assert len(events) == 1 and events[0].id == event.id and events[0].state == "open"  # the same fire, still one event
        assert events[0].positive_frames > event.positive_frames

        shown = json.dumps([w.view().model_dump(mode="json") for w in (cam, quiet)])
        assert "hunter22" not in shown and "viewer" not in shown
        assert "hunter22" not in caplog.text and "rtsp://***@127.0.0.1" in caplog.text
    finally:
        monitor.close()
        store.close()
