"""A small closed-loop HTTP load generator for the scoring service (loopback only, bounded count and time).

Each of `concurrency` threads keeps one HTTP/1.1 keep-alive connection (stdlib http.client) and sends POST /score
bodies round-robin until `total` requests are sent or `max_seconds` pass. Every response is checked (status 200,
JSON with scores); optional `check(body_index, response_json)` verifies content (e.g. scores match the model the
response names). Used by tests/serving and bench/serving.

    stats = run_load(8000, bodies, total=10_000, concurrency=4, max_seconds=120)
"""
from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

LOOPBACK = "127.0.0.1"


@dataclass
class LoadStats:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    models: Counter = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {"requests": self.sent, "ok": self.ok, "errors": self.errors, "seconds": round(self.seconds, 2),
                "requests_per_s": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
                "max_ms": round(float(lat.max()), 2), "models": dict(self.models),
                "first_errors": self.first_errors[:5]}


class Served:
    """Responses counted per key (the model path, a feature version), and waitable: a load test paces its swaps by
    what the server answered, never by sleeping."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self._cond = threading.Condition()

    def add(self, key: str) -> None:
        with self._cond:
            self.counts[key] += 1
            self._cond.notify_all()

    def __getitem__(self, key: str) -> int:
        return self.counts[key]

    def wait(self, key: str, n: int, timeout: float = 60.0) -> bool:
        """True once `key` has at least `n` responses; False after `timeout` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: self.counts[key] >= n, timeout=timeout)


def run_load(port: int, bodies: list[dict], total: int, concurrency: int = 4, max_seconds: float = 120.0,
             check: Callable[[int, dict], str | None] | None = None, host: str = LOOPBACK,
             stop: threading.Event | None = None) -> LoadStats:
    """Send up to `total` requests (or until `max_seconds` pass, or `stop` is set)."""
    if host not in (LOOPBACK, "localhost"):
        raise ValueError(f"run_load: loopback only, got host {host!r}")
    payloads = [json.dumps(b).encode() for b in bodies]
    stats, lock = LoadStats(), threading.Lock()
    counter = iter(range(total))
    deadline = time.perf_counter() + max_seconds

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        while time.perf_counter() < deadline and not (stop is not None and stop.is_set()):
            with lock:
                i = next(counter, None)
            if i is None:
                break
            k = i % len(payloads)
            t0 = time.perf_counter()
            problem, model = None, None
            try:
                conn.request("POST", "/score", body=payloads[k], headers={"content-type": "application/json"})
                resp = conn.getresponse()
                raw = resp.read()
                if resp.status != 200:
                    problem = f"HTTP {resp.status}: {raw[:200]!r}"
                else:
                    data = json.loads(raw)
                    model = data["model"]["model_path"]
                    problem = check(k, data) if check else None
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
            ms = (time.perf_counter() - t0) * 1e3
            with lock:
                stats.sent += 1
                stats.latencies_ms.append(ms)
                if problem:
                    stats.errors += 1
                    stats.first_errors.append(problem)
                else:
                    stats.ok += 1
                    stats.models[model] += 1
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max_seconds + 35)
    stats.seconds = time.perf_counter() - started
    return stats


def run_load_while(port: int, bodies: list[dict], action: Callable[[], None], **load) -> LoadStats:
    """run_load (with `load`'s settings) while `action` runs in a thread (swaps, flips); stops when it returns."""
    done = threading.Event()

    def run() -> None:
        try:
            action()
        finally:
            done.set()

    t = threading.Thread(target=run)
    t.start()
    stats = run_load(port, bodies, stop=done, **load)
    t.join()
    return stats


def wait_healthy(port: int, timeout: float = 90.0, host: str = LOOPBACK) -> dict:
    """Poll /healthz until 200 (the server loads and compiles the champion on start-up)."""
    deadline = time.perf_counter() + timeout
    last = None
    while time.perf_counter() < deadline:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            if resp.status == 200:
                return json.loads(body)
            last = f"HTTP {resp.status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"service on {host}:{port} not healthy after {timeout}s ({last})")


def stop_server(proc: "subprocess.Popen", timeout: float = 15.0) -> None:
    """Stop a served subprocess: SIGTERM lets uvicorn finish in-flight requests; SIGKILL if it hangs."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
