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

Every row is checked (dates that exist and are plausible, due and paid dates not before the
issue date, amounts finite and positive, unique invoice ids); rows with problems are left out,
every problem is counted and can be written to a file, and the file is rejected only when no
usable row remains. Rows are kept as compact columns (about 60 bytes a row), so a 50 MB file
fits in well under 300 MB.
"""

from __future__ import annotations

import codecs
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

HistoryFormat = Literal["ibm-ar", "canonical"]

SHOWN_PROBLEMS = 20
# Plausible dates: nothing in a payment history predates 1950 or follows 2100 (year 0001 and
# 9999 are export defaults for "no date", not dates).
DATE_FLOOR = date(1950, 1, 1).toordinal()
DATE_CEILING = date(2100, 12, 31).toordinal()
# Larger amounts are export garbage (1e308) and would break the arithmetic downstream.
MAX_AMOUNT = Decimal(10) ** 12
# An amount the fast path may read with `float`: plain digits, an optional fraction.
_PLAIN_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# A column with more distinct values than this is not a segment (it is an id).
MAX_SEGMENT_VALUES = 50
_CHUNK = 1 << 20
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


# -- decoding -------------------------------------------------------------------------------------


def _scan(path: Path, codec: str, skip: int) -> tuple[int, int] | None:
    """Decode the whole file in chunks; None if clean, else (line, byte offset) of the failure."""
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    lines = 1
    offset = 0
    with path.open("rb") as handle:
        handle.seek(skip)
        while True:
            chunk = handle.read(_CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                position = max(0, min(len(chunk), exc.start))
                return lines + chunk.count(b"\n", 0, position), skip + offset + position
            if not chunk:
                return None
            lines += chunk.count(b"\n")
            offset += len(chunk)


def detect_encoding(path: Path) -> tuple[str, str]:
    """The codec to read a CSV with and its name for the report.

    Args:
        path: the file.

    Returns:
        (Python codec, label) for UTF-8 (with or without BOM), UTF-16 with BOM or GB18030.

    Raises:
        DataError: the file cannot be read, holds binary data, or decodes in none of them.
    """
    source = str(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(_CHUNK)
    except OSError as exc:
        raise DataError(
            source, [DataProblem(None, "", f"cannot read the file: {exc.strerror}")]
        ) from None
    if head.startswith(codecs.BOM_UTF8):
        codec, label, skip = "utf-8", "UTF-8 with BOM", 3
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec, label, skip = "utf-16", "UTF-16 with BOM", 0
    else:
        nul = head.find(b"\x00")
        if nul >= 0:
            line = head.count(b"\n", 0, nul) + 1
            raise DataError(
                source,
                [
                    DataProblem(
                        line, "", f"binary data (a NUL byte at byte {nul}): not a CSV text file"
                    )
                ],
                hint="Export the history as CSV (UTF-8); a UTF-16 file needs its byte-order mark.",
            )
        codec, label, skip = "utf-8", "UTF-8", 0
    failure = _scan(path, codec, skip)
    if failure is None:
        return ("utf-8-sig" if skip == 3 else codec), label
    if codec == "utf-8" and skip == 0 and _scan(path, "gb18030", 0) is None:
        return "gb18030", "GB18030"
    line, offset = failure
    raise DataError(
        source,
        [DataProblem(line, "", f"bytes that are not valid {label} text (byte {offset})")],
        hint="Save the file as UTF-8 CSV (UTF-16 needs a byte-order mark; GB18030/GBK is also read).",
    )


# -- values ---------------------------------------------------------------------------------------


def _ibm_date(text: str) -> int:
    month, day, year = text.split("/")
    if len(year) != 4:
        raise ValueError(text)
    return date(int(year), int(month), int(day)).toordinal()


def _iso_date(text: str) -> int:
    return date.fromisoformat(text).toordinal()


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
        if _PLAIN_AMOUNT.fullmatch(text):
            # Digits with an optional fraction: `float` rounds the decimal exactly as
            # `float(Decimal(...))` does (both correctly rounded), at a fraction of the cost.
            value_fast = float(text)
            if value_fast > 0 and len(text.partition(".")[0].lstrip("0")) <= 12:
                return value_fast
        try:
            value = Decimal(text.replace(",", ""))
        except InvalidOperation:
            self.problem(column, "not a number", text)
            return 0.0
        if not value.is_finite():
            self.problem(column, "not a finite number", text)
        elif value <= 0:
            self.problem(
                column,
                "not positive; credit notes and zero lines are not invoices, leave them out",
                text,
            )
        elif value > MAX_AMOUNT:
            self.problem(column, "implausibly large (above 10^12)", text)
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
    last = 1
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
    # invoice id -> (row index or -1 when that row was rejected anyway, line)
    seen: dict[str, tuple[int, int]] = {}
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
        col = {key: header.get(name.lower(), -1) for key, name in names.items()}

        for line, record in records:
            history.rows_read += 1
            row = _Row(record, line)
            customer = row.text(col["customer_id"])
            if not customer:
                row.problem(names["customer_id"], "empty")
            invoice_id = row.text(col["invoice_id"])
            if not invoice_id:
                row.problem(names["invoice_id"], "empty")
            issue = row.date(col["issue_date"], names["issue_date"], parse_date, pattern)
            due = row.date(col["due_date"], names["due_date"], parse_date, pattern)
            paid = row.date(col["paid_date"], names.get("paid_date", ""), parse_date, pattern)
            if not row.text(col["issue_date"]):
                row.problem(names["issue_date"], "empty")
            if not row.text(col["due_date"]):
                row.problem(names["due_date"], "empty")
            if issue and due and due < issue:
                row.problem(names["due_date"], "before the issue date", row.text(col["due_date"]))
            if issue and paid and paid < issue:
                row.problem(names["paid_date"], "before the issue date", row.text(col["paid_date"]))
            amount = row.amount(col["amount"], names["amount"])
            flags = 0
            if col["disputed"] >= 0 and row.flag(col["disputed"], names["disputed"]):
                flags |= DISPUTED
            if col.get("written_off", -1) >= 0 and row.flag(
                col["written_off"], names["written_off"]
            ):
                flags |= WRITTEN_OFF
            if invoice_id:
                earlier = seen.get(invoice_id)
                if earlier is None:
                    seen[invoice_id] = (-1 if row.problems else len(history.issue), line)
                else:
                    index, earlier_line = earlier
                    row.problem(
                        names["invoice_id"],
                        f"duplicate invoice id (also on line {earlier_line}): both rows left out",
                        invoice_id,
                    )
                    if index >= 0 and index not in rejected:
                        rejected.add(index)
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
            value = row.text(col["channel"]) if col["channel"] >= 0 else ""
            history.channel.append(
                channel_index.setdefault(value, len(channel_index)) if value else -1
            )
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
