"""SOQL builders, tested alone: select lists, closed starts, keyset continuation, quoting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from adapters.salesforce import soql


def test_select_list_puts_id_and_cursor_first_and_dedupes() -> None:
    assert soql.select_list(["Name", "id", "Owner.IsActive", "name"]) == [
        "Id",
        "SystemModstamp",
        "Name",
        "Owner.IsActive",
    ]
    assert soql.select_list([], include_deleted=True) == ["Id", "SystemModstamp", "IsDeleted"]


@pytest.mark.parametrize("bad", ["Name FROM User --", "Name,Id", "x'y", "", "Owner..Id"])
def test_names_with_punctuation_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="API name"):
        soql.select_list([bad])


def test_changed_since_has_a_closed_floored_start_and_a_stable_order() -> None:
    since = datetime(2026, 11, 20, 12, 0, 5, 987000, tzinfo=timezone(timedelta(hours=2)))
    text = soql.changed_since("Account", ["Id", "SystemModstamp", "Name"], since)
    assert text == (
        "SELECT Id, SystemModstamp, Name FROM Account "
        "WHERE SystemModstamp >= 2026-11-20T10:00:05Z "
        "ORDER BY SystemModstamp ASC, Id ASC"
    )


def test_full_read_has_no_where_clause() -> None:
    assert soql.changed_since("Account", ["Id"], None) == (
        "SELECT Id FROM Account ORDER BY SystemModstamp ASC, Id ASC"
    )


def test_keyset_continuation_keeps_equal_timestamps_after_the_last_id() -> None:
    last = datetime(2026, 11, 20, 10, 0, 0, 123000, tzinfo=UTC)
    text = soql.changed_since(
        "Account", ["Id"], None, after=(last, "001000000000042AAA"), limit=500
    )
    assert "OFFSET" not in text
    assert text == (
        "SELECT Id FROM Account WHERE (SystemModstamp > 2026-11-20T10:00:00.123Z OR "
        "(SystemModstamp = 2026-11-20T10:00:00.123Z AND Id > '001000000000042AAA')) "
        "ORDER BY SystemModstamp ASC, Id ASC LIMIT 500"
    )


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        soql.datetime_literal(datetime(2026, 1, 1))


def test_values_are_quoted_and_escaped() -> None:
    text = soql.by_ids("Account", ["Id"], ["001A", "x' OR Name != '"])
    assert "Id IN ('001A', 'x\\' OR Name != \\'')" in text


def test_task_lookup_narrows_by_creator_and_accounts_newest_first() -> None:
    text = soql.tasks_created_by("005000000000001AAA", ["001A", "001B"])
    assert (
        "FROM Task WHERE CreatedById = '005000000000001AAA' AND WhatId IN ('001A', '001B')" in text
    )
    assert text.endswith("ORDER BY CreatedDate DESC, Id DESC")
    assert "Description LIKE" not in text  # long text areas cannot be filtered
    assert "WHERE" not in soql.tasks_created_by(None)


def test_task_lookup_by_external_id() -> None:
    text = soql.tasks_by_external_id("Crm_Risk_Key__c", ["k:1", "k:2"])
    assert text.endswith("FROM Task WHERE Crm_Risk_Key__c IN ('k:1', 'k:2')")
