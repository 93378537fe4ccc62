"""Steady demo traffic: GET one URL at a paced rate, bounded in count and time.

    python3 loadgen.py --target http://web/ [--rps 5] [--duration 3600] [--max-requests 100000]

Requests go through HTTP_PROXY (the local sidecar) when it is set. Prints a one-line summary
every 10 s and a final one; exits 0 when done or on SIGTERM. Standard library only.
"""

from __future__ import annotations

import argparse
import collections
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

REPORT_EVERY_S = 10.0
MAX_IN_FLIGHT = 32


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0
        self.ok = 0
        self.errors: collections.Counter[str] = collections.Counter()

    def record(self, outcome: int | str) -> None:
        with self.lock:
            if isinstance(outcome, int) and 200 <= outcome < 300:
                self.ok += 1
            else:
                self.errors[str(outcome)] += 1

    def line(self, label: str, elapsed: float) -> str:
        with self.lock:
            errs = " ".join(f"{k}:{v}" for k, v in sorted(self.errors.items())) or "none"
            return f"loadgen {label} t={elapsed:.0f}s sent={self.sent} ok={self.ok} errors={errs}"


def fetch(url: str, timeout: float) -> int | str:
    """One GET; the HTTP status, or the exception's class name when there is none."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None)
        return type(reason if isinstance(reason, BaseException) else exc).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="the one URL to GET, e.g. http://web/")
    parser.add_argument("--rps", type=float, default=5.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds to run")
    parser.add_argument("--max-requests", type=int, default=100_000, help="requests to send")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-request seconds")
    opts = parser.parse_args(argv)
    if not opts.target.startswith(("http://", "https://")):
        parser.error("--target must be an http:// or https:// URL")
    if not 0 < opts.rps <= 1000:
        parser.error("--rps must be in (0, 1000]")
    if opts.duration <= 0 or opts.max_requests <= 0:
        parser.error("--duration and --max-requests must be positive")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    stats = Stats()
    slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
    workers: list[threading.Thread] = []

    def worker() -> None:
        try:
            stats.record(fetch(opts.target, opts.timeout))
        finally:
            slots.release()

    start = time.monotonic()
    deadline = start + opts.duration
    next_report = start + REPORT_EVERY_S
    interval = 1.0 / opts.rps
    next_send = start
    print(f"loadgen start target={opts.target} rps={opts.rps:g}", flush=True)
    while not stop.is_set() and stats.sent < opts.max_requests:
        now = time.monotonic()
        if now >= deadline:
            break
        if now >= next_report:
            print(stats.line("progress", now - start), flush=True)
            next_report += REPORT_EVERY_S
        if now < next_send:
            stop.wait(min(next_send, next_report, deadline) - now)
            continue
        if not slots.acquire(timeout=min(1.0, max(0.0, deadline - now))):
            continue  # every slot busy: the target is slow; keep pacing, don't pile up
        with stats.lock:
            stats.sent += 1
        # Keep a steady pace: after a stall, resume the rate rather than burst to catch up.
        next_send = max(next_send + interval, time.monotonic() - interval)
        thread = threading.Thread(target=worker, daemon=True)
        thread.start()
        workers.append(thread)
        workers = [t for t in workers if t.is_alive()]
    # Let requests in flight finish, but never wait longer than one request timeout.
    finish_by = time.monotonic() + opts.timeout + 1.0
    for thread in workers:
        thread.join(max(0.0, finish_by - time.monotonic()))
    print(stats.line("done", time.monotonic() - start), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
