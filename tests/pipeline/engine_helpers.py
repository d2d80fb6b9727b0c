"""Helpers shared by the engine tests (imported by name: the test folders are not packages)."""

from __future__ import annotations

import threading

import pytest


def same_answers(a, b, tol: float = 1e-4) -> None:
    """Two ClipResults agree: same windows (frame, track, region), probabilities and verdict."""
    assert [(w.frame_index, w.track_id, w.region) for w in a.windows] == [(w.frame_index, w.track_id, w.region) for w in b.windows]
    for x, y in zip(a.windows, b.windows):
        assert x.smoke_prob == pytest.approx(y.smoke_prob, abs=tol)
        assert x.detector_conf == pytest.approx(y.detector_conf, abs=tol)
    assert a.verdict == b.verdict and a.frames_processed == b.frames_processed


def decode_threads() -> list[threading.Thread]:
    """Prefetch threads still alive (there should be none once a run has ended)."""
    return [t for t in threading.enumerate() if t.name == "smokewatch-decode"]
