"""Webhooks from the persisted outbox, to a real HTTP receiver on loopback."""

from __future__ import annotations

import json

import pytest
from stream_helpers import Receiver, wait_until

from service.notify import DeliveryPolicy, Notifier, sign
from service.store import EventStore

FAST = DeliveryPolicy(timeout_s=5, backoff_s=0.05, backoff_max_s=0.2, max_client_errors=3)


def payload(record, kind):
    return {"type": kind, "event": {"id": record.id, "state": record.state}, "snapshot_url": f"http://x/events/{record.id}/snapshot.jpg"}


@pytest.fixture
def store(tmp_path):
    s = EventStore(tmp_path / "data")
    yield s
    if not s.closed:
        s.close()


@pytest.fixture
def notifier_for():
    started = []

    def make(store, policy=FAST):
        notifier = Notifier(store, policy).start()
        started.append(notifier)
        return notifier

    yield make
    for n in started:
        n.close()


def test_delivers_signed_json_once(store, notifier_for):
    receiver = Receiver().start()
    try:
        notifier = notifier_for(store, DeliveryPolicy(backoff_s=0.05, secret="shh"))
        event = store.open_event("cam", "Cam", 1.0, 1.0, 0.8, [], hooks=[receiver.url], payload=payload)
        notifier.wake()
        wait_until(lambda: store.outbox_counts()["delivered"] == 1, 10)
        (request,) = receiver.requests
        assert request["body"]["type"] == "event.opened" and request["body"]["event"]["id"] == event.id
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers["x-smokewatch-event"] == "event.opened"
        assert headers["x-smokewatch-delivery"] == str(store.outbox()[0].id)
        assert headers["x-smokewatch-signature"] == sign("shh", request["raw"])
    finally:
        receiver.stop()


def test_a_receiver_that_is_down_at_first_gets_the_alert_later(store, notifier_for):
    receiver = Receiver()  # not listening yet: connections are refused
    notifier = notifier_for(store)
    store.open_event("cam", "Cam", 1.0, 1.0, 0.8, [], hooks=[receiver.url], payload=payload)
    notifier.wake()
    wait_until(lambda: store.outbox()[0].attempts >= 2, 10, what="failed attempts")
    row = store.outbox()[0]
    assert row.state == "pending" and row.last_status is None and "Connect" in row.last_error
    receiver.start()
    try:
        wait_until(lambda: store.outbox_counts()["delivered"] == 1, 10)
        assert len(receiver.accepted) == 1
    finally:
        receiver.stop()


def test_server_errors_are_retried_and_order_is_kept(store, notifier_for):
    receiver = Receiver(statuses=[503, 500, 200]).start()
    try:
        notifier = notifier_for(store)
        event = store.open_event("cam", "Cam", 1.0, 1.0, 0.8, [], hooks=[receiver.url], payload=payload)
        store.close_event(event.id, 2.0, "done", hooks=[receiver.url], payload=payload)
        notifier.wake()
        wait_until(lambda: store.outbox_counts()["delivered"] == 2, 10)
        kinds = [r["body"]["type"] for r in receiver.requests]
        assert kinds == ["event.opened", "event.opened", "event.opened", "event.closed"]  # "closed" waited for "opened"
    finally:
        receiver.stop()


def test_client_errors_are_not_retried_forever(store, notifier_for):
    refusing = Receiver(statuses=[404]).start()
    throttling = Receiver(statuses=[429, 429, 429, 429, 200]).start()
    try:
        notifier = notifier_for(store)
        store.open_event("cam", "Cam", 1.0, 1.0, 0.8, [], hooks=[refusing.url, throttling.url], payload=payload)
        notifier.wake()
        wait_until(lambda: store.outbox_counts() == {"pending": 0, "delivered": 1, "failed": 1}, 10)
        failed = store.outbox("failed")[0]
        assert failed.url == refusing.url and failed.attempts == FAST.max_client_errors and failed.last_status == 404
        assert len(refusing.requests) == FAST.max_client_errors
        assert len(throttling.requests) == 5  # 429 means "later", not "never": retried until accepted
    finally:
        refusing.stop()
        throttling.stop()


def test_pending_webhooks_survive_a_restart(tmp_path):
    receiver = Receiver()
    first = EventStore(tmp_path / "data")
    notifier = Notifier(first, FAST).start()
    first.open_event("cam", "Cam", 1.0, 1.0, 0.8, [], hooks=[receiver.url], payload=payload)
    notifier.wake()
    wait_until(lambda: first.outbox()[0].attempts >= 1, 10)
    notifier.close()
    first.close()

    receiver.start()
    second = EventStore(tmp_path / "data")
    again = Notifier(second, FAST).start()
    try:
        wait_until(lambda: len(receiver.accepted) == 1, 10)
        assert json.loads(receiver.accepted[0]["raw"])["type"] == "event.opened"
        wait_until(lambda: second.outbox_counts()["delivered"] == 1, 5)
    finally:
        again.close()
        second.close()
        receiver.stop()
