"""POST /jobs and GET /jobs/{id}: accepted at once, progress, the same result as /detect, cleanup."""

from api_helpers import comparable, post_file, wait_finished

from service.api.jobs import JobStore


def test_job_runs_to_the_detect_result(api, clip_path, cli_document, uploads_left):
    response = post_file(api, "/jobs", clip_path.read_bytes(), filename="long.mp4")
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert response.headers["location"] == f"/jobs/{accepted['id']}"
    assert accepted["status"] in ("queued", "running") and accepted["result"] is None
    assert accepted["filename"] == "long.mp4" and accepted["frames_expected"] == 16  # the clip keeps 16 frames at 8 fps

    job = wait_finished(api, accepted["id"])
    assert job["status"] == "done", job
    assert job["progress"] == 1.0 and job["frames_processed"] == 16
    assert job["started_at"] >= job["created_at"] and job["finished_at"] >= job["started_at"]
    assert job["expires_at"] == job["finished_at"] + 3600
    assert comparable(job["result"]) == comparable(cli_document)
    assert job["result"]["source"]["path"] == "long.mp4"
    assert uploads_left() == []


def test_job_fields_override_like_detect(api, clip_path):
    response = post_file(api, "/jobs", clip_path.read_bytes(), head="bilstm", fps="4")
    job = wait_finished(api, response.json()["id"])
    assert job["result"]["model"]["verifier"] == "bilstm" and job["frames_processed"] == 8


def test_unknown_job_is_404(api):
    response = api.get("/jobs/does-not-exist")
    assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_finished_jobs_are_kept_for_their_ttl_then_forgotten():
    clock = Clock()
    store = JobStore(ttl_s=60, max_finished=10, clock=clock)
    running, done = store.create("a.mp4", 10), store.create("b.mp4", 10)
    running.start()
    done.start()
    done.succeed({"verdict": "no_smoke"})
    done.finished_at = clock.now
    clock.now += 59
    assert store.get(done.id) is done  # still within its ttl, never polled before
    clock.now += 2
    assert store.get(done.id) is None
    assert store.get(running.id) is running  # unfinished jobs never expire


def test_finished_jobs_are_capped_oldest_first():
    clock = Clock()
    store = JobStore(ttl_s=3600, max_finished=2, clock=clock)
    jobs = [store.create(f"{i}.mp4", None) for i in range(3)]
    for i, job in enumerate(jobs):
        job.fail("truncated", "cut short")
        job.finished_at = clock.now + i
    assert store.prune() == 1
    assert store.get(jobs[0].id) is None and store.get(jobs[2].id) is jobs[2]
    assert store.counts() == {"queued": 0, "running": 0, "done": 0, "failed": 2}


def test_progress_counts_frames_and_reaches_one_only_when_done():
    store = JobStore(ttl_s=60, max_finished=10)
    job = store.create("a.mp4", 4)
    assert job.progress() == 0.0
    job.start()
    job.frames_processed = 2
    assert job.progress() == 0.5
    job.frames_processed = 5  # the expected count is an estimate from the header
    assert job.progress() == 0.99
    job.succeed({})
    assert job.progress() == 1.0
    unknown = store.create("stream.mkv", None)
    unknown.frames_processed = 3
    assert unknown.progress() == 0.0


def cut_after_header(clip_path, tmp_path) -> bytes:
    """The clip with its index moved to the front, then cut: it opens and passes every check, and
    only decoding finds frames missing, on the worker."""
    import av

    fast = tmp_path / "fast.mp4"
    with av.open(str(clip_path)) as source, av.open(str(fast), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = fast.read_bytes()
    return data[: int(len(data) * 0.6)]


def test_a_file_that_fails_while_decoding(api, clip_path, tmp_path, uploads_left):
    data = cut_after_header(clip_path, tmp_path)
    response = post_file(api, "/detect", data)
    assert response.status_code == 422 and response.json()["error"]["code"] == "truncated", response.text
    accepted = post_file(api, "/jobs", data)
    assert accepted.status_code == 202
    job = wait_finished(api, accepted.json()["id"])
    assert job["status"] == "failed" and job["result"] is None
    assert job["error"]["code"] == "truncated" and "declares 24 frames" in job["error"]["message"]
    assert uploads_left() == []
