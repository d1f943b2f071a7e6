"""Planted secrets and a CRM adapter that tries to leak them, wired into the real CLI."""

from __future__ import annotations

import logging
import secrets
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.errors import FatalCrmError
from connector.models import RecordChange, WriteResult
from connector.protocol import ConnectionSettings
from tests.fakes import FakeAdapter, FakeCrm
from tests.support import register_adapter

MAPPING = Path(__file__).resolve().parents[1] / "fixtures" / "mappings" / "fake.toml"
leak_log = logging.getLogger("crm_risk.adapter.leaky")


@dataclass(frozen=True)
class Planted:
    """Recognisable secrets, fresh per test so one test's redaction cannot help another."""

    client_secret: str
    refresh_token: str
    private_key: str
    key_body: str

    def all(self) -> tuple[str, ...]:
        # The key's base64 body alone is a leak too, even without the PEM armour.
        return (self.client_secret, self.refresh_token, self.private_key, self.key_body)


@pytest.fixture
def planted() -> Planted:
    tag = secrets.token_hex(6)
    body = f"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC{tag}PLANTEDKEYBODY{tag}"
    return Planted(
        client_secret=f"planted-client-secret-{tag}",
        refresh_token=f"planted-refresh-token-{tag}",
        private_key=f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----",
        key_body=body,
    )


def seed(crm: FakeCrm) -> None:
    for n in range(4):
        crm.put(
            "Account",
            f"A{n:03d}",
            Name=f"Customer {n}",
            OwnerId="U1",
            Currency="EUR",
            CreatedDate="2022-01-01T00:00:00+00:00",
            PaymentTerms=30,
            CreditLimit=20000,
        )
        crm.put(
            "Invoice",
            f"A{n:03d}-I0",
            Number=f"INV-{n}",
            AccountId=f"A{n:03d}",
            IssueDate="2026-06-29",
            DueDate="2026-07-29",
            Amount=9000,
            OpenAmount=9000 if n == 1 else 0,
            PaidDate=None if n == 1 else "2026-07-20",
            Status="Open" if n == 1 else "Paid",
            Currency="EUR",
        )


class LeakyAdapter(FakeAdapter):
    """A fake CRM adapter that puts the connection's secrets everywhere an adapter plausibly could.

    Log lines with a bearer header and a token in a URL, a record rejection echoing the request
    body, and (in `fail` mode) a fatal error quoting the credentials: the core must redact them all.
    """

    def __init__(self, crm: FakeCrm, settings: ConnectionSettings, *, fail: bool = False) -> None:
        super().__init__(crm, batch=2)
        self.fail = fail
        self.secrets = {
            name: value.get_secret_value()
            for name in ("client_secret", "refresh_token", "private_key")
            if (value := getattr(settings, name)) is not None
        }

    def _leak(self) -> str:
        s = self.secrets
        return (
            f"POST https://crm.test/oauth?client_secret={s['client_secret']}&refresh_token="
            f"{s['refresh_token']} Authorization: Bearer {s['refresh_token']} body="
            f'{{"client_secret": "{s["client_secret"]}"}} key={s["private_key"]}'
            f" raw secret {s['client_secret']} raw token {s['refresh_token']}"
        )

    def read_changed(self, crm_object: str, fields: Sequence[str], since: Any) -> Any:
        leak_log.warning("reading with %s", self._leak())
        if self.fail:
            raise FatalCrmError(
                f"CRM refused the call: {self._leak()}", code="INVALID_CLIENT", status=400
            )
        return super().read_changed(crm_object, fields, since)

    def read_by_ids(self, crm_object: str, fields: Sequence[str], ids: Sequence[str]) -> Any:
        return super().read_by_ids(crm_object, fields, ids)

    def write(self, crm_object: str, changes: Sequence[RecordChange]) -> list[WriteResult]:
        leak_log.info("writing %d records: %s", len(changes), self._leak())
        results = super().write(crm_object, changes)
        return [
            result.model_copy(
                update={
                    "status": "rejected",
                    "error_code": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                    "message": self._leak(),
                }
            )
            if result.crm_id == "A002"
            else result
            for result in results
        ]


@dataclass
class Cli:
    """The config file of a `leaky` connection and the CRM behind it."""

    config: Path
    crm: FakeCrm
    adapters: list[LeakyAdapter]


def write_config(folder: Path) -> Path:
    path = folder / "crm-risk.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [store]
            url = "{folder / "state.db"}"
            [connections.leaky]
            kind = "leaky"
            mapping = "{MAPPING}"
            client_id = "leaky-client"
            """
        )
    )
    return path


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: Planted) -> Cli:
    """Secrets in the environment, as documented; the registry hands out LeakyAdapters."""
    monkeypatch.setenv("CRMRISK_CONNECTIONS__LEAKY__CLIENT_SECRET", planted.client_secret)
    monkeypatch.setenv("CRMRISK_CONNECTIONS__LEAKY__REFRESH_TOKEN", planted.refresh_token)
    monkeypatch.setenv("CRMRISK_CONNECTIONS__LEAKY__PRIVATE_KEY", planted.private_key)
    register_adapter(monkeypatch, "leaky", "tests.security.conftest:LeakyAdapter")
    crm = FakeCrm()
    seed(crm)
    made: list[LeakyAdapter] = []

    def create_adapter(
        settings: ConnectionSettings, *, state: Any = None, **options: Any
    ) -> LeakyAdapter:
        adapter = LeakyAdapter(crm, settings, fail=bool(getattr(create_adapter, "fail", False)))
        made.append(adapter)
        return adapter

    import connector.registry

    monkeypatch.setattr(connector.registry, "create_adapter", create_adapter)
    cli = Cli(write_config(tmp_path), crm, made)
    cli.create_adapter = create_adapter  # type: ignore[attr-defined]
    return cli
