"""Hostile payment-history files for `crm-risk backtest`: encodings, bad values, duplicates, empties.

Each case runs the real command line (`main`), as a credit manager would, and checks the exit code
and what the output says: bad rows are named by line and left out, the good ones are still used,
and only a file with nothing usable exits 65 (EX_DATAERR).
"""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from connector.cli.main import main
from connector.errors import DataError
from connector.scoring.history import read_history

HEADER = "customer_id,invoice_id,issue_date,due_date,amount,paid_date,disputed,channel\n"


def good_rows(customers: int = 4, per_customer: int = 6) -> list[str]:
    """Weekly invoices from 2024-01-01 on 30-day terms; odd customers pay 10 days late."""
    rows = []
    for c in range(customers):
        for k in range(per_customer):
            issue = date(2024, 1, 1) + timedelta(days=7 * k)
            due = issue + timedelta(days=30)
            paid = due + timedelta(days=10 if c % 2 else -3)
            channel = "paper" if c % 2 else "electronic"
            rows.append(f"c{c},i{c}-{k},{issue},{due},{100 + k},{paid},no,{channel}\n")
    return rows


def write(tmp_path: Path, rows: list[str], name: str = "history.csv", **encode) -> Path:
    path = tmp_path / name
    text = HEADER + "".join(rows)
    path.write_bytes(text.encode(**encode) if encode else text.encode())
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["backtest", "--format", "canonical", "--split-date", "2024-04-01",
                 "--bootstrap", "0", *args])  # fmt: skip
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("encoding", "label", "name"),
    [
        ("utf-8", "UTF-8", "Müller GmbH"),
        ("utf-8-sig", "UTF-8 with BOM", "Müller GmbH"),
        ("utf-16", "UTF-16 with BOM", "Müller GmbH"),
        ("gb18030", "GB18030", "上海贸易有限公司"),
    ],
    ids=["utf8", "utf8_bom", "utf16_bom", "gb18030"],
)
def test_each_supported_encoding_is_read_and_named(tmp_path, capsys, encoding, label, name) -> None:
    rows = [row.replace("c0,", f"{name},", 1) for row in good_rows()]
    path = write(tmp_path, rows, encoding=encoding)
    history = read_history(path, "canonical")
    assert history.encoding == label
    assert name in history.customers
    assert len(history) == len(rows)
    code, out, _ = run(capsys, "--invoices", str(path), "--json")
    assert code == 0
    assert json.loads(out)["encoding"] == label


def test_binary_file_exits_65_with_a_data_error_not_a_crash(tmp_path, capsys) -> None:
    path = tmp_path / "export.xlsx"
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 20)
    code, _, err = run(capsys, "--invoices", str(path))
    assert code == 65
    assert "invalid data in" in err
    assert "binary data" in err
    assert "crash" not in err


def test_undecodable_bytes_name_the_line(tmp_path, capsys) -> None:
    path = tmp_path / "history.csv"
    # 0x80 alone and 0xFF are invalid in UTF-8 and in GB18030.
    path.write_bytes((HEADER + "".join(good_rows(1, 2))).encode() + b"c9,x,\x80\xff\x80\xff\n")
    code, _, err = run(capsys, "--invoices", str(path))
    assert code == 65
    assert "line 4" in err
    assert "UTF-8" in err


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("1e308", "implausibly large"),
        ("Infinity", "not a finite number"),
        ("-Infinity", "not a finite number"),
        ("NaN", "not a finite number"),
        ("-1000000", "not positive"),
        ("0", "not positive"),
        ("12.5x", "not a number"),
        ("1e-400", "implausibly small"),  # 0.0 as a float
        ("0.0001", "implausibly small"),
        ("1_000", "not a number"),  # Decimal and float would take it
        ("\u0661\u0662\u0663", "not a number"),  # Arabic-Indic digits: int() would take them
    ],
)
def test_bad_amounts_are_rejected_with_their_line_and_the_rest_is_used(
    tmp_path, capsys, amount, message
) -> None:
    rows = good_rows()
    rows.insert(3, f"c0,bad,2024-02-01,2024-02-28,{amount},2024-02-20,no,paper\n")
    path = write(tmp_path, rows)
    code, out, _ = run(capsys, "--invoices", str(path), "--json")
    report = json.loads(out)
    assert code == 1  # finished, but records were rejected
    assert report["input"]["rows_rejected"] == 1
    assert report["input"]["rows_used"] == len(rows) - 1
    [problem] = report["input"]["first_problems"]
    assert problem.startswith(f"line 5 amount {amount!r}: {message}")


