"""Steady load through a client's sidecar, with every request accounted for.

A ``Load`` sends requests at a fixed rate (bounded in count and in time) to one or more
URLs through a sidecar's HTTP proxy port, as an app does, each with a unique
``x-request-id``, and records the outcome of every one. Once the run ends, ``report``
looks up every failed request in the access logs of the mesh (the client sidecar's entry
gives the status and response flags the caller saw; the other proxies' entries with the
same id tell where it failed) and returns a ``Report`` that counts them exactly.

Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPORTS_ENV = "GOSSAMER_CHAOS_REPORTS"
DEFAULT_REPORTS = Path(__file__).resolve().parent / "reports"

RATE = 60.0
"""Requests per second: steady, and light enough for a 2-core machine."""
CONCURRENCY = 16
"""At most this many requests in flight; a request due while all are busy waits."""
REQUEST_TIMEOUT_S = 10.0
NO_RESPONSE = 0
"""The status recorded when no HTTP response came back (refused, reset, timeout)."""


def reports_dir() -> Path:
    return Path(os.environ.get(REPORTS_ENV) or DEFAULT_REPORTS)


@dataclass(slots=True)
class Outcome:
    """One request."""

    seq: int
    url: str
    request_id: str
    started: float
    """``time.monotonic()`` when it was sent."""
    ended: float = 0.0
    status: int = NO_RESPONSE
    error: str = ""
    """Why there was no response (the exception), when there was none."""
    served_by: str = ""
    """The ``instance`` of the shop app's JSON reply, when there is one."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Report:
    """A scenario's counts, written as JSON."""

    scenario: str
    sent: int = 0
    ok: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    """``"<status> <flags>"`` -> count: the status the client got (0 when it got no
    complete response) and the response flags its sidecar logged for the request."""
    no_response: dict[str, int] = field(default_factory=dict)
    """Why the client got no complete response (the exception) -> count."""
    causes: dict[str, int] = field(default_factory=dict)
    """``"<node> <direction> <status> <flags>"`` of the proxy deepest in the call chain
    that logged a failure for the request -> count."""
    by_url: dict[str, dict[str, int]] = field(default_factory=dict)
    """URL -> {"sent": n, "failed": n}."""
    rate: float = RATE
    concurrency: int = CONCURRENCY
    durations: dict[str, float] = field(default_factory=dict)
    """Seconds: ``load`` (first send to last response), and scenario-specific ones such as
    ``recovery`` or ``convergence``."""
    details: dict[str, Any] = field(default_factory=dict)
    """Anything else the scenario measured (kills, versions, per-host counts)."""
    passed: bool | None = None

    def write(self, directory: Path | None = None) -> Path:
        directory = directory or reports_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.scenario}.json"
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    def summary(self) -> str:
        flags = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures.items())) or "-"
        extra = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(self.durations.items()))
        verdict = {True: "passed", False: "FAILED", None: "?"}[self.passed]
        return (
            f"{self.scenario}: sent {self.sent}, ok {self.ok}, failed {self.failed} "
            f"[{flags}]; {extra} ({verdict})"
        )


