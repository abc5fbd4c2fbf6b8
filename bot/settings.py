"""Environment settings (PRODUCT.md, "Environment"), read by pydantic-settings; `.env` works too."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    warden_model: str = Field(default=DEFAULT_MODEL, alias="WARDEN_MODEL")
    database_url: str = Field(default="sqlite:///warden.db", alias="DATABASE_URL")
    warden_config: str = Field(default="warden.toml", alias="WARDEN_CONFIG")
    port: int = Field(default=3000, alias="PORT", ge=1, le=65535)