@pytest.mark.parametrize(
    ("issue", "due", "paid", "problem"),
    [
        ("0001-01-01", "2024-01-31", "", "issue_date: implausible date"),
        ("2024-01-01", "9999-12-31", "", "due_date: implausible date"),
        ("2024-03-01", "2024-02-01", "", "due_date: before the issue date"),
        ("2024-03-01", "2024-03-31", "2024-02-27", "paid_date: before the issue date"),
        ("2024-02-30", "2024-03-31", "", "issue_date: not a date YYYY-MM-DD"),
    ],
    ids=["year_0001", "year_9999", "due_before_issue", "paid_before_issue", "february_30"],
)
def test_impossible_dates_are_rejected(tmp_path, issue, due, paid, problem) -> None:
    rows = [*good_rows(), f"c1,odd,{issue},{due},100,{paid},no,paper\n"]
    history = read_history(write(tmp_path, rows), "canonical")
    assert history.rows_rejected == 1
    assert len(history) == len(rows) - 1
    column, message = problem.split(": ")
    assert str(history.problems[0]).startswith(f"line {len(rows) + 1} {column} ")
    assert message in str(history.problems[0])


def test_duplicated_rows_are_all_left_out_and_named(tmp_path, capsys) -> None:
    rows = good_rows(customers=10, per_customer=30)  # 300 distinct invoices
    duplicated = rows[:200]
    path = write(tmp_path, rows + duplicated)
    errors = tmp_path / "errors.csv"
    code, out, _ = run(capsys, "--invoices", str(path), "--json", "--errors-file", str(errors))
    report = json.loads(out)
    assert code == 1
    # 200 ids appear twice: both copies are out (which one is right is unknown).
    assert report["input"]["rows_rejected"] == 400
    assert report["input"]["rows_used"] == 100
    assert report["input"]["problems"] == 200
    first = report["input"]["first_problems"][0]
    assert (
        first
        == "line 302 invoice_id 'i0-0': duplicate invoice id (also on line 2): both rows left out"
    )
    with errors.open(newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == 200
    assert written[-1]["line"] == "501"


def test_many_bad_rows_show_twenty_count_all_and_write_all(tmp_path, capsys) -> None:
    rows = good_rows()
    rows += [f"c2,neg{k},2024-02-01,2024-02-28,-{k + 1},,no,paper\n" for k in range(57)]
    path = write(tmp_path, rows)
    code, out, _ = run(capsys, "--invoices", str(path))
    assert code == 1
    flat = " ".join(out.split())
    assert (
        "Data errors in history.csv: 57 problems, 57 of 81 rows left out (first 20 shown)" in flat
    )
    assert "Pass --errors-file FILE to write them all." in flat
    assert "invalid configuration" not in out
    errors = tmp_path / "all.csv"
    run(capsys, "--invoices", str(path), "--errors-file", str(errors))
    assert len(errors.read_text().splitlines()) == 1 + 57


def test_nothing_usable_exits_65_titled_as_data_not_configuration(tmp_path, capsys) -> None:
    rows = [f"c{k},i{k},2024-01-01,2024-01-31,NaN,,no,paper\n" for k in range(25)]
    path = write(tmp_path, rows)
    code, _, err = run(capsys, "--invoices", str(path))
    assert code == 65
    assert err.startswith(f"error: invalid data in {path}: 25 problems\n")
    assert err.count(str(path)) == 1  # the file is named once
    assert "invalid configuration" not in err
    assert err.count("not a finite number") == 20
    assert "... 5 more" in err
    assert "Pass --errors-file FILE to write all 25 problems." in err


@pytest.mark.parametrize(
    "content", [HEADER, "", "\n\n"], ids=["header_only", "empty", "blank_lines"]
)
def test_empty_or_header_only_file_exits_65(tmp_path, capsys, content) -> None:
    path = tmp_path / "history.csv"
    path.write_text(content)
    code, out, err = run(capsys, "--invoices", str(path), "--json")
    assert code == 65
    # Issue 21 point 10: a --json command prints one JSON document on failure too (v1: nothing).
    failure = json.loads(out)
    assert failure["ok"] is False and failure["error"]["exit_code"] == 65
    assert (
        failure["error"]["code"] == "DataError" and "invalid data in" in failure["error"]["message"]
    )
    assert "invalid data in" in err


def test_missing_columns_name_the_format(tmp_path) -> None:
    path = write(tmp_path, good_rows())
    with pytest.raises(DataError, match=r"missing column\(s\) customerID") as caught:
        read_history(path, "ibm-ar")
    assert caught.value.exit_code == 65
    assert "--format ibm-ar" in str(caught.value)


def test_unterminated_quote_is_a_reported_problem(tmp_path) -> None:
    rows = [*good_rows(), 'c1,"broken,2024-01-01,2024-01-31,100,,no,paper\n']
    history = read_history(write(tmp_path, rows), "canonical")
    assert len(history) == len(rows) - 1
    assert history.problems_total >= 1


def _used_and_problems(capsys, path: Path) -> tuple[int, dict]:
    code, out, _ = run(capsys, "--invoices", str(path), "--json")
    return code, json.loads(out)["input"]


def test_an_amount_with_a_thousands_separator_is_rejected_saying_how_to_write_it(
    tmp_path, capsys
) -> None:
    rows = good_rows()
    rows.insert(3, 'c0,bad,2024-02-01,2024-02-28,"1,234.56",2024-02-20,no,paper\n')
    code, found = _used_and_problems(capsys, write(tmp_path, rows))
    assert code == 1
    assert (found["rows_rejected"], found["rows_used"]) == (1, len(rows) - 1)
    [problem] = found["first_problems"]
    assert problem.startswith("line 5 amount '1,234.56': a thousands separator or decimal comma")
    assert "(1234.56)" in problem


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        # The amount 1,234.56 without quotes: "1" would be read as the amount and "234.56" as
        # the paid date, every later value one column off.
        (
            "c0,bad,2024-02-01,2024-02-28,1,234.56,2024-02-20,no,paper",
            "line 5: 9 fields where the header has 8: a value with a comma not in quotes (such as "
            "an amount 1,234.56)? Quote it, or remove the extra fields",
        ),
        # Without its paid date, disputed flag and channel this paid invoice would look open.
        (
            "c0,short,2024-02-01,2024-02-28,100",
            "line 5: 5 fields where the header has 8: the row is cut short; complete it",
        ),
    ],
    ids=["extra_field", "cut_short"],
)
def test_a_row_with_another_number_of_fields_than_the_header_is_rejected_whole_and_named(
    tmp_path, capsys, row, problem
) -> None:
    rows = good_rows()
    rows.insert(3, row + "\n")
    code, found = _used_and_problems(capsys, write(tmp_path, rows))
    assert code == 1
    assert (found["rows_rejected"], found["rows_used"]) == (1, len(rows) - 1)
    assert found["first_problems"] == [problem]


