"""Stream a run's per-second series to a Prometheus remote-write endpoint while it runs.

Two threads beside the load. The feed (a BackgroundThread) reads the scenario's live progress
files and the service watch's retry counters once a second, turns them into samples
(reporting/live_metrics.py) and hands them to the writer without waiting. The writer POSTs
them (reporting/remote_write.py encodes them) from a bounded queue with a short timeout.

A feed must never fail or slow the run it watches: a write that fails (endpoint down, slow,
an HTTP error) is dropped and counted, a full queue drops its oldest write, and the end of
the run waits at most CLOSE_DEADLINE_S for what is still queued. Nothing is retried: every
write carries running totals, so the next one makes up for a lost one.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.exits import fail
from reporting.live_metrics import (
    RemoteWriteUrlError,
    ScenarioFeed,
    check_remote_write_url,
    remote_write_line,
    verdict_samples,
)
from reporting.remote_write import (
    REMOTE_WRITE_HEADERS,
    Sample,
    encode_write_request,
    snappy_compress,
)
from results.collect import read_progress
from results.files import REMOTE_WRITE_FILE
from watch.background import BackgroundThread

SAMPLE_INTERVAL_S = 1.0
WRITE_TIMEOUT_S = 1.0  # a slower endpoint loses writes rather than holding the feed back
QUEUE_LIMIT = 30  # writes (seconds of series) waiting for a slow endpoint; older ones drop
BATCH_LIMIT = 10  # queued writes sent in one POST once the writer has fallen behind
CLOSE_DEADLINE_S = 2.0  # the longest the end of a run (and the verdict) waits for the writer
DRAIN_POLL_S = 0.02
REMOTE_WRITE_ENV = "LOADTEST_PROMETHEUS_REMOTE_WRITE"  # --prometheus-remote-write likewise
ServiceCounters = Callable[[], Mapping[str, float] | None]


class RemoteWriter:
    """POST remote-write bodies from a bounded queue in a daemon thread; count what fails."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = WRITE_TIMEOUT_S,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        self.url = check_remote_write_url(url)
        self.timeout_s = timeout_s
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=queue_limit)
        self._lock = threading.Lock()
        self.writes = 0  # submitted
        self.delivered = 0  # answered 2xx
        self.first_error = ""
        self._thread = threading.Thread(target=self._send_loop, name="remote-write", daemon=True)
        self._thread.start()

    def submit(self, samples: list[Sample]) -> None:
        """Queue one write without waiting; when the queue is full the oldest write drops."""
        if not samples:
            return
        payload = encode_write_request(samples)
        with self._lock:
            self.writes += 1
        while True:
            try:
                self._queue.put_nowait(payload)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self._queue.task_done()
                    self._note("the endpoint fell behind: a queued write was dropped")
                except queue.Empty:
                    pass

    def drain(self, deadline_s: float = CLOSE_DEADLINE_S) -> bool:
        """Wait up to ``deadline_s`` for the queue to empty; tell whether it did."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:  # queued or being sent
                return True
            time.sleep(DRAIN_POLL_S)
        self._note(f"writes still unsent {deadline_s:g} s after the end")
        return False

    def evidence(self) -> dict[str, Any]:
        """Return how the writes went: submitted, delivered, failed (not delivered, so far)."""
        with self._lock:
            return {
                "url": display_url(self.url),
                "writes": self.writes,
                "delivered": self.delivered,
                "failed": self.writes - self.delivered,
                "first_error": self.first_error or None,
                "timeout_s": self.timeout_s,
                "queue_limit": self._queue.maxsize,
            }

    def _send_loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH_LIMIT:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # Concatenated WriteRequests are one WriteRequest: protobuf repeats add up.
            error = post_remote_write(self.url, snappy_compress(b"".join(batch)), self.timeout_s)
            with self._lock:
                if error is None:
                    self.delivered += len(batch)
                elif not self.first_error:
                    self.first_error = error
            for _ in batch:
                self._queue.task_done()

    def _note(self, error: str) -> None:
        with self._lock:
            self.first_error = self.first_error or error


def post_remote_write(url: str, body: bytes, timeout_s: float) -> str | None:
    """POST one remote-write body; return why it failed, or None on a 2xx."""
    request = urllib.request.Request(url, data=body, headers=REMOTE_WRITE_HEADERS, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as error:
        detail = error.read(200).decode(errors="replace").strip()
        return f"HTTP {error.code}" + (f": {detail}" if detail else "")
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return f"{type(reason).__name__}: {reason}"
    return None


class MetricsStream(BackgroundThread):
    """A run's live feed: one sample set a second for the scenario being run, the verdict last.

    Enter it for the run (the feed's thread runs meanwhile; leaving waits for the writer up to
    CLOSE_DEADLINE_S); ``follow`` each scenario; ``send_verdict`` once the decision is known.
    """

    def __init__(self, writer: RemoteWriter, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.writer = writer
        self.interval_s = interval_s
        self.labels: dict[str, str] = {}
        self.verdict: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._current: tuple[ScenarioFeed, Path, ServiceCounters] | None = None
        self._last_ms = 0
        self._feed_errors = 0
        self._init_thread(self._loop, "metrics-stream", join_timeout_s=interval_s + 1)

    @classmethod
    def to(cls, url: str) -> MetricsStream:
        """Return a stream to ``url``; RemoteWriteUrlError if it is not an http(s) URL."""
        return cls(RemoteWriter(url))

    def _after_stop(self) -> None:
        self.writer.drain()

    @contextmanager
    def follow(
        self, scenario: str, record_dir: Path, service: ServiceCounters | None = None
    ) -> Iterator[None]:
        """Feed ``scenario``'s series from its progress files in ``record_dir`` until the end
        of the block, then send its final totals."""
        feed = ScenarioFeed(scenario, dict(self.labels))
        with self._lock:
            self._current = (feed, record_dir, service or _no_service)
        try:
            yield
        finally:
            self._sample()
            with self._lock:
                self._current = None

    def send_verdict(self, decision: str) -> bool:
        """Send the run's verdict and wait (briefly) for it; tell whether it was delivered."""
        before = self.writer.evidence()["delivered"]
        self.writer.submit(verdict_samples(decision, self.labels, self._next_ms()))
        self.writer.drain()
        delivered = self.writer.evidence()["delivered"] > before
        self.verdict = {"decision": decision, "delivered": delivered}
        return delivered

    def evidence(self) -> dict[str, Any]:
        """Return the writes' figures, the line the report shows, and the verdict's write."""
        evidence = self.writer.evidence()
        evidence["feed_errors"] = self._feed_errors
        evidence["line"] = remote_write_line(evidence)
        if self.verdict is not None:
            evidence["verdict"] = self.verdict
        return evidence

    def write(self, run_dir: Path) -> Path:
        """Write remote_write.json into the run folder."""
        path = Path(run_dir) / REMOTE_WRITE_FILE
        path.write_text(json.dumps(self.evidence(), indent=2) + "\n", encoding="utf-8")
        return path

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            if self._current is None:
                return
            feed, record_dir, service = self._current
            try:
                samples = feed.samples(read_progress(record_dir), self._next_ms(), service())
            except Exception:  # a bug in the feed must not end the run it watches
                self._feed_errors += 1
                return
        self.writer.submit(samples)

    def _next_ms(self) -> int:
        # Strictly later than the last sample: Prometheus refuses a series' out-of-order points.
        self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        return self._last_ms


