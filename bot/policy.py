"""The policy file `warden.toml`: parsed with tomllib, validated by pydantic, fail closed.

Every key is validated and unknown keys are errors. `load_policy` turns any problem into a
`ConfigError` whose message names the offending key. `Policy.version` is a hash of the
normalised policy; it is recorded with every gate decision and every approval binds to it.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.errors import ConfigError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
SLACK_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
SLACK_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
ONCALL_SOURCE = re.compile(r"^oncall:([a-z][a-z0-9_-]{0,47})$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Warden's own credentials: never handed to a runbook, even when asked for by name.
SECRET_ENV = frozenset(
    {
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "SLACK_CLIENT_SECRET",
        "ANTHROPIC_API_KEY",
        "DATABASE_URL",
    }
)


def parse_duration(value: object) -> timedelta:
    """Parse "24h", "90s", "1h30m", "500ms" (or a number of seconds) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("a duration must be positive")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError('a duration is a string such as "30s", "15m", "24h" or "1h30m"')
    text = value.strip().lower()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f'bad duration {value!r}: use forms like "30s", "15m", "24h", "1h30m"')
    if total <= 0:
        raise ValueError(f"bad duration {value!r}: must be positive")
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """The inverse of `parse_duration`, used to normalise the policy for hashing."""
    seconds = value.total_seconds()
    if seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    return f"{int(seconds)}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


