"""The Zoho sandbox's COQL parser: the grammar and limits of Zoho's COQL-Limitations page."""

from __future__ import annotations

import pytest

from sandboxes.zoho_coql import (
    BoolOp,
    Condition,
    CoqlError,
    credit_cost,
    criteria_columns,
    like_regex,
    parse,
)


def test_full_query_parses_into_parts() -> None:
    query = parse(
        "SELECT id, Account_Name.Account_Name FROM Invoices "
        "WHERE (Due_Date between '2026-01-01' and '2026-12-31' and "
        "(Status not in ('Void', 'Paid') or Balance > 0.5)) "
        "ORDER BY Due_Date desc, id LIMIT 20, 100;"
    )
    assert query.columns == ("id", "Account_Name.Account_Name")
    assert query.module == "Invoices"
    assert query.order_by == (("Due_Date", True), ("id", False))
    assert (query.offset, query.limit) == (20, 100)  # `limit offset, count`
    assert isinstance(query.where, BoolOp) and query.where.op == "and"
    assert query.where.left == Condition("Due_Date", "between", ("2026-01-01", "2026-12-31"))
    assert criteria_columns(query.where) == ["Due_Date", "Status", "Balance"]


def test_defaults_and_escapes() -> None:
    query = parse("select Subject from Tasks where Subject = 'It\\'s due'")
    assert (query.limit, query.offset, query.order_by) == (200, 0, ())
    assert query.where == Condition("Subject", "=", ("It's due",))
    assert parse("select id from Tasks where What_Id <> '1'").where == Condition(
        "What_Id", "!=", ("1",)
    )
    nulls = parse(
        "select id from Tasks where (Owner is null or Due_Date is not null) limit 5 offset 5"
    )
    assert isinstance(nulls.where, BoolOp)
    assert [c.op for c in (nulls.where.left, nulls.where.right)] == ["is_null", "is_not_null"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text",
    [
        "select from Accounts",
        "select id Accounts",
        "select id from Accounts where",
        "select id from Accounts where a = 1 and b = 2 or c = 3",
        "select id from Accounts where (a = 1",
        "select id from Accounts limit ten",
        "select id from Accounts where a ~ 1",
        "select * from Accounts",
        "",
    ],
)
def test_syntax_errors(text: str) -> None:
    with pytest.raises(CoqlError) as caught:
        parse(text)
    assert caught.value.code == "SYNTAX_ERROR"


def test_limits() -> None:
    columns = ", ".join(f"f{i}" for i in range(51))
    with pytest.raises(CoqlError, match="column"):
        parse(f"select {columns} from Accounts")
    criteria = "a = 1"
    for index in range(25):
        criteria = f"(b{index} = 1 and {criteria})"
    with pytest.raises(CoqlError, match="criteria"):
        parse(f"select id from Accounts where {criteria}")
    assert parse("select id from Accounts limit 2000 offset 98000").offset == 98000


def test_like_and_costs() -> None:
    assert like_regex("Acme%").match("ACME GmbH")
    assert not like_regex("%GmbH").match("Acme AG")
    assert parse("select id from Accounts where Account_Name not like '%AG'").where == Condition(
        "Account_Name", "not_like", ("%AG",)
    )
    assert [credit_cost(n) for n in (1, 200, 201, 1000, 1001, 2000)] == [1, 1, 2, 2, 3, 3]
