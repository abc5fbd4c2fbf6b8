"""The workspace's HTTP front: the Web API, response URLs and the page's JSON endpoints."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devslack.workspace import Workspace

MAX_BODY = 5_000_000


def make_handler(ws: Workspace) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "devslack/1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(
            self,
            status: int,
            body: Any,
            headers: dict[str, str] | None = None,
            content_type: str = "application/json; charset=utf-8",
        ) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            # The page may navigate away mid long-poll.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._write(status, data, headers, content_type)

        def _write(
            self, status: int, data: bytes, headers: dict[str, str] | None, content_type: str
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ValueError("body too large")
            return self.rfile.read(length) if length > 0 else b""

        def _params(self, raw: bytes) -> dict[str, Any]:
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            if ctype == "application/json":
                data = json.loads(raw or b"{}")
                return {**query, **(data if isinstance(data, dict) else {})}
            return {**query, **dict(urllib.parse.parse_qsl(raw.decode()))}

        def _local_page_request(self) -> bool:
            """The page's own requests only: its Host is this server (no DNS rebinding) and
            a POST carries JSON from the page's origin (a foreign page cannot send that
            without a CORS preflight, which this server never grants)."""
            port = urllib.parse.urlsplit(ws.url).port
            host = (self.headers.get("Host") or "").lower()
            if host not in (f"127.0.0.1:{port}", f"localhost:{port}"):
                return False
            if self.command != "POST":
                return True
            origin = self.headers.get("Origin")
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            return ctype == "application/json" and origin in (None, f"http://{host}")

        def do_GET(self) -> None:
            from devslack.page import handle_get

            if not self._local_page_request():
                self._send(403, {"ok": False, "error": "forbidden"})
                return
            path = urllib.parse.urlsplit(self.path)
            status, body, ctype = handle_get(ws, path.path, urllib.parse.parse_qs(path.query))
            self._send(status, body, content_type=ctype)

        def do_POST(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            try:
                raw = self._body()
            except ValueError:
                self._send(413, {"ok": False, "error": "request_too_large"})
                return
            if path.startswith("/api/"):
                try:
                    params = self._params(raw)
                except ValueError:
                    self._send(200, {"ok": False, "error": "invalid_json"})
                    return
                auth = self.headers.get("Authorization") or ""
                token = auth.removeprefix("Bearer ").strip() or params.pop("token", None)
                params.pop("token", None)
                status, body, headers = ws.api(path.removeprefix("/api/"), params, token)
                self._send(status, body, headers)
                return
            if path.startswith("/response_url/"):
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, {"ok": False, "error": "invalid_json"})
                    return
                status, answer = ws.response_url(
                    path.removeprefix("/response_url/"), body if isinstance(body, dict) else {}
                )
                self._send(status, answer)
                return
            if path.startswith("/ui/"):
                from devslack.page import handle_ui

                if not self._local_page_request():
                    self._send(403, {"ok": False, "error": "forbidden"})
                    return

                try:
                    data = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, {"ok": False, "error": "invalid_json"})
                    return
                status, answer = handle_ui(
                    ws, path.removeprefix("/ui/"), data if isinstance(data, dict) else {}
                )
                self._send(status, answer)
                return
            self._send(404, {"ok": False, "error": "not_found"})

    return Handler