class Risk(StrEnum):
    """Risk tiers, ordered: a tool may raise its tier from its arguments, never lower it."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Risk).index(self)

    def at_least(self, other: Risk) -> Risk:
        return self if self.rank >= other.rank else other


class Autonomy(StrEnum):
    """How far a tool may go by itself: a card only, a card to approve, or run at once (low)."""

    SUGGEST = "suggest"
    APPROVE = "approve"
    AUTO = "auto"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def key_error(key: str, message: str) -> PydanticCustomError:
    """A validation error about `key` below the model being validated (or, from `Policy`,
    the full key): `format_validation_error` appends it to the location, so the message
    names the exact key, e.g. `runbooks.scale.params.env.risk_if.production`."""
    return PydanticCustomError("policy_key", "{key}: {message}", {"key": key, "message": message})


def _check_user_ids(ids: list[str], key: str) -> list[str]:
    for user in ids:
        if not SLACK_USER_ID.match(user):
            raise ValueError(f"{key}: {user!r} is not a Slack user id (like U012ABCDEF)")
    return ids


def _check_approver_sources(sources: list[str], key: str) -> list[str]:
    """Approvers are people, named as user ids, Slack user groups (`S…`, their members) or
    on-call rotations (`oncall:NAME`, whoever is on call at the moment of a click)."""
    for source in sources:
        if not (
            SLACK_USER_ID.match(source)
            or SLACK_GROUP_ID.match(source)
            or ONCALL_SOURCE.match(source)
        ):
            raise ValueError(
                f"{key}: {source!r} is not a Slack user id (U012ABCDEF), a user group id "
                "(S012ABCDEF) or an on-call rotation (oncall:NAME)"
            )
    return sources


class ChannelAccess(_Strict):
    """`[access.channels.C…]`: who approves what is asked in that channel (a tool's own
    `approvers` still win)."""

    approvers: list[str]

    @field_validator("approvers")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        return _check_approver_sources(value, "approvers")


class Access(_Strict):
    admins: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    admin_channel: str
    channels: dict[str, ChannelAccess] = Field(default_factory=dict)

    @field_validator("admins")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        return _check_user_ids(value, "user list")

    @field_validator("approvers")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        return _check_approver_sources(value, "approvers")

    @field_validator("channels")
    @classmethod
    def _channel_ids(cls, value: dict[str, ChannelAccess]) -> dict[str, ChannelAccess]:
        for channel in value:
            if not SLACK_CHANNEL_ID.match(channel):
                raise ValueError(f"{channel!r} is not a Slack channel id (like C0123ABCD)")
        return value

    @field_validator("admin_channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not SLACK_CHANNEL_ID.match(value):
            raise ValueError(f"{value!r} is not a Slack channel id (like C0123ABCD)")
        return value


def _duration_or_off(value: object) -> timedelta | None:
    """A duration, or `"off"` (also `false`, `"0"`, `0`): the feature is turned off."""
    if value is None or value is False or value in ("off", "0", 0):
        return None
    return parse_duration(value)


def _span(value: timedelta) -> str:
    """A duration as people write it in the policy: "90s", "30m", "2h", "7d"."""
    seconds = int(value.total_seconds())
    if seconds > 86400 and seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


OptionalDuration = Annotated[
    timedelta | None,
    BeforeValidator(_duration_or_off),
    PlainSerializer(lambda v: "off" if v is None else format_duration(v), return_type=str),
]


class GatePolicy(_Strict):
    min_confidence: float = Field(default=0.8, ge=0.0, le=1.0)
    clarify_below: float = Field(default=0.5, ge=0.0, le=1.0)
    approval_ttl: Duration = timedelta(hours=24)
    undo_window: Duration = timedelta(hours=1)
    # A card still waiting this long after it was posted: its approvers get a DM with its
    # buttons (once) …
    remind_after: OptionalDuration = timedelta(hours=2)
    # … and this long after: it is escalated to the admin channel (once).
    escalate_after: OptionalDuration = timedelta(hours=8)

    @model_validator(mode="after")
    def _order(self) -> GatePolicy:
        if self.clarify_below > self.min_confidence:
            raise ValueError("clarify_below must not be greater than min_confidence")
        # Defaults that outlive a short approval_ttl simply never fire (the card expires
        # first); a time set on purpose must make sense.
        ttl = _span(self.approval_ttl)
        chosen = self.model_fields_set
        for key in ("remind_after", "escalate_after"):
            value: timedelta | None = getattr(self, key)
            if key in chosen and value is not None and value >= self.approval_ttl:
                raise key_error(
                    key,
                    f"{_span(value)} is not shorter than gate.approval_ttl ({ttl}): "
                    "the card would expire first",
                )
        remind, escalate = self.remind_after, self.escalate_after
        if (
            chosen & {"remind_after", "escalate_after"}
            and remind is not None
            and escalate is not None
            and escalate <= remind
            and escalate < self.approval_ttl
        ):
            raise key_error(
                "escalate_after",
                f"{_span(escalate)} must be later than gate.remind_after "
                f"({_span(remind)}): approvers are reminded before admins are told",
            )
        return self


class ToolOverride(_Strict):
    """`[tools.NAME]`: one tool's autonomy, approvers, confidence floors and reach."""

    autonomy: Autonomy = Autonomy.APPROVE
    approvers: list[str] | None = None
    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    clarify_below: float | None = Field(default=None, ge=0.0, le=1.0)
    channels: list[str] | None = None  # for tools that post: where else they may post
    max_per_request: int = Field(default=3, ge=1, le=10)

    @field_validator("approvers")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_approver_sources(value, "approvers")

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str] | None) -> list[str] | None:
        for channel in value or []:
            if not SLACK_CHANNEL_ID.match(channel):
                raise ValueError(f"{channel!r} is not a Slack channel id (like C0123ABCD)")
        return value

    @model_validator(mode="after")
    def _floors(self) -> ToolOverride:
        if (
            self.min_confidence is not None
            and self.clarify_below is not None
            and self.clarify_below > self.min_confidence
        ):
            raise ValueError("clarify_below must not be greater than min_confidence")
        return self


