"""The pieces behind readable output: `--since` forms, Salesforce 15-character ids, run times."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from adapters.salesforce.ids import normalise_record_id
from connector.cli.audit_view import describe_entry, parse_since, render_audit
from connector.cli.status_view import readable_time
from connector.errors import UsageError

# Dates without an offset are local time, as the user typed them.
NOW = datetime(2026, 11, 30, 15, 30).astimezone()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("30m", NOW - timedelta(minutes=30)),
        ("3d", NOW - timedelta(days=3)),
        ("1w", NOW - timedelta(weeks=1)),
        ("today", datetime(2026, 11, 30, tzinfo=NOW.tzinfo)),
        ("yesterday", datetime(2026, 11, 29, tzinfo=NOW.tzinfo)),
        ("2026-11-28", datetime(2026, 11, 28, tzinfo=NOW.tzinfo)),
        ("2026-11-28T14:00", datetime(2026, 11, 28, 14, tzinfo=NOW.tzinfo)),
        ("2026-11-28 14:00", datetime(2026, 11, 28, 14, tzinfo=NOW.tzinfo)),
        ("2026-11-28T14:00Z", datetime(2026, 11, 28, 14, tzinfo=UTC)),
    ],
)
def test_since_accepts_dates_datetimes_ages_and_day_words(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["last tuesday", "2h ago", "-1d", "2026-13-01", ""])
def test_since_refuses_anything_else_as_a_usage_error_naming_the_forms(text: str) -> None:
    with pytest.raises(UsageError, match=r"not a time; use a date .* an age \(30m, 2h"):
        parse_since(text, NOW)


@pytest.mark.parametrize(
    ("typed", "api_id"),
    [
        # Examples published with the documented conversion (15 characters -> 18).
        ("0013k00002crTPa", "0013k00002crTPaAAM"),
        ("0010i0000046cD3", "0010i0000046cD3AAI"),
        # The 18-character form in any case comes back in its exact case.
        ("0013K00002CRTPAAAM", "0013k00002crTPaAAM"),
        ("0013k00002crTPaAAM", "0013k00002crTPaAAM"),
        # Not an id: unchanged (a name, a Zoho id).
        ("Acme Corp", "Acme Corp"),
        ("4876876000000624001", "4876876000000624001"),
    ],
)
def test_salesforce_ids_as_people_copy_them_become_the_api_id(typed: str, api_id: str) -> None:
    assert normalise_record_id(typed) == api_id


def test_a_task_entry_reads_as_its_subject_not_json() -> None:
    row = {
        "action": "task_create",
        "field": "past_due",
        "old_value": None,
        "new_value": {
            "task_id": "00T1",
            "subject": "Acme: invoices 40 days past due",
            "priority": "high",
        },
    }

    assert describe_entry(row) == (
        "task past_due",
        "created: Acme: invoices 40 days past due (high)",
    )


def test_a_run_time_reads_as_utc_and_its_distance_from_now() -> None:
    now = datetime(2026, 12, 2, 4, 12, tzinfo=UTC)

    assert readable_time("2026-12-02T04:07:00+00:00", now) == "2026-12-02 04:07 UTC (5 min ago)"
    assert readable_time("2026-12-02T07:10:00+01:00", now) == "2026-12-02 06:10 UTC (in 2 h)"
    assert readable_time(None, now) == "-"


def test_an_audit_entry_in_chinese_stays_on_one_line_within_the_width() -> None:
    from rich.cells import cell_len
    from rich.console import Console

    row = {
        "at": "2026-12-02T08:45:28+00:00",
        "connection": "fx",
        "record_id": "a1",
        "action": "task_create",
        "field": "limit_approval",
        "new_value": {"subject": "客户 华东精密制造有限公司：3 项信用额度变更待您审批" * 3},
        "crm_response": "ok",
    }
    names = {("fx", "a1"): "华东精密制造有限公司（上海）分公司"}
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(
        render_audit([row], names, total=1, several_connections=False, title="t", width=100)
    )
    lines = console.export_text().splitlines()
    entry = [line for line in lines if line.startswith("2026-12-02")]
    assert len(entry) == 1 and len(lines) == 4, lines  # title, header, the entry, the hint
    assert cell_len(entry[0]) <= 100
    assert "华东精密制造" in entry[0] and entry[0].rstrip().endswith("…")
