"""The Zoho CRM connection settings: a strict model the registry finds through the adapter."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from adapters._settings import HttpSettings, need_secrets
from connector.models import StrictModel


class ZohoOptions(StrictModel):
    """The `options = { ... }` table of a Zoho connection (README "Adapter options")."""

    # Workflows to run on our updates: Zoho runs workflow, approval and blueprint when the key
    # is omitted, so an empty list is sent unless some are listed.
    trigger: list[str] = Field(default_factory=list)
    # Records above which a first full read uses the Bulk Read API; 0 or None = never.
    bulk_read_threshold: int | None = Field(default=10_000, ge=0)
    bulk_poll_seconds: float = Field(default=10.0, ge=0)
    bulk_max_polls: int = Field(default=360, ge=1)
    bulk_job_credits: int = Field(default=50, ge=0)
    bulk_cutoff_margin_seconds: float = Field(default=60.0, ge=0)
    # Zoho sends no Retry-After: exponential back-off with full jitter between these bounds.
    backoff_base_seconds: float = Field(default=2.0, ge=0)
    backoff_max_seconds: float = Field(default=60.0, ge=0)
    # Calls in flight, and write batches the engine sends at once: Zoho allows 5 to 25
    # concurrent calls per org by edition (10 on Standard); stay within yours.
    max_concurrency: int = Field(default=3, ge=1)
    # Records per update call (at most 100): lower it for orgs whose workflows make them slow.
    write_batch: int = Field(default=100, ge=1, le=100)
    credit_budget: int | None = Field(default=None, ge=0)
    daily_credits: int | None = Field(default=None, ge=0)
    token_throttle_wait_seconds: float = Field(default=10.0, ge=0)
    token_throttle_max_wait_seconds: float = Field(default=60.0, ge=0)
    token_wait_seconds: float = Field(default=180.0, ge=0)
    task_parent_module: str = "Accounts"
    task_open_status: str = "Not Started"
    task_closed_status: str = "Completed"
    task_closed_statuses: list[str] | None = None
    # "account": COQL on Tasks by What_Id for the accounts we know; "scan": read every task.
    task_lookup: Literal["account", "scan"] = "account"
    # Our priorities (high, normal, low) as the org's picklist values.
    task_priority_values: dict[str, str] = Field(default_factory=dict)


class ZohoSettings(HttpSettings):
    """How to reach and authorise one Zoho CRM org (self-client refresh token)."""

    kind: Literal["zoho"] = "zoho"
    # A data centre (us, eu, in, au, jp, cn, ca, sa, optionally -sandbox/-developer) or
    # explicit URLs (the local sandbox, a proxy).
    data_centre: str | None = None
    base_url: str | None = None
    token_url: str | None = None
    login_url: str | None = None
    api_version: str | None = None
    auth: Literal["refresh_token"] = "refresh_token"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    options: ZohoOptions = ZohoOptions()

    def missing_credentials(self) -> list[tuple[str, str]]:
        """Zoho's self-client flow needs the client secret and the refresh token."""
        return need_secrets(
            self, ("client_secret", "refresh_token"), f"auth = {self.auth!r} needs it"
        )

    def credential_keys(self) -> tuple[str, ...]:
        """The settings the refresh-token exchange sends."""
        return ("client_id", "client_secret", "refresh_token")
