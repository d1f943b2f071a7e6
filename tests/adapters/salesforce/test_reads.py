"""Reads: nextRecordsUrl paging, since and deletions, equal-timestamp restarts, re-auth, retries, quota."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import responses

from connector.errors import AuthError, FatalCrmError, QuotaExhaustedError
from tests.adapters.salesforce._support import (
    BASE,
    INSTANCE,
    add_token,
    fixture,
    record,
    soql_of,
    stamp,
)

QUERY = re.compile(rf"^{re.escape(BASE)}/query/\?")
QUERY_ALL = re.compile(rf"^{re.escape(BASE)}/queryAll/\?")
MORE = re.compile(rf"^{re.escape(BASE)}/query/01gCURSOR-\d+$")


class PagedOrg:
    """Serves a record list in pages of `size`, continuing through nextRecordsUrl paths."""

    def __init__(self, records: list[dict[str, Any]], size: int) -> None:
        self.records = records
        self.size = size
        self.queries: list[str] = []
        self.fail_at_offset: int | None = None

    def page(self, rows: list[dict[str, Any]], offset: int) -> dict[str, Any]:
        chunk = rows[offset : offset + self.size]
        body: dict[str, Any] = {
            "totalSize": len(rows),
            "done": offset + self.size >= len(rows),
            "records": chunk,
        }
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/v62.0/query/01gCURSOR-{offset + self.size}"
        return body

    def first(self, request: Any) -> tuple[int, dict[str, str], str]:
        text = soql_of(request)
        self.queries.append(text)
        self.current = self.matching(text)
        return 200, {}, json.dumps(self.page(self.current, 0))

    def more(self, request: Any) -> tuple[int, dict[str, str], str]:
        offset = int(request.url.rsplit("-", 1)[1])
        if offset == self.fail_at_offset:
            self.fail_at_offset = None
            return 400, {}, json.dumps(fixture("error__invalid_query_locator"))
        return 200, {}, json.dumps(self.page(self.current, offset))

    def matching(self, text: str) -> list[dict[str, Any]]:
        rows = sorted(self.records, key=lambda r: (r["SystemModstamp"], r["Id"]))
        found = re.search(
            r"SystemModstamp > (\S+) OR \(SystemModstamp = \S+ AND Id > '(\w+)'\)", text
        )
        if found:
            literal, last_id = found.groups()
            last = datetime.fromisoformat(literal.replace("Z", "+00:00"))
            rows = [
                r
                for r in rows
                if (parsed := datetime.fromisoformat(r["SystemModstamp"])) > last
                or (parsed == last and r["Id"] > last_id)
            ]
        return rows


def test_pages_follow_next_records_url_to_the_end(rsps, adapter) -> None:
    rows = [
        record(
            "Account",
            n,
            stamp(n // 4),
            Name=f"Acme {n}",
            Owner={"attributes": {"type": "User"}, "IsActive": True},
        )
        for n in range(1, 24)
    ]
    org = PagedOrg(rows, size=5)
    add_token(rsps)
    rsps.add_callback(responses.GET, QUERY, callback=org.first)
    rsps.add_callback(responses.GET, MORE, callback=org.more)
    read = list(adapter.read_changed("Account", ["Name", "Owner.IsActive"], None))
    assert [r.crm_id for r in read] == [row["Id"] for row in rows]
    assert org.queries == [
        "SELECT Id, SystemModstamp, Name, Owner.IsActive FROM Account ORDER BY SystemModstamp ASC, Id ASC"
    ]
    assert read[0].fields == {
        "Id": rows[0]["Id"],
        "SystemModstamp": rows[0]["SystemModstamp"],
        "Name": "Acme 1",
        "Owner": {"IsActive": True},
    }
    assert read[0].modified_at == datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
    assert len(rsps.calls) == 1 + 5  # one token call, five pages
    assert adapter.usage().calls == {
        "POST oauth2/token": 1,
        "GET query": 1,
        "GET query/{locator}": 4,
    }


def test_reads_are_lazy_page_by_page(rsps, adapter) -> None:
    org = PagedOrg([record("Account", n, stamp(n)) for n in range(1, 11)], size=5)
    add_token(rsps)
    rsps.add_callback(responses.GET, QUERY, callback=org.first)
    reader = adapter.read_changed("Account", [], None)
    assert [next(reader) for _ in range(5)]
    assert len(rsps.calls) == 2  # the second page is not fetched until it is needed
    reader.close()


def test_since_uses_query_all_and_yields_deleted_rows(rsps, adapter) -> None:
    rows = [
        record("Account", 1, stamp(5), IsDeleted=False),
        record("Account", 2, stamp(6), IsDeleted=True),
    ]
    org = PagedOrg(rows, size=10)
    add_token(rsps)
    rsps.add_callback(responses.GET, QUERY_ALL, callback=org.first)
    since = datetime(2026, 11, 20, 10, 0, 5, 400000, tzinfo=UTC)
    read = list(adapter.read_changed("Account", [], since))
    assert org.queries[0] == (
        "SELECT Id, SystemModstamp, IsDeleted FROM Account "
        "WHERE SystemModstamp >= 2026-11-20T10:00:05Z ORDER BY SystemModstamp ASC, Id ASC"
    )
    assert [(r.crm_id, r.deleted) for r in read] == [(rows[0]["Id"], False), (rows[1]["Id"], True)]


def test_expired_cursor_resumes_after_the_last_record_without_skipping_ties(rsps, adapter) -> None:
    # 20 records in 3 distinct milliseconds; the cursor dies in the middle of a tie.
    rows = [
        record("Account", n, stamp(0, millis=[5, 5, 5, 7][n % 4]), Name=f"A{n}")
        for n in range(1, 21)
    ]
    org = PagedOrg(rows, size=6)
    org.fail_at_offset = 12
    add_token(rsps)
    rsps.add_callback(responses.GET, QUERY, callback=org.first)
    rsps.add_callback(responses.GET, MORE, callback=org.more)
    read = list(adapter.read_changed("Account", ["Name"], None))
    expected = sorted(rows, key=lambda r: (r["SystemModstamp"], r["Id"]))
    assert [r.crm_id for r in read] == [r["Id"] for r in expected]
    last_before_failure = expected[11]
    assert len(org.queries) == 2
    assert f"AND Id > '{last_before_failure['Id']}'" in org.queries[1]
    assert "SystemModstamp > 2026-11-20T10:00:00.005Z" in org.queries[1]


def test_expired_session_re_authenticates_once_then_succeeds(rsps, adapter) -> None:
    first_token = add_token(rsps, token="test-access-token-1")
    rsps.add(responses.GET, QUERY, status=401, json=fixture("error__invalid_session_id"))
    rsps.add(
        responses.POST,
        first_token.url,
        json=fixture("oauth2_token__ok") | {"access_token": "test-access-token-2"},
    )
    rsps.add(
        responses.GET,
        QUERY,
        json={"totalSize": 1, "done": True, "records": [record("Account", 1, stamp(1))]},
    )
    assert len(list(adapter.read_changed("Account", [], None))) == 1
    auth_headers = [
        c.request.headers.get("Authorization") for c in rsps.calls if "/query/" in c.request.url
    ]
    assert auth_headers == ["Bearer test-access-token-1", "Bearer test-access-token-2"]


def test_a_second_401_after_re_auth_is_an_auth_error(rsps, adapter) -> None:
    token = add_token(rsps)
    query = rsps.add(responses.GET, QUERY, status=401, json=fixture("error__invalid_session_id"))
    with pytest.raises(AuthError, match="again"):
        list(adapter.read_changed("Account", [], None))
    assert token.call_count == 2
    assert query.call_count == 2


def test_429_waits_as_long_as_retry_after_says(rsps, adapter, sleeps) -> None:
    add_token(rsps)
    rsps.add(
        responses.GET,
        QUERY,
        status=429,
        headers={"Retry-After": "7"},
        json=[{"errorCode": "TOO_MANY", "message": "slow down"}],
    )
    rsps.add(responses.GET, QUERY, json={"totalSize": 0, "done": True, "records": []})
    list(adapter.read_changed("Account", [], None))
    assert sleeps == [7.0]


def test_the_run_stops_when_its_budget_share_is_spent(rsps, make_adapter) -> None:
    adapter = make_adapter(api_budget_share=0.5)
    used = iter([900, 930, 960, 990])
    org = PagedOrg([record("Account", n, stamp(n)) for n in range(1, 41)], size=10)

    def limited(callback):
        def wrapped(request):
            status, _headers, body = callback(request)
            return status, {"Sforce-Limit-Info": f"api-usage={next(used)}/1000"}, body

        return wrapped

    add_token(rsps)
    rsps.add_callback(responses.GET, QUERY, callback=limited(org.first))
    rsps.add_callback(responses.GET, MORE, callback=limited(org.more))
    read = []
    with pytest.raises(QuotaExhaustedError, match="budget"):
        read.extend(adapter.read_changed("Account", [], None))
    # 100 left at start, stop once fewer than 50 remain: after the third page (40 left).
    assert len(read) == 30
    usage = adapter.usage()
    assert (usage.remaining, usage.limit) == (40, 1000)
    assert usage.calls["GET query/{locator}"] == 2


def test_the_orgs_daily_limit_stops_without_retrying(rsps, adapter, sleeps) -> None:
    add_token(rsps)
    query = rsps.add(
        responses.GET, QUERY, status=403, json=fixture("error__request_limit_exceeded")
    )
    with pytest.raises(QuotaExhaustedError):
        list(adapter.read_changed("Account", [], None))
    assert query.call_count == 1
    assert sleeps == []


def test_read_by_ids_chunks_the_in_list(rsps, adapter) -> None:
    ids = [f"001{n:012d}AAA" for n in range(650)]
    seen: list[str] = []

    def answer(request):
        text = soql_of(request)
        seen.append(text)
        return 200, {}, json.dumps({"totalSize": 0, "done": True, "records": []})

    add_token(rsps)
    rsps.add_callback(responses.GET, QUERY, callback=answer)
    assert list(adapter.read_by_ids("Account", ["Name"], ids)) == []
    assert [text.count("'001") for text in seen] == [300, 300, 50]


def test_describe_maps_types_to_families(rsps, adapter) -> None:
    add_token(rsps)
    rsps.add(responses.GET, f"{BASE}/sobjects/Account/describe", json=fixture("describe__account"))
    described = adapter.describe("Account")
    families = {name: f.family for name, f in described.fields.items()}
    assert families == {
        "Id": "id",
        "Name": "string",
        "Description": "text",
        "OwnerId": "reference",
        "Industry": "picklist",
        "AnnualRevenue": "currency",
        "NumberOfEmployees": "integer",
        "Risk_Score__c": "number",
        "Risk_Share__c": "percent",
        "Credit_Hold__c": "boolean",
        "Risk_Scored_On__c": "date",
        "SystemModstamp": "datetime",
        "IsDeleted": "boolean",
        "BillingAddress": "other",
    }
    assert described.fields["Industry"].picklist_values == ("Banking",)
    assert described.fields["Name"].length == 255
    assert described.fields["NumberOfEmployees"].precision == 8
    assert described.fields["Risk_Score__c"].updateable
    assert not described.fields["Id"].updateable
    adapter.describe("Account")  # cached: no second call (the mock would fail on one)


def test_describe_of_an_unknown_object_is_fatal(rsps, adapter) -> None:
    add_token(rsps)
    rsps.add(
        responses.GET,
        f"{BASE}/sobjects/No_Such__x/describe",
        status=404,
        json=fixture("error__not_found"),
    )
    with pytest.raises(FatalCrmError):
        adapter.describe("No_Such__x")


def test_next_records_url_is_a_path_on_the_instance(rsps, adapter) -> None:
    add_token(rsps)
    rsps.add(
        responses.GET,
        QUERY,
        json={
            "totalSize": 2,
            "done": False,
            "nextRecordsUrl": "/services/data/v62.0/query/01gCURSOR-1",
            "records": [record("Account", 1, stamp(1))],
        },
    )
    more = rsps.add(
        responses.GET,
        f"{INSTANCE}/services/data/v62.0/query/01gCURSOR-1",
        json={"totalSize": 2, "done": True, "records": [record("Account", 2, stamp(2))]},
    )
    assert len(list(adapter.read_changed("Account", [], None))) == 2
    assert more.call_count == 1


def test_the_run_stops_when_the_org_passes_its_share(rsps, make_adapter) -> None:
    adapter = make_adapter(api_budget_share=1.0, options={"org_usage_stop_share": 0.9})
    org = PagedOrg([record("Account", n, stamp(n)) for n in range(1, 21)], size=10)

    def first(request):
        status, _headers, body = org.first(request)
        return status, {"Sforce-Limit-Info": "api-usage=9000/10000"}, body

    add_token(rsps)
    rsps.add_callback(responses.GET, QUERY, callback=first)
    with pytest.raises(QuotaExhaustedError) as caught:
        list(adapter.read_changed("Account", [], None))
    assert caught.value.code == "ORG_API_SHARE"


def test_batch_size_hint_travels_on_every_page(rsps, make_adapter) -> None:
    adapter = make_adapter(options={"query_batch_size": 500})
    org = PagedOrg([record("Account", n, stamp(n)) for n in range(1, 8)], size=5)
    add_token(rsps)
    rsps.add_callback(responses.GET, QUERY, callback=org.first)
    rsps.add_callback(responses.GET, MORE, callback=org.more)
    assert len(list(adapter.read_changed("Account", [], None))) == 7
    hints = [c.request.headers.get("Sforce-Query-Options") for c in rsps.calls[1:]]
    assert hints == ["batchSize=500", "batchSize=500"]


@pytest.mark.parametrize(
    ("method", "url", "name"),
    [
        ("GET", f"{BASE}/query/?q=SELECT+Id", "GET query"),
        ("GET", f"{BASE}/query/01gCURSOR-2000", "GET query/{locator}"),
        ("PATCH", f"{BASE}/composite/sobjects", "PATCH composite/sobjects"),
        ("GET", f"{BASE}/sobjects/Account/describe", "GET sobjects/Account/describe"),
        ("PATCH", f"{BASE}/sobjects/Task/00T000000000001AAA", "PATCH sobjects/Task/{id}"),
        (
            "PATCH",
            f"{BASE}/sobjects/Task/Crm_Risk_Key__c/k%3A1",
            "PATCH sobjects/Task/Crm_Risk_Key__c/{key}",
        ),
        ("GET", f"{BASE}/jobs/query/750000000000001AAA/results", "GET jobs/query/{id}/results"),
        ("POST", "https://login.sf.test/services/oauth2/token", "POST oauth2/token"),
    ],
)
def test_calls_are_counted_by_kind_of_endpoint(method, url, name) -> None:
    from adapters.salesforce.client import endpoint_name

    assert endpoint_name(method, url) == name


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", "<html><form action='/login'>Sign in</form></html>"),
        ("application/json", '{"totalSize": 3, "records": [{"Id": "001'),
        ("application/json", '{"unexpected": true}'),
        ("application/json", "null"),
    ],
    ids=["login_page", "truncated", "wrong_shape", "null"],
)
def test_an_unreadable_page_is_an_error_not_the_end_of_the_read(
    rsps, adapter, content_type, body
) -> None:
    from connector.errors import RetriableCrmError

    add_token(rsps)
    rsps.add(responses.GET, QUERY, body=body, content_type=content_type)
    with pytest.raises(RetriableCrmError) as caught:
        list(adapter.read_changed("Account", [], None))
    assert caught.value.code in ("UNREADABLE_ANSWER", "UNEXPECTED_ANSWER")
    assert "Sign in" not in str(caught.value)
