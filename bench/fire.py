"""The load generator, in its own process so it never competes with the server under test
for the GIL: reads prepared, signed requests as JSON on stdin, fires them (all released at
once, or `concurrency` in flight), prints "half" when half are acknowledged, then one JSON
line of [kind, milliseconds, status, time sent, answer size] per request. Used by
bench/ack_latency.py."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[float, int, int]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    t0 = time.perf_counter()
    size = 0
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            size = len(resp.read())
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = 0
    return (time.perf_counter() - t0) * 1000, status, size


def main() -> int:
    job: dict[str, Any] = json.loads(sys.stdin.read())
    url, requests = job["url"], job["requests"]
    together = job.get("together", False)
    workers = len(requests) if together else int(job["concurrency"])
    barrier = threading.Barrier(len(requests)) if together else None
    done = 0
    lock = threading.Lock()

    def one(r: dict[str, Any]) -> list[Any]:
        nonlocal done
        body = base64.b64decode(r["body"])
        if barrier is not None:
            barrier.wait(timeout=60)
        sent = time.time()
        ms, status, size = post(url, body, r["headers"])
        with lock:
            done += 1
            if done == len(requests) // 2:
                print("half", flush=True)
        return [r["kind"], ms, status, sent, size]

    with ThreadPoolExecutor(workers) as pool:
        out = list(pool.map(one, requests))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
