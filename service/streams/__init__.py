"""Camera-stream monitoring: live sources, one worker per stream, an alert policy, events.

    source (rtsp/http/file/webcam) -> reader thread (keeps a frame every interval_s)
        -> bounded queue (drops and counts when inference lags)
        -> inference lane (one engine, round-robin over its streams, one Session per stream)
        -> alert policy (k of n, hysteresis, cool-down) -> event store + webhook outbox + live feed

A watchdog marks silent streams offline; readers reconnect with capped exponential back-off.
The pure pieces (policy, frame health, back-off, URL redaction) have no threads and no I/O.
"""
