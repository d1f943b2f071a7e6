"""Fxiaoke connection settings, a strict model owned by the adapter: cloud host, token style, credentials, options.

[connections.acme_fx]
kind = "fxiaoke"
data_centre = "default"       # or base_url = "https://open.fxiaoke.com" (the tenant's cloud)
auth = "app_secret"           # current header style; "legacy" = corpAccessToken in the body
client_id = "FSAID_..."       # appId; client_secret = appSecret, refresh_token = permanentCode
username = "1000"             # employee id the app acts as (legacy: the FSUID_... openUserId)
options = { task_status_field = "field_Fs08h__c", time_zone = "Asia/Shanghai" }
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator

from adapters._settings import HttpSettings, need_secrets
from connector.errors import ConfigError, ConfigProblem
from connector.models import StrictModel

# The six clouds of the vendor's cloud.html [P]; no API tells which one a tenant is on.
CLOUDS: dict[str, str] = {
    "default": "https://open.fxiaoke.com",
    "huawei": "https://open-hwcloud.fxiaoke.com",
    "alibaba": "https://open-ale.fxiaoke.com",
    "frankfurt": "https://open-hws.fxiaoke.com",
    "hongkong": "https://open-ksc.sharecrm.com",
    "north-america": "https://open-na.sharecrm.com",
}
TOKEN_PATHS = {"app_secret": "/oauth2.0/token", "legacy": "/cgi/corpAccessToken/get/V2"}


class FxiaokeOptions(StrictModel):
    """The `options = { ... }` table of a Fxiaoke connection (README, Fxiaoke)."""

    # Custom objects (api names ending in __c) live under another path family [S].
    custom_prefix: str = "/cgi/crm/custom/v2"
    # Writes never start approval flows (they would lock the account and hold the change);
    # workflows are the tenant's choice, off by default as Zoho's `"trigger": []`.
    trigger_workflow: bool = False
    # Date fields are epoch ms at the tenant's midnight [A: GMT+8 unless the tenant says else].
    time_zone: str = "Asia/Shanghai"
    # Follow-ups: a sales record (销售记录) per task, linked to the account.
    task_object: str = "ActiveRecordObj"
    task_text_field: str = "active_record_content"
    task_status_field: str = "field_Fs08h__c"
    task_open_label: str = "待处理"
    task_done_label: str = "已完成"
    task_due_field: str | None = "field_Du09i__c"
    # The tenant's currency: amounts are added up in it (multi-currency APIs are unconfirmed).
    currency: str = "CNY"
    # Page size of queries (the API allows at most 100).
    page_size: int = Field(default=100, ge=1, le=100)
    # Write batches the engine sends at once. One by default: updates are one record a call
    # and the API allows 100 calls per 20 s per interface [P, rate.html], which one caller at
    # ~200 ms a call already nears; more callers only meet 30004/14001 sooner.
    max_concurrency: int = Field(default=1, ge=1)
    # Records per write() (each its own /data/update call: the API has no batch update); the
    # engine records the CRM's answers per batch.
    write_batch: int = Field(default=50, ge=1, le=50)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'unknown time zone {value!r} (e.g. "Asia/Shanghai")') from None
        return value


class FxiaokeSettings(HttpSettings):
    """How to reach and authorise one Fxiaoke tenant (appId, appSecret, permanentCode)."""

    kind: Literal["fxiaoke"] = "fxiaoke"
    # One of CLOUDS, or base_url for the tenant's host (the local sandbox, a proxy).
    data_centre: str | None = None
    base_url: str | None = None
    token_url: str | None = None
    auth: Literal["app_secret", "legacy"] = "app_secret"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    username: str | None = None
    options: FxiaokeOptions = FxiaokeOptions()

    @field_validator("data_centre")
    @classmethod
    def _known_cloud(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in CLOUDS:
            raise ValueError(
                f"unknown Fxiaoke cloud {value!r}: use one of {', '.join(CLOUDS)} "
                "or set base_url to the tenant's host"
            )
        return value

    def missing_credentials(self) -> list[tuple[str, str]]:
        """The token exchange needs the appSecret and the permanentCode."""
        return need_secrets(
            self, ("client_secret", "refresh_token"), f"auth = {self.auth!r} needs it"
        )

    def credential_keys(self) -> tuple[str, ...]:
        """The settings the token exchange sends."""
        return ("client_id", "client_secret", "refresh_token", "username")


class FxiaokeConnection(StrictModel):
    """A resolved Fxiaoke connection: the hosts to call and the credentials, all present."""

    name: str
    base_url: str
    token_url: str
    auth: Literal["app_secret", "legacy"]
    app_id: str
    app_secret: SecretStr
    permanent_code: SecretStr
    user_id: str
    options: FxiaokeOptions


def resolve(settings: FxiaokeSettings) -> FxiaokeConnection:
    """The hosts and credentials of a validated connection, every missing one reported at once.

    Raises:
        ConfigError: a missing credential or employee id, each naming its setting and the fix.
    """
    problems: list[ConfigProblem] = []
    required: list[tuple[str, object, str]] = [
        ("client_id", settings.client_id, "the app's appId (FSAID_...)"),
        ("client_secret", settings.client_secret, "the app's appSecret"),
        ("refresh_token", settings.refresh_token, "the app's permanentCode"),
        ("username", settings.username, "the employee id the app acts as"),
    ]
    for key, value, what in required:
        if not value:
            where = (
                f"set CRMRISK_CONNECTIONS__{settings.name.upper()}__{key.upper()} or add it "
                "to the secrets file"
                if key in ("client_secret", "refresh_token")
                else f"add {key} to [connections.{settings.name}]"
            )
            problems.append(
                ConfigProblem(f"connections.{settings.name}.{key}", f"missing ({what})", where)
            )
    if problems:
        raise ConfigError(problems)
    assert settings.client_secret is not None
    assert settings.refresh_token is not None
    host = (settings.base_url or CLOUDS[(settings.data_centre or "default").lower()]).rstrip("/")
    return FxiaokeConnection(
        name=settings.name,
        base_url=host,
        token_url=settings.token_url or host + TOKEN_PATHS[settings.auth],
        auth=settings.auth,
        app_id=str(settings.client_id),
        app_secret=settings.client_secret,
        permanent_code=settings.refresh_token,
        user_id=str(settings.username),
        options=settings.options,
    )
