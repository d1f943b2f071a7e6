"""Payment-history CSV files for the backtest: decoding, row checks, compact column storage.

Two layouts are read:

``ibm-ar``
    IBM's "Accounts Receivable" sample (countryCode, customerID, invoiceNumber, InvoiceDate,
    DueDate, InvoiceAmount, Disputed, SettledDate, PaperlessBill, ..., dates M/D/YYYY).

``canonical``
    One row per invoice, header required, dates ISO (YYYY-MM-DD):

    ============  ========  =========================================================
    column        required  meaning
    ============  ========  =========================================================
    customer_id   yes       the customer (account) id
    invoice_id    yes       the invoice id or number, unique in the file
    issue_date    yes       date issued
    due_date      yes       date due
    amount        yes       invoiced amount, positive (one currency per file)
    paid_date     no        date fully paid; empty = still open
    disputed      no        true/false, yes/no or 1/0
    written_off   no        true/false: written off (on paid_date, else due_date)
    channel       no        billing channel (paper, electronic, portal ...): a report segment
    ============  ========  =========================================================

Encodings: UTF-8 with or without BOM, UTF-16 with BOM and GB18030 (a superset of GBK and
GB2312), detected in that order; the one used is reported. A file in another 8-bit encoding
(Windows-1252 ...) may decode as GB18030: ids then look garbled but stay consistent.

Every row is checked (as many fields as the header, dates that exist and are plausible, due and
paid dates not before the issue date, amounts in plain digits with a '.' decimal point, finite,
from 0.001 to 10^12, unique invoice ids); rows with problems are left out, every problem is
counted and can be written to a file, and the file is rejected only when no usable row remains,
or when its header is unusable (a required column missing, or a column named twice). Rows are kept as compact columns (about 60 bytes a row), so a 50 MB file
fits in well under 300 MB.
"""

from __future__ import annotations

import csv
import re
from array import array
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Literal

from connector.errors import DataError, DataProblem
from connector.scoring.encoding import detect_encoding

HistoryFormat = Literal["ibm-ar", "canonical"]

SHOWN_PROBLEMS = 20
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
# A column with more distinct values than this is not a segment (it is an id).
MAX_SEGMENT_VALUES = 50
_TRUE = frozenset({"1", "true", "yes", "y", "t"})
_FALSE = frozenset({"", "0", "false", "no", "n", "f"})
DISPUTED = 1
WRITTEN_OFF = 2

_IBM = {
    "customer_id": "customerID",
    "invoice_id": "invoiceNumber",
    "issue_date": "InvoiceDate",
    "due_date": "DueDate",
    "amount": "InvoiceAmount",
    "paid_date": "SettledDate",
    "disputed": "Disputed",
    "channel": "PaperlessBill",
}
_CANONICAL = {
    name: name
    for name in (
        "customer_id",
        "invoice_id",
        "issue_date",
        "due_date",
        "amount",
        "paid_date",
        "disputed",
        "written_off",
        "channel",
    )
}
_REQUIRED = ("customer_id", "invoice_id", "issue_date", "due_date", "amount")


@dataclass(slots=True)
class History:
    """A payment history as columns: row i is one invoice (dates are proleptic ordinals)."""

    source: str
    fmt: str
    encoding: str
    customers: list[str] = field(default_factory=list)
    customer: array[int] = field(default_factory=lambda: array("l"))
    issue: array[int] = field(default_factory=lambda: array("l"))
    due: array[int] = field(default_factory=lambda: array("l"))
    # 0 = not paid.
    paid: array[int] = field(default_factory=lambda: array("l"))
    amount: array[float] = field(default_factory=lambda: array("d"))
    flags: bytearray = field(default_factory=bytearray)
    # Segment value index per row, -1 = none; `channels` holds the values.
    channel: array[int] = field(default_factory=lambda: array("h"))
    channels: list[str] = field(default_factory=list)
    line: array[int] = field(default_factory=lambda: array("l"))
    rows_read: int = 0
    rows_rejected: int = 0
    problems_total: int = 0
    problems: list[DataProblem] = field(default_factory=list)
    errors_file: str | None = None

    def __len__(self) -> int:
        return len(self.issue)

    def disputed(self, i: int) -> bool:
        """Whether row i's invoice was disputed."""
        return bool(self.flags[i] & DISPUTED)

    def written_off(self, i: int) -> bool:
        """Whether row i's invoice was written off."""
        return bool(self.flags[i] & WRITTEN_OFF)

    def last_date(self) -> int:
        """The latest issue or paid date in the file: the history is known up to this day."""
        latest = max(self.issue, default=0)
        return max(latest, max(self.paid, default=0))


