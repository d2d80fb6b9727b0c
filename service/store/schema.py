"""The database schema as an ordered list of migrations; ``PRAGMA user_version`` counts those applied.

Append a migration to change the schema; never edit one that has shipped. Each runs in its own
transaction (SQLite's DDL is transactional), so a crash mid-migration leaves the previous version.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[tuple[str, str]] = [
    (
        "events, webhook outbox, streams added through the API",
        """
        CREATE TABLE events (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            stream_id       TEXT    NOT NULL,
            stream_name     TEXT    NOT NULL,
            state           TEXT    NOT NULL CHECK (state IN ('open', 'closed')),
            opened_at       REAL    NOT NULL,  -- Unix time the alert rule confirmed smoke
            first_seen_at   REAL    NOT NULL,  -- Unix time of the oldest of the k counting frames
            updated_at      REAL    NOT NULL,
            last_seen_at    REAL    NOT NULL,  -- Unix time of the latest counting frame
            closed_at       REAL,
            close_reason    TEXT,
            reopened        INTEGER NOT NULL DEFAULT 0,
            max_score       REAL    NOT NULL,
            last_score      REAL    NOT NULL,
            positive_frames INTEGER NOT NULL DEFAULT 1,
            boxes           TEXT    NOT NULL DEFAULT '[]',  -- JSON: the counting windows of the latest update
            media_dir       TEXT,                           -- folder under media/ with snapshot.jpg and clip.mp4
            has_snapshot    INTEGER NOT NULL DEFAULT 0,
            has_clip        INTEGER NOT NULL DEFAULT 0,
            media_bytes     INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX events_by_stream ON events (stream_id, opened_at);
        CREATE INDEX events_by_time ON events (opened_at);
        CREATE INDEX events_by_state ON events (state);

        CREATE TABLE outbox (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id        INTEGER,
            kind            TEXT    NOT NULL,  -- event.opened, event.closed, ...
            url             TEXT    NOT NULL,
            payload         TEXT    NOT NULL,  -- the JSON body, fixed when the row is written
            created_at      REAL    NOT NULL,
            state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            client_errors   INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL    NOT NULL,
            last_status     INTEGER,
            last_error      TEXT,
            delivered_at    REAL
        );
        CREATE INDEX outbox_pending ON outbox (state, url, id);

        CREATE TABLE streams (
            id              TEXT PRIMARY KEY,
            spec            TEXT NOT NULL,  -- StreamSpec as JSON
            created_at      REAL NOT NULL
        );
        """,
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`; returns the version found before.

    The connection must be in autocommit mode (isolation_level=None): each migration brackets
    itself with BEGIN IMMEDIATE ... COMMIT.
    """
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise RuntimeError(
            f"the database has schema version {found}, newer than this smokewatch knows ({SCHEMA_VERSION}); "
            "upgrade smokewatch or point it at another data_dir"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        _, script = MIGRATIONS[version - 1]
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return found
