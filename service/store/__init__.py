"""Where monitoring keeps what must survive a restart: events, their media, the webhook outbox and
the streams added through the API. SQLite from the standard library, in WAL mode, with the
schema's migrations kept in code (:mod:`service.store.schema`)."""

from .events import EventRecord, EventStore, OutboxRow, StoreError

__all__ = ["EventRecord", "EventStore", "OutboxRow", "StoreError"]