def watched_counters(watch: Any) -> ServiceCounters:
    """Return how to read the service's retries and conflicts since a watch began.

    The watch (watch/service_watch.ServiceWatch) keeps one point of running totals a
    second; its first point is the scenario's baseline. None while there is none.
    """

    def since_start() -> Mapping[str, float] | None:
        series = list(watch.series)
        if not series:
            return None
        first, last = series[0], series[-1]
        return {key: max(last[key] - first[key], 0.0) for key in ("retries", "conflicts")}

    return since_start


def display_url(url: str) -> str:
    """Return ``url`` without any user name or password, to print and record."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _no_service() -> None:
    return None


def stream_for(url: str | None) -> MetricsStream | None:
    """Return the feed ``url`` (else $LOADTEST_PROMETHEUS_REMOTE_WRITE) asks for, or None.

    A URL that is not http(s) gets one line and exit 2, before anything starts.
    """
    url = url or os.environ.get(REMOTE_WRITE_ENV) or None
    if url is None:
        return None
    try:
        return MetricsStream.to(url)
    except RemoteWriteUrlError as error:
        fail(str(error))


def finish_stream(stream: MetricsStream, decision: str, run_dir: Path) -> str:
    """Send the final verdict, write remote_write.json, and return the line to print."""
    delivered = stream.send_verdict(decision)
    stream.write(run_dir)
    evidence = stream.evidence()
    sent = "sent" if delivered else f"not delivered ({evidence['first_error']})"
    return f"[remote write] {evidence['line']} The verdict {decision} was {sent}."
