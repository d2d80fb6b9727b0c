"""The live feed behind ``GET /events/live``: monitoring threads publish, SSE clients subscribe.

Every message gets a sequence number and stays in a short history, so a client that reconnects
with ``Last-Event-ID`` (browsers' EventSource does so by itself) gets what it missed. A client too
slow to keep up is cut off rather than buffered without bound; it reconnects and replays.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    kind: str  # SSE "event:" field: event.opened, event.closed, stream.status, ...
    data: dict[str, Any]

    def encode(self) -> bytes:
        return f"id: {self.id}\nevent: {self.kind}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n".encode()


@dataclass(eq=False)
class Subscription:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    overflowed: bool = False
    backlog: list[Message] = field(default_factory=list)


class LiveHub:
    def __init__(self, history: int = 512, client_queue: int = 256) -> None:
        self._history: deque[Message] = deque(maxlen=history)
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._client_queue = client_queue
        self.closed = False

    def publish(self, kind: str, data: dict[str, Any]) -> Message:
        """Thread-safe; never blocks on clients."""
        with self._lock:
            message = Message(next(self._ids), kind, data)
            self._history.append(message)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            try:
                sub.loop.call_soon_threadsafe(self._offer, sub, message)
            except RuntimeError:  # its loop is closed
                self.unsubscribe(sub)
        return message

    @staticmethod
    def _offer(sub: Subscription, message: Message | None) -> None:
        try:
            sub.queue.put_nowait(message)
        except asyncio.QueueFull:
            sub.overflowed = True
            while not sub.queue.empty():
                sub.queue.get_nowait()
            sub.queue.put_nowait(None)  # wakes the client's generator, which ends the response

    def subscribe(self, last_id: int | None = None) -> Subscription:
        """A subscription on the running loop; its backlog holds the messages after `last_id`."""
        sub = Subscription(asyncio.get_running_loop(), asyncio.Queue(self._client_queue))
        with self._lock:
            if last_id is not None:
                sub.backlog = [m for m in self._history if m.id > last_id]
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """End every client's response (at shutdown)."""
        self.closed = True
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            try:
                sub.loop.call_soon_threadsafe(self._offer, sub, None)
            except RuntimeError:
                pass
