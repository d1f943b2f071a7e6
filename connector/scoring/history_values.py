"""Checks of single payment-history values (dates, amounts, yes/no flags) and of one row."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation

from connector.errors import DataProblem

# Plausible dates: nothing in a payment history predates 1950 or follows 2100 (year 0001 and
# 9999 are export defaults for "no date", not dates).
DATE_FLOOR = date(1950, 1, 1).toordinal()
DATE_CEILING = date(2100, 12, 31).toordinal()
# Larger amounts are export garbage (1e308) and would break the arithmetic downstream.
MAX_AMOUNT = Decimal(10) ** 12
# Smaller amounts are export garbage too (1e-400 would even become 0.0 as a float).
MIN_AMOUNT = Decimal("0.001")
# An amount the fast path may read with `float`: plain digits, an optional fraction.
_PLAIN_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# What an amount may look like: ASCII digits, a '.' decimal point, an exponent; `Decimal` alone
# would also take "1_000" and digits of other scripts.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MIN_FLOAT = float(MIN_AMOUNT)
_NOT_FINITE = frozenset({"nan", "snan", "inf", "infinity"})
TRUE_TEXTS = frozenset({"1", "true", "yes", "y", "t"})
FALSE_TEXTS = frozenset({"", "0", "false", "no", "n", "f"})


def ibm_date(text: str) -> int:
    month, day, year = text.split("/")
    if len(year) != 4:
        raise ValueError(text)
    return date(int(year), int(month), int(day)).toordinal()


def iso_date(text: str) -> int:
    return date.fromisoformat(text).toordinal()


def plain_amount(text: str) -> float:
    """An amount in plain digits that passes every check, as a float; 0.0 for anything else.

    `float` rounds the decimal exactly as `float(Decimal(...))` does (both correctly rounded),
    at a fraction of the cost; `Row.amount` checks (and explains) everything else.
    """
    if _PLAIN_AMOUNT.fullmatch(text) and len(text.partition(".")[0].lstrip("0")) <= 12:
        value = float(text)
        if value >= _MIN_FLOAT:
            return value
    return 0.0


class Row:
    """Checks one CSV record; collects its problems."""

    __slots__ = ("line", "problems", "record")

    def __init__(self, record: list[str], line: int) -> None:
        self.record = record
        self.line = line
        self.problems: list[DataProblem] = []

    def text(self, index: int) -> str:
        return self.record[index].strip() if 0 <= index < len(self.record) else ""

    def problem(self, column: str, message: str, value: str = "") -> None:
        self.problems.append(DataProblem(self.line, column, message, value[:60]))

    def date(self, index: int, column: str, parse: Callable[[str], int], pattern: str) -> int:
        text = self.text(index)
        if not text:
            return 0
        try:
            ordinal = parse(text)
        except ValueError:
            self.problem(column, f"not a date {pattern}", text)
            return 0
        if not DATE_FLOOR <= ordinal <= DATE_CEILING:
            self.problem(column, "implausible date (before 1950 or after 2100)", text)
            return 0
        return ordinal

    def amount(self, index: int, column: str) -> float:
        text = self.text(index)
        value_fast = plain_amount(text)
        if value_fast:
            return value_fast
        if not text:
            self.problem(column, "empty")
            return 0.0
        if "," in text:
            self.problem(
                column,
                "a thousands separator or decimal comma: write plain digits with a '.' "
                "decimal point (1234.56), no grouping",
                text,
            )
            return 0.0
        if not _NUMBER.fullmatch(text):
            finite = text.lower().lstrip("+-") not in _NOT_FINITE
            self.problem(column, "not a number" if finite else "not a finite number", text)
            return 0.0
        try:
            value = Decimal(text)
        except InvalidOperation:  # an exponent beyond Decimal's range (1e99999999999999999999)
            self.problem(column, "not a finite number", text)
            return 0.0
        if value <= 0:
            self.problem(
                column,
                "not positive; credit notes and zero lines are not invoices, leave them out",
                text,
            )
        elif value > MAX_AMOUNT:
            self.problem(column, "implausibly large (above 10^12)", text)
        elif value < MIN_AMOUNT:
            self.problem(column, "implausibly small (below 0.001)", text)
        else:
            return float(value)
        return 0.0

    def flag(self, index: int, column: str) -> bool:
        text = self.text(index).lower()
        if text in TRUE_TEXTS:
            return True
        if text not in FALSE_TEXTS:
            self.problem(column, "expected yes/no, true/false or 1/0", text)
        return False


def width_problem(fields: int, width: int) -> str:
    if fields > width:
        return (
            f"{fields} fields where the header has {width}: a value with a comma not in quotes "
            "(such as an amount 1,234.56)? Quote it, or remove the extra fields"
        )
    return f"{fields} fields where the header has {width}: the row is cut short; complete it"
