"""The smaller `warden.toml` sections: `[agent]`, `[workers]`, `[redaction]`, `[memory]`,
`[alerts]`, `[governor]`, `[usage]` and `[incidents]`.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import Field, field_validator, model_validator

from bot.policy_types import Duration, StrictModel, key_error


class AgentLimits(StrictModel):
    max_steps: int = Field(default=8, ge=1, le=50)
    max_tokens: int = Field(default=60_000, ge=1000)
    max_seconds: Duration = timedelta(seconds=90)
    max_cost_usd: float = Field(default=0.50, gt=0)
    call_timeout: Duration = timedelta(seconds=45)
    max_retries: int = Field(default=3, ge=0, le=10)
    link_domains: list[str] = Field(default_factory=list)
    instructions: str = ""
    do_not: list[str] = Field(default_factory=list)


class Workers(StrictModel):
    planners: int = Field(default=16, ge=1, le=256)
    executors: int = Field(default=8, ge=1, le=256)
    per_requester: int = Field(default=10, ge=1, le=1000)  # requests in flight per person


_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR", "NL", "ES", "IT")


class RedactionPolicy(StrictModel):
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


class MemoryExpiry(StrictModel):
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


class MemoryPolicy(StrictModel):
    """`[memory]`: typed facts remembered between requests (PRODUCT.md principle 6)."""

    enabled: bool = True
    max_facts: int = Field(default=8, ge=1, le=100)  # the top facts given to the model
    budget_chars: int = Field(default=2000, ge=1, le=100_000)  # memory's share of the prompt
    expiry: MemoryExpiry = MemoryExpiry()


class _WindowAlert(StrictModel):
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


class CostAlert(StrictModel):
    """Fires when the model's cost since midnight UTC passes `above_usd`."""

    enabled: bool = True
    above_usd: float = Field(default=25.0, gt=0)
    cooldown: Duration = timedelta(hours=24)


class AlertsPolicy(StrictModel):
    """`[alerts]`: checked every minute on one replica, posted to the admin channel and
    audited. A failed outcome check (`verify`) always alerts at once."""

    confidence_drop: ConfidenceAlert = ConfidenceAlert()
    override_spike: OverrideAlert = OverrideAlert()
    tool_error_rate: ErrorRateAlert = ErrorRateAlert()
    daily_cost: CostAlert = CostAlert()


class GovernorPolicy(StrictModel):
    """`[governor]`: a tool on `auto` whose failure, override or 👎 rate over `window` crosses
    its limit (with at least `min_volume` outcomes) is demoted to `approve` at once."""

    enabled: bool = True
    window: Duration = timedelta(hours=24)
    min_volume: int = Field(default=5, ge=1)
    max_failure_rate: float = Field(default=0.3, ge=0.0, le=1.0)
    max_override_rate: float = Field(default=0.5, ge=0.0, le=1.0)
    max_downvote_rate: float = Field(default=0.5, ge=0.0, le=1.0)


class UsagePolicy(StrictModel):
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


class IncidentsPolicy(StrictModel):
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
