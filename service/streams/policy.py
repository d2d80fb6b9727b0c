"""The alert rule of one stream: pure logic, fed one processed frame at a time, no clocks, no I/O.

A frame *counts* when any of its windows has p(smoke) at or above the threshold. An alert
*opens* when k of the last n processed frames counted. While it is open the threshold drops to
``threshold x hold_factor`` (hysteresis, as in Pyronear's engine: a plume that thins for a moment
does not close and reopen the alert) and every counting frame *updates* it. It *closes* after
``clear_s`` seconds without a counting frame. Confirmed again within ``cooldown_s`` of closing,
the same event *reopens* instead of a new one opening: one event per fire, however it flickers.

Times are the stream's own seconds (frame times), so a file read faster than real time follows
the same rule as a camera.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from .config import AlertPolicyConfig

ChangeKind = Literal["opened", "updated", "closed", "reopened"]


@dataclass(frozen=True, slots=True)
class Window:
    """What the policy needs of one verifier window."""

    smoke_prob: float
    track_id: int = 0
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    detector_conf: float = 0.0


@dataclass(frozen=True, slots=True)
class Change:
    """Something that happened to the stream's alert at this frame."""

    kind: ChangeKind
    time_s: float  # the frame's time
    score: float  # highest p(smoke) of the counting windows at this frame (0 when closing)
    windows: tuple[Window, ...] = ()  # the counting windows (the boxes to show)
    first_time_s: float | None = None  # opened/reopened: time of the oldest counting frame of the k
    reason: str = ""  # closed: why


@dataclass
class AlertPolicy:
    config: AlertPolicyConfig
    _recent: deque[tuple[float, bool]] = field(init=False)
    is_open: bool = field(default=False, init=False)
    last_positive_s: float | None = field(default=None, init=False)
    closed_at_s: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._recent = deque(maxlen=self.config.confirm_n)

    @property
    def active_threshold(self) -> float:
        c = self.config
        return c.threshold * c.hold_factor if self.is_open else c.threshold

    def resume(self, time_s: float) -> None:
        """Continue an alert left open (by a restart): it stays open until clear_s passes without smoke."""
        self.is_open = True
        self.last_positive_s = time_s

    def update(self, time_s: float, windows: list[Window] | tuple[Window, ...]) -> Change | None:
        """Feed one processed frame (all its windows, possibly none); the change it causes, if any."""
        threshold = self.active_threshold
        counting = tuple(w for w in windows if w.smoke_prob >= threshold)
        positive = bool(counting)
        self._recent.append((time_s, positive))
        score = max((w.smoke_prob for w in counting), default=0.0)
        if positive:
            previous, self.last_positive_s = self.last_positive_s, time_s
        else:
            previous = self.last_positive_s

        if self.is_open:
            if positive:
                return Change("updated", time_s, score, counting)
            if previous is not None and time_s - previous >= self.config.clear_s:
                return self._close(time_s, f"no smoke for {time_s - previous:.0f} s")
            return None

        hits = [t for t, p in self._recent if p]
        if len(hits) < self.config.confirm_k:
            return None
        self.is_open = True
        reopened = self.closed_at_s is not None and time_s - self.closed_at_s <= self.config.cooldown_s
        return Change("reopened" if reopened else "opened", time_s, score, counting, first_time_s=hits[0])

    def close(self, time_s: float, reason: str) -> Change | None:
        """Close an open alert from outside (the stream was removed or its file ended)."""
        return self._close(time_s, reason) if self.is_open else None

    def _close(self, time_s: float, reason: str) -> Change:
        self.is_open = False
        self.closed_at_s = time_s
        self._recent.clear()  # a new alert needs k fresh counting frames
        return Change("closed", time_s, 0.0, reason=reason)