class Param(_Strict):
    """A runbook or endpoint parameter: validated by `pattern` (full match) or `choices`
    before use."""

    pattern: str | None = None
    choices: list[str] | None = None
    description: str = ""
    risk_if: dict[str, Risk] = Field(default_factory=dict)

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression {value!r}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _one_rule(self) -> Param:
        if (self.pattern is None) == (self.choices is None):
            raise ValueError("give exactly one of `pattern` or `choices`")
        if self.choices is not None and not self.choices:
            raise ValueError("`choices` must not be empty")
        for value in self.risk_if:
            # A key no argument can ever equal would silently leave that value at the base
            # tier (fail open), so it is an error, checked exactly as arguments are.
            where = f"risk_if.{value}"
            if self.choices is not None:
                if value not in self.choices:
                    raise key_error(
                        where,
                        f"{value!r} is not one of the choices ({', '.join(self.choices)})",
                    )
            elif value.startswith("-") or "\n" in value or "\x00" in value:
                raise key_error(where, f"{value!r} can never be a valid argument")
            elif self.pattern is not None and not re.fullmatch(self.pattern, value):
                raise key_error(
                    where, f"{value!r} does not fully match the pattern {self.pattern!r}"
                )
        return self


Argv = Annotated[list[str], Field(min_length=1)]


class Runbook(_Strict):
    """An operator-defined command: the bridge from Warden to real infrastructure."""

    description: str
    command: Argv
    undo: Argv | None = None
    dry_run: Argv | None = None
    risk: Risk = Risk.MEDIUM
    timeout: Duration = timedelta(seconds=60)
    read_only: bool = False
    params: dict[str, Param] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    pass_env: list[str] = Field(default_factory=list)
    # An outcome check run `verify_after` the command succeeded (service healthy, queue
    # drained): exit 0 means the outcome is good; anything else is a failed outcome.
    verify: Argv | None = None
    verify_after: Duration = timedelta(seconds=30)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not ENV_NAME.match(name):
                raise key_error(name, "not an environment variable name (letters, digits, _)")
            if name.upper().startswith("WARDEN_"):
                raise key_error(name, "names starting WARDEN_ are set by Warden itself")
            if "\x00" in text:
                raise key_error(name, "a value may not contain a NUL character")
        return value

    @field_validator("pass_env")
    @classmethod
    def _pass_env(cls, value: list[str]) -> list[str]:
        for index, name in enumerate(value):
            if not ENV_NAME.match(name):
                raise key_error(f"[{index}]", f"{name!r} is not an environment variable name")
            if name in SECRET_ENV:
                raise key_error(
                    f"[{index}]",
                    f"{name} is one of Warden's own credentials and is never passed to a "
                    "runbook; give the runbook its own credential instead",
                )
            if name.upper().startswith("WARDEN_"):
                raise key_error(f"[{index}]", f"{name}: names starting WARDEN_ are set by Warden")
        return value

    @model_validator(mode="after")
    def _placeholders(self) -> Runbook:
        for name in self.pass_env:
            if name in self.env:
                raise key_error(f"env.{name}", "also listed in pass_env; keep one of the two")
        for key, argv in (
            ("command", self.command),
            ("undo", self.undo),
            ("dry_run", self.dry_run),
            ("verify", self.verify),
        ):
            for part in argv or []:
                for name in PLACEHOLDER.findall(part):
                    if name not in self.params:
                        raise ValueError(f"{key} uses {{{name}}} but params.{name} is not declared")
        if self.read_only and self.undo is not None:
            raise ValueError("a read_only runbook has nothing to undo")
        if self.read_only and self.verify is not None:
            raise ValueError("a read_only runbook changes nothing, so it has no outcome to verify")
        if self.verify_after > timedelta(hours=24):
            raise key_error("verify_after", "at most 24h: an outcome checked later says little")
        return self


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


class EndpointUndo(_Strict):
    """The request that reverses an endpoint call; may use `{response.FIELD}` of its answer."""

    method: Literal["POST", "PUT", "PATCH", "DELETE"]
    url: str
    body: dict[str, Any] | None = None


class Endpoint(_Strict):
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


class AliasTarget(_Strict):
    runbook: str | None = None
    tool: str | None = None
    args: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_target(self) -> AliasTarget:
        if (self.runbook is None) == (self.tool is None):
            raise ValueError("give exactly one of `runbook` or `tool`")
        return self

    @property
    def tool_name(self) -> str:
        return self.runbook or self.tool or ""


