"""COQL builders stay within Zoho's documented limits."""

from __future__ import annotations

import pytest

from adapters.zoho import coql


def test_select_with_in_list_and_quotes() -> None:
    query = coql.select(
        "Invoices", ["id", "Account_Name"], coql.in_list("id", ["1", "o'neil"]), limit=2
    )
    assert query == (
        "select id, Account_Name from Invoices where id in ('1','o\\'neil') order by id limit 2"
    )


def test_criteria_are_bracketed_in_pairs() -> None:
    assert coql.all_of(["A", "B", "C"]) == "(A and (B and C))"
    assert coql.all_of(["A"]) == "A"


@pytest.mark.parametrize(
    "build",
    [
        lambda: coql.select("M", [f"F{i}" for i in range(51)], "id is not null"),
        lambda: coql.select("M", ["id"], "id is not null", limit=2001),
        lambda: coql.select("M", ["id"], "id is not null", limit=2000, offset=98001),
        lambda: coql.in_list("id", [str(i) for i in range(51)]),
        lambda: coql.select("M; drop", ["id"], "id is not null"),
        lambda: coql.all_of([f"c{i}" for i in range(26)]),
    ],
    ids=["51_columns", "limit_2001", "offset_reach", "51_in_values", "bad_name", "26_criteria"],
)
def test_limits_are_refused(build) -> None:
    with pytest.raises(ValueError):
        build()


@pytest.mark.parametrize(
    ("limit", "cost"), [(1, 1), (200, 1), (201, 2), (1000, 2), (1001, 3), (2000, 3)]
)
def test_credit_cost_by_limit(limit: int, cost: int) -> None:
    assert coql.credit_cost(limit) == cost
