"""Health, readiness, model description, metrics, the API key and the full-queue answer."""

import re

from api_helpers import QUEUE_SIZE, RETRY_AFTER_S, TestClient, post_file
from pydantic import SecretStr
from stream_helpers import wait_until

from service.app import create_app
from service.settings import Settings


def test_health_and_readiness(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = wait_until(lambda: (r := api.get("/readyz")).json().get("monitoring") == "running" and r, 60, what="monitoring")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready", "model": "tiny-test", "workers": 1, "queue_capacity": QUEUE_SIZE, "monitoring": "running", "monitoring_error": None
    }


def test_not_ready_while_the_model_cannot_load(tmp_path):
    settings = Settings(_env_file=None, api_key=None, model=tmp_path / "no-bundle", upload_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200  # alive: restarting would not help
        for _ in range(200):
            ready = client.get("/readyz")
            if "failed" in ready.text:
                break
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "not_ready" and "model bundle folder not found" in ready.json()["error"]["message"]
        detect = post_file(client, "/detect", b"x")
        assert detect.status_code == 503 and detect.json()["error"]["code"] == "not_ready"
        assert client.get("/models").status_code == 503


def test_models_describes_the_loaded_bundle(api, tiny_bundle_dir):
    info = api.get("/models").json()
    assert info["name"] == "tiny-test" and info["path"] == str(tiny_bundle_dir)
    assert info["heads"] == ["lstm", "deep-lstm", "bilstm", "deep-bilstm", "gru", "deep-gru"]
    assert info["default_head"] == "lstm"
    assert info["stages"] == {"detector": "yolov8n", "extractor": "mobilenet_v3_small@32", "verifier": "lstm", "bundle": "tiny-test"}
    assert info["parameters"]["detector"] > 1_000_000 and "head:deep-gru" in info["parameters"]
    assert info["metrics"] == {} and info["provenance"] == {}
    assert info["sampling_fps"] == 8.0 and info["threshold"] == 0.5 and info["device"] == "cpu"
    assert info["load_seconds"] > 0


def metric(text: str, name: str, **labels) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if labels else ''} (\S+)$"
    values = [float(m.group(1)) for m in re.finditer(pattern, text, re.M)]
    assert values, f"{name} {labels} not in metrics"
    return values[0]


def test_metrics_count_requests_frames_and_queue(api, clip_path):
    before = api.get("/metrics").text
    frames_before = metric(before, "smokewatch_frames_processed_total")
    assert post_file(api, "/detect", clip_path.read_bytes()).status_code == 200
    assert post_file(api, "/detect", b"not a clip").status_code == 415
    response = api.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric(text, "smokewatch_frames_processed_total") == frames_before + 16
    assert metric(text, "smokewatch_http_requests_total", method="POST", route="/detect", status="200") >= 1
    assert metric(text, "smokewatch_http_requests_total", method="POST", route="/detect", status="415") >= 1
    assert metric(text, "smokewatch_http_request_duration_seconds_count", route="/detect") >= 2
    assert metric(text, "smokewatch_queue_depth") == 0 and metric(text, "smokewatch_workers_busy") == 0
    assert metric(text, "smokewatch_slots_capacity") == 1 + QUEUE_SIZE
    assert metric(text, "smokewatch_model_load_seconds") > 0 and metric(text, "smokewatch_model_loaded") == 1
    # Job ids never become labels: the route template does.
    api.get("/jobs/abc")
    assert 'route="/jobs/{job_id}"' in api.get("/metrics").text and "/jobs/abc" not in api.get("/metrics").text


def test_api_key_guards_everything_but_health(api, clip_path, settings_override):
    settings_override(api_key=SecretStr("s3cret"))
    for path in ("/healthz", "/readyz"):
        assert api.get(path).status_code == 200
    for method, path in (("get", "/models"), ("get", "/metrics"), ("get", "/jobs/x"), ("post", "/detect"), ("post", "/jobs")):
        for headers in ({}, {"X-API-Key": "wrong"}):
            response = getattr(api, method)(path, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
    good = {"X-API-Key": "s3cret"}
    assert api.get("/models", headers=good).status_code == 200
    response = api.post("/detect", files={"file": ("c.mp4", clip_path.read_bytes())}, headers=good)
    assert response.status_code == 200


def test_full_pool_answers_503_with_retry_after_and_keeps_no_upload(api, clip_path, uploads_left):
    pool = api.app.state.service.pool
    held = [pool.reserve() for _ in range(pool.capacity)]
    try:
        assert pool.reserve() is None
        for route in ("/detect", "/jobs"):
            response = post_file(api, route, clip_path.read_bytes())
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "busy"
            assert response.headers["retry-after"] == str(RETRY_AFTER_S)
        assert uploads_left() == []
    finally:
        for slot in held:
            slot.release()
    assert post_file(api, "/detect", clip_path.read_bytes()).status_code == 200
    assert pool.held == 0
