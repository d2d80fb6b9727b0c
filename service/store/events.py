"""The event store: one SQLite file (WAL, synchronous=FULL) and a media folder beside it.

    <data_dir>/smokewatch.db     events, outbox, streams
    <data_dir>/media/<hex>/      snapshot.jpg and clip.mp4 of one event
    <data_dir>/lock              held (flock) by the one process that owns the folder

Crash safety: media files are written (to a temporary name, then renamed) *before* the row that
names them is committed, and an event and its webhook outbox rows are committed in one
transaction, so a SIGKILL at any point leaves either nothing or an event whose notifications are
still pending. Orphaned media folders are swept by :meth:`EventStore.apply_retention`.

One connection, guarded by a lock, serves every thread of the process: writes are a few per
processed frame at most, far below what SQLite does in a millisecond.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import SmokewatchError

from .schema import migrate

SNAPSHOT = "snapshot.jpg"
CLIP = "clip.mp4"
ORPHAN_GRACE_S = 3600.0


class StoreError(SmokewatchError):
    """The data folder cannot be used (unwritable, owned by another process, newer schema)."""


@dataclass(frozen=True)
class EventRecord:
    id: int
    stream_id: str
    stream_name: str
    state: str
    opened_at: float
    first_seen_at: float
    updated_at: float
    last_seen_at: float
    closed_at: float | None
    close_reason: str | None
    reopened: int
    max_score: float
    last_score: float
    positive_frames: int
    boxes: list[dict]
    media_dir: str | None
    has_snapshot: bool
    has_clip: bool
    media_bytes: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "EventRecord":
        data = dict(row)
        data["boxes"] = json.loads(data["boxes"])
        data["has_snapshot"] = bool(data["has_snapshot"])
        data["has_clip"] = bool(data["has_clip"])
        return cls(**data)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    event_id: int | None
    kind: str
    url: str
    payload: str
    created_at: float
    state: str
    attempts: int
    client_errors: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    delivered_at: float | None


# Builds the webhook body for an event at the moment its row is written: (record, kind) -> JSON-able.
PayloadFn = Callable[[EventRecord, str], dict]


class EventStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir).expanduser()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.media = self.root / "media"
            self.media.mkdir(exist_ok=True)
            self._lock_file = open(self.root / "lock", "a+")  # noqa: SIM115 - held for the store's life
        except OSError as exc:
            raise StoreError(f"cannot use data folder {self.root}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise StoreError(
                f"data folder {self.root} is in use by another smokewatch process; give this one its own "
                "(SMOKEWATCH_DATA_DIR or --data-dir)"
            ) from None
        self.path = self.root / "smokewatch.db"
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._conn.row_factory = sqlite3.Row
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{self.path} cannot use write-ahead logging (journal mode {mode})")
            # FULL: a committed alert survives power loss too, not only a crash of the process.
            self._conn.execute("PRAGMA synchronous=FULL")
            self.schema_before = migrate(self._conn)
        except sqlite3.DatabaseError as exc:
            self._lock_file.close()
            raise StoreError(f"cannot open the event database {self.path}: {exc}") from None
        except RuntimeError as exc:
            self._lock_file.close()
            raise StoreError(str(exc)) from None
        self.closed = False

    # --- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: tuple | list = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._conn.close()
            self._lock_file.close()  # releases the flock

    def integrity(self) -> str:
        return self._query("PRAGMA integrity_check")[0][0]

    # --- events -----------------------------------------------------------------------------

    def write_media(self, name: str, data: bytes, folder: str | None = None) -> str:
        """Write one media file (atomically) into an event folder; returns the folder name."""
        folder = folder or uuid.uuid4().hex
        target = self.media / folder
        target.mkdir(parents=True, exist_ok=True)
        temporary = target / f".{name}.partial"
        with open(temporary, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, target / name)
        return folder

    def media_file(self, record: EventRecord, name: str) -> Path | None:
        if not record.media_dir:
            return None
        path = self.media / record.media_dir / name
        return path if path.is_file() else None

    def _notify(self, conn: sqlite3.Connection, event_id: int, kind: str, hooks: list[str] | tuple[str, ...], payload: PayloadFn | None) -> None:
        if not hooks or payload is None:
            return
        now = time.time()
        record = EventRecord.from_row(conn.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone())
        body = json.dumps(payload(record, kind), separators=(",", ":"))
        conn.executemany(
            "INSERT INTO outbox (event_id, kind, url, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(event_id, kind, url, body, now, now) for url in hooks],
        )

    def open_event(
        self,
        stream_id: str,
        stream_name: str,
        opened_at: float,
        first_seen_at: float,
        score: float,
        boxes: list[dict],
        snapshot: bytes | None = None,
        hooks: list[str] | tuple[str, ...] = (),
        payload: PayloadFn | None = None,
    ) -> EventRecord:
        folder = self.write_media(SNAPSHOT, snapshot) if snapshot is not None else None
        size = len(snapshot) if snapshot is not None else 0
        with self._tx() as conn:
            cursor = conn.execute(
                "INSERT INTO events (stream_id, stream_name, state, opened_at, first_seen_at, updated_at, last_seen_at, "
                "max_score, last_score, positive_frames, boxes, media_dir, has_snapshot, media_bytes) "
                "VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
                (stream_id, stream_name, opened_at, first_seen_at, opened_at, opened_at, score, score,
                 json.dumps(boxes), folder, int(snapshot is not None), size),
            )
            event_id = int(cursor.lastrowid)
            self._notify(conn, event_id, "event.opened", hooks, payload)
        return self.get_event(event_id)

    def update_event(self, event_id: int, seen_at: float, score: float, boxes: list[dict]) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE events SET updated_at = ?, last_seen_at = ?, last_score = ?, max_score = MAX(max_score, ?), "
                "positive_frames = positive_frames + 1, boxes = ? WHERE id = ? AND state = 'open'",
                (seen_at, seen_at, score, score, json.dumps(boxes), event_id),
            )

    def reopen_event(
        self, event_id: int, at: float, score: float, boxes: list[dict],
        hooks: list[str] | tuple[str, ...] = (), payload: PayloadFn | None = None,
    ) -> EventRecord:
        with self._tx() as conn:
            conn.execute(
                "UPDATE events SET state = 'open', closed_at = NULL, close_reason = NULL, reopened = reopened + 1, "
                "updated_at = ?, last_seen_at = ?, last_score = ?, max_score = MAX(max_score, ?), "
                "positive_frames = positive_frames + 1, boxes = ? WHERE id = ?",
                (at, at, score, score, json.dumps(boxes), event_id),
            )
            self._notify(conn, event_id, "event.reopened", hooks, payload)
        return self.get_event(event_id)

    def close_event(
        self, event_id: int, at: float, reason: str,
        hooks: list[str] | tuple[str, ...] = (), payload: PayloadFn | None = None,
    ) -> EventRecord | None:
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE events SET state = 'closed', closed_at = ?, close_reason = ?, updated_at = ? WHERE id = ? AND state = 'open'",
                (at, reason, at, event_id),
            ).rowcount
            if changed:
                self._notify(conn, event_id, "event.closed", hooks, payload)
        return self.get_event(event_id) if changed else None

    def clip_draft(self, folder: str | None) -> tuple[str, Path]:
        """Where to encode a clip before :meth:`attach_clip` puts it in place: (folder, temporary path)."""
        folder = folder or uuid.uuid4().hex
        (self.media / folder).mkdir(parents=True, exist_ok=True)
        return folder, self.media / folder / f".draft-{uuid.uuid4().hex[:8]}.mp4"

    def attach_clip(self, event_id: int, draft: Path, folder: str) -> EventRecord | None:
        """Move an encoded clip (from :meth:`clip_draft`) into place and record it on the event."""
        with open(draft, "rb") as fh:
            os.fsync(fh.fileno())
        size = draft.stat().st_size
        os.replace(draft, self.media / folder / CLIP)
        with self._tx() as conn:
            conn.execute(
                "UPDATE events SET media_dir = ?, has_clip = 1, media_bytes = media_bytes + ? WHERE id = ?",
                (folder, size, event_id),
            )
        return self.get_event(event_id)

    def get_event(self, event_id: int) -> EventRecord | None:
        rows = self._query("SELECT * FROM events WHERE id = ?", (event_id,))
        return EventRecord.from_row(rows[0]) if rows else None

    def open_events(self) -> list[EventRecord]:
        return [EventRecord.from_row(r) for r in self._query("SELECT * FROM events WHERE state = 'open' ORDER BY id")]

    def list_events(
        self,
        stream_id: str | None = None,
        state: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[EventRecord]:
        """Newest first. `since`/`until` bound the time the event was last active (it overlaps the range)."""
        filters = [
            ("stream_id = ?", stream_id),
            ("state = ?", state),
            ("COALESCE(closed_at, updated_at) >= ?", since),
            ("opened_at <= ?", until),
            ("id < ?", before_id),
        ]
        where = [condition for condition, value in filters if value is not None]
        args = [value for _, value in filters if value is not None]
        sql = "SELECT * FROM events" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
        return [EventRecord.from_row(r) for r in self._query(sql, [*args, limit])]

    def counts(self) -> dict[str, int]:
        rows = self._query("SELECT state, COUNT(*) FROM events GROUP BY state")
        counts = {"open": 0, "closed": 0}
        counts.update({r[0]: r[1] for r in rows})
        return counts

    # --- retention --------------------------------------------------------------------------

    def apply_retention(self, now: float, max_age_s: float, max_media_bytes: int) -> dict[str, int]:
        """Delete closed events older than `max_age_s` (rows and media); then, while the media of all
        events weighs more than `max_media_bytes`, drop the media (not the rows) of the oldest closed
        events; finally remove media folders no event names (left by a crash). Open events are kept."""
        deleted_events = dropped_media = orphans = 0
        old = self._query(
            "SELECT id, media_dir FROM events WHERE state = 'closed' AND closed_at < ?", (now - max_age_s,)
        )
        if old:
            with self._tx() as conn:
                ids = [r["id"] for r in old]
                conn.executemany("DELETE FROM events WHERE id = ?", [(i,) for i in ids])
                conn.execute(
                    "DELETE FROM outbox WHERE state != 'pending' AND created_at < ?", (now - max_age_s,)
                )
            for row in old:
                if row["media_dir"]:
                    shutil.rmtree(self.media / row["media_dir"], ignore_errors=True)
            deleted_events = len(old)
        total = self._query("SELECT COALESCE(SUM(media_bytes), 0) FROM events")[0][0]
        if total > max_media_bytes:
            candidates = self._query(
                "SELECT id, media_dir, media_bytes FROM events WHERE state = 'closed' AND media_bytes > 0 ORDER BY closed_at"
            )
            for row in candidates:
                if total <= max_media_bytes:
                    break
                with self._tx() as conn:
                    conn.execute(
                        "UPDATE events SET has_snapshot = 0, has_clip = 0, media_bytes = 0 WHERE id = ?", (row["id"],)
                    )
                if row["media_dir"]:
                    shutil.rmtree(self.media / row["media_dir"], ignore_errors=True)
                total -= row["media_bytes"]
                dropped_media += 1
        named = {r[0] for r in self._query("SELECT media_dir FROM events WHERE media_dir IS NOT NULL")}
        for folder in self.media.iterdir():
            if folder.name in named:
                continue
            try:
                age = now - folder.stat().st_mtime
            except OSError:
                continue
            if age > ORPHAN_GRACE_S:
                shutil.rmtree(folder, ignore_errors=True)
                orphans += 1
        return {"deleted_events": deleted_events, "dropped_media": dropped_media, "orphan_folders": orphans}

    # --- streams added through the API --------------------------------------------------------

    def save_stream(self, stream_id: str, spec: dict[str, Any]) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO streams (id, spec, created_at) VALUES (?, ?, ?)",
                (stream_id, json.dumps(spec), time.time()),
            )

    def delete_stream(self, stream_id: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM streams WHERE id = ?", (stream_id,))

    def saved_streams(self) -> list[dict[str, Any]]:
        return [json.loads(r["spec"]) for r in self._query("SELECT spec FROM streams ORDER BY created_at, id")]

    # --- webhook outbox -----------------------------------------------------------------------

    def due_deliveries(self, now: float, limit: int = 32) -> list[OutboxRow]:
        """Pending rows whose time has come, at most one per URL: the oldest pending row of each URL,
        so a receiver always gets an event's notifications in the order they were written."""
        rows = self._query(
            "SELECT o.* FROM outbox o WHERE o.state = 'pending' AND o.next_attempt_at <= ? AND o.id = "
            "(SELECT MIN(id) FROM outbox p WHERE p.state = 'pending' AND p.url = o.url) ORDER BY o.id LIMIT ?",
            (now, limit),
        )
        return [OutboxRow(**dict(r)) for r in rows]

    def next_delivery_at(self) -> float | None:
        """When the next row becomes due (only rows at the head of their URL's queue can be)."""
        return self._query(
            "SELECT MIN(o.next_attempt_at) FROM outbox o WHERE o.state = 'pending' AND o.id = "
            "(SELECT MIN(id) FROM outbox p WHERE p.state = 'pending' AND p.url = o.url)"
        )[0][0]

    def mark_delivered(self, row_id: int, status: int, at: float) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, last_status = ?, last_error = NULL, "
                "delivered_at = ? WHERE id = ?",
                (status, at, row_id),
            )

    def mark_retry(self, row_id: int, next_at: float, status: int | None, error: str, client_error: bool) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, client_errors = client_errors + ?, next_attempt_at = ?, "
                "last_status = ?, last_error = ? WHERE id = ?",
                (int(client_error), next_at, status, error, row_id),
            )

    def mark_failed(self, row_id: int, status: int | None, error: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_status = ?, last_error = ? WHERE id = ?",
                (status, error, row_id),
            )

    def outbox(self, state: str | None = None) -> list[OutboxRow]:
        sql, args = "SELECT * FROM outbox", ()
        if state:
            sql, args = sql + " WHERE state = ?", (state,)
        return [OutboxRow(**dict(r)) for r in self._query(sql + " ORDER BY id", args)]

    def outbox_counts(self) -> dict[str, int]:
        counts = {"pending": 0, "delivered": 0, "failed": 0}
        counts.update({r[0]: r[1] for r in self._query("SELECT state, COUNT(*) FROM outbox GROUP BY state")})
        return counts
