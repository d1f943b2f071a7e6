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
from array import array
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Literal

from connector.errors import DataError, DataProblem
from connector.scoring.encoding import detect_encoding
from connector.scoring.history_values import (
    DATE_CEILING,
    DATE_FLOOR,
    FALSE_TEXTS,
    TRUE_TEXTS,
    Row,
    ibm_date,
    iso_date,
    plain_amount,
    width_problem,
)

HistoryFormat = Literal["ibm-ar", "canonical"]

SHOWN_PROBLEMS = 20
# A column with more distinct values than this is not a segment (it is an id).
MAX_SEGMENT_VALUES = 50
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
    codec, label = detect_encoding(path)
    history = History(source=str(path), fmt=fmt, encoding=label)
    with ExitStack() as stack:
        report = stack.enter_context(_reporter(history, errors_file))
        handle = stack.enter_context(path.open(encoding=codec, newline=""))
        records = _records(handle, report)
        slow = _SlowPath(history, fmt, report, _columns(history, next(records, None)))
        at_customer, at_invoice, at_issue, at_due, at_amount = slow.at_required
        at_paid, at_disputed, at_channel, at_written_off = slow.at_optional
        width, seen, checked, learn = slow.width, slow.seen, slow.checked, slow.learn
        customer_index, channel_index = slow.customer_index, slow.channel_index
        for line, record in records:
            history.rows_read += 1
            # The common case first: a row that passes every check, read without `Row`;
            # anything else (or anything odd) goes through `_SlowPath`, which explains it.
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
                amount = plain_amount(record[at_amount].strip())
                flags = 0
                if at_disputed >= 0:
                    text = record[at_disputed].strip().lower()
                    flags = DISPUTED if text in TRUE_TEXTS else 0 if text in FALSE_TEXTS else -1
                if at_written_off >= 0 and flags >= 0:
                    text = record[at_written_off].strip().lower()
                    flags |= WRITTEN_OFF if text in TRUE_TEXTS else 0 if text in FALSE_TEXTS else -1
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
            slow.take(record, line)
    return _finish(history, slow, errors_file)


@contextmanager
def _reporter(
    history: History, errors_file: Path | str | None
) -> Iterator[Callable[[DataProblem], None]]:
    """The function that counts a problem, keeps the first few and writes all to errors_file."""
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

        yield report


def _columns(history: History, first: tuple[int, list[str]] | None) -> tuple[dict[str, int], int]:
    """Each column key's index in the header (-1 = absent), and the header's width.

    Raises:
        DataError: no header, a required column missing, or a column named more than once.
    """
    source, fmt = history.source, history.fmt
    names = _IBM if fmt == "ibm-ar" else _CANONICAL
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
    return {key: header.get(name.lower(), -1) for key, name in names.items()}, len(first[1])