# -- values ---------------------------------------------------------------------------------------


def _ibm_date(text: str) -> int:
    month, day, year = text.split("/")
    if len(year) != 4:
        raise ValueError(text)
    return date(int(year), int(month), int(day)).toordinal()


def _iso_date(text: str) -> int:
    return date.fromisoformat(text).toordinal()


def _plain_amount(text: str) -> float:
    """An amount in plain digits that passes every check, as a float; 0.0 for anything else.

    `float` rounds the decimal exactly as `float(Decimal(...))` does (both correctly rounded),
    at a fraction of the cost; `_Row.amount` checks (and explains) everything else.
    """
    if _PLAIN_AMOUNT.fullmatch(text) and len(text.partition(".")[0].lstrip("0")) <= 12:
        value = float(text)
        if value >= _MIN_FLOAT:
            return value
    return 0.0


class _Row:
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
        value_fast = _plain_amount(text)
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
        if text in _TRUE:
            return True
        if text not in _FALSE:
            self.problem(column, "expected yes/no, true/false or 1/0", text)
        return False


# -- reading --------------------------------------------------------------------------------------


def _records(
    handle: IO[str], problems: Callable[[DataProblem], None]
) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) per CSV record; a malformed record is reported and skipped."""
    reader = csv.reader(handle)
    last = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems(DataProblem(last + 1, "", f"malformed CSV: {exc}"))
            last = reader.line_num
            continue
        first = last + 1
        last = reader.line_num
        if record and any(part.strip() for part in record):
            yield first, record


def read_history(
    path: Path | str, fmt: HistoryFormat = "ibm-ar", errors_file: Path | str | None = None
) -> History:
    """Read and check a payment-history CSV, keeping the good rows as compact columns.

    Args:
        path: the CSV file.
        fmt: "ibm-ar" (IBM's sample layout) or "canonical" (see the module docstring).
        errors_file: where to write every problem as CSV (line, column, value, problem).

    Returns:
        The usable rows, with the count of rows read and rejected and the first problems.

    Raises:
        DataError: the file cannot be read or decoded, lacks a required column, or has no
            usable row (exit code 65).
    """
    path = Path(path)
    source = str(path)
    codec, label = detect_encoding(path)
    history = History(source=source, fmt=fmt, encoding=label)
    names = _IBM if fmt == "ibm-ar" else _CANONICAL
    parse_text = _ibm_date if fmt == "ibm-ar" else _iso_date
    # A history repeats its dates thousands of times: parse each distinct text once.
    parsed: dict[str, int] = {}

    def parse_date(text: str) -> int:
        ordinal = parsed.get(text)
        if ordinal is None:
            ordinal = parsed[text] = parse_text(text)
        return ordinal

    pattern = "M/D/YYYY" if fmt == "ibm-ar" else "YYYY-MM-DD"
    customer_index: dict[str, int] = {}
    channel_index: dict[str, int] = {}
    # invoice id -> its row's index, or minus its line when that row was left out anyway (a
    # tuple per id would cost a 50 MB file some 30 MB more at its peak).
    seen: dict[str, int] = {}
    rejected: set[int] = set()

    with ExitStack() as stack:
        writer = None
        if errors_file is not None:
            history.errors_file = str(errors_file)
            out = stack.enter_context(Path(errors_file).open("w", newline="", encoding="utf-8"))
            writer = csv.writer(out)
            writer.writerow(["line", "column", "value", "problem"])

        def report(problem: DataProblem) -> None:
            history.problems_total += 1
            if len(history.problems) < SHOWN_PROBLEMS:
                history.problems.append(problem)
            if writer is not None:
                writer.writerow(["" if problem.line is None else problem.line, problem.column,
                                 problem.value, problem.message])  # fmt: skip

        handle = stack.enter_context(path.open(encoding=codec, newline=""))
        records = _records(handle, report)
        first = next(records, None)
        if first is None:
            raise DataError(source, [DataProblem(None, "", "empty file: no header row")])
        header = {name.strip().lower(): i for i, name in enumerate(first[1])}
        missing = [names[key] for key in _REQUIRED if names[key].lower() not in header]
        if missing:
            raise DataError(
                source,
                [DataProblem(first[0], "", f"missing column(s) {', '.join(missing)}")],
                hint=f"Is --format {fmt} right? Found: {', '.join(first[1])[:200]}",
            )
        repeated = [
            name
            for name in names.values()
            if sum(1 for found in first[1] if found.strip().lower() == name.lower()) > 1
        ]
        if repeated:
            raise DataError(
                source,
                [
                    DataProblem(
                        first[0],
                        "",
                        f"column(s) {', '.join(repeated)} more than once in the header: "
                        "which one holds the data is unclear",
                    )
                ],
                hint="Keep one column of each name: rename or remove the others.",
            )
        col = {key: header.get(name.lower(), -1) for key, name in names.items()}
        width = len(first[1])
        at_customer, at_invoice, at_issue, at_due, at_amount = (col[key] for key in _REQUIRED)
        at_paid, at_disputed, at_channel = col["paid_date"], col["disputed"], col["channel"]
        at_written_off = col.get("written_off", -1)
        issue_name, due_name = names["issue_date"], names["due_date"]
        # Date texts already met -> their ordinal, or -1 when not a plausible date.
        checked: dict[str, int] = {"": 0}

        def learn(text: str) -> int:
            try:
                ordinal = parse_date(text)
            except ValueError:
                ordinal = -1
            if not DATE_FLOOR <= ordinal <= DATE_CEILING:
                ordinal = -1
            checked[text] = ordinal
            return ordinal

        for line, record in records:
            history.rows_read += 1
            # The common case first: a row that passes every check, read without `_Row`;
            # anything else (or anything odd) goes through `_Row`, which finds and explains it.
            if len(record) == width:
                customer = record[at_customer].strip()
                invoice_id = record[at_invoice].strip()
                text = record[at_issue].strip()
                issue = checked.get(text)
                if issue is None:
                    issue = learn(text)
                text = record[at_due].strip()
                due = checked.get(text)
                if due is None:
                    due = learn(text)
                text = record[at_paid].strip() if at_paid >= 0 else ""
                paid = checked.get(text)
                if paid is None:
                    paid = learn(text)
                amount = _plain_amount(record[at_amount].strip())
                flags = 0
                if at_disputed >= 0:
                    text = record[at_disputed].strip().lower()
                    flags = DISPUTED if text in _TRUE else 0 if text in _FALSE else -1
                if at_written_off >= 0 and flags >= 0:
                    text = record[at_written_off].strip().lower()
                    flags |= WRITTEN_OFF if text in _TRUE else 0 if text in _FALSE else -1
                if (
                    customer
                    and invoice_id
                    and 0 < issue <= due
                    and (paid == 0 or paid >= issue)
                    and amount
                    and flags >= 0
                    and invoice_id not in seen
                ):
                    seen[invoice_id] = len(history.issue)
                    history.customer.append(
                        customer_index.setdefault(customer, len(customer_index))
                    )
                    history.issue.append(issue)
                    history.due.append(due)
                    history.paid.append(paid)
                    history.amount.append(amount)
                    history.flags.append(flags)
                    value = record[at_channel].strip() if at_channel >= 0 else ""
                    history.channel.append(_segment(channel_index, value))
                    history.line.append(line)
                    continue
            row = _Row(record, line)
            if len(record) < width or any(part.strip() for part in record[width:]):
                # Shifted values would be misread (an amount 1,234.56 without quotes is two
                # fields), so the row is left out whole, for this reason alone.
                row.problem("", _width_problem(len(record), width))
                history.rows_rejected += 1
                report(row.problems[0])
                continue
            customer = row.text(at_customer)
            if not customer:
                row.problem(names["customer_id"], "empty")
            invoice_id = row.text(at_invoice)
            if not invoice_id:
                row.problem(names["invoice_id"], "empty")
            issue = row.date(at_issue, issue_name, parse_date, pattern)
            due = row.date(at_due, due_name, parse_date, pattern)
            paid = row.date(at_paid, names.get("paid_date", ""), parse_date, pattern)
            if not row.text(at_issue):
                row.problem(issue_name, "empty")
            if not row.text(at_due):
                row.problem(due_name, "empty")
            if issue and due and due < issue:
                row.problem(due_name, "before the issue date", row.text(at_due))
            if issue and paid and paid < issue:
                row.problem(names["paid_date"], "before the issue date", row.text(at_paid))
            amount = row.amount(at_amount, names["amount"])
            flags = 0
            if at_disputed >= 0 and row.flag(at_disputed, names["disputed"]):
                flags |= DISPUTED
            if at_written_off >= 0 and row.flag(at_written_off, names["written_off"]):
                flags |= WRITTEN_OFF
            if invoice_id:
                # A stored row's index, or minus the line of a row left out anyway.
                earlier = seen.get(invoice_id)
                if earlier is None:
                    seen[invoice_id] = -line if row.problems else len(history.issue)
                else:
                    earlier_line = history.line[earlier] if earlier >= 0 else -earlier
                    row.problem(
                        names["invoice_id"],
                        f"duplicate invoice id (also on line {earlier_line}): both rows left out",
                        invoice_id,
                    )
                    if earlier >= 0 and earlier not in rejected:
                        rejected.add(earlier)
                        history.rows_rejected += 1
            if row.problems:
                history.rows_rejected += 1
                for problem in row.problems:
                    report(problem)
                continue
            history.customer.append(customer_index.setdefault(customer, len(customer_index)))
            history.issue.append(issue)
            history.due.append(due)
            history.paid.append(paid)
            history.amount.append(amount)
            history.flags.append(flags)
            history.channel.append(_segment(channel_index, row.text(at_channel)))
            history.line.append(line)
    history.customers = list(customer_index)
    history.channels = list(channel_index)
    if len(history.channels) > MAX_SEGMENT_VALUES:
        history.channels = []
        history.channel = array("h", [-1]) * len(history.issue)
    if rejected:
        _drop(history, rejected)
    if not len(history):
        if history.rows_read == 0:
            raise DataError(source, [DataProblem(None, "", "no invoice rows after the header")])
        raise DataError(
            source,
            history.problems,
            total=history.problems_total,
            hint=_more_hint(history, errors_file),
        )
    return history


def _segment(values: dict[str, int], value: str) -> int:
    """The index of a segment value (-1 = none), adding it if new; -1 past the segment limit."""
    if not value:
        return -1
    index = values.get(value)
    if index is None:
        if len(values) > MAX_SEGMENT_VALUES:
            # An id-like column: not a segment (dropped after reading; also fits "h").
            return -1
        index = values[value] = len(values)
    return index


def _width_problem(fields: int, width: int) -> str:
    if fields > width:
        return (
            f"{fields} fields where the header has {width}: a value with a comma not in quotes "
            "(such as an amount 1,234.56)? Quote it, or remove the extra fields"
        )
    return f"{fields} fields where the header has {width}: the row is cut short; complete it"


def _more_hint(history: History, errors_file: Path | str | None) -> str:
    head = f"No usable row: all {history.rows_read} rows were left out."
    if errors_file is not None:
        return f"{head} Every problem is in {errors_file}."
    if history.problems_total > len(history.problems):
        return f"{head} Pass --errors-file FILE to write all {history.problems_total} problems."
    return head


def _drop(history: History, rejected: set[int]) -> None:
    """Remove rows found to be duplicates after they were stored."""
    keep = [i for i in range(len(history.issue)) if i not in rejected]
    history.customer = array("l", (history.customer[i] for i in keep))
    history.issue = array("l", (history.issue[i] for i in keep))
    history.due = array("l", (history.due[i] for i in keep))
    history.paid = array("l", (history.paid[i] for i in keep))
    history.amount = array("d", (history.amount[i] for i in keep))
    history.flags = bytearray(history.flags[i] for i in keep)
    history.channel = array("h", (history.channel[i] for i in keep))
    history.line = array("l", (history.line[i] for i in keep))


def censor(history: History, split: date) -> History:
    """The history as it looked the day before `split`: later invoices gone, later events unknown.

    Invoices issued on or after the split are dropped; a payment on or after it becomes "still
    open", and a dispute or write-off flag on an invoice not settled before it is cleared (the
    file carries no dispute date, so a dispute is taken as known once the invoice is settled).

    Args:
        history: the full history.
        split: the first day that is not yet known.

    Returns:
        A new history holding only what was known before `split`.
    """
    cut = split.toordinal()
    out = History(source=history.source, fmt=history.fmt, encoding=history.encoding)
    out.customers = history.customers
    out.channels = history.channels
    for i in range(len(history)):
        if history.issue[i] >= cut:
            continue
        paid = history.paid[i]
        # A write-off without a date is taken as written off on the due date.
        settled = paid or (history.due[i] if history.flags[i] & WRITTEN_OFF else 0)
        known = 0 < settled < cut
        out.customer.append(history.customer[i])
        out.issue.append(history.issue[i])
        out.due.append(history.due[i])
        out.paid.append(paid if known else 0)
        out.amount.append(history.amount[i])
        out.flags.append(history.flags[i] if known else 0)
        out.channel.append(history.channel[i])
        out.line.append(history.line[i])
    out.rows_read = len(out)
    return out
