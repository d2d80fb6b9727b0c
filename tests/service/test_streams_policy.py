"""The pure pieces of monitoring: alert rule, camera health, back-off, sampling, redaction, specs."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.errors import ConfigError
from service.settings import Settings
from service.streams.backoff import Backoff, backoff_delay
from service.streams.config import (
    AlertPolicyConfig, PathNotAllowed, StreamRequest, StreamSpec, check_file_allowed, load_streams_file, make_id, resolve,
    source_kind,
)
from service.streams.health import FrameHealth, HealthConfig
from service.streams.policy import AlertPolicy, Window
from service.streams.redact import redact_url, scrub
from service.streams.sources import IntervalSampler, _multipart_parts

RULE = AlertPolicyConfig(threshold=0.5, confirm_k=2, confirm_n=3, hold_factor=0.8, clear_s=30, cooldown_s=100)


def feed(policy: AlertPolicy, probs: list[float | None], start: float = 0.0, step: float = 5.0) -> list[tuple[float, str]]:
    """Feed one frame per entry (None: a frame without any window); returns (time, change) pairs."""
    changes = []
    for i, p in enumerate(probs):
        t = start + i * step
        change = policy.update(t, [] if p is None else [Window(p)])
        if change is not None:
            changes.append((t, change.kind))
    return changes


def test_k_of_n_opens_one_alert_and_updates_it():
    policy = AlertPolicy(RULE)
    changes = feed(policy, [0.9, 0.1, 0.2, 0.9, 0.9, 0.9])
    # 0.9 alone is 1 of 3; 0.9 at t=15 with t=0 out of the window is 1 of 3 again; t=20 makes 2 of 3.
    assert changes == [(20.0, "opened"), (25.0, "updated")]


def test_opening_reports_the_first_counting_frame():
    policy = AlertPolicy(RULE)
    policy.update(0.0, [Window(0.7, track_id=4, box=(1, 2, 3, 4))])
    change = policy.update(5.0, [Window(0.2), Window(0.8, track_id=5)])
    assert change.kind == "opened" and change.first_time_s == 0.0
    assert change.score == 0.8 and [w.track_id for w in change.windows] == [5]  # only the counting window


def test_hysteresis_keeps_an_open_alert_on_a_thinner_plume():
    policy = AlertPolicy(RULE)
    feed(policy, [0.9, 0.9])
    assert policy.is_open and policy.active_threshold == pytest.approx(0.4)
    assert policy.update(10, [Window(0.45)]).kind == "updated"  # below 0.5 but above 0.5 x 0.8
    fresh = AlertPolicy(RULE)
    assert feed(fresh, [0.45, 0.45, 0.45]) == []  # the same plume never opens an alert


def test_closes_after_clear_s_without_smoke_and_reopens_within_cooldown():
    policy = AlertPolicy(RULE)
    changes = feed(policy, [0.9, 0.9, None, 0.1, 0.1, 0.1, 0.1, 0.1], step=5)
    assert changes == [(5.0, "opened"), (35.0, "closed")]
    assert not policy.is_open
    # Smoke again 50 s after closing: within the 100 s cool-down, the same event reopens.
    again = feed(policy, [0.9, 0.9], start=85)
    assert again == [(90.0, "reopened")]


def test_after_the_cooldown_a_new_alert_opens():
    policy = AlertPolicy(RULE)
    feed(policy, [0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert feed(policy, [0.9, 0.9], start=500) == [(505.0, "opened")]


def test_closing_needs_fresh_confirmation_afterwards():
    policy = AlertPolicy(RULE)
    feed(policy, [0.9, 0.9])
    assert policy.close(12.0, "removed").kind == "closed"
    assert policy.close(13.0, "again") is None
    assert policy.update(14.0, [Window(0.9)]) is None  # the 2 counting frames before closing do not count


def test_resume_continues_an_open_alert_until_it_clears():
    policy = AlertPolicy(RULE)
    policy.resume(0.0)
    assert policy.update(5.0, [Window(0.45)]).kind == "updated"
    assert policy.update(40.0, []).kind == "closed"


def test_frame_health_reports_frozen_and_dark_cameras():
    rng = np.random.default_rng(0)
    scene = rng.integers(40, 200, (96, 160, 3), dtype=np.uint8)
    health = FrameHealth(HealthConfig(frames=3))
    assert [health.update(scene) for _ in range(3)] == ["ok", "ok", "frozen"]  # 2 repeats after the first frame
    noisy = [np.clip(scene + rng.normal(0, 1, scene.shape), 0, 255).astype(np.uint8) for _ in range(4)]
    assert [health.update(f) for f in noisy] == ["ok"] * 4  # sensor noise: a live camera, however still the scene
    dark = [np.clip(rng.normal(8, 3, scene.shape), 0, 255).astype(np.uint8) for _ in range(3)]
    assert [health.update(f) for f in dark] == ["ok", "ok", "dark"]
    assert health.update(noisy[0]) == "ok"


def test_backoff_doubles_up_to_its_cap_and_resets():
    assert [backoff_delay(n, 1.0, 10.0, jitter=0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    b = Backoff(0.5, 4.0, jitter=0.0)
    assert [b.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    b.reset()
    assert b.next_delay() == 0.5
    assert all(0.9 <= backoff_delay(1, 1.0, 60.0) <= 1.1 for _ in range(50))  # jitter stays within 10 %


def test_interval_sampler_keeps_one_frame_per_interval():
    sampler = IntervalSampler(1.0)
    kept = [t for t in np.arange(0, 5.01, 0.25) if sampler.due(float(t))]
    assert kept == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    late = IntervalSampler(1.0)
    assert late.due(0.0) and late.due(7.3) and not late.due(8.0) and late.due(8.31)  # a gap restarts the grid


@pytest.mark.parametrize(
    "url, shown",
    [
        ("rtsp://admin:hunter22@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        ("http://cam.local/snap.jpg?user=bob&password=hunter22&res=hd", "http://cam.local/snap.jpg?user=bob&password=***&res=hd"),
        ("https://hooks.example/x?token=abc123", "https://hooks.example/x?token=***"),
        ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),
        ("/srv/clips/a.mp4", "/srv/clips/a.mp4"),
    ],
)
def test_urls_are_redacted(url, shown):
    assert redact_url(url) == shown


def test_scrub_removes_credentials_from_error_text():
    url = "rtsp://admin:hunter22@10.0.0.5/live"
    text = f"[Errno 111] Connection refused: '{url}' (user admin, password hunter22)"
    cleaned = scrub(text, url)
    assert "hunter22" not in cleaned and "rtsp://***@10.0.0.5/live" in cleaned


def test_stream_specs_are_strict():
    assert source_kind("rtsp://x/y") == "rtsp" and source_kind("webcam:0") == "webcam" and source_kind("/dev/video2") == "webcam"
    assert source_kind("https://x/mjpeg") == "http" and source_kind("/a/b.mp4") == "file" and source_kind("file:///a.mp4") == "file"
    with pytest.raises(ValidationError, match="unsupported URL scheme"):
        StreamSpec(id="a", url="ftp://x/y")
    with pytest.raises(ValidationError, match="Extra inputs"):
        StreamSpec(id="a", url="rtsp://x/y", treshold=0.5)
    with pytest.raises(ValidationError, match="id must be"):
        StreamSpec(id="Bad Id", url="rtsp://x/y")
    with pytest.raises(ValidationError, match="webhook URL"):
        StreamSpec(id="a", url="rtsp://x/y", webhooks=["ftp://hook"])


def test_ids_are_made_from_names_and_hosts():
    taken = {"ridge-north"}
    assert make_id(StreamRequest(name="Ridge North", url="rtsp://x/y"), taken) == "ridge-north-2"
    assert make_id(StreamRequest(url="rtsp://u:p@cam7.example.org/live"), set()) == "cam7"
    assert make_id(StreamRequest(url="/clips/Plume 1.mp4"), set()) == "plume-1"


def test_file_sources_are_limited_to_allowed_folders(tmp_path):
    allowed = tmp_path / "clips"
    allowed.mkdir()
    (allowed / "a.mp4").write_bytes(b"x")
    (tmp_path / "secret.mp4").write_bytes(b"x")
    (allowed / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    assert check_file_allowed(str(allowed / "a.mp4"), [allowed]) == (allowed / "a.mp4").resolve()
    for sneaky in (str(allowed / ".." / "secret.mp4"), str(allowed / "link.mp4"), f"file://{tmp_path}/secret.mp4"):
        with pytest.raises(PathNotAllowed):
            check_file_allowed(sneaky, [allowed])
    with pytest.raises(PathNotAllowed, match="disabled"):
        check_file_allowed(str(allowed / "a.mp4"), [])


def test_stream_settings_combine_with_overrides():
    settings = Settings(_env_file=None, alert_confirm_k=3, alert_confirm_n=5, webhook_urls=["http://a/hook"])
    spec = StreamSpec(id="a", url="rtsp://x/y", alert={"confirm_k": 1, "threshold": 0.9}, webhooks=["http://b/hook", "http://a/hook"])
    resolved = resolve(spec, settings, bundle_threshold=0.5)
    assert (resolved.policy.confirm_k, resolved.policy.confirm_n, resolved.policy.threshold) == (1, 5, 0.9)
    assert resolved.webhooks == ("http://a/hook", "http://b/hook") and resolved.interval_s == 5.0
    assert resolve(StreamSpec(id="b", url="rtsp://x/y"), settings, 0.42).policy.threshold == 0.42
    with pytest.raises(ConfigError, match="confirm_k must not exceed"):
        resolve(StreamSpec(id="c", url="rtsp://x/y", alert={"confirm_k": 9}), settings, 0.5)


def test_streams_file_is_validated(tmp_path):
    good = tmp_path / "streams.yaml"
    good.write_text("streams:\n  - id: a\n    url: rtsp://u:p@x/y\n    interval_s: 2\n  - id: b\n    url: http://x/snap.jpg\n")
    assert [s.id for s in load_streams_file(good)] == ["a", "b"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("streams:\n  - id: a\n    url: rtsp://u:hunter22@x/y\n    intervall_s: 2\n")
    with pytest.raises(ConfigError, match="intervall_s") as info:
        load_streams_file(bad)
    assert "hunter22" not in str(info.value)
    twice = tmp_path / "twice.yaml"
    twice.write_text("streams:\n  - {id: a, url: 'rtsp://x/y'}\n  - {id: a, url: 'rtsp://x/z'}\n")
    with pytest.raises(ConfigError, match="appears twice"):
        load_streams_file(twice)


def test_multipart_parser_handles_lengths_boundaries_and_split_chunks():
    parts = [b"\xff\xd8one\xff\xd9", b"\xff\xd8two\r\n\xff\xd9", b"\xff\xd8three\xff\xd9"]
    body = (
        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(parts[0]) + parts[0] + b"\r\n"
        b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + parts[1] + b"\r\n"
        b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + parts[2] + b"\r\n--frame\r\n"
    )
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)]
    assert list(_multipart_parts(iter(chunks), b"frame")) == parts
    # A camera that declares the boundary with its dashes already in it.
    assert list(_multipart_parts(iter([body]), b"--frame")) == parts
