"""Keep ultralytics offline and out of the user's home settings.

ultralytics reaches for the network in several places (version checks, telemetry, font and
weight downloads, pip auto-install). None of that may happen here, and the machines it runs on
have no network. The environment must be set before ultralytics is first imported, so every
module that imports ultralytics calls :func:`prepare_ultralytics` first.
"""

from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path


def smokewatch_home() -> Path:
    """Folder for smokewatch's own caches and settings (``SMOKEWATCH_HOME`` or ~/.cache/smokewatch)."""
    base = os.environ.get("SMOKEWATCH_HOME")
    if base:
        return Path(base).expanduser()
    cache_root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_root) / "smokewatch"


@cache
def prepare_ultralytics() -> Path:
    """Point ultralytics at a settings folder we own, with syncing and auto-install off.

    Returns the ultralytics settings folder. Safe to call many times.
    """
    config_dir = smokewatch_home() / "ultralytics"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    settings_dir = Path(os.environ["YOLO_CONFIG_DIR"]).expanduser() / "Ultralytics"
    settings_dir.mkdir(parents=True, exist_ok=True)
    _provide_fonts(settings_dir)

    from ultralytics.utils import SETTINGS, patches

    # ultralytics patches PIL's Image.open to pip-install pi-heif the first time Pillow cannot
    # identify a file; we sniff arbitrary uploads with Pillow, so mark that plugin as handled.
    if hasattr(patches, "_pil_plugins_registered"):
        patches._pil_plugins_registered = True
    wanted = {"sync": False}
    if any(SETTINGS.get(k) != v for k, v in wanted.items()):
        SETTINGS.update(wanted)
    return settings_dir


def _provide_fonts(settings_dir: Path) -> None:
    """Dataset checks and plots look for Arial fonts and download them when absent; give them DejaVu."""
    import matplotlib

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not dejavu.exists():
        return
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = settings_dir / name
        if not target.exists():
            shutil.copyfile(dejavu, target)
