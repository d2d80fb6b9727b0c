"""``smokewatch monitor SOURCE [SOURCE...]``: the service's stream monitoring in the foreground.

Each event change is printed on stdout as one JSON line (``{"type": "event.opened", "event":
{...}}``) as it happens; stream state changes and warnings go to stderr. Events, snapshots and
clips are stored in the data folder like the service's, and webhooks (``--webhook``) are sent
from the same outbox. It runs until Ctrl-C, until ``--duration`` passes, or, when every source is
a file played once, until they have all ended. A file that cannot be read (several tries in a row)
counts as ended too, and the command then exits with status 2 and one line naming it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from pipeline.errors import ConfigError, SourceError
from service.argtypes import positive_float, probability


def add_monitor_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "monitor",
        help="watch cameras or videos in the foreground and print smoke events as they happen (JSON lines)",
        description="Watch RTSP cameras (rtsp://...), HTTP MJPEG streams or snapshot URLs (http(s)://...), video files "
        "or local webcams (webcam:N, /dev/videoN) with the same alert rule as the service; print each event change "
        "as one JSON line on stdout.",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="rtsp://, http(s)://, a video file, webcam:N or /dev/videoN")
    p.add_argument("--model", metavar="DIR", help="model bundle folder (default: SMOKEWATCH_MODEL or the shipped bundle)")
    p.add_argument("--device", metavar="D", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--interval", type=positive_float, metavar="S", help="seconds between frames taken from each source (default: SMOKEWATCH_STREAM_INTERVAL_S or 5)")
    p.add_argument("--loop", action="store_true", help="play video files in a loop (demos)")
    p.add_argument("--fast", action="store_true", help="read video files as fast as inference allows instead of at their own rate (nothing is dropped)")
    p.add_argument("--threshold", type=probability, metavar="P", help="alert threshold on p(smoke) (default: the bundle's: decision.scorer_threshold with a track scorer, else decision.threshold)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a pipeline config value, e.g. detector.conf=0.1")
    p.add_argument("--webhook", action="append", metavar="URL", help="POST every event to this URL (repeatable)")
    p.add_argument("--data-dir", metavar="DIR", help="folder for the event database, snapshots and clips (default: SMOKEWATCH_DATA_DIR or ~/.local/share/smokewatch)")
    p.add_argument("--duration", type=positive_float, metavar="S", help="stop after this many seconds")
    p.add_argument("--updates", action="store_true", help="also print event.updated lines (every frame that still shows smoke)")
    p.set_defaults(func=cmd_monitor)


def cmd_monitor(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pipeline.bundle import ModelBundle
    from service.cli import parse_sets, resolve_model
    from service.notify import Notifier
    from service.settings import Settings
    from service.store import EventStore

    from .config import StreamRequest, StreamSpec, file_path, make_id, source_kind
    from .monitor import Monitor
    from .redact import redact_url
    from .service import delivery_policy

    given = {
        "model": args.model, "device": args.device, "stream_interval_s": args.interval, "alert_threshold": args.threshold,
        "data_dir": args.data_dir, "stream_overrides": parse_sets(args.set) or None, "webhook_urls": args.webhook,
    }
    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings (SMOKEWATCH_* variables, .env or options): {problems}") from None
    specs, folders = [], []
    for source in args.sources:
        try:
            kind = source_kind(source)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if kind == "file":
            folders.append(file_path(source).expanduser().resolve().parent)
        request = StreamRequest(url=source, loop=args.loop, realtime=not args.fast)
        specs.append(StreamSpec.model_validate({**request.model_dump(exclude_unset=True), "id": make_id(request, {s.id for s in specs})}))

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    bundle = ModelBundle.load(resolve_model(str(settings.model) if settings.model else None))
    store = EventStore(settings.resolved_data_dir)
    notifier = Notifier(store, delivery_policy(settings)).start()
    monitor = Monitor(settings, store, notifier, base_url=settings.public_url or "", extra_folders=folders)

    def show(kind: str, view) -> None:  # noqa: ANN001 - EventView
        if kind == "event.updated" and not args.updates:
            return
        print(json.dumps({"type": kind, "event": view.model_dump(mode="json")}), flush=True)

    monitor.listeners.append(show)
    try:
        for spec in specs:
            monitor.add(spec, origin="cli")
        monitor.start(bundle)
        deadline = time.monotonic() + args.duration if args.duration else None
        while not monitor.all_ended and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
        failed = [f"{redact_url(w.spec.url)}: {w.last_error}" for w in monitor.failed()]
    finally:
        monitor.close()
        _flush_webhooks(notifier, store, settings.webhook_timeout_s)
        notifier.close()
        store.close()
    if failed:  # one line on stderr, exit status 2 (see service.cli.main)
        raise SourceError(f"could not read {'; '.join(failed)}")
    return 0


def _flush_webhooks(notifier, store, timeout_s: float) -> None:  # noqa: ANN001
    """Give pending webhooks one prompt try before exiting; what stays pending goes at the next run."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        due = store.due_deliveries(time.time())
        if not due:
            return
        notifier.wake()
        time.sleep(0.1)
