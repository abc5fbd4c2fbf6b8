"""A stub of Anthropic's Messages API: a real HTTP server on 127.0.0.1 for the real SDK.

Tests script its answers in order (`reply`, `error`, `slow`, `garbage`) or install a
`responder` that computes each answer from the request. Every request is recorded with its
headers and JSON body, so tests can look at exactly what the SDK sent. Usage is counted the
way the API does it: about four characters a token, and a system + tools prefix seen before
(with `cache_control`) is reported as a cache read instead of a cache write.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ids = itertools.count(1)


def tool_use(name: str, input: dict[str, Any], id: str | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": id or f"toolu_{next(_ids):06d}", "name": name, "input": input}


def propose(
    tool: str, arguments: dict[str, Any], confidence: float, rationale: str
) -> dict[str, Any]:
    return tool_use(
        tool, {"arguments": arguments, "confidence": confidence, "rationale": rationale}
    )


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


@dataclass
class Answer:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw: bytes | None = None
    usage: dict[str, int] | None = None


def reply(*content: dict[str, Any], stop_reason: str = "tool_use", **usage: int) -> Answer:
    return Answer(body={"content": list(content), "stop_reason": stop_reason}, usage=usage or None)


def error(status: int, kind: str, message: str = "", **headers: str) -> Answer:
    body = {"type": "error", "error": {"type": kind, "message": message or kind}}
    return Answer(
        status=status, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()}
    )


def slow(seconds: float, then: Answer) -> Answer:
    then.delay_s = seconds
    return then


def garbage() -> Answer:
    return Answer(raw=b"{not json")


@dataclass
class Seen:
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    def tool_results(self) -> list[dict[str, Any]]:
        last = self.messages[-1]
        return [
            b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"
        ]

    def first_text(self) -> str:
        first = self.messages[0]["content"]
        return "\n".join(b.get("text", "") for b in first if isinstance(b, dict))


class AnthropicStub:
    """The stub server. `url` goes into ANTHROPIC_BASE_URL."""

    def __init__(self) -> None:
        self.script: deque[Answer] = deque()
        self.responder: Callable[[dict[str, Any]], Answer] | None = None
        self.seen: list[Seen] = []
        self.counted: list[dict[str, Any]] = []  # bodies sent to /v1/messages/count_tokens
        self.unscripted = 0
        self._prefixes: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if self.path.split("?")[0].endswith("/messages/count_tokens"):
                    stub._count(self, raw)
                    return
                stub._answer(self, raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> AnthropicStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def enqueue(self, *answers: Answer) -> None:
        with self._lock:
            self.script.extend(answers)

    def _next(self, body: dict[str, Any]) -> Answer:
        with self._lock:
            if self.script:
                return self.script.popleft()
            responder = self.responder
        if responder is not None:
            return responder(body)
        with self._lock:
            self.unscripted += 1
        return error(500, "api_error", "the stub has no answer scripted for this request")

    def _usage(self, body: dict[str, Any]) -> dict[str, int]:
        prefix = json.dumps([body.get("tools"), body.get("system")], sort_keys=True)
        key = hashlib.sha256(prefix.encode()).hexdigest()
        prefix_tokens = len(prefix) // 4
        rest_tokens = len(json.dumps(body.get("messages"))) // 4
        with self._lock:
            seen = key in self._prefixes
            self._prefixes.add(key)
        return {
            "input_tokens": rest_tokens,
            "output_tokens": 40,
            "cache_read_input_tokens": prefix_tokens if seen else 0,
            "cache_creation_input_tokens": 0 if seen else prefix_tokens,
        }

    def _count(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        """`POST /v1/messages/count_tokens`, counted as `_usage` counts: about four characters
        a token for the system + tools prefix and for the messages."""
        body = json.loads(raw)
        with self._lock:
            self.counted.append(body)
        prefix = json.dumps([body.get("tools"), body.get("system")], sort_keys=True)
        tokens = len(prefix) // 4 + len(json.dumps(body.get("messages"))) // 4
        payload = json.dumps({"input_tokens": tokens}).encode()
        handler.send_response(200)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _answer(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"unparsable": raw.decode(errors="replace")}
        with self._lock:
            self.seen.append(
                Seen(headers={k.lower(): v for k, v in handler.headers.items()}, body=body)
            )
        answer = self._next(body)
        if answer.delay_s and self._stopping.wait(answer.delay_s):
            return
        if answer.raw is not None:
            payload = answer.raw
        elif answer.status == 200:
            payload = json.dumps(
                {
                    "id": f"msg_{next(_ids):06d}",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model", "stub"),
                    "content": answer.body["content"],
                    "stop_reason": answer.body["stop_reason"],
                    "stop_sequence": None,
                    "usage": {**self._usage(body), **(answer.usage or {})},
                }
            ).encode()
        else:
            payload = json.dumps(answer.body).encode()
        try:
            handler.send_response(answer.status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(payload)))
            for k, v in answer.headers.items():
                handler.send_header(k, v)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)
