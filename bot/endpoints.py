"""Endpoints: HTTP calls declared in `warden.toml`, turned into tools.

The bridge to real systems without a shell. Warden calls no URL the policy did not write
out: scheme, host and port are fixed by the policy (https, or http to this machine only);
the only variable parts are the declared `{param}` values, validated against their
`pattern` or `choices` first and then percent-encoded as one path segment or query value,
so `../`, `?`, `#` or `@` in a value cannot change where the request goes. Headers may take
`${VAR}` from Warden's environment, resolved once at start-up (a missing one stops start-up)
and never shown: a dry run prints the request with `${VAR}` in place of the value.

Redirects are refused, not followed; the answer is read as a stream and cut at
`max_response_bytes`; every wait is bounded by `timeout`. What comes back is untrusted data:
the executor redacts and bounds it like any tool output, and a read-only endpoint's answer
reaches the model fenced as data, as every lookup's does. Calls that change something carry
`Idempotency-Key: <action id>` (`<action id>-undo` for the undo), so a server that honours
the header does the work once however often it is asked.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from bot.errors import ConfigError, ToolFailed
from bot.policy_endpoints import ENV_REF, RESPONSE_REF, Endpoint
from bot.policy_runbooks import Param
from bot.policy_types import PLACEHOLDER, Risk
from bot.tools import Tool, ToolContext, ToolResult

ARG_MAX = 1000  # characters in one parameter value
EXCERPT = 300  # characters of an error answer's body kept in the failure message
LOCATION_KEEP = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Header values of these names are shown masked on a card even when written in the policy.
_SENSITIVE = re.compile(r"(?i)auth|token|key|secret|cookie|password|signature")
MASK = "•••"
# Every placeholder a template may hold, replaced in one pass: a value is never read again,
# so one that looks like "{response.id}" stays text.
_TEMPLATE_REF = re.compile(r"\{(response(?:\.[A-Za-z0-9_-]+)+|[A-Za-z_][A-Za-z0-9_]*)\}")
# What an answer's field may hold to go into an undo's URL: the policy validates parameters
# against their pattern, but nobody validated the answer. Percent-encoding keeps "/" inside one
# segment, yet servers and proxies that decode "%2F" before resolving "../" (nginx does) would
# still walk the path: an id is a plain token, or the undo is not built.
_PLAIN_ANSWER = re.compile(r"^[^/\\%\x00-\x1f\x7f]{1,200}$")
ANSWER_RULE = "a plain value (1 to 200 characters, no '/', '\\', '%' or control characters)"


class EndpointArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _in_url(endpoint: Endpoint) -> set[str]:
    urls = [endpoint.url] + ([endpoint.undo.url] if endpoint.undo else [])
    return {name for url in urls for name in PLACEHOLDER.findall(url)}


def _field_validator(name: str, spec: Param, segment: bool) -> Any:
    regex = re.compile(spec.pattern) if spec.pattern is not None else None
    choices = set(spec.choices or [])

    def check(cls: Any, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must be a single line of text with no control characters")
        if choices:
            if value not in choices:
                raise ValueError(f"must be one of: {', '.join(sorted(choices))}")
        elif regex is None or not regex.fullmatch(value):
            raise ValueError(f"does not match the allowed pattern {spec.pattern}")
        # Encoding cannot neutralise these: "." and ".." are path steps in every URL parser.
        if segment and value in (".", ".."):
            raise ValueError("may not be '.' or '..'")
        return value

    return field_validator(name)(classmethod(check))


def args_model(name: str, endpoint: Endpoint) -> type[EndpointArgs]:
    """A pydantic model for one endpoint's parameters."""
    fields: dict[str, Any] = {
        p: (
            str,
            Field(
                description=spec.description or None,
                max_length=ARG_MAX,
                # For the JSON schema the planner sees; the validator below is what enforces.
                json_schema_extra=(
                    {"enum": list(spec.choices)} if spec.choices else {"pattern": spec.pattern}
                ),
            ),
        )
        for p, spec in endpoint.params.items()
    }
    in_url = _in_url(endpoint)
    validators = {
        f"check_{p}": _field_validator(p, spec, p in in_url) for p, spec in endpoint.params.items()
    }
    return create_model(f"{name}_args", __base__=EndpointArgs, __validators__=validators, **fields)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def build_url(template: str, values: Mapping[str, str], *, answer_later: bool = False) -> str:
    """The URL with each `{param}` (and `{response.FIELD}`) replaced by its value encoded as
    one path segment or query value. Raises ToolFailed if a value is missing or the result
    would leave the template's scheme, host, port or path shape (it cannot; checked anyway).
    `answer_later`: `{response.FIELD}` stays as written (a preview, before the answer)."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if answer_later and key.startswith("response."):
            return match.group(0)
        if key not in values:
            raise ToolFailed(f"no value for {{{key}}}")
        return quote(values[key], safe="")

    url = _TEMPLATE_REF.sub(fill, template)
    blank = _TEMPLATE_REF.sub("x", template)
    if _origin(url) != _origin(blank):
        raise ToolFailed("refused: the URL would go somewhere the policy does not declare")
    path = urlsplit(url).path.split("/")
    if len(path) != len(urlsplit(blank).path.split("/")) or {".", ".."} & set(path):
        raise ToolFailed("refused: a value would change the URL's path")
    return url


def fill_body(template: Any, values: Mapping[str, str]) -> Any:
    """The JSON body with `{param}` (and `{response.FIELD}`) inside string values replaced;
    JSON encoding keeps each value data, whatever it holds."""
    if isinstance(template, str):

        def fill(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in values:
                raise ToolFailed(f"no value for {{{key}}}")
            return values[key]

        return _TEMPLATE_REF.sub(fill, template)
    if isinstance(template, dict):
        return {k: fill_body(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill_body(v, values) for v in template]
    return template


def resolve_headers(
    name: str, endpoint: Endpoint, environ: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The headers to send (`${VAR}` resolved from `environ`) and the headers to show (values
    from the environment, or of secret-looking headers, masked). Raises ConfigError for a
    variable that is unset or empty: Warden refuses to start rather than call without it."""
    sent: dict[str, str] = {}
    shown: dict[str, str] = {}
    for header, template in endpoint.headers.items():

        def value(match: re.Match[str], header: str = header) -> str:
            var = match.group(1)
            text = environ.get(var, "")
            if not text:
                raise ConfigError(
                    f"endpoints.{name}.headers.{header}: the environment variable {var} is "
                    "not set (or empty); set it, or remove the header"
                )
            if _CONTROL.search(text):
                raise ConfigError(
                    f"endpoints.{name}.headers.{header}: {var} holds a line break or control "
                    "character, which a header value cannot carry"
                )
            return text

        sent[header] = ENV_REF.sub(value, template)
        if ENV_REF.search(template):
            shown[header] = template
        else:
            shown[header] = MASK if _SENSITIVE.search(header) else template
    return sent, shown