class _SlowPath:
    """The reading state shared with the fast loop, and the checks that explain a bad row."""

    def __init__(
        self,
        history: History,
        fmt: HistoryFormat,
        report: Callable[[DataProblem], None],
        columns: tuple[dict[str, int], int],
    ) -> None:
        self.history, self.report = history, report
        self.names = _IBM if fmt == "ibm-ar" else _CANONICAL
        self.parse_text = ibm_date if fmt == "ibm-ar" else iso_date
        self.pattern = "M/D/YYYY" if fmt == "ibm-ar" else "YYYY-MM-DD"
        # A history repeats its dates thousands of times: parse each distinct text once.
        self.parsed: dict[str, int] = {}
        # Date texts already met -> their ordinal, or -1 when not a plausible date.
        self.checked: dict[str, int] = {"": 0}
        self.customer_index: dict[str, int] = {}
        self.channel_index: dict[str, int] = {}
        # invoice id -> its row's index, or minus its line when that row was left out anyway
        # (a tuple per id would cost a 50 MB file some 30 MB more at its peak).
        self.seen: dict[str, int] = {}
        self.rejected: set[int] = set()
        col, self.width = columns
        self.at_required = tuple(col[key] for key in _REQUIRED)
        self.at_paid, self.at_disputed, self.at_channel = (
            col["paid_date"], col["disputed"], col["channel"]
        )  # fmt: skip
        self.at_written_off = col.get("written_off", -1)
        self.at_optional = (self.at_paid, self.at_disputed, self.at_channel, self.at_written_off)

    def parse_date(self, text: str) -> int:
        ordinal = self.parsed.get(text)
        if ordinal is None:
            ordinal = self.parsed[text] = self.parse_text(text)
        return ordinal

    def learn(self, text: str) -> int:
        """A date text's ordinal (-1 = not a plausible date), remembered in `checked`."""
        try:
            ordinal = self.parse_date(text)
        except ValueError:
            ordinal = -1
        if not DATE_FLOOR <= ordinal <= DATE_CEILING:
            ordinal = -1
        self.checked[text] = ordinal
        return ordinal

    def take(self, record: list[str], line: int) -> None:
        """Check a row the fast loop did not take: store it, or report its problems."""
        history, width = self.history, self.width
        row = Row(record, line)
        if len(record) < width or any(part.strip() for part in record[width:]):
            # Shifted values would be misread (an amount 1,234.56 without quotes is two
            # fields), so the row is left out whole, for this reason alone.
            row.problem("", width_problem(len(record), width))
            history.rows_rejected += 1
            self.report(row.problems[0])
            return
        customer, invoice_id, issue, due, paid, amount, flags = self._fields(row)
        if invoice_id:
            self._check_unique(row, invoice_id)
        if row.problems:
            history.rows_rejected += 1
            for problem in row.problems:
                self.report(problem)
            return
        history.customer.append(self.customer_index.setdefault(customer, len(self.customer_index)))
        history.issue.append(issue)
        history.due.append(due)
        history.paid.append(paid)
        history.amount.append(amount)
        history.flags.append(flags)
        history.channel.append(_segment(self.channel_index, row.text(self.at_channel)))
        history.line.append(line)

    def _fields(self, row: Row) -> tuple[str, str, int, int, int, float, int]:
        """A row's values (customer, invoice, issue, due, paid, amount, flags), noting problems."""
        names, parse_date, pattern = self.names, self.parse_date, self.pattern
        at_customer, at_invoice, at_issue, at_due, at_amount = self.at_required
        at_paid, at_disputed, at_written_off = self.at_paid, self.at_disputed, self.at_written_off
        issue_name, due_name = names["issue_date"], names["due_date"]
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
        return customer, invoice_id, issue, due, paid, amount, flags

    def _check_unique(self, row: Row, invoice_id: str) -> None:
        """Note a repeated invoice id on the row, and leave out the earlier stored row too."""
        # A stored row's index, or minus the line of a row left out anyway.
        earlier = self.seen.get(invoice_id)
        if earlier is None:
            self.seen[invoice_id] = -row.line if row.problems else len(self.history.issue)
            return
        earlier_line = self.history.line[earlier] if earlier >= 0 else -earlier
        row.problem(
            self.names["invoice_id"],
            f"duplicate invoice id (also on line {earlier_line}): both rows left out",
            invoice_id,
        )
        if earlier >= 0 and earlier not in self.rejected:
            self.rejected.add(earlier)
            self.history.rows_rejected += 1


def _finish(history: History, slow: _SlowPath, errors_file: Path | str | None) -> History:
    """Complete the load report: segment lists, duplicates dropped; refuse a file with no row."""
    history.customers = list(slow.customer_index)
    history.channels = list(slow.channel_index)
    if len(history.channels) > MAX_SEGMENT_VALUES:
        history.channels = []
        history.channel = array("h", [-1]) * len(history.issue)
    if slow.rejected:
        _drop(history, slow.rejected)
    if not len(history):
        if history.rows_read == 0:
            raise DataError(
                history.source, [DataProblem(None, "", "no invoice rows after the header")]
            )
        raise DataError(
            history.source,
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
