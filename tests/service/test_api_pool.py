"""The inference pool: bounded places, one engine per running task, clean shutdown."""

import threading
import time

import pytest

from service.api.pool import Cancelled, InferencePool


class Placeholder:
    """Stands in for an engine: the pool hands engines out but never calls them."""


def test_places_are_bounded_and_given_back():
    pool = InferencePool([Placeholder()], queue_size=2)
    slots = [pool.reserve() for _ in range(3)]
    assert all(slots) and pool.reserve() is None and pool.held == 3
    slots[0].release()
    slots[0].release()  # twice is harmless
    assert pool.held == 2 and pool.reserve() is not None
    pool.shutdown()


def test_an_engine_is_never_used_by_two_tasks_at_once():
    engines = [Placeholder(), Placeholder()]
    pool = InferencePool(engines, queue_size=6)
    in_use: set[int] = set()
    lock = threading.Lock()
    seen = []

    def task(engine):
        with lock:
            assert id(engine) not in in_use
            in_use.add(id(engine))
            seen.append(engine)
        time.sleep(0.02)
        with lock:
            in_use.discard(id(engine))
        return id(engine)

    futures = [pool.submit(pool.reserve(), task) for _ in range(8)]
    assert all(f.result(timeout=10) in {id(e) for e in engines} for f in futures)
    assert {id(e) for e in seen} == {id(e) for e in engines}
    assert pool.held == 0 and pool.waiting == 0 and pool.running == 0
    pool.shutdown()


def test_shutdown_stops_running_work_drops_queued_work_and_refuses_new():
    pool = InferencePool([Placeholder()], queue_size=2)
    started, release = threading.Event(), threading.Event()
    dropped = []

    def long_task(engine):
        started.set()
        release.wait(10)
        if pool.stopping.is_set():  # what inference.run does between frames
            raise Cancelled("stopping")

    running = pool.submit(pool.reserve(), long_task)
    started.wait(10)
    queued = [pool.submit(pool.reserve(), lambda e: "never", on_drop=lambda: dropped.append(1)) for _ in range(2)]
    assert pool.waiting == 2 and pool.running == 1 and pool.reserve() is None

    stopper = threading.Thread(target=pool.shutdown)
    stopper.start()
    deadline = time.monotonic() + 10
    while not all(f.cancelled() for f in queued):  # the queue is dropped at once, before running work ends
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert pool.stopping.is_set()
    release.set()
    stopper.join(10)
    with pytest.raises(Cancelled):
        running.result()
    assert all(f.cancelled() for f in queued) and dropped == [1, 1]
    assert pool.held == 0 and pool.waiting == 0 and pool.running == 0
    assert pool.reserve() is None
