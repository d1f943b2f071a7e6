"""The Salesforce CLI (`sf`, unchanged) against the Salesforce sandbox: login by access token, query, bulk export."""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sandboxes import RunningSandbox, start_salesforce
from tests.clients.conftest import node_env

ALIAS = "sandbox"


@pytest.fixture(scope="module")
def org(node_clients: Path) -> Iterator[RunningSandbox]:
    # 230 accounts: over 2,000 invoices; 500-row Bulk 2.0 result pages make the export follow
    # Sforce-Locator across five pages.
    with start_salesforce(accounts=230, seed=9, bulk_results_page=500) as running:
        yield running
        assert not running.server.errors, running.server.errors[0]


@pytest.fixture(scope="module")
def sf_env(
    org: RunningSandbox, node_clients: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """What a user sets: an access token, the test CA, no telemetry, the CLI on the PATH."""
    with requests.Session() as session:
        session.verify = org.ca_bundle or True
        session.trust_env = False
        token = session.post(
            org.token_url,
            data={"grant_type": "client_credentials"},
            auth=(org.client_id, org.client_secret),
            timeout=10,
        ).json()["access_token"]
    env = node_env(
        org.ca_bundle,
        tmp_path_factory.mktemp("sf-home"),
        SF_ACCESS_TOKEN=token,
        SF_DISABLE_TELEMETRY="true",
        # oclif's update hook reads SF_DISABLE_AUTOUPDATE. Setting only the documented
        # SF_AUTOUPDATE_DISABLE makes every fresh HOME spawn a detached `sf update --autoupdate`
        # that outlives the test (checked by the last test here).
        SF_DISABLE_AUTOUPDATE="true",
        SF_USE_GENERIC_UNIX_KEYCHAIN="true",
    )
    env["PATH"] = f"{node_clients / 'node_modules' / '.bin'}:{env['PATH']}"
    return env


def sf(env: dict[str, str], *args: str, cwd: Path | None = None) -> dict[str, Any]:
    done = subprocess.run(
        ["sf", *args, "--json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    try:
        answer = dict(json.loads(done.stdout))
    except json.JSONDecodeError as exc:
        raise AssertionError(f"sf {args[:2]} printed no JSON: {done.stdout} {done.stderr}") from exc
    assert done.returncode == 0 and answer["status"] == 0, answer
    return answer


@pytest.fixture(scope="module")
def logged_in(org: RunningSandbox, sf_env: dict[str, str]) -> dict[str, Any]:
    answer = sf(
        sf_env,
        "org",
        "login",
        "access-token",
        "--instance-url",
        org.base_url,
        "--no-prompt",
        "--alias",
        ALIAS,
    )
    return dict(answer["result"])


def test_org_login_access_token_reads_the_user_from_userinfo(
    org: RunningSandbox, logged_in: dict[str, Any]
) -> None:
    from sandboxes.salesforce import ORG_ID

    assert logged_in["username"] == org.username
    assert logged_in["orgId"] == ORG_ID
    assert logged_in["instanceUrl"].rstrip("/") == org.base_url
    assert org.server.calls[("GET", "/services/oauth2/userinfo")] == 1


def test_data_query_returns_every_account_with_parent_fields(
    org: RunningSandbox, sf_env: dict[str, str], logged_in: dict[str, Any]
) -> None:
    answer = sf(
        sf_env,
        "data",
        "query",
        "--query",
        "SELECT Id, Name, Owner.Name FROM Account ORDER BY Name",
        "--target-org",
        ALIAS,
    )["result"]
    users = {u["Id"]: u["Name"] for u in org.emulator.records("User")}
    expected = sorted(org.emulator.records("Account"), key=lambda r: r["Name"])
    assert answer["totalSize"] == len(expected)
    assert [(r["Id"], r["Name"], r["Owner"]["Name"]) for r in answer["records"]] == [
        (a["Id"], a["Name"], users[a["OwnerId"]]) for a in expected
    ]


def test_data_query_writes_csv_columns_from_column_metadata(
    org: RunningSandbox, sf_env: dict[str, str], logged_in: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "accounts.csv"
    sf(
        sf_env,
        "data",
        "query",
        "--query",
        "SELECT Id, Name, Owner.Name, (SELECT Id FROM Invoices__r) FROM Account ORDER BY Name "
        "LIMIT 5",
        "--result-format",
        "csv",
        "--output-file",
        str(out),
        "--target-org",
        ALIAS,
    )
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    # The header comes from `columns=true`: parent fields flattened, the subquery as a column.
    assert rows[0][:3] == ["Id", "Name", "Owner.Name"]
    assert any(column.startswith("Invoices__r") for column in rows[0][3:])
    expected = sorted(org.emulator.records("Account"), key=lambda r: r["Name"])[:5]
    assert [row[0] for row in rows[1:]] == [a["Id"] for a in expected]


def test_data_query_shows_aggregates_under_their_alias(
    org: RunningSandbox, sf_env: dict[str, str], logged_in: dict[str, Any]
) -> None:
    answer = sf(
        sf_env,
        "data",
        "query",
        "--query",
        "SELECT Account__c, COUNT(Id) n FROM Invoice__c GROUP BY Account__c",
        "--target-org",
        ALIAS,
    )["result"]
    counts: dict[str, int] = {}
    for invoice in org.emulator.records("Invoice__c"):
        counts[invoice["Account__c"]] = counts.get(invoice["Account__c"], 0) + 1
    assert {r["Account__c"]: r["n"] for r in answer["records"]} == counts


def test_data_export_bulk_writes_every_invoice(
    org: RunningSandbox, sf_env: dict[str, str], logged_in: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "invoices.csv"
    answer = sf(
        sf_env,
        "data",
        "export",
        "bulk",
        "--query",
        "SELECT Id, Name, Amount__c FROM Invoice__c",
        "--output-file",
        str(out),
        "--result-format",
        "csv",
        "--wait",
        "5",
        "--target-org",
        ALIAS,
        cwd=tmp_path,
    )["result"]
    expected = {r["Id"]: r for r in org.emulator.records("Invoice__c")}
    assert len(expected) > 2000
    assert answer["totalSize"] == len(expected)
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["Id"] for r in rows) == sorted(expected)
    assert all(r["Name"] == expected[r["Id"]]["Name"] for r in rows)
    pages = org.server.calls[("GET", "/services/data/v62.0/jobs/query/{id}/results")]
    assert pages == -(-len(expected) // 500)


def test_the_cli_left_no_background_update_running(sf_env: dict[str, str]) -> None:
    cache = Path(sf_env["HOME"]) / ".cache" / "sf"
    assert not (cache / "autoupdate.log").exists()
