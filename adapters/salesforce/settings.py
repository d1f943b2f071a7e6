"""The Salesforce connection settings: a strict model the registry finds through the adapter."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr

from adapters._settings import HttpSettings, need_secrets
from connector.models import StrictModel
from connector.protocol import LocalPath

AuthFlow = Literal[
    "refresh_token",
    "client_credentials",
    "client-credentials",
    "jwt",
    "jwt_bearer",
    "password",
    "auto",
]


class SalesforceOptions(StrictModel):
    """The `options = { ... }` table of a Salesforce connection (README "Adapter options")."""

    # Records above which a full read goes through a Bulk API 2.0 query job.
    bulk_read_threshold: int = Field(default=10_000, ge=0)
    bulk_page_size: int = Field(default=50_000, ge=1)
    bulk_write: bool = False
    bulk_write_threshold: int = Field(default=2_000, ge=1)
    bulk_write_batch: int = Field(default=10_000, ge=1)
    bulk_poll_seconds: float = Field(default=1.0, ge=0)
    bulk_timeout_seconds: float = Field(default=3600.0, gt=0)
    # Retries of a batch refused with UNABLE_TO_LOCK_ROW.
    lock_retries: int = Field(default=3, ge=0)
    # Sforce-Query-Options batchSize: 200..2000 (reference §2.3); None = Salesforce's default.
    query_batch_size: int | None = Field(default=None, ge=200, le=2000)
    # Stop when the whole org used this share of DailyApiRequests (off when None).
    org_usage_stop_share: float | None = Field(default=None, gt=0, le=1)
    jwt_audience: str | None = None
    # An external-id text field on Task (e.g. Crm_Risk_Key__c) to upsert tasks by dedupe key.
    task_external_id_field: str | None = None
    task_open_status: str | None = None
    task_closed_status: str | None = None
    # Write batches the engine sends at once: a safe share of the 25 concurrent long-running
    # requests an org allows (5 on Developer Edition; reference §6).
    max_concurrency: int = Field(default=4, ge=1)
    # Records per collections update (at most 200): lower it for orgs with slow triggers.
    write_batch: int = Field(default=200, ge=1, le=200)


class SalesforceSettings(HttpSettings):
    """How to reach and log in to one Salesforce org."""

    kind: Literal["salesforce"] = "salesforce"
    login_url: str | None = None
    token_url: str | None = None
    api_version: str | None = None
    auth: AuthFlow = "refresh_token"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    private_key: SecretStr | None = None
    private_key_file: Annotated[str, LocalPath()] | None = None
    options: SalesforceOptions = SalesforceOptions()

    def missing_credentials(self) -> list[tuple[str, str]]:
        """The secrets the configured flow needs and does not have (auto needs none in particular)."""
        why = f"auth = {self.auth!r} needs it"
        if self.auth == "refresh_token":
            return need_secrets(self, ("client_secret", "refresh_token"), why)
        if self.auth in ("client_credentials", "client-credentials"):
            return need_secrets(self, ("client_secret",), why)
        if self.auth == "password":
            return need_secrets(self, ("password",), why)
        if self.auth in ("jwt", "jwt_bearer") and not self.private_key_file:
            return need_secrets(self, ("private_key",), why)
        return []

    def credential_keys(self) -> tuple[str, ...]:
        """The settings the configured flow sends to the token endpoint."""
        if self.auth in ("client_credentials", "client-credentials"):
            return ("client_id", "client_secret")
        if self.auth == "password":
            return ("client_id", "client_secret", "username", "password", "security_token")
        if self.auth in ("jwt", "jwt_bearer"):
            return ("client_id", "username", "private_key", "private_key_file")
        return ("client_id", "client_secret", "refresh_token")