def _values(args: BaseModel) -> dict[str, str]:
    return {k: str(v) for k, v in args.model_dump().items()}


@dataclass(kw_only=True, frozen=True)
class HttpCall:
    """One request, exactly as it will be sent (`headers`) and shown (`shown_headers`)."""

    method: str
    url: str
    headers: dict[str, str]
    shown_headers: dict[str, str]
    body: Any = None
    idempotency_key: str | None = None

    def describe(self, key_shown: str) -> str:
        """The request as text: method and URL, headers (secrets masked), JSON body."""
        lines = [f"{self.method} {self.url}"]
        lines += [f"{k}: {v}" for k, v in self.shown_headers.items()]
        if self.body is not None and "content-type" not in map(str.lower, self.shown_headers):
            lines.append("Content-Type: application/json")
        if self.idempotency_key is not None:
            lines.append(f"Idempotency-Key: {key_shown}")
        if self.body is not None:
            lines += ["", json.dumps(self.body, indent=2, ensure_ascii=False)]
        return "\n".join(lines)


class _Deadline:
    """Every wait of one request bounded by one deadline. httpx's timeouts bound each read,
    not the whole answer: a server sending a header line every second keeps a 5-second call
    (and the executor's thread) for as long as it likes. This watches the connection's socket
    (handed over by httpcore's `trace` extension when the TCP connection is made) and shuts
    it down once the deadline passes, which ends any read in progress at once."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's trace hook: keep a duplicate of the new connection's socket (TLS wraps
        the original; shutting down the duplicate ends the connection either way)."""
        if event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        raw = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(raw, socket.socket):
            return
        dup = raw.dup()
        with self._lock:
            self._sock = dup
            late = self.expired
        if late:
            self._shut(dup)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self._sock
        if sock is not None:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed: the request ended on its own
            sock.shutdown(socket.SHUT_RDWR)


@functools.cache
def _tls() -> ssl.SSLContext:
    """Certificate checks as httpx makes them (certifi's roots, or the operator's CA bundle
    named by SSL_CERT_FILE / SSL_CERT_DIR), built once: loading the roots is not free."""
    return httpx.create_ssl_context()


