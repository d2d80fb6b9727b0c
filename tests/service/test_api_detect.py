"""POST /detect on good input: the same answer as `smokewatch detect`, per-request overrides, images."""

import io

import numpy as np
from api_helpers import comparable, post_file
from PIL import Image


def test_detect_answers_with_the_cli_document(api, clip_path, cli_document, uploads_left):
    response = post_file(api, "/detect", clip_path.read_bytes(), filename="../../etc/plume clip.mp4")
    assert response.status_code == 200, response.text
    document = response.json()
    assert comparable(document) == comparable(cli_document)
    assert set(document["timing"]) == set(cli_document["timing"])
    # The client's file name, made safe; never the server's temporary path.
    assert document["source"]["path"] == "plume_clip.mp4"
    assert uploads_left() == []


def test_fields_override_rate_head_and_threshold(api, clip_path):
    response = post_file(api, "/detect", clip_path.read_bytes(), fps="2", head="deep-gru", threshold="0")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["frames_processed"] == 4  # frames at 0, 0.5, 1.0 and 1.5 s of a 24-frame 12 fps clip
    assert document["model"]["verifier"] == "deep-gru"
    assert document["verdict"] == "smoke"  # every window passes a threshold of 0
    assert all(region["verified"] for region in document["regions"])
    # Empty fields mean "not set", as HTML forms send them.
    default = post_file(api, "/detect", clip_path.read_bytes(), fps="", head="", threshold="")
    assert default.status_code == 200 and default.json()["frames_processed"] == 16


def test_a_single_image_is_a_one_frame_source(api):
    image = np.full((96, 160, 3), (120, 160, 210), np.uint8)
    image[60:] = (40, 60, 35)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    response = post_file(api, "/detect", buffer.getvalue(), filename="frame.jpg")  # the name lies: content decides
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["source"]["kind"] == "image" and document["frames_processed"] == 1
    assert (document["source"]["width"], document["source"]["height"]) == (160, 96)


def test_openapi_documents_every_route_with_examples(api):
    schema = api.get("/openapi.json").json()
    routes = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert {("/detect", "post"), ("/jobs", "post"), ("/jobs/{job_id}", "get"), ("/healthz", "get"),
            ("/readyz", "get"), ("/models", "get"), ("/metrics", "get")} <= routes
    components = schema["components"]["schemas"]

    def has_example(content: dict) -> bool:
        for media in content.values():
            if "example" in media or "examples" in media:
                return True
            ref = media.get("schema", {}).get("$ref", "")
            if ref and "examples" in components[ref.rsplit("/", 1)[-1]]:
                return True
        return False

    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert operation.get("summary") and operation.get("description"), (path, method)
            for status, answer in operation["responses"].items():
                if "content" in answer:
                    assert has_example(answer["content"]), (path, method, status)
    body = schema["paths"]["/detect"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["required"] == ["file"]
    assert {"file", "fps", "head", "threshold"} <= set(body["schema"]["properties"])
    assert "example" in body
    errors = schema["paths"]["/detect"]["post"]["responses"]
    assert {"400", "401", "413", "415", "422", "503"} <= set(errors)
    assert "APIKeyHeader" in schema["components"]["securitySchemes"]


def test_documented_examples_are_valid_answers():
    from service.api import schemas

    for model in (schemas.DetectResult, schemas.JobStatus, schemas.ModelInfo, schemas.Readiness, schemas.Health):
        for example in model.model_config["json_schema_extra"]["examples"]:
            model.model_validate(example)
