"""`[endpoints.NAME]`: HTTP calls the policy declares, and the checks on their URL and body
templates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from bot.policy_runbooks import Param
from bot.policy_types import PLACEHOLDER, SECRET_ENV, Duration, Risk, StrictModel, key_error

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
# `${VAR}`: a value from Warden's environment, allowed in an endpoint's headers only.
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# `{response.id}`, `{response.data.key}`: a field of the JSON answer, in an endpoint's undo.
RESPONSE_REF = re.compile(r"\{response((?:\.[A-Za-z0-9_-]+)+)\}")
# Plain http only to this machine (a local service, or a test server); anything else https.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers Warden sets itself (or the HTTP library must): a policy may not set them.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "idempotency-key"}
)
_ANY_REF = re.compile(r"\{(?:response(?:\.[A-Za-z0-9_-]+)+|[A-Za-z_][A-Za-z0-9_]*)\}")


def check_url_template(url: str, params: Mapping[str, Param], *, undo: bool) -> None:
    """Check an endpoint URL template; raise ValueError saying what is wrong.

    The scheme, host and port are written out (https, or http to this machine only); `{param}`
    placeholders may stand only in the path and the query, and only for declared parameters
    (`{response.FIELD}` too, in an undo). No credentials, fragment or `.`/`..` segments."""
    if ENV_REF.search(url):
        raise ValueError("${VAR} values are only allowed in headers, never in the URL")
    if re.search(r"[\x00-\x20\x7f]", url):
        raise ValueError("a URL may not contain spaces or control characters")
    for name in PLACEHOLDER.findall(url):
        if name not in params:
            raise ValueError(f"uses {{{name}}} but params.{name} is not declared")
    if RESPONSE_REF.search(url) and not undo:
        raise ValueError("only an undo may use {response.…} (fields of the first answer)")
    if "#" in url:
        raise ValueError("a URL may not have a fragment (#)")
    _scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError('not an absolute URL (write it like "https://host/path")')
    authority = re.split(r"[/?]", rest, maxsplit=1)[0]
    if "{" in authority or "}" in authority:
        raise ValueError(
            "the host and port must be written out; placeholders may stand only in the path "
            "and the query"
        )
    parts = urlsplit(_ANY_REF.sub("x", url))
    if parts.scheme.lower() not in ("https", "http"):
        raise ValueError(f"the scheme must be https, not {parts.scheme!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials do not belong in a URL; send them in a header with ${VAR}")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("the URL has no host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("the URL has a bad port") from None
    if parts.scheme.lower() == "http" and host not in LOOPBACK_HOSTS:
        raise ValueError(
            f"plain http to {host} would send requests (and their credentials) unencrypted; "
            "use https (http is allowed only to 127.0.0.1 or localhost)"
        )
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        raise ValueError("a URL path may not contain '.' or '..' segments")


def check_body_template(value: Any, params: Mapping[str, Param], *, undo: bool) -> None:
    """Check a JSON body template: JSON values only; `{param}` only inside string values."""
    if isinstance(value, str):
        if ENV_REF.search(value):
            raise ValueError("${VAR} values are only allowed in headers, never in the body")
        for name in PLACEHOLDER.findall(value):
            if name not in params:
                raise ValueError(f"uses {{{name}}} but params.{name} is not declared")
        if RESPONSE_REF.search(value) and not undo:
            raise ValueError("only an undo may use {response.…} (fields of the first answer)")
    elif isinstance(value, dict):
        for key, item in value.items():
            if _ANY_REF.search(key):
                raise ValueError(f"key {key!r}: placeholders may stand only in values")
            check_body_template(item, params, undo=undo)
    elif isinstance(value, list):
        for item in value:
            check_body_template(item, params, undo=undo)
    elif value is not None and not isinstance(value, bool | int | float):
        raise ValueError(f"{value!r} is not a JSON value (strings, numbers, true/false, lists)")


class EndpointUndo(StrictModel):
    """The request that reverses an endpoint call; may use `{response.FIELD}` of its answer."""

    method: Literal["POST", "PUT", "PATCH", "DELETE"]
    url: str
    body: dict[str, Any] | None = None


class Endpoint(StrictModel):
    """`[endpoints.NAME]`: an HTTP call the policy declares, the bridge to real systems
    without a shell. Only the declared `params` vary, validated before substitution."""

    description: str
    method: HttpMethod
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    body: dict[str, Any] | None = None
    risk: Risk = Risk.MEDIUM
    read_only: bool = False
    timeout: Duration = timedelta(seconds=10)
    max_response_bytes: int = Field(default=65_536, ge=1, le=10 * 1024 * 1024)
    undo: EndpointUndo | None = None
    params: dict[str, Param] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not HEADER_NAME.match(name):
                raise key_error(name, "not a valid header name")
            if name.lower() in RESERVED_HEADERS:
                raise key_error(name, "Warden sets this header itself")
            if re.search(r"[\r\n\x00]", text):
                raise key_error(name, "a header value must be one line")
            for var in ENV_REF.findall(text):
                if var in SECRET_ENV:
                    raise key_error(
                        name,
                        f"{var} is one of Warden's own credentials and is never sent to an "
                        "endpoint; give the endpoint its own credential",
                    )
            if PLACEHOLDER.search(ENV_REF.sub("", text)):
                raise key_error(
                    name, "headers may use ${VAR} from the environment, not {param} values"
                )
        return value

    @model_validator(mode="after")
    def _templates(self) -> Endpoint:
        checks: list[tuple[str, Any, bool]] = [("url", self.url, False)]
        if self.body is not None:
            checks.append(("body", self.body, False))
        if self.undo is not None:
            checks.append(("undo.url", self.undo.url, True))
            if self.undo.body is not None:
                checks.append(("undo.body", self.undo.body, True))
        for key, template, undo in checks:
            try:
                if key.endswith("url"):
                    check_url_template(template, self.params, undo=undo)
                else:
                    check_body_template(template, self.params, undo=undo)
            except ValueError as exc:
                raise key_error(key, str(exc)) from None
        if self.method == "GET" and self.body is not None:
            raise key_error("body", "a GET request has no body")
        if self.read_only and self.method != "GET":
            raise key_error("read_only", "a read_only endpoint is a lookup: its method is GET")
        if self.read_only and self.undo is not None:
            raise key_error("undo", "a read_only endpoint changes nothing, so has nothing to undo")
        if self.timeout > timedelta(minutes=5):
            raise key_error("timeout", "at most 5m: nobody waits longer for an HTTP answer")
        return self
