"""The notifier's settings: KLINEFLOW_NOTIFY_* (and KLINEFLOW_NOTIFY_*_FILE for secrets).

The services' base URLs are settings, so that tests and private deployments point them
elsewhere; a Discord or Slack webhook URL must start with its service's base, so a channel
of those kinds cannot be aimed at any other host.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from flows.settings import FILE_SUFFIX, KlineflowSettings, secret_fields

ENV_PREFIX = "KLINEFLOW_NOTIFY_"


class NotifySettings(KlineflowSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    dashboard_url: str = Field(
        default="http://localhost:8501", description="the dashboard, for the links in messages"
    )
    telegram_api: str = Field(default="https://api.telegram.org", description="Bot API")
    discord_base: str = Field(
        default="https://discord.com/api/webhooks/", description="a Discord webhook URL's start"
    )
    slack_base: str = Field(
        default="https://hooks.slack.com/", description="a Slack webhook URL's start"
    )
    smtp_url: SecretStr | None = Field(
        default=None, description="smtp://user:password@host:port of the relay (unset: no mail)"
    )
    smtp_from: str = Field(default="klineflow@localhost", description="the sender of e-mails")
    smtp_starttls: bool = Field(default=True, description="STARTTLS before anything is sent")
    smtp_ca_file: str | None = Field(
        default=None, description="CA bundle for the relay's certificate (unset: the system's)"
    )
    timeout_s: float = Field(default=10.0, gt=0, description="one attempt's connect and answer")
    retry_first_s: float = Field(default=1.0, gt=0, description="first retry's wait; doubled")
    retry_most_s: float = Field(default=60.0, gt=0, description="longest wait between attempts")
    give_up_s: float = Field(
        default=3600.0, gt=0, description="a message not delivered after this long is failed"
    )
    digest_most: int = Field(default=100, ge=1, description="most signals in one message")
    senders: int = Field(default=16, ge=1, le=256, description="messages in flight at once")
    pace_webhook_s: float = Field(default=0.0, ge=0, description="least time between messages")
    pace_discord_s: float = Field(default=2.0, ge=0, description="Discord: 30 a minute")
    pace_slack_s: float = Field(default=1.0, ge=0, description="Slack: one a second")
    pace_telegram_s: float = Field(default=1.0, ge=0, description="Telegram: one a second")
    pace_email_s: float = Field(default=10.0, ge=0, description="e-mail: one each 10 s at most")

    def pace_s(self, kind: str) -> float:
        value: float = getattr(self, f"pace_{kind}_s")
        return value


def known_env_vars() -> set[str]:
    names = {ENV_PREFIX + name.upper() for name in NotifySettings.model_fields}
    return names | {ENV_PREFIX + n.upper() + FILE_SUFFIX for n in secret_fields(NotifySettings)}
