"""Webhook notifications from a persisted outbox.

Event changes write their webhook bodies into the ``outbox`` table in the same transaction as the
event itself (:mod:`service.store.events`); this module's one delivery thread POSTs them. Nothing
is lost to a restart or an unreachable receiver: a row stays pending until delivered.

- 2xx: delivered.
- connection errors, timeouts, 5xx, 408, 425 and 429: retried with capped exponential back-off
  (``webhook_backoff_s`` doubling up to ``webhook_backoff_max_s``), for ``webhook_give_up_s``.
- any other answer (4xx, 3xx): the receiver refuses this request, and repeating it will not help
  for long: retried ``webhook_max_client_errors`` times in all, then marked failed.

Each URL gets its rows in order (an event's "closed" never overtakes its "opened"); a receiver
that is down costs the others at most one ``webhook_timeout_s`` per attempt (attempts back off,
so it is soon out of their way). Delivery is at least once: a crash between the POST
and the commit that marks it delivered repeats it, so every request carries the outbox row id in
``X-Smokewatch-Delivery`` for receivers to deduplicate, and, with ``webhook_secret`` set,
``X-Smokewatch-Signature: sha256=<HMAC of the body>``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass

import httpx

from pipeline import __version__
from service.store import EventStore, OutboxRow
from service.streams.backoff import backoff_delay
from service.streams.redact import redact_url, scrub

log = logging.getLogger("smokewatch.notify")

TRANSIENT = frozenset({408, 425, 429})


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_s: float = 10.0
    backoff_s: float = 2.0
    backoff_max_s: float = 600.0
    max_client_errors: int = 3
    give_up_s: float = 7 * 86400.0
    secret: str | None = None


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Notifier:
    """The delivery thread. :meth:`wake` after writing outbox rows so they go at once."""

    def __init__(self, store: EventStore, policy: DeliveryPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or DeliveryPolicy()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(self.policy.timeout_s), follow_redirects=False)
        self.delivered = 0
        self.failed = 0

    def start(self) -> "Notifier":
        self._thread = threading.Thread(target=self._run, name="smokewatch-webhooks", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.deliver_due()
            except Exception:  # a bug or a closed store: log, back off, keep the thread alive
                log.exception("webhook delivery failed unexpectedly")
                worked = False
            if worked:
                continue
            next_at = None if self.store.closed else self.store.next_delivery_at()
            wait = 5.0 if next_at is None else min(5.0, max(0.0, next_at - time.time()))
            self._wake.wait(wait)
            self._wake.clear()

    def deliver_due(self) -> bool:
        """Try every row that is due now, at most one per URL; True when any was tried."""
        if self.store.closed:
            return False
        rows = self.store.due_deliveries(time.time())
        for row in rows:
            if self._stop.is_set():
                break
            self._deliver(row)
        return bool(rows)

    def _deliver(self, row: OutboxRow) -> None:
        body = row.payload.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"smokewatch/{__version__}",
            "X-Smokewatch-Event": row.kind,
            "X-Smokewatch-Delivery": str(row.id),
        }
        if self.policy.secret:
            headers["X-Smokewatch-Signature"] = sign(self.policy.secret, body)
        status: int | None = None
        try:
            response = self._client.post(row.url, content=body, headers=headers)
            status = response.status_code
            error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = scrub(f"{type(exc).__name__}: {exc}", row.url)
        now = time.time()
        where = redact_url(row.url)
        if status is not None and 200 <= status < 300:
            self.store.mark_delivered(row.id, status, now)
            self.delivered += 1
            log.info("webhook %s #%d delivered to %s (%d)", row.kind, row.id, where, status)
            return
        client_error = status is not None and status not in TRANSIENT and status < 500
        p = self.policy
        if client_error and row.client_errors + 1 >= p.max_client_errors:
            self.store.mark_failed(row.id, status, error)
            self.failed += 1
            log.error("webhook %s #%d to %s refused (%s) %d times: given up", row.kind, row.id, where, error, row.client_errors + 1)
            return
        if now - row.created_at > p.give_up_s:
            self.store.mark_failed(row.id, status, error)
            self.failed += 1
            log.error("webhook %s #%d to %s undeliverable for %.0f s (%s): given up", row.kind, row.id, where, now - row.created_at, error)
            return
        delay = backoff_delay(row.attempts + 1, p.backoff_s, p.backoff_max_s)
        self.store.mark_retry(row.id, now + delay, status, error, client_error)
        log.warning("webhook %s #%d to %s failed (%s); retry in %.1f s", row.kind, row.id, where, error, delay)