def test_empty_fields_past_the_header_lose_nothing_and_are_accepted(tmp_path) -> None:
    rows = [row.rstrip("\n") + ",,\n" for row in good_rows()]  # some exports end rows with ","
    history = read_history(write(tmp_path, rows), "canonical")
    assert (len(history), history.rows_rejected) == (len(rows), 0)


def test_a_header_naming_a_column_twice_refuses_the_file(tmp_path, capsys) -> None:
    path = tmp_path / "history.csv"
    header = HEADER.replace(",channel", ",amount")  # which amount is the invoice's?
    path.write_text(header + "".join(good_rows()))
    code, _, err = run(capsys, "--invoices", str(path))
    assert code == 65
    flat = " ".join(err.split())
    assert "line 1: column(s) amount more than once in the header" in flat
    assert "Keep one column of each name" in flat


def test_a_column_with_many_distinct_values_is_no_segment_and_no_crash(tmp_path) -> None:
    # 40,000 distinct "channels" (an id put in the channel column) once overflowed the
    # segment index (a 16-bit array); they are simply not a segment.
    rows = [
        f"c{k % 500},i{k},2024-01-01,2024-01-31,100,2024-01-20,no,ch{k}\n" for k in range(40_000)
    ]
    history = read_history(write(tmp_path, rows), "canonical")
    assert len(history) == 40_000
    assert history.channels == []
    assert set(history.channel) == {-1}
