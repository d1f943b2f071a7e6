"""Fxiaoke connection settings, typed and owned by the adapter: cloud host, token style, credentials, write flags.

Read from the connection's common settings plus `options` (until the redesign's adapter-owned
settings sections land, `options` carries what only Fxiaoke needs):

    [connections.acme_fx]
    kind = "fxiaoke"
    data_centre = "default"       # or base_url = "https://open.fxiaoke.com" (the tenant's cloud)
    auth = "app_secret"           # current header style; "legacy" = corpAccessToken in the body
    client_id = "FSAID_..."       # appId; client_secret = appSecret, refresh_token = permanentCode
    username = "1000"             # employee id the app acts as (legacy: the FSUID_... openUserId)
"""

from __future__ import annotations

from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from connector.errors import ConfigError, ConfigProblem
from connector.protocol import CrmSettings

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


class FxiaokeOptions(BaseModel):
    """What only Fxiaoke needs, from the connection's `options` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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


class FxiaokeSettings(BaseModel):
    """A resolved Fxiaoke connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    base_url: str
    token_url: str
    auth: Literal["app_secret", "legacy"]
    app_id: str
    app_secret: SecretStr
    permanent_code: SecretStr
    user_id: str
    options: FxiaokeOptions


def _problem(settings: CrmSettings, key: str, message: str, fix: str) -> ConfigProblem:
    return ConfigProblem(f"connections.{settings.name}.{key}", message, fix)


def resolve(settings: CrmSettings) -> FxiaokeSettings:
    """Fxiaoke settings from a connection's settings, every problem reported at once.

    Raises:
        ConfigError: missing credentials, an unknown cloud, bad options.
    """
    problems: list[ConfigProblem] = []
    base_url = settings.base_url
    if base_url is None:
        cloud = (settings.data_centre or "default").lower()
        base_url = CLOUDS.get(cloud)
        if base_url is None:
            problems.append(
                _problem(
                    settings,
                    "data_centre",
                    f"unknown Fxiaoke cloud {settings.data_centre!r}",
                    f"use one of {', '.join(CLOUDS)} or set base_url to the tenant's host",
                )
            )
    auth = settings.auth if settings.auth in TOKEN_PATHS else None
    if auth is None:
        problems.append(
            _problem(
                settings,
                "auth",
                f"unknown Fxiaoke token style {settings.auth!r}",
                'use "app_secret" (headers, current) or "legacy" (corpAccessToken in the body)',
            )
        )
    required: list[tuple[str, Any, str]] = [
        ("client_id", settings.client_id, "the app's appId (FSAID_...)"),
        ("client_secret", settings.client_secret, "the app's appSecret"),
        ("refresh_token", settings.refresh_token, "the app's permanentCode"),
        ("username", settings.username, "the employee id the app acts as"),
    ]
    for key, value, what in required:
        if not value:
            secret = key in ("client_secret", "refresh_token")
            where = (
                f"set CRMRISK_CONNECTIONS__{settings.name.upper()}__{key.upper()} or add it "
                "to the secrets file"
                if secret
                else f"add {key} to [connections.{settings.name}]"
            )
            problems.append(_problem(settings, key, f"missing ({what})", where))
    try:
        options = FxiaokeOptions(**settings.options)
    except ValidationError as exc:
        options = FxiaokeOptions()
        for error in exc.errors():
            path = ".".join(str(part) for part in error["loc"])
            problems.append(
                _problem(settings, f"options.{path}", error["msg"], "see README, Fxiaoke")
            )
    try:
        ZoneInfo(str(settings.options.get("time_zone", options.time_zone)))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(
            _problem(settings, "options.time_zone", "unknown time zone", 'e.g. "Asia/Shanghai"')
        )
    if problems:
        raise ConfigError(problems)
    assert base_url is not None
    assert auth is not None
    assert settings.client_secret is not None
    assert settings.refresh_token is not None
    host = base_url.rstrip("/")
    return FxiaokeSettings(
        name=settings.name,
        base_url=host,
        token_url=settings.token_url or host + TOKEN_PATHS[auth],
        auth=auth,  # type: ignore[arg-type]
        app_id=str(settings.client_id),
        app_secret=settings.client_secret,
        permanent_code=settings.refresh_token,
        user_id=str(settings.username),
        options=options,
    )
