"""The HTTP settings every adapter shares: TLS trust, timeouts, retries and the API budget share."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from connector.protocol import ConnectionSettings, LocalPath


class HttpSettings(ConnectionSettings):
    """Base of an adapter's settings model: how its one HTTP session talks to the CRM."""

    # A CA bundle to trust (the sandbox's test CA, a corporate proxy's CA); None = system store.
    ca_bundle: Annotated[str, LocalPath()] | None = None
    verify_tls: bool = True
    # Per socket read; a whole call (connect, headers and body) ends by deadline_seconds.
    timeout_seconds: float = Field(default=30.0, gt=0)
    deadline_seconds: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    # Stop the run cleanly once it used this share of the quota the CRM reported as remaining.
    api_budget_share: float = Field(default=0.5, gt=0, le=1)


def need_secrets(
    settings: ConnectionSettings, keys: tuple[str, ...], why: str
) -> list[tuple[str, str]]:
    """The keys of `keys` that are unset on `settings`, each paired with `why` (for missing_credentials)."""
    return [(key, why) for key in keys if getattr(settings, key, None) in (None, "")]
