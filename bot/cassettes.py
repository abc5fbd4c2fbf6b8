"""Cassettes: Claude's answers recorded once and replayed byte for byte, offline; and
scripts: a model's answers written by hand, for the case where the model is the attacker.

A cassette is a JSON file holding the Messages API exchanges of one evaluation case, in
order: each request body Warden sent and the response it got (status, content type, body
text exactly as received). `CassetteServer` is a small real HTTP server on 127.0.0.1 that
the real `anthropic` SDK talks to (`base_url`):

- **replay**: the n-th request must equal the n-th recorded one (canonical JSON; only
  `IGNORED` top-level fields may differ). Then the recorded response is served as it was
  recorded, byte for byte. A request that differs is answered with an error and remembered
  as `problem` ("recorded request changed: messages[0].content[0].text"), so a case whose
  prompt, tools or thread changed says so instead of failing mysteriously.
- **record**: each request is forwarded to `upstream` (the real API, or a stub) with its
  headers, and the exchange is kept for `save`.

- **script**: the n-th request is answered with the n-th of `script`'s messages, whatever
  was asked; after the last one the model gives up (`warden_cannot_help`). This is how an
  evaluation plays a model that is fully taken over — it calls the lookup that carries the
  injection, then proposes exactly what the injection asked, at confidence 1.0 — so the
  suite proves the gate holds whatever the model does (PRODUCT.md, principle 1).

Every way the server counts the model calls (`steps`) and the tools the model called in
every answer (`tool_uses`), which the evaluation reads.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

IGNORED = frozenset({"metadata"})
"""Top-level request fields that may legitimately differ between recording and replay."""

FORWARDED_HEADERS = frozenset(
    {"x-api-key", "authorization", "anthropic-version", "anthropic-beta", "content-type"}
)
CASSETTE_VERSION = 1


@dataclass(kw_only=True)
class Interaction:
    request: dict[str, Any]
    status: int
    content_type: str
    body: str

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "response": {
                "status": self.status,
                "content_type": self.content_type,
                "body": self.body,
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Interaction:
        response = data["response"]
        return cls(
            request=dict(data["request"]),
            status=int(response["status"]),
            content_type=str(response.get("content_type", "application/json")),
            body=str(response["body"]),
        )


class CassetteError(Exception):
    """A cassette that cannot be read."""


def load_cassette(path: Path) -> list[Interaction]:
    try:
        data = json.loads(path.read_text())
        return [Interaction.from_json(i) for i in data["interactions"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CassetteError(f"{path}: cannot read the cassette: {exc}") from None


def save_cassette(path: Path, interactions: list[Interaction]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": CASSETTE_VERSION, "interactions": [i.to_json() for i in interactions]}
    path.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def first_difference(recorded: Any, sent: Any, path: str = "") -> str | None:
    """The path of the first place two JSON values differ (None: equal)."""
    if isinstance(recorded, dict) and isinstance(sent, dict):
        for key in sorted(set(recorded) | set(sent)):
            if not path and key in IGNORED:
                continue
            where = f"{path}.{key}" if path else str(key)
            if key not in recorded or key not in sent:
                return where
            found = first_difference(recorded[key], sent[key], where)
            if found is not None:
                return found
        return None
    if isinstance(recorded, list) and isinstance(sent, list):
        for i, (a, b) in enumerate(zip(recorded, sent, strict=False)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found is not None:
                return found
        if len(recorded) != len(sent):
            return f"{path}[{min(len(recorded), len(sent))}]"
        return None
    if type(recorded) is not type(sent) or recorded != sent:
        return path or "(the whole request)"
    return None


def _tool_uses(body: str) -> Iterator[str]:
    try:
        message = json.loads(body)
    except ValueError:
        return
    if not isinstance(message, dict):
        return
    for block in message.get("content") or []:
        if isinstance(block, dict) and block.get("type") == "tool_use":
            yield str(block.get("name", ""))


def _block(name: str, input: dict[str, Any], index: int) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_script_{index + 1:04d}", "name": name, "input": input}


def script_content(turn: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    """One scripted turn as the assistant `content` the API would send: `{"say": text}`, or a
    tool call `{"call": NAME, "args": {…}}` — a proposal (wrapped in the planner's envelope)
    when it carries `confidence`, else the call's input as given (lookups, `warden_ask`)."""
    if turn.get("say") is not None:
        return [{"type": "text", "text": str(turn["say"])}]
    args = dict(turn.get("args") or {})
    if turn.get("confidence") is not None:
        envelope = {
            "arguments": args,
            "confidence": float(turn["confidence"]),
            "rationale": str(turn.get("why") or "As instructed."),
        }
        return [_block(str(turn["call"]), envelope, index)]
    return [_block(str(turn["call"]), args, index)]


_MISMATCH = json.dumps(
    {"type": "error", "error": {"type": "invalid_request_error", "message": "cassette mismatch"}}
).encode()


@dataclass
class CassetteServer:
    """Replays `interactions`, or (with `upstream`) records new ones."""

    interactions: list[Interaction] = field(default_factory=list)
    upstream: str | None = None
    script: list[list[dict[str, Any]]] | None = None  # assistant `content` lists, in order
    model: str = "claude-scripted"
    steps: int = 0
    tool_uses: list[str] = field(default_factory=list)
    problem: str | None = None
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, content_type, payload = server._exchange(self.path, headers, raw)
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def recording(self) -> bool:
        return self.upstream is not None

    def __enter__(self) -> CassetteServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    def _exchange(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, str, bytes]:
        if not path.split("?")[0].endswith("/v1/messages"):
            return 404, "application/json", b'{"type":"error","error":{"type":"not_found_error"}}'
        try:
            sent = json.loads(raw)
        except ValueError:
            sent = {"unparsable": raw.decode(errors="replace")}
        with self._lock:
            index = self.steps
            self.steps += 1
        if self.upstream is not None:
            return self._record(path, headers, raw, sent)
        if self.script is not None:
            return self._scripted(index, raw)
        if index >= len(self.interactions):
            return self._mismatch(
                f"request #{index + 1} was not recorded (the cassette has {len(self.interactions)})"
            )
        recorded = self.interactions[index]
        where = first_difference(recorded.request, sent)
        if where is not None:
            return self._mismatch(f"{where} (request #{index + 1})")
        with self._lock:
            self.tool_uses.extend(_tool_uses(recorded.body))
        return recorded.status, recorded.content_type, recorded.body.encode()

    def _scripted(self, index: int, raw: bytes) -> tuple[int, str, bytes]:
        if index < len(self.script or []):
            content = (self.script or [])[index]
        else:
            reason = {"reason": "The script has no more turns."}
            content = [_block("warden_cannot_help", reason, index)]
        stop = "tool_use" if any(b.get("type") == "tool_use" for b in content) else "end_turn"
        message = {
            "id": f"msg_script_{index + 1:04d}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            # About four characters a token, as the API counts them.
            "usage": {"input_tokens": len(raw) // 4, "output_tokens": 40},
        }
        with self._lock:
            self.tool_uses.extend(str(b["name"]) for b in content if b.get("type") == "tool_use")
        return 200, "application/json", json.dumps(message).encode()

    def _mismatch(self, what: str) -> tuple[int, str, bytes]:
        with self._lock:
            if self.problem is None:
                self.problem = f"recorded request changed: {what}"
        return 400, "application/json", _MISMATCH

    def _record(
        self, path: str, headers: dict[str, str], raw: bytes, sent: dict[str, Any]
    ) -> tuple[int, str, bytes]:
        assert self.upstream is not None
        forward = {k: v for k, v in headers.items() if k in FORWARDED_HEADERS}
        forward["accept-encoding"] = "identity"  # recorded as the text it is
        req = urllib.request.Request(
            self.upstream.rstrip("/") + path, data=raw, headers=forward, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=120) as response:
                status, content_type, payload = (
                    response.status,
                    response.headers.get("content-type", "application/json"),
                    response.read(),
                )
        except urllib.error.HTTPError as exc:
            status = exc.code
            content_type = exc.headers.get("content-type", "application/json")
            payload = exc.read()
        except (urllib.error.URLError, OSError) as exc:
            body = {"type": "error", "error": {"type": "api_error", "message": str(exc)}}
            return 502, "application/json", json.dumps(body).encode()
        text = payload.decode()
        with self._lock:
            self.interactions.append(
                Interaction(request=sent, status=status, content_type=content_type, body=text)
            )
            self.tool_uses.extend(_tool_uses(text))
        return status, content_type, payload