class Load:
    """A bounded, fixed-rate load; use as a context manager (stops on exit)."""

    def __init__(
        self,
        proxy_port: int,
        urls: list[str],
        *,
        scenario: str,
        rate: float = RATE,
        concurrency: int = CONCURRENCY,
        max_requests: int = 3000,
        max_duration_s: float = 45.0,
    ) -> None:
        self.proxy_port = proxy_port
        self.urls = urls
        self.scenario = scenario
        self.rate = rate
        self.concurrency = concurrency
        self.max_requests = max_requests
        self.max_duration_s = max_duration_s
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load {scenario}", daemon=True)
        self._run_id = uuid.uuid4().hex[:8]
        self.started = 0.0
        self.stopped = 0.0
        self.entries: dict[str, list[dict[str, Any]]] = {}
        """Access log entries of the failed requests, by request id (after ``report``)."""

    # -- running ---------------------------------------------------------------------------

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Send nothing more; wait for every request sent to end."""
        self._stop.set()
        self._thread.join()
        self.stopped = time.monotonic()

    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def sent(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def _run(self) -> None:
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="load") as pool:
            seq = 0
            while seq < self.max_requests and not self._stop.is_set():
                due = self.started + seq / self.rate
                if due - self.started > self.max_duration_s:
                    break
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                url = self.urls[seq % len(self.urls)]
                outcome = Outcome(seq, url, f"chaos-{self._run_id}-{seq:06d}", time.monotonic())
                with self._lock:
                    self.outcomes.append(outcome)
                    self._in_flight += 1
                pool.submit(self._send, outcome)
                seq += 1

    def _send(self, outcome: Outcome) -> None:
        # A new connection per request, as the shop app's urllib does: no reused
        # connection can be closed under us by anything but the mesh.
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=REQUEST_TIMEOUT_S)
        try:
            outcome.started = time.monotonic()
            conn.request(
                "GET",
                outcome.url,
                headers={"Host": urlsplit(outcome.url).netloc, "x-request-id": outcome.request_id},
            )
            resp = conn.getresponse()
            body = resp.read()
            outcome.status = resp.status
            with contextlib.suppress(ValueError, AttributeError):
                outcome.served_by = str(json.loads(body).get("instance", ""))
        except (OSError, http.client.HTTPException) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
        finally:
            outcome.ended = time.monotonic()
            conn.close()
            with self._lock:
                self._in_flight -= 1

    # -- results ---------------------------------------------------------------------------

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def report(self, access_dir: Path, client_node: str, settle_s: float = 4.0) -> Report:
        """Counts of this run; every failure looked up in the access logs under
        ``access_dir`` (waiting up to ``settle_s`` for Envoy to flush them)."""
        if not self.stopped:
            self.stop()
        failed = self.failed()
        entries = find_entries(access_dir, {o.request_id for o in failed}, client_node, settle_s)
        self.entries = entries
        report = Report(self.scenario, rate=self.rate, concurrency=self.concurrency)
        report.sent = len(self.outcomes)
        report.failed = len(failed)
        report.ok = report.sent - report.failed
        ends = [o.ended for o in self.outcomes]
        report.durations["load"] = round((max(ends) if ends else self.started) - self.started, 3)
        failures: Counter[str] = Counter()
        causes: Counter[str] = Counter()
        for o in failed:
            chain = entries.get(o.request_id, [])
            failures[client_key(o, chain, client_node)] += 1
            cause = deepest_failure(chain)
            if cause is not None:
                causes[
                    f"{cause['node']} {cause.get('direction', '-')} "
                    f"{cause.get('response_code')} {cause.get('response_flags') or '-'}"
                ] += 1
        report.failures = dict(failures)
        report.no_response = dict(Counter(o.error for o in failed if o.status == NO_RESPONSE))
        report.causes = dict(causes)
        for url in self.urls:
            mine = [o for o in self.outcomes if o.url == url]
            report.by_url[url] = {"sent": len(mine), "failed": sum(not o.ok for o in mine)}
        return report


def client_key(outcome: Outcome, chain: list[dict[str, Any]], client_node: str) -> str:
    """``"<status> <flags>"``: the status the client got (0 for no complete response) and
    the flags its sidecar logged for the request."""
    own = next((e for e in chain if e.get("node") == client_node), None)
    flags = (own.get("response_flags") or "-") if own else "not-in-access-log"
    return f"{outcome.status} {flags}"


def deepest_failure(chain: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The entry furthest down the call chain (latest start) that failed or carries flags:
    where the failure happened rather than where it was passed on."""
    bad = [
        e
        for e in chain
        if (e.get("response_flags") or "-") != "-" or int(e.get("response_code") or 0) >= 400
    ]
    if not bad:
        return None
    return max(bad, key=lambda e: (str(e.get("start_time", "")), e.get("direction") == "inbound"))


def read_access_entries(access_dir: Path) -> list[dict[str, Any]]:
    """Every HTTP entry of every proxy's access log (rotated files too)."""
    out: list[dict[str, Any]] = []
    if not access_dir.is_dir():
        return out
    for path in sorted(access_dir.glob("*.log*")):
        with contextlib.suppress(OSError), path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict) and entry.get("kind", "http") == "http":
                        out.append(entry)
    return out


def find_entries(
    access_dir: Path, request_ids: set[str], client_node: str, settle_s: float
) -> dict[str, list[dict[str, Any]]]:
    """Access log entries by request id, for ``request_ids``. Waits until the client's
    sidecar has logged each of them (Envoy flushes its log every second), at most
    ``settle_s``, then one more flush interval for the proxies further down the chain."""
    if not request_ids:
        return {}
    deadline = time.monotonic() + settle_s
    while True:
        found: dict[str, list[dict[str, Any]]] = {}
        for entry in read_access_entries(access_dir):
            rid = entry.get("request_id")
            if rid in request_ids:
                found.setdefault(rid, []).append(entry)
        logged = {
            rid for rid, chain in found.items() if any(e.get("node") == client_node for e in chain)
        }
        if logged >= request_ids or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    time.sleep(1.2)
    found = {}
    for entry in read_access_entries(access_dir):
        rid = entry.get("request_id")
        if rid in request_ids:
            found.setdefault(rid, []).append(entry)
    return found


def upstream_host(chain: list[dict[str, Any]], service: str) -> str:
    """The address (an instance's inbound port) that the caller's sidecar sent the request
    to, on its hop to ``service``; empty if no proxy logged that hop."""
    cluster_tail = f"||{service}"
    for entry in chain:
        if entry.get("direction") == "outbound" and str(entry.get("upstream_cluster", "")).endswith(
            cluster_tail
        ):
            return str(entry.get("upstream_host") or "")
    return ""
