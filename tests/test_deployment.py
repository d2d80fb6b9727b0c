"""The deployment files at the repository root: docker-compose.yml, Dockerfile, .dockerignore, .ci/run.

No Docker engine runs here; the compose file is validated by Debian's docker-compose, which works
offline (`.ci/run` installs it), and the rest is checked for the promises the README makes.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
# Variables the compose file sets for parts that do not read service/settings.py.
NOT_SERVICE_SETTINGS = {"SMOKEWATCH_HOME"}  # read by pipeline/yolo_env.py


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.mark.parametrize("profile", [None, "gpu"])
def test_compose_file_is_valid_for_docker_compose(profile):
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (apt-get install -y docker-compose; .ci/run does it)")
    args = [tool, "-f", str(COMPOSE)] + (["--profile", profile] if profile else []) + ["config", "-q"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_compose_runs_the_api_with_health_check_volumes_and_gpu_profile():
    services = compose()["services"]
    assert set(services) == {"smokewatch", "smokewatch-gpu"}
    for name, service in services.items():
        assert service["command"] == ["smokewatch", "serve", "--host", "0.0.0.0", "--port", "8000"]
        assert any(str(p).endswith(":8000") for p in service["ports"])
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        mounts = {_target(v): v for v in service["volumes"]}
        assert mounts["/models"].endswith(":ro"), "bundles are mounted read-only"
        assert {"/var/lib/smokewatch/data", "/var/lib/smokewatch/data/media"} <= set(mounts), "event database, snapshots"
        assert service["environment"]["SMOKEWATCH_DATA_DIR"] == "/var/lib/smokewatch/data"
        env = service["environment"]
        assert "SMOKEWATCH_MODEL" in env and env["SMOKEWATCH_MODEL"] is None, "passed through, never set empty"
    cpu, gpu = services["smokewatch"], services["smokewatch-gpu"]
    assert "profiles" not in cpu and gpu["profiles"] == ["gpu"]
    assert cpu["build"]["args"]["VARIANT"] == "cpu" and gpu["build"]["args"]["VARIANT"] == "cuda"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


def _target(volume: str) -> str:
    """The container path of a short-syntax volume (the source may hold ${VAR:-default})."""
    rest, _, last = volume.rpartition(":")
    return rest.rpartition(":")[2] if last in ("ro", "rw") else last


def test_compose_variables_are_service_settings():
    """A misspelt SMOKEWATCH_* name would be ignored silently by the service: catch it here."""
    from service.settings import Settings

    for service in compose()["services"].values():
        for key in service["environment"]:
            assert key.startswith("SMOKEWATCH_")
            if key not in NOT_SERVICE_SETTINGS:
                assert key.removeprefix("SMOKEWATCH_").lower() in Settings.model_fields, key


def test_dockerfile_builds_cpu_and_cuda_and_installs_headless_opencv_last():
    text = DOCKERFILE.read_text()
    logical = re.sub(r"\\\n", " ", text)  # join continued lines
    assert re.search(r"^ARG VARIANT=cpu$", text, re.M)
    assert 'cpu) index="$TORCH_INDEX_CPU"' in text and 'cuda) index="$TORCH_INDEX_CUDA"' in text
    pins = re.findall(r'"(torch(?:vision)?==[\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert len(pins) == 2 and all(pin in text for pin in pins), "the image installs the versions pyproject.toml pins"
    installs = [m.group(0) for m in re.finditer(r"pip (?:install|uninstall)[^;&\n]*", logical)]
    assert installs[-1].split()[-1] == "opencv-python-headless", installs
    assert any("uninstall -y opencv-python" in i for i in installs)
    assert 'CMD ["smokewatch", "serve", "--host", "0.0.0.0", "--port", "8000"]' in text
    assert "HEALTHCHECK" in text and "EXPOSE 8000" in text
    assert re.search(r"^USER smokewatch$", text, re.M), "the service does not run as root"


def test_dockerignore_keeps_the_sources_and_drops_local_state():
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    for needed in ("pyproject.toml", "README.md", "LICENSE", "pipeline", "service", "training", "pipeline/bundles"):
        assert not any(fnmatch.fnmatch(needed, p) for p in patterns), needed
    for dropped in (".venv", ".git", "tests"):
        assert any(fnmatch.fnmatch(dropped, p) for p in patterns), dropped


def test_ci_installs_docker_compose_and_ends_with_the_readme_test_command():
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert lines[-1] == ".venv/bin/python -m pytest -q"
    assert "```bash\n.venv/bin/python -m pytest -q\n```" in (ROOT / "README.md").read_text()
    assert any("apt-get install -y -q docker-compose" in line for line in lines)
