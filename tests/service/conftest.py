"""Fixtures for the HTTP service tests: one app on the tiny bundle, shared by the TestClient tests."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from api_helpers import QUEUE_SIZE, RETRY_AFTER_S, TestClient, wait_ready

from service.app import create_app
from service.settings import Settings, get_settings


@pytest.fixture(scope="session")
def api_settings(tiny_bundle_dir, tmp_path_factory) -> Settings:
    # Given explicitly, so SMOKEWATCH_* variables of a developer's shell cannot change what tests see.
    return Settings(
        _env_file=None,
        api_key=None,
        workers=1,
        model=tiny_bundle_dir,
        upload_dir=tmp_path_factory.mktemp("uploads"),
        data_dir=tmp_path_factory.mktemp("monitor-data"),  # events of stream monitoring
        queue_size=QUEUE_SIZE,
        retry_after_s=RETRY_AFTER_S,
    )


@pytest.fixture(autouse=True)
def _private_data_home(monkeypatch, tmp_path_factory):
    """Apps a test makes without a data_dir keep their monitoring data in a folder of their own,
    never in the developer's ~/.local/share/smokewatch."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))


@pytest.fixture(scope="session")
def api(api_settings):
    """A TestClient on a started app with the tiny bundle loaded."""
    with TestClient(create_app(api_settings)) as client:
        wait_ready(client.get)
        yield client


@pytest.fixture
def settings_override(api):
    """Change settings for one test, the way FastAPI's docs override dependencies; restored after."""
    app = api.app
    original = app.dependency_overrides[get_settings]

    def apply(**changes) -> Settings:
        changed = original().model_copy(update=changes)
        app.dependency_overrides[get_settings] = lambda: changed
        return changed

    yield apply
    app.dependency_overrides[get_settings] = original


@pytest.fixture
def uploads_left(api):
    """What is left in the app's upload folder (should be nothing once an answer is given)."""
    return lambda: sorted(p.name for p in api.app.state.service.upload_root.iterdir())


@pytest.fixture(scope="session")
def cli_document(tiny_bundle_dir, clip_path) -> dict:
    """What `smokewatch detect` prints for the shared clip: the reference for the HTTP answer."""
    from service.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["detect", str(clip_path), "--model", str(tiny_bundle_dir), "-q"]) == 0
    return json.loads(out.getvalue())
