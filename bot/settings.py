"""Environment settings (PRODUCT.md, "Environment"), read by pydantic-settings; `.env` works too.

`load_settings` turns any bad value into a one-line `ConfigError` naming the variable.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError
from bot.redact import redact

DEFAULT_MODEL = "claude-sonnet-5-5"


class Settings(BaseSettings):
    """Process configuration from the environment. Secrets never appear in reprs or logs."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str | None = Field(default=None, alias="SLACK_API_URL")
    anthropic_api_key: SecretStr | None = Field(default=None, alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(default=None, alias="ANTHROPIC_BASE_URL")
    warden_model: str = Field(default=DEFAULT_MODEL, alias="WARDEN_MODEL", min_length=1)
    database_url: str = Field(default="sqlite:///warden.db", alias="DATABASE_URL")
    warden_config: str = Field(default="warden.toml", alias="WARDEN_CONFIG", min_length=1)
    port: int = Field(default=3000, alias="PORT", ge=1, le=65535)
    # `GET /metrics` and `/readyz` on a port of their own (Socket Mode has no HTTP port;
    # in HTTP mode they are also on PORT). Unset: no metrics port.
    warden_metrics_port: int | None = Field(
        default=None, alias="WARDEN_METRICS_PORT", ge=1, le=65535
    )
    # `warden serve`'s worker process runs at this niceness (0–19) above the front's, so
    # that Slack's acks win the CPU when both want it (handlers/front.py).
    warden_worker_nice: int = Field(default=10, alias="WARDEN_WORKER_NICE", ge=0, le=19)
    # Seals personal values an action still needs and keys their equality hashes
    # (bot/pii.py). Unset: derived from SLACK_SIGNING_SECRET, so every replica agrees.
    warden_data_key: SecretStr | None = Field(default=None, alias="WARDEN_DATA_KEY")
    # One log record per line: `text` (key=value ids appended) or `json` (handlers/logs.py).
    warden_log_format: Literal["text", "json"] = Field(default="text", alias="WARDEN_LOG_FORMAT")

    @field_validator("slack_api_url", "anthropic_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("warden_log_format", mode="before")
    @classmethod
    def _log_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("warden_data_key")
    @classmethod
    def _data_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError(
                "must be at least 32 characters; make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    def data_key(self) -> bytes:
        """The key for sealing personal values and hashing them (`bot.sealing.Sealer`).

        WARDEN_DATA_KEY when set; otherwise derived with HKDF from SLACK_SIGNING_SECRET (so
        every replica derives the same key); with neither, `insecure_dev_data_key()`, which
        protects nothing and is only for local development and tests.
        """
        if self.warden_data_key is not None:
            return _hkdf(self.warden_data_key.get_secret_value().encode(), b"warden data key")
        if self.slack_signing_secret is not None:
            secret = self.slack_signing_secret.get_secret_value().encode()
            return _hkdf(secret, b"warden data key from slack signing secret")
        return insecure_dev_data_key()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(value).get_dialect()
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise ValueError(
                "not a database URL SQLAlchemy understands "
                "(like sqlite:///warden.db or postgresql://user@host/db)"
            ) from exc
        return value


def _hkdf(secret: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"warden", info=info).derive(secret)


def insecure_dev_data_key() -> bytes:
    """INSECURE, for local development and tests only: the data key when neither
    WARDEN_DATA_KEY nor SLACK_SIGNING_SECRET is set. It is derived from a constant published
    in this file, so anything sealed with it is readable by anyone."""
    return _hkdf(b"warden-insecure-dev-data-key-not-a-secret", b"warden data key (dev)")


# Field name or alias → (the variable's name, whether its value is a secret).
_VARIABLES: dict[str, tuple[str, bool]] = {}
for _field, _info in Settings.model_fields.items():
    _secret = _info.annotation is SecretStr or SecretStr in get_args(_info.annotation)
    _VARIABLES[_field] = _VARIABLES[_info.alias or _field] = (_info.alias or _field, _secret)


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each bad variable, with its value unless it is a secret."""
    problems: list[str] = []
    for err in exc.errors():
        loc = str(err["loc"][0]) if err["loc"] else "environment"
        name, secret = _VARIABLES.get(loc, (loc, False))
        message = str(err["msg"]).removeprefix("Value error, ")
        value: Any = err.get("input")
        if secret or not isinstance(value, str | int):
            problems.append(f"{name}: {message}")
        else:
            problems.append(f"{name}={redact(str(value))[:80]!r}: {message}")
    return "bad environment: " + "; ".join(problems)


def load_settings(**values: Any) -> Settings:
    """Read the environment (and `.env`); raise a one-line ConfigError naming a bad value."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(describe_settings_error(exc)) from None
