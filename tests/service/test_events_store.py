"""The event store on a real SQLite file: schema migrations, WAL, events, outbox order, retention."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from service.store import EventStore, StoreError
from service.store.events import CLIP, SNAPSHOT, ORPHAN_GRACE_S
from service.store.schema import MIGRATIONS, SCHEMA_VERSION


@pytest.fixture
def store(tmp_path):
    s = EventStore(tmp_path / "data")
    yield s
    s.close()


def payload(record, kind):
    return {"type": kind, "event": record.id, "state": record.state}


def test_a_new_database_is_migrated_in_wal_mode(tmp_path):
    store = EventStore(tmp_path / "d")
    assert store.schema_before == 0
    store.close()
    conn = sqlite3.connect(tmp_path / "d" / "smokewatch.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"events", "outbox", "streams"} <= tables
    conn.close()
    again = EventStore(tmp_path / "d")  # reopening applies nothing
    assert again.schema_before == SCHEMA_VERSION and again.integrity() == "ok"
    again.close()


def test_a_newer_schema_is_refused(tmp_path):
    EventStore(tmp_path / "d").close()
    conn = sqlite3.connect(tmp_path / "d" / "smokewatch.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this smokewatch"):
        EventStore(tmp_path / "d")


def test_one_process_per_data_folder(store, tmp_path):
    with pytest.raises(StoreError, match="in use by another smokewatch"):
        EventStore(tmp_path / "data")


def test_an_unusable_folder_is_reported(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot use data folder"):
        EventStore(tmp_path / "file" / "data")


def test_event_lifecycle_with_outbox_in_the_same_transaction(store):
    hooks = ["http://a/hook", "http://b/hook"]
    opened = store.open_event("cam", "Cam", 100.0, 95.0, 0.7, [{"track_id": 1, "box": [1, 2, 3, 4], "smoke_prob": 0.7, "detector_conf": 0.3}],
                              snapshot=b"\xff\xd8jpeg\xff\xd9", hooks=hooks, payload=payload)
    assert opened.state == "open" and opened.has_snapshot and opened.first_seen_at == 95.0
    assert store.media_file(opened, SNAPSHOT).read_bytes() == b"\xff\xd8jpeg\xff\xd9"
    assert [(r.kind, r.url) for r in store.outbox()] == [("event.opened", hooks[0]), ("event.opened", hooks[1])]
    store.update_event(opened.id, 105.0, 0.9, [])
    store.update_event(opened.id, 110.0, 0.6, [])
    record = store.get_event(opened.id)
    assert (record.max_score, record.last_score, record.positive_frames, record.last_seen_at) == (0.9, 0.6, 3, 110.0)
    closed = store.close_event(opened.id, 200.0, "no smoke for 90 s", hooks=hooks[:1], payload=payload)
    assert closed.state == "closed" and closed.close_reason == "no smoke for 90 s"
    assert store.close_event(opened.id, 201.0, "again") is None  # closing twice changes nothing
    reopened = store.reopen_event(opened.id, 250.0, 0.8, [], hooks=hooks[:1], payload=payload)
    assert reopened.state == "open" and reopened.reopened == 1 and reopened.closed_at is None
    assert [r.kind for r in store.outbox()] == ["event.opened", "event.opened", "event.closed", "event.reopened"]
    assert store.open_events() == [reopened]


def test_a_failed_transaction_leaves_nothing(store):
    def broken(record, kind):
        raise RuntimeError("payload bug")

    with pytest.raises(RuntimeError):
        store.open_event("cam", "Cam", 1.0, 1.0, 0.5, [], hooks=["http://a/hook"], payload=broken)
    assert store.list_events() == [] and store.outbox() == []


def test_clips_are_attached_atomically(store):
    record = store.open_event("cam", "Cam", 1.0, 1.0, 0.5, [], snapshot=b"jpg")
    folder, draft = store.clip_draft(record.media_dir)
    draft.write_bytes(b"mp4 bytes")
    updated = store.attach_clip(record.id, draft, folder)
    assert updated.has_clip and updated.media_bytes == len(b"jpg") + len(b"mp4 bytes")
    assert store.media_file(updated, CLIP).read_bytes() == b"mp4 bytes" and not draft.exists()


def test_listing_filters_and_pages(store):
    ids = []
    for i, stream in enumerate(["a", "b", "a", "a"]):
        ids.append(store.open_event(stream, stream.upper(), 100.0 + i * 10, 100.0 + i * 10, 0.5, []).id)
    store.close_event(ids[0], 105.0, "done")
    assert [e.id for e in store.list_events()] == ids[::-1]
    assert [e.id for e in store.list_events(stream_id="a")] == [ids[3], ids[2], ids[0]]
    assert [e.id for e in store.list_events(state="closed")] == [ids[0]]
    assert [e.id for e in store.list_events(since=115.0)] == [ids[3], ids[2]]
    assert [e.id for e in store.list_events(until=112.0)] == [ids[1], ids[0]]
    assert [e.id for e in store.list_events(before_id=ids[2], limit=1)] == [ids[1]]
    assert store.counts() == {"open": 3, "closed": 1}


def test_outbox_gives_each_url_its_rows_in_order(store):
    e1 = store.open_event("cam", "Cam", 1.0, 1.0, 0.5, [], hooks=["http://a/h", "http://b/h"], payload=payload)
    store.close_event(e1.id, 2.0, "done", hooks=["http://a/h", "http://b/h"], payload=payload)
    due = store.due_deliveries(time.time())
    assert [(r.url, r.kind) for r in due] == [("http://a/h", "event.opened"), ("http://b/h", "event.opened")]
    # a's "opened" backs off: its "closed" must wait behind it, while b goes on.
    store.mark_retry(due[0].id, time.time() + 60, None, "refused", client_error=False)
    store.mark_delivered(due[1].id, 200, time.time())
    assert [(r.url, r.kind) for r in store.due_deliveries(time.time())] == [("http://b/h", "event.closed")]
    store.mark_delivered(store.due_deliveries(time.time())[0].id, 200, time.time())
    assert store.due_deliveries(time.time()) == []
    assert store.next_delivery_at() == pytest.approx(time.time() + 60, abs=5)  # a's head row, not its blocked "closed"
    assert store.outbox_counts() == {"pending": 2, "delivered": 2, "failed": 0}


def test_retention_by_age_and_by_disk_use(store):
    now = time.time()
    old = store.open_event("cam", "Cam", now - 10 * 86400, now - 10 * 86400, 0.5, [], snapshot=b"x" * 1000)
    store.close_event(old.id, now - 9 * 86400, "done")
    mid = store.open_event("cam", "Cam", now - 3 * 86400, now - 3 * 86400, 0.5, [], snapshot=b"y" * 3000)
    store.close_event(mid.id, now - 3 * 86400, "done")
    recent = store.open_event("cam", "Cam", now - 60, now - 60, 0.5, [], snapshot=b"z" * 3000)
    store.close_event(recent.id, now - 30, "done")
    still_open = store.open_event("cam", "Cam", now - 20 * 86400, now - 20 * 86400, 0.5, [], snapshot=b"w" * 3000)
    orphan = store.media / "deadbeef"
    orphan.mkdir()
    (orphan / SNAPSHOT).write_bytes(b"left by a crash")
    os.utime(orphan, (now - 2 * ORPHAN_GRACE_S, now - 2 * ORPHAN_GRACE_S))

    done = store.apply_retention(now, max_age_s=7 * 86400, max_media_bytes=7000)
    assert done == {"deleted_events": 1, "dropped_media": 1, "orphan_folders": 1}
    assert store.get_event(old.id) is None and not (store.media / old.media_dir).exists()
    kept = store.get_event(mid.id)  # the oldest closed event loses its media, keeps its record
    assert kept is not None and not kept.has_snapshot and kept.media_bytes == 0 and not (store.media / mid.media_dir).exists()
    assert store.get_event(recent.id).has_snapshot
    assert store.get_event(still_open.id).has_snapshot  # open events are never pruned
    assert not orphan.exists()


def test_streams_added_through_the_api_are_kept(store):
    store.save_stream("a", {"id": "a", "url": "rtsp://x/y"})
    store.save_stream("b", {"id": "b", "url": "rtsp://x/z"})
    store.delete_stream("a")
    assert store.saved_streams() == [{"id": "b", "url": "rtsp://x/z"}]