class AgentLimits(_Strict):
    max_steps: int = Field(default=8, ge=1, le=50)
    max_tokens: int = Field(default=60_000, ge=1000)
    max_seconds: Duration = timedelta(seconds=90)
    max_cost_usd: float = Field(default=0.50, gt=0)
    call_timeout: Duration = timedelta(seconds=45)
    max_retries: int = Field(default=3, ge=0, le=10)
    link_domains: list[str] = Field(default_factory=list)
    instructions: str = ""
    do_not: list[str] = Field(default_factory=list)


class Workers(_Strict):
    planners: int = Field(default=16, ge=1, le=256)
    executors: int = Field(default=8, ge=1, le=256)
    per_requester: int = Field(default=10, ge=1, le=1000)  # requests in flight per person


_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR", "NL", "ES", "IT")


class RedactionPolicy(_Strict):
    """`[redaction]`: which kinds of personal data `bot/pii.py` replaces with placeholders
    before text reaches the model, the memory store or the audit log. Secrets are always
    redacted (`bot/redact.py`) and cannot be switched off here.

    `allow` lists values never redacted: an email domain written "@example.com" (it and its
    subdomains), an IP network in CIDR form ("10.0.0.0/8"), or an exact value (compared
    after normalisation, so "+1 415 555 0100" also allows "(415) 555-0100").
    `phone_regions` are the regions whose national formats are tried, in order; numbers
    written with "+" are always recognised.
    """

    email: bool = True
    phone: bool = True
    card: bool = True
    iban: bool = True
    ip: bool = True
    national_id: bool = True
    # Off by default: street addresses miss the accuracy targets (bench/README.md).
    address: bool = False
    allow: list[str] = Field(default_factory=list)
    phone_regions: list[str] = Field(default_factory=lambda: list(DEFAULT_PHONE_REGIONS))

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: list[str]) -> list[str]:
        import ipaddress

        for index, entry in enumerate(value):
            text = entry.strip()
            if not text:
                raise key_error(f"[{index}]", "an allowed value must not be empty")
            if text.startswith("@"):
                if not _DOMAIN.match(text[1:].lower()):
                    raise key_error(
                        f"[{index}]", f'{entry!r} is not an email domain (like "@example.com")'
                    )
            elif "/" in text and re.fullmatch(r"[0-9A-Fa-f:.]+/\d{1,3}", text):
                try:
                    ipaddress.ip_network(text)
                except ValueError as exc:
                    raise key_error(
                        f"[{index}]", f"{entry!r} is not an IP network in CIDR form: {exc}"
                    ) from None
        return value

    @field_validator("phone_regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        from phonenumbers import SUPPORTED_REGIONS

        regions: list[str] = []
        for index, region in enumerate(value):
            code = region.strip().upper()
            if code not in SUPPORTED_REGIONS:
                raise key_error(
                    f"[{index}]", f'{region!r} is not a two-letter region code (like "GB")'
                )
            if code not in regions:
                regions.append(code)
        return regions


class MemoryExpiry(_Strict):
    """`[memory.expiry]`: how long a remembered fact of each type is kept."""

    profile: Duration = timedelta(days=365)
    preference: Duration = timedelta(days=180)
    decision: Duration = timedelta(days=90)
    task: Duration = timedelta(days=30)

    def of(self, fact_type: str) -> timedelta:
        """The expiry of `fact_type` ("profile", "preference", "decision" or "task")."""
        if fact_type not in MemoryExpiry.model_fields:
            raise KeyError(fact_type)
        value: timedelta = getattr(self, fact_type)
        return value


class MemoryPolicy(_Strict):
    """`[memory]`: typed facts remembered between requests (PRODUCT.md principle 6)."""

    enabled: bool = True
    max_facts: int = Field(default=8, ge=1, le=100)  # the top facts given to the model
    budget_chars: int = Field(default=2000, ge=1, le=100_000)  # memory's share of the prompt
    expiry: MemoryExpiry = MemoryExpiry()


class _WindowAlert(_Strict):
    """An alert on a rate over a sliding window: it fires when its threshold is crossed with
    at least `min_volume` events in the window, then stays quiet for `cooldown`."""

    enabled: bool = True
    window: Duration = timedelta(hours=1)
    min_volume: int = Field(default=10, ge=1)
    cooldown: Duration = timedelta(hours=1)


class ConfidenceAlert(_WindowAlert):
    """The planner's median confidence over the window fell `below` this."""

    window: Duration = timedelta(hours=24)
    min_volume: int = Field(default=20, ge=1)
    cooldown: Duration = timedelta(hours=6)
    below: float = Field(default=0.7, ge=0.0, le=1.0)


class OverrideAlert(_WindowAlert):
    """The share of decided cards that people edited or rejected rose `above` this."""

    above: float = Field(default=0.4, ge=0.0, le=1.0)


class ErrorRateAlert(_WindowAlert):
    """One tool's share of runs that failed (or failed their outcome check) rose `above`."""

    min_volume: int = Field(default=5, ge=1)
    above: float = Field(default=0.25, ge=0.0, le=1.0)


class CostAlert(_Strict):
    """Fires when the model's cost since midnight UTC passes `above_usd`."""

    enabled: bool = True
    above_usd: float = Field(default=25.0, gt=0)
    cooldown: Duration = timedelta(hours=24)


class AlertsPolicy(_Strict):
    """`[alerts]`: checked every minute on one replica, posted to the admin channel and
    audited. A failed outcome check (`verify`) always alerts at once."""

    confidence_drop: ConfidenceAlert = ConfidenceAlert()
    override_spike: OverrideAlert = OverrideAlert()
    tool_error_rate: ErrorRateAlert = ErrorRateAlert()
    daily_cost: CostAlert = CostAlert()


class GovernorPolicy(_Strict):
    """`[governor]`: a tool on `auto` whose failure, override or 👎 rate over `window` crosses
    its limit (with at least `min_volume` outcomes) is demoted to `approve` at once."""

    enabled: bool = True
    window: Duration = timedelta(hours=24)
    min_volume: int = Field(default=5, ge=1)
    max_failure_rate: float = Field(default=0.3, ge=0.0, le=1.0)
    max_override_rate: float = Field(default=0.5, ge=0.0, le=1.0)
    max_downvote_rate: float = Field(default=0.5, ge=0.0, le=1.0)


class UsagePolicy(_Strict):
    """`[usage]`: a tool called far above its own usual rate needs approval even if `auto`.

    Usual is the tool's average per `window` over the `baseline` before it (per requester and
    overall); unusual is more than `factor` times that and more than `min_calls`."""

    enabled: bool = True
    window: Duration = timedelta(hours=1)
    baseline: Duration = timedelta(days=7)
    factor: float = Field(default=5.0, ge=1.0)
    min_calls: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _spans(self) -> UsagePolicy:
        if self.baseline <= self.window:
            raise key_error("baseline", "must be longer than `window`")
        return self


class IncidentsPolicy(_Strict):
    """`[incidents]`: while an incident is open and no status update was posted for
    `status_update_every`, Warden reminds its lead in the incident channel (once across
    replicas, then again each `status_update_every` without one)."""

    status_update_every: Duration = timedelta(minutes=30)

    @field_validator("status_update_every")
    @classmethod
    def _not_a_flood(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m: a reminder more often is noise")
        return value


# Tools whose default differs from `approve`: a `remember` runs at once (its author sees it on
# the card and can forget it), unless the taint rule asks for the author's click.
DEFAULT_OVERRIDES: dict[str, ToolOverride] = {"remember": ToolOverride(autonomy=Autonomy.AUTO)}


class Rotation(_Strict):
    """`[oncall.NAME]`: an on-call rotation — `people` take turns of `every`, the first from
    `start` (an aware TOML datetime: the first handover). `oncall:NAME` names whoever is on
    call as an approver; the `who_is_on_call` lookup reads it too."""

    description: str = Field(default="", max_length=200)
    people: list[str] = Field(min_length=1)
    start: datetime
    every: Duration = timedelta(days=7)

    @field_validator("people")
    @classmethod
    def _people(cls, value: list[str]) -> list[str]:
        return _check_user_ids(value, "people")

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("write the first handover with an offset (2026-01-05T09:00:00+01:00)")
        return value

    @field_validator("every")
    @classmethod
    def _turn(cls, value: timedelta) -> timedelta:
        if value < timedelta(hours=1):
            raise ValueError("a turn on call lasts at least 1h")
        return value

    def turn(self, at: datetime) -> int:
        """The number of the turn in force at `at` (negative before `start`)."""
        aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        return (aware - self.start) // self.every

    def on_call(self, at: datetime) -> str:
        return self.people[self.turn(at) % len(self.people)]

    def next_handover(self, at: datetime) -> datetime:
        return self.start + self.every * (self.turn(at) + 1)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKLY = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)\s+([01]\d|2[0-3]):([0-5]\d)$")


class FreezeWindow(_Strict):
    """`[[freeze]]`: a change freeze. While one is in force, calls of its `tiers` or above
    also need an admin's approval (and none runs unattended). Weekly (`start = "fri 16:00"`,
    `end = "mon 08:00"` in `timezone`) or dated (`start` and `end` TOML datetimes with an
    offset, e.g. a holiday freeze)."""

    name: str = Field(min_length=1, max_length=64)
    start: str | datetime
    end: str | datetime
    timezone: str = "UTC"
    tiers: Risk = Risk.HIGH
    reason: str = Field(default="", max_length=300)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'{value!r} is not a time zone (like "Europe/Paris")') from None
        return value

    @model_validator(mode="after")
    def _shape(self) -> FreezeWindow:
        weekly = [isinstance(v, str) for v in (self.start, self.end)]
        if all(weekly):
            for key, value in (("start", self.start), ("end", self.end)):
                if not _WEEKLY.match(str(value).strip().lower()):
                    raise key_error(key, f'{value!r}: write a weekday and a time, like "fri 16:00"')
            if self.minute_of_week(str(self.start)) == self.minute_of_week(str(self.end)):
                raise key_error("end", "a weekly freeze must end at another time than it starts")
            return self
        if any(weekly):
            raise key_error("end", "start and end are both weekly times or both datetimes")
        assert isinstance(self.start, datetime) and isinstance(self.end, datetime)
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise key_error("start", "dated freezes need an offset (2026-12-24T00:00:00+01:00)")
        if self.end <= self.start:
            raise key_error("end", "a freeze must end after it starts")
        return self

    @staticmethod
    def minute_of_week(text: str) -> int:
        found = _WEEKLY.match(text.strip().lower())
        assert found is not None
        day, hour, minute = found.groups()
        return WEEKDAYS.index(day) * 1440 + int(hour) * 60 + int(minute)

    def covers(self, at: datetime) -> bool:
        """Whether the freeze is in force at `at` (an aware datetime)."""
        if isinstance(self.start, datetime) and isinstance(self.end, datetime):
            return self.start <= at < self.end
        from zoneinfo import ZoneInfo

        local = at.astimezone(ZoneInfo(self.timezone))
        now = local.weekday() * 1440 + local.hour * 60 + local.minute
        start, end = self.minute_of_week(str(self.start)), self.minute_of_week(str(self.end))
        return start <= now < end if start < end else now >= start or now < end

    def until_text(self) -> str:
        if isinstance(self.end, datetime):
            return self.end.strftime("%Y-%m-%d %H:%M %z")
        return f"{str(self.end).strip().capitalize()} {self.timezone}"