def send(call: HttpCall, timeout_s: float, max_bytes: int) -> ToolResult:
    """Send one request: no redirects followed, the answer cut at `max_bytes`, every wait
    bounded by `timeout_s` and the body read stopped once `timeout_s` has passed.

    A status of 300 or more is a failure (3xx: the redirect is refused and named). A call that
    may have reached the server but got no answer (a timeout or a broken connection after
    sending) is `unknown` for methods other than GET, since the server may have acted."""
    changes = call.method != "GET"
    headers = httpx.Headers(call.headers)
    # An uncompressed answer: its size on the wire is the size read (no decompression bomb).
    headers.setdefault("Accept-Encoding", "identity")
    if call.idempotency_key is not None:
        headers["Idempotency-Key"] = call.idempotency_key
    deadline = time.monotonic() + timeout_s
    no_answer = ToolResult(
        ok=False,
        output=f"no answer within {timeout_s:g}s"
        + ("; the server may have acted on the request" if changes else ""),
        unknown=changes,
    )
    try:
        # trust_env=False: no proxy variables or .netrc can send the request elsewhere or
        # add credentials the policy did not declare (the TLS trust store still honours
        # SSL_CERT_FILE / SSL_CERT_DIR: see `_tls`).
        with (
            _Deadline(timeout_s) as watch,
            httpx.Client(
                timeout=httpx.Timeout(timeout_s),
                follow_redirects=False,
                trust_env=False,
                verify=_tls(),
            ) as client,
            client.stream(
                call.method,
                call.url,
                headers=headers,
                json=call.body,
                extensions={"trace": watch.trace},
            ) as answer,
        ):
            status, reason = answer.status_code, answer.reason_phrase
            location = answer.headers.get("location", "")
            data, cut = _read(answer, max_bytes, deadline, watch)
    except (httpx.ConnectTimeout, httpx.PoolTimeout):
        return ToolResult(ok=False, output=f"could not connect within {timeout_s:g}s")
    except (httpx.ConnectError, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        # Nothing was sent: the request failed before it left this machine (the deadline may
        # have cut a slow TLS handshake).
        if watch.expired:
            return ToolResult(ok=False, output=f"could not connect within {timeout_s:g}s")
        return ToolResult(ok=False, output=f"could not send the request: {exc}")
    except httpx.TimeoutException:
        return no_answer
    except httpx.TransportError as exc:
        if watch.expired:  # the deadline cut the connection: a timeout, not a broken server
            return no_answer
        return ToolResult(
            ok=False,
            output=f"the connection failed: {type(exc).__name__}: {exc}",
            unknown=changes,
        )
    text = data.decode("utf-8", errors="replace")
    if cut:
        text += f"\n… [{cut}]"
    head = f"HTTP {status} {reason}".strip()
    if 300 <= status < 400:
        return ToolResult(
            ok=False,
            output=f"{head}: a redirect to {location[:LOCATION_KEEP]!r}, not followed "
            "(Warden calls only the URLs its policy declares)",
            unknown=changes,
        )
    if status >= 400:
        excerpt = " ".join(text.split())[:EXCERPT]
        return ToolResult(ok=False, output=f"{head}: {excerpt}" if excerpt else head)
    return ToolResult(ok=True, output=f"{head}\n{text}")


def _read(
    answer: httpx.Response, max_bytes: int, deadline: float, watch: _Deadline
) -> tuple[bytes, str]:
    """The body up to `max_bytes`, and why it was cut short ("" if it was not). Once the
    status line has arrived, a slow or broken body no longer hides the status."""
    data = bytearray()
    try:
        for chunk in answer.iter_bytes():
            data += chunk
            if len(data) > max_bytes:
                del data[max_bytes:]
                return bytes(data), f"answer cut at {max_bytes} bytes"
            if time.monotonic() > deadline:
                return bytes(data), "answer cut off by the timeout"
    except httpx.TimeoutException:
        return bytes(data), "answer cut off by the timeout"
    except httpx.TransportError as exc:
        if watch.expired:
            return bytes(data), "answer cut off by the timeout"
        return bytes(data), f"answer cut off: {type(exc).__name__}"
    return bytes(data), ""


def _response_fields(endpoint: Endpoint) -> list[str]:
    """The `response.…` keys the undo uses, e.g. ["response.id"]."""
    if endpoint.undo is None:
        return []
    texts = [endpoint.undo.url, json.dumps(endpoint.undo.body or {})]
    return sorted({"response" + m for text in texts for m in RESPONSE_REF.findall(text)})


def _url_fields(endpoint: Endpoint) -> list[str]:
    """The `response.…` keys the undo's URL uses (held to `ANSWER_RULE`)."""
    if endpoint.undo is None:
        return []
    return sorted({"response" + m for m in RESPONSE_REF.findall(endpoint.undo.url)})


def _not_plain(values: Mapping[str, Any], keys: list[str]) -> str | None:
    """The first of `keys` whose value may not go into a URL (see `ANSWER_RULE`), or None."""
    for key in keys:
        value = str(values.get(key, ""))
        if not _PLAIN_ANSWER.match(value) or value in (".", ".."):
            return key
    return None


def _undo_data(
    fields: list[str], output: str, in_url: list[str] | None = None
) -> tuple[dict[str, str], str]:
    """The answer's fields the undo needs, and a note if any is missing or, for one that goes
    into the undo's URL (`in_url`), not a plain value (the action then succeeded, but its
    undo cannot be built)."""
    if not fields:
        return {}, ""
    try:
        answer: Any = json.loads(output.partition("\n")[2])
    except ValueError:
        answer = None
    found: dict[str, str] = {}
    for key in fields:
        value: Any = answer
        for step in key.split(".")[1:]:
            value = value.get(step) if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return {}, f"Undo will not work: the answer has no usable `{key}` field."
        found[key] = str(value)
    bad = _not_plain(found, in_url or [])
    if bad is not None:
        return {}, f"Undo will not work: the answer's `{bad}` is not {ANSWER_RULE}."
    return found, ""


def endpoint_tool(
    name: str, endpoint: Endpoint, environ: Mapping[str, str] | None = None
) -> Tool[Any]:
    """Build the tool for one `[endpoints.NAME]` entry. Header `${VAR}` values are read from
    `environ` (Warden's environment by default) now; raises ConfigError if one is missing."""
    model = args_model(name, endpoint)
    headers, shown = resolve_headers(name, endpoint, os.environ if environ is None else environ)
    timeout_s = endpoint.timeout.total_seconds()
    max_bytes = endpoint.max_response_bytes
    fields = _response_fields(endpoint)
    in_url = _url_fields(endpoint)

    def call(args: BaseModel, key: str) -> HttpCall:
        values = _values(args)
        body = None if endpoint.body is None else fill_body(endpoint.body, values)
        return HttpCall(
            method=endpoint.method,
            url=build_url(endpoint.url, values),
            headers=headers,
            shown_headers=shown,
            body=body,
            idempotency_key=None if endpoint.method == "GET" else key,
        )

    def run(args: BaseModel, ctx: ToolContext) -> ToolResult:
        result = send(call(args, ctx.action_id), timeout_s, max_bytes)
        if not result.ok:
            return result
        data, note = _undo_data(fields, result.output, in_url)
        return ToolResult(ok=True, output=result.output, undo_data=data, note=note)

    def undo(args: BaseModel, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        assert endpoint.undo is not None
        values = {**_values(args), **{k: str(v) for k, v in data.items()}}
        missing = [k for k in fields if k not in values]
        if missing:
            return ToolResult(
                ok=False, output=f"cannot undo: the first answer had no `{missing[0]}` field"
            )
        bad = _not_plain(values, in_url)
        if bad is not None:
            return ToolResult(
                ok=False, output=f"cannot undo: the first answer's `{bad}` is not {ANSWER_RULE}"
            )
        reverse = HttpCall(
            method=endpoint.undo.method,
            url=build_url(endpoint.undo.url, values),
            headers=headers,
            shown_headers=shown,
            body=None if endpoint.undo.body is None else fill_body(endpoint.undo.body, values),
            idempotency_key=f"{ctx.action_id}-undo",
        )
        return send(reverse, timeout_s, max_bytes)

    def dry_run(args: BaseModel, ctx: ToolContext) -> str:
        text = call(args, ctx.action_id).describe("(this action's id)")
        if endpoint.undo is not None:
            # Answer fields are not known yet: they stay as placeholders.
            url = build_url(endpoint.undo.url, _values(args), answer_later=True)
            text += f"\n\nUndo: {endpoint.undo.method} {url}"
        return text

    def raised(args: BaseModel) -> Risk:
        risk = Risk.LOW
        for p, spec in endpoint.params.items():
            bump = spec.risk_if.get(str(getattr(args, p)))
            if bump is not None:
                risk = risk.at_least(bump)
        return risk

    has_raise = any(spec.risk_if for spec in endpoint.params.values())
    return Tool(
        name=name,
        description=endpoint.description,
        args=model,
        run=run,
        risk=endpoint.risk,
        risk_from_args=raised if has_raise else None,
        dry_run=dry_run,
        undo=undo if endpoint.undo is not None else None,
        read_only=endpoint.read_only,
        timeout_s=timeout_s,
        source="endpoint",
    )
