"""The load generator, in its own process so it never competes with the server under test
for the GIL: reads prepared, signed requests as JSON on stdin, fires them (all released at
once, or `concurrency` in flight), prints "half" when half are acknowledged, then one JSON
line of [kind, milliseconds, status, time sent, answer size] per request. Used by
bench/ack_latency.py.

Requests go out over non-blocking sockets from one `selectors` loop, one new connection each
(as Slack opens them). The client's own cost is a few tens of microseconds per request: with
80 threads and urllib (or asyncio streams), the client's own queue, not the server, set the
tail of a burst, and a trivial WSGI app measured 30–40 ms for 80 requests.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import selectors
import socket
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_S = 30.0


def wire(url: str, body: bytes, headers: dict[str, str]) -> tuple[tuple[str, int], bytes]:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in {"host", "connection"}]
    if not any(k.lower() == "content-length" for k in headers):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return (host, port), ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse(raw: bytes) -> tuple[int, int]:
    """Status code and body size of one HTTP/1.1 response read to EOF."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/"):
        return 0, 0
    return int(head.split(b" ", 2)[1]), len(rest)


@dataclass
class Call:
    index: int
    kind: str
    address: tuple[str, int]
    payload: bytes
    sock: socket.socket | None = None
    t0: float = 0.0
    sent_at: float = 0.0
    raw: bytearray = field(default_factory=bytearray)


def fire(job: dict[str, Any]) -> list[list[Any]]:
    requests = job["requests"]
    limit = len(requests) if job.get("together", False) else int(job["concurrency"])
    calls = []
    for i, r in enumerate(requests):
        address, payload = wire(job["url"], base64.b64decode(r["body"]), r["headers"])
        calls.append(Call(i, r["kind"], address, payload))
    out: list[list[Any] | None] = [None] * len(calls)
    sel = selectors.DefaultSelector()
    waiting = list(reversed(calls))
    in_flight = 0
    done = 0

    def start(call: Call) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        call.sock, call.t0, call.sent_at = sock, time.perf_counter(), time.time()
        code = sock.connect_ex(call.address)
        if code not in (0, errno.EINPROGRESS):
            finish(call, 0)
            return
        sel.register(sock, selectors.EVENT_WRITE, call)

    def finish(call: Call, status: int, size: int = 0) -> None:
        nonlocal in_flight, done
        if call.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(call.sock)
            call.sock.close()
        ms = (time.perf_counter() - call.t0) * 1000
        out[call.index] = [call.kind, ms, status, call.sent_at, size]
        in_flight -= 1
        done += 1
        if done == len(calls) // 2:
            print("half", flush=True)

    while waiting or in_flight:
        while waiting and in_flight < limit:
            in_flight += 1
            start(waiting.pop())
        for key, mask in sel.select(timeout=1.0):
            call: Call = key.data
            sock = call.sock
            assert sock is not None
            try:
                if mask & selectors.EVENT_WRITE:
                    sent = sock.send(call.payload)
                    call.payload = call.payload[sent:]
                    if not call.payload:
                        sel.modify(sock, selectors.EVENT_READ, call)
                    continue
                chunk = sock.recv(65536)
            except OSError:
                finish(call, 0)
                continue
            if chunk:
                call.raw += chunk
            else:
                finish(call, *parse(bytes(call.raw)))
        now = time.perf_counter()
        for key in list(sel.get_map().values()):
            late: Call = key.data
            if now - late.t0 > TIMEOUT_S:
                finish(late, 0)
    return [row for row in out if row is not None]


def main() -> int:
    job: dict[str, Any] = json.loads(sys.stdin.read())
    print(json.dumps(fire(job)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