class Policy(_Strict):
    """The whole validated policy."""

    access: Access
    gate: GatePolicy = GatePolicy()
    tools: dict[str, ToolOverride] = Field(default_factory=dict)
    runbooks: dict[str, Runbook] = Field(default_factory=dict)
    endpoints: dict[str, Endpoint] = Field(default_factory=dict)
    aliases: dict[str, AliasTarget] = Field(default_factory=dict)
    agent: AgentLimits = AgentLimits()
    workers: Workers = Workers()
    redaction: RedactionPolicy = RedactionPolicy()
    memory: MemoryPolicy = MemoryPolicy()
    alerts: AlertsPolicy = AlertsPolicy()
    governor: GovernorPolicy = GovernorPolicy()
    usage: UsagePolicy = UsagePolicy()
    freeze: list[FreezeWindow] = Field(default_factory=list)
    oncall: dict[str, Rotation] = Field(default_factory=dict)
    incidents: IncidentsPolicy = IncidentsPolicy()

    @model_validator(mode="after")
    def _rotations_exist(self) -> Policy:
        places = [("access.approvers", self.access.approvers)]
        places += [
            (f"access.channels.{c}.approvers", a.approvers) for c, a in self.access.channels.items()
        ]
        places += [(f"tools.{t}.approvers", o.approvers or []) for t, o in self.tools.items()]
        for key, sources in places:
            for source in sources:
                found = ONCALL_SOURCE.match(source)
                if found and found.group(1) not in self.oncall:
                    raise key_error(
                        key,
                        f"{source!r}: no [oncall.{found.group(1)}] rotation "
                        f"(defined: {', '.join(sorted(self.oncall)) or 'none'})",
                    )
        return self

    @field_validator("runbooks", "endpoints")
    @classmethod
    def _names(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = "runbook" if info.field_name == "runbooks" else "endpoint"
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,47}", name):
                raise ValueError(f"{kind} name {name!r}: use lower_snake_case, at most 48 chars")
            if name.startswith("warden_"):
                raise ValueError(f"{kind} name {name!r}: names starting warden_ are reserved")
        return value

    @model_validator(mode="after")
    def _one_name_one_tool(self) -> Policy:
        for name in self.endpoints:
            if name in self.runbooks:
                raise key_error(
                    f"endpoints.{name}", "a runbook has this name; every tool needs its own"
                )
        return self

    @model_validator(mode="after")
    def _aliases(self) -> Policy:
        for pattern, target in self.aliases.items():
            if target.runbook is not None:
                runbook = self.runbooks.get(target.runbook)
                if runbook is None:
                    raise ValueError(
                        f"aliases.{pattern!r}: unknown runbook {target.runbook!r} "
                        f"(defined: {', '.join(sorted(self.runbooks)) or 'none'})"
                    )
                for name in PLACEHOLDER.findall(pattern):
                    if name not in runbook.params:
                        raise ValueError(
                            f"aliases.{pattern!r}: {{{name}}} is not a parameter of "
                            f"runbook {target.runbook!r}"
                        )
                for name in target.args:
                    if name not in runbook.params:
                        raise key_error(
                            f"aliases.{pattern!r}.args.{name}",
                            f"not a parameter of runbook {target.runbook!r} "
                            f"(its parameters: {', '.join(sorted(runbook.params)) or 'none'})",
                        )
        return self

    @cached_property
    def version(self) -> str:
        """A short hash of the normalised policy; any change to any rule changes it."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return "pv-" + hashlib.sha256(blob.encode()).hexdigest()[:12]

    def override(self, tool: str) -> ToolOverride:
        return self.tools.get(tool) or DEFAULT_OVERRIDES.get(tool) or ToolOverride()

    def approvers_for(self, tool: str, channel: str = "") -> list[str]:
        """The approver sources for a call of `tool` asked in `channel`: the tool's own, else
        the channel's, else `access.approvers` (people, groups and rotations: the gate turns
        them into people)."""
        own = self.override(tool).approvers
        if own is not None:
            return list(own)
        here = self.access.channels.get(channel)
        return list(here.approvers) if here is not None else list(self.access.approvers)

    def max_risk(self, tool: str, declared: Risk) -> Risk:
        """The highest tier a call of `tool` can reach: its declared tier, raised by any
        runbook's or endpoint's `risk_if` (a built-in tool's `risk_from_args` is code, not
        policy)."""
        risk = declared
        for declared_here in (self.runbooks.get(tool), self.endpoints.get(tool)):
            if declared_here is not None:
                risk = risk.at_least(declared_here.risk)
                for param in declared_here.params.values():
                    for bump in param.risk_if.values():
                        risk = risk.at_least(bump)
        return risk

    def check_tools(self, tools: Mapping[str, ToolShape]) -> None:
        """Cross-check `[tools.*]`, approvers and aliases against the registry; raise
        ConfigError naming the key.

        `tools` describes each registered tool: its declared tier, whether it is low risk
        whatever its arguments (only those may have autonomy "auto") and its argument names.
        """
        names = set(tools)
        for tool in self.tools:
            if tool not in names:
                raise ConfigError(f"tools.{tool}: no such tool (known: {', '.join(sorted(names))})")
        for pattern, target in self.aliases.items():
            if target.tool is None:
                continue
            shape = tools.get(target.tool)
            if shape is None:
                raise ConfigError(f"aliases.{pattern!r}: unknown tool {target.tool!r}")
            known = ", ".join(sorted(shape.fields)) or "none"
            for name in PLACEHOLDER.findall(pattern):
                if name not in shape.fields:
                    raise ConfigError(
                        f"aliases.{pattern!r}: {{{name}}} is not an argument of tool "
                        f"{target.tool!r} (its arguments: {known})"
                    )
            for name in target.args:
                if name not in shape.fields:
                    raise ConfigError(
                        f"aliases.{pattern!r}.args.{name}: not an argument of tool "
                        f"{target.tool!r} (its arguments: {known})"
                    )
        for tool in sorted(names):
            shape = tools[tool]
            autonomy = self.override(tool).autonomy
            if autonomy is Autonomy.AUTO and not shape.always_low:
                raise ConfigError(
                    f'tools.{tool}.autonomy: "auto" is only allowed for low-risk tools'
                )
            if autonomy is Autonomy.SUGGEST:
                continue
            own = self.override(tool).approvers is not None
            where = f"tools.{tool}.approvers" if own else "access.approvers"
            approvers = set(self.approvers_for(tool))
            if not approvers:
                raise ConfigError(
                    f"{where}: tool {tool!r} needs approval but nobody may approve it; "
                    'add Slack user ids, or set its autonomy to "suggest"'
                )
            # A user group's size is only known at run time (the gate counts its members
            # then and refuses a call too few may approve); a rotation is one person at a time.
            grouped = any(SLACK_GROUP_ID.match(a) for a in approvers)
            if (
                self.max_risk(tool, shape.risk) is Risk.CRITICAL
                and not grouped
                and len(approvers) < 2
            ):
                raise ConfigError(
                    f"{where}: tool {tool!r} can reach the critical tier, which needs two "
                    f"approvers other than the requester, but only {len(approvers)} is "
                    'configured; add Slack user ids, or set its autonomy to "suggest"'
                )


@dataclass(frozen=True)
class ToolShape:
    """What the policy checks need to know about a registered tool."""

    risk: Risk
    always_low: bool
    fields: frozenset[str]


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in {"function-after", "function-before"} or "[" in str(item):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid policy"]
    for err in exc.errors():
        where = _location(err["loc"])
        message = err["msg"]
        if err["type"] == "policy_key":
            ctx = err.get("ctx") or {}
            key, message = str(ctx["key"]), str(ctx["message"])
            if where == "(top level)":
                where = key
            else:
                where += key if key.startswith("[") else f".{key}"
        if err["type"] == "extra_forbidden":
            message = "unknown key (not part of the policy format; check the spelling)"
        if err["type"] == "missing":
            message = "required key is missing"
        message = message.removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def parse_policy(data: dict[str, Any], source: str = "warden.toml") -> Policy:
    """Validate a decoded TOML mapping; raise ConfigError naming each bad key."""
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_policy(path: str | Path) -> Policy:
    """Read and validate `warden.toml`; any problem is a ConfigError (fail closed)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: policy file not found (set WARDEN_CONFIG or create warden.toml)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read policy file: {exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse_policy(data, str(file))


AutonomyName = Literal["suggest", "approve", "auto"]
