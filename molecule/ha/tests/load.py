"""Constant traffic through the load balancer while a playbook runs: a mix of searches, ingests
and export jobs, every answer recorded. A failed request is any connection error or any status
other than the one the API promises (200 search, 200/202 ingest, 202 export)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from dataclasses import dataclass, field


@dataclass
class Load:
    base: str
    index_set: str
    ingest_token: str
    api_token: str
    # Enough that any gap in serving shows as failed requests (several a second), and light enough
    # to leave the two shared cores to the playbooks (12 searches/s of the most common word kept a
    # core busy on the app and database hosts by itself).
    searches_per_second: float = 4
    ingests_per_second: float = 2
    lines_per_ingest: int = 5
    exports_every_seconds: float = 15
    run_id: str = field(default_factory=lambda: "run" + uuid.uuid4().hex[:10])
    sent_lines: int = 0
    served: int = 0
    failures: list = field(default_factory=list)
    export_jobs: list = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._seq = 0

    def request(self, method: str, path: str, body: bytes | None = None, token: str | None = None,
                content_type: str = "application/json", timeout: float = 30) -> tuple[int, bytes]:
        req = urllib.request.Request(self.base + path, data=body, method=method)
        req.add_header("Authorization", f"Bearer {token or self.api_token}")
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _record(self, what: str, expect: tuple[int, ...], call) -> bytes | None:
        started = time.time()
        try:
            status, body = call()
        except Exception as exc:  # connection refused, reset, timeout: all failures
            status, body = None, repr(exc).encode()
        with self._lock:
            if status in expect:
                self.served += 1
                return body
            self.failures.append({"what": what, "status": status, "at": time.strftime("%H:%M:%S", time.localtime(started)),
                                  "took": round(time.time() - started, 1), "body": body[:300].decode(errors="replace")})
        return None

    def _paced(self, per_second: float, step):
        interval = 1 / per_second
        next_at = time.monotonic()
        while not self._stop.is_set():
            step()
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _search(self):
        self._record("search", (200,), lambda: self.request(
            "GET", f"/api/v1/index_sets/{self.index_set}/search?q=payment&size=20"))

    def _ingest(self):
        with self._lock:
            self._seq += 1
            seq = self._seq
        lines = "\n".join(f"{self.run_id} b{seq} line{i} payment accepted" for i in range(self.lines_per_ingest))
        if self._record("ingest", (200, 202), lambda: self.request(
                "POST", f"/api/v1/index_sets/{self.index_set}/ingest", lines.encode(), self.ingest_token,
                "text/plain")) is not None:
            with self._lock:
                self.sent_lines += self.lines_per_ingest

    def _export(self):
        body = self._record("export", (202,), lambda: self.request(
            # The last half minute only: exports of the whole growing index set queue up behind each
            # other (the first CI run timed out waiting for 101 of them), which is not what this measures.
            "POST", f"/api/v1/index_sets/{self.index_set}/exports",
            json.dumps({"q": "payment", "start": datetime.fromtimestamp(time.time() - 30, timezone.utc).isoformat()}).encode()))
        if body is not None:
            with self._lock:
                self.export_jobs.append(json.loads(body)["id"])

    def start(self):
        for per_second, step in ((self.searches_per_second / 2, self._search), (self.searches_per_second / 2, self._search),
                                 (self.ingests_per_second, self._ingest), (1 / self.exports_every_seconds, self._export)):
            thread = threading.Thread(target=self._paced, args=(per_second, step), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def describe(self) -> str:
        """The load's rates, as the benchmark sections quote them (bench/ha_bench.py, fleet_bench.py)."""
        return (f"{self.searches_per_second:g} searches/s, {self.ingests_per_second:g} ingests/s of "
                f"{self.lines_per_ingest} lines, an export every {self.exports_every_seconds:g} s")

    def summary(self) -> str:
        return (f"{self.served} requests served, {len(self.failures)} failed, {self.sent_lines} lines ingested, "
                f"{len(self.export_jobs)} exports submitted")
