"""Settings from a .env file: a misspelt SMOKEWATCH_* name is refused, not dropped; names that
docker compose reads from the same file, and names of other tools, are left alone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.cli import main
from service.settings import NOT_SETTINGS, Settings

REPO = Path(__file__).resolve().parents[2]


def test_a_misspelt_name_in_the_env_file_is_refused_with_a_suggestion(tmp_path):
    env = tmp_path / ".env"
    env.write_text("SMOKEWATCH_WORKERS=2\nSMOKEWATCH_ALERT_TRESHOLD=0.3\n")
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=env)
    (error,) = info.value.errors()
    assert error["loc"] == ("SMOKEWATCH_ALERT_TRESHOLD",)
    assert str(env) in error["msg"] and "did you mean SMOKEWATCH_ALERT_THRESHOLD?" in error["msg"]


def test_compose_names_other_tools_names_and_settings_are_accepted(tmp_path):
    env = tmp_path / ".env"
    env.write_text(
        "".join(f"{name}=x\n" for name in sorted(NOT_SETTINGS))
        + "COMPOSE_PROJECT_NAME=fire\nDATABASE_URL=sqlite://\n"
        + 'SMOKEWATCH_WORKERS=3\nsmokewatch_queue_size=7\nSMOKEWATCH_STREAM_FOLDERS=["/srv/clips"]\n'
        + 'SMOKEWATCH_STREAM_OVERRIDES={"decision.threshold": 0.6}\n'
    )
    settings = Settings(_env_file=env)
    assert (settings.workers, settings.queue_size) == (3, 7)
    assert settings.stream_folders == [Path("/srv/clips")] and settings.stream_overrides == {"decision.threshold": 0.6}


def test_the_environment_still_wins_over_the_env_file(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("SMOKEWATCH_WORKERS=3\n")
    monkeypatch.setenv("SMOKEWATCH_WORKERS", "5")
    assert Settings(_env_file=env).workers == 5


def test_an_unknown_keyword_is_refused():
    with pytest.raises(ValidationError, match="treshold"):
        Settings(_env_file=None, treshold=0.5)


def test_serve_refuses_a_misspelt_env_file_in_one_line(capsys, tmp_path, monkeypatch, tiny_bundle_dir):
    (tmp_path / ".env").write_text("SMOKEWATCH_WOKRERS=2\n")
    monkeypatch.chdir(tmp_path)  # .env is read from the working folder
    assert main(["serve", "--model", str(tiny_bundle_dir), "--port", "9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("smokewatch: error: invalid service settings")
    assert "SMOKEWATCH_WOKRERS" in err and "did you mean SMOKEWATCH_WORKERS?" in err


def test_every_smokewatch_name_of_compose_and_the_dockerfile_is_known():
    fields = {"SMOKEWATCH_" + name.upper() for name in Settings.model_fields}
    for path in (REPO / "docker-compose.yml", REPO / "Dockerfile"):
        names = set(re.findall(r"SMOKEWATCH_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
        assert names, path
        assert names - fields - NOT_SETTINGS == set(), path
