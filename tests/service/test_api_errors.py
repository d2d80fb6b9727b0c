"""Bad input: every case gets its documented status and code, in the one error shape, and leaves no file behind."""

import pytest
from api_helpers import png_bomb, post_file, wait_finished

from service.api.errors import ERROR_CODES


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code and body["error"]["message"], body
    assert ERROR_CODES[code][0] == status  # the documented table agrees with what is answered
    return body["error"]


def truncated(clip: bytes) -> bytes:
    return clip[: len(clip) // 3]


BOUNDARY = "sw-test-boundary"


def multipart(*parts: tuple[str, str | None, bytes], close: bool = True) -> bytes:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


def post_raw(api, body: bytes, content_type: str = f"multipart/form-data; boundary={BOUNDARY}", route: str = "/detect", **headers):
    return api.post(route, content=body, headers={"content-type": content_type, **headers})


@pytest.mark.parametrize("route", ["/detect", "/jobs"])
@pytest.mark.parametrize(
    "case, status, code",
    [
        ("empty body", 422, "missing_file"),
        ("no file field", 422, "missing_file"),
        ("empty file", 422, "empty_file"),
        ("text file named .mp4", 415, "unsupported_media"),
        ("truncated mp4", 422, "truncated"),
        ("PNG bomb header", 413, "frame_too_large"),
        ("huge declared Content-Length", 413, "upload_too_large"),
        ("not multipart", 415, "not_multipart"),
        ("garbage multipart", 400, "malformed_multipart"),
        ("multipart cut short", 400, "malformed_multipart"),
        ("unknown field", 422, "invalid_field"),
        ("bad fps", 422, "invalid_field"),
        ("unknown head", 422, "invalid_field"),
        ("threshold above 1", 422, "invalid_field"),
        ("two files", 422, "invalid_field"),
    ],
)
def test_bad_input_battery(api, clip_path, uploads_left, route, case, status, code):
    clip = clip_path.read_bytes()
    if case == "empty body":
        response = api.post(route)
    elif case == "no file field":
        response = post_raw(api, multipart(("fps", None, b"2")), route=route)
    elif case == "empty file":
        response = post_file(api, route, b"")
    elif case == "text file named .mp4":
        response = post_file(api, route, b"plain text, not a clip\n" * 50, filename="clip.mp4")
    elif case == "truncated mp4":
        response = post_file(api, route, truncated(clip))
    elif case == "PNG bomb header":
        response = post_file(api, route, png_bomb(), filename="innocent.png")
    elif case == "huge declared Content-Length":
        response = post_raw(api, multipart(("file", "a.mp4", clip)), route=route, **{"content-length": str(10**13)})
    elif case == "not multipart":
        response = post_raw(api, clip, content_type="video/mp4", route=route)
    elif case == "garbage multipart":
        response = post_raw(api, b"this is not multipart at all", route=route)
    elif case == "multipart cut short":
        response = post_raw(api, multipart(("file", "a.mp4", clip), close=False)[:-100], route=route)
    elif case == "unknown field":
        response = post_file(api, route, clip, treshold="0.5")
    elif case == "bad fps":
        response = post_file(api, route, clip, fps="fast")
    elif case == "unknown head":
        response = post_file(api, route, clip, head="transformer")
    elif case == "threshold above 1":
        response = post_file(api, route, clip, threshold="1.5")
    else:  # two files
        response = post_raw(api, multipart(("file", "a.mp4", clip), ("file", "b.mp4", clip)), route=route)
    assert_error(response, status, code)
    assert uploads_left() == []


def test_duration_and_frame_limits(api, clip_path, settings_override, uploads_left):
    clip = clip_path.read_bytes()  # 2.0 s, 24 frames
    settings_override(max_duration_s=1.5)
    error = assert_error(post_file(api, "/detect", clip), 422, "too_long")
    assert "2.0 s" in error["message"] and "POST /jobs" in error["message"]
    job = post_file(api, "/jobs", clip)  # long clips are what jobs are for
    assert job.status_code == 202
    wait_finished(api, job.json()["id"])

    settings_override(max_frames=20, job_max_frames=20)
    assert "24 frames" in assert_error(post_file(api, "/detect", clip), 422, "too_long")["message"]
    assert_error(post_file(api, "/jobs", clip), 422, "too_long")
    assert uploads_left() == []


def test_upload_limit_is_counted_while_streaming(api, clip_path, settings_override, uploads_left):
    clip = clip_path.read_bytes()
    settings_override(max_upload_bytes=len(clip) - 1)
    # Declared length is under the limit plus form overhead, so only counting the bytes catches it.
    error = assert_error(post_file(api, "/detect", clip), 413, "upload_too_large")
    assert str(len(clip) - 1) in error["message"]
    # Without any declared length (chunked upload), counting is the only guard.
    chunks = iter([multipart(("file", "a.mp4", clip))])
    response = api.post("/detect", content=chunks, headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert_error(response, 413, "upload_too_large")
    assert uploads_left() == []


def test_large_frames_are_refused_by_pixel_limit(api, settings_override):
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((200, 300, 3), np.uint8)).save(buffer, format="PNG")
    settings_override(max_pixels=300 * 200 - 1)
    error = assert_error(post_file(api, "/detect", buffer.getvalue(), filename="big.png"), 413, "frame_too_large")
    assert "300x200" in error["message"] and "big.png" in error["message"]


def test_a_head_missing_from_the_bundle_is_refused(tiny_bundle_dir):
    from pipeline.bundle import ModelBundle
    from service.api.errors import ApiError
    from service.api.inference import Limits, request_config
    from service.api.schemas import DetectOptions

    bundle = ModelBundle.load(tiny_bundle_dir, heads=["lstm"])
    with pytest.raises(ApiError) as caught:
        request_config(bundle, DetectOptions(head="gru"), Limits(10.0, 100))
    assert caught.value.code == "invalid_field" and "has lstm" in caught.value.message
    config = request_config(bundle, DetectOptions(fps=2.0, threshold=0.25), Limits(10.0, 100))
    assert (config.sampling.fps, config.decision.threshold, config.sampling.max_frames) == (2.0, 0.25, 100)


def test_framework_errors_use_the_same_shape(api):
    assert_error(api.get("/no-such-route"), 404, "not_found")
    assert_error(api.delete("/detect"), 405, "method_not_allowed")
    assert_error(api.get("/jobs/0123456789abcdef"), 404, "job_not_found")
