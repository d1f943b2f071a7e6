"""Benchmark: `crm-risk backtest` on a large payment history (default 50 MB); wall time and peak memory.

Run: .venv/bin/python bench/backtest_large.py [--megabytes 50] [--keep FILE]

The file is the IBM sample (tests/data) copied with new customer and invoice ids until it reaches
the size: the shape of the only real-looking invoice data we have (about 25 invoices per
customer), about 560,000 rows for 50 MB. The backtest runs in a fresh child process, exactly as
the command line runs it (`--json`, 1000 bootstrap replicates). Memory is the peak of the
resident sizes of that process and of the worker process its replay starts, added up while they
run (sampled every 20 ms), and at least the main process's own peak (`ru_maxrss`). A worker's
`ru_maxrss` cannot be used: it includes the memory of the process it was forked from.
Targets (issue 22): under 20 s and under 300 MB. Timings on a shared machine are noisy, so the
run also times a plain `csv.reader` pass over the same file, a lower bound no reader can beat,
and prints the ratio, and the CPU time of all processes beside the wall time (on a loaded
machine the wall time is mostly waiting for a core).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "ar-late-payments.csv"
TARGET_SECONDS = 20.0
TARGET_MB = 300.0


def build(path: Path, megabytes: float) -> int:
    """Write copies of the sample with fresh ids until the file has the size; returns rows."""
    with SAMPLE.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    customer = header.index("customerID")
    invoice = header.index("invoiceNumber")
    written = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        copy = 0
        while out.tell() < megabytes * 1_000_000:
            for row in rows:
                row = list(row)
                row[customer] = f"{row[customer]}-{copy}"
                row[invoice] = f"{row[invoice]}-{copy}"
                writer.writerow(row)
                written += 1
            copy += 1
    return written


def child(path: str) -> None:
    """Run the CLI in this process and print wall time and peak RSS as JSON."""
    import contextlib
    import io

    from connector.cli.main import main

    started = time.perf_counter()
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        code = main(["backtest", "--invoices", path, "--split-date", "2013-01-01", "--json"])
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = json.loads(sink.getvalue())
    print(
        json.dumps(
            {
                "exit_code": code,
                "seconds": seconds,
                "cpu_seconds": usage.ru_utime
                + usage.ru_stime
                + workers.ru_utime
                + workers.ru_stime,
                "peak_rss_mb": usage.ru_maxrss / 1024,
                "invoices_total": report["invoices_total"],
                "bootstrap_replicates": report["bootstrap_replicates"],
            }
        )
    )


def _tree(pid: int) -> list[int]:
    """The process and its descendants (Linux /proc)."""
    found = [pid]
    for process in found:
        for task in Path(f"/proc/{process}/task").glob("*"):
            try:
                found += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(command: list[str]) -> tuple[dict[str, float], float, int]:
    """Run the child; its figures, the peak total RSS of its process tree, how many processes."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    peak = 0.0
    seen: set[int] = set()
    while child.poll() is None:
        tree = _tree(child.pid)
        seen.update(tree)
        peak = max(peak, sum(_rss_mb(pid) for pid in tree))
        time.sleep(0.02)
    out, _ = child.communicate()
    if child.returncode:
        raise SystemExit(f"the backtest process failed (exit {child.returncode})")
    return json.loads(out.strip().splitlines()[-1]), peak, len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=50)
    parser.add_argument("--keep", help="write the generated file here and keep it")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.keep) if args.keep else Path(folder) / "large.csv"
        rows = build(path, args.megabytes)
        size = path.stat().st_size / 1_000_000
        started = time.perf_counter()
        with path.open(newline="", encoding="utf-8") as handle:
            for _ in csv.reader(handle):
                pass
        floor = time.perf_counter() - started
        load = os.getloadavg()[0]
        figures, total_mb, processes = measure([sys.executable, __file__, "--child", str(path)])
    print(f"file: {size:.1f} MB, {rows:,} invoices")
    print(
        f"backtest: {figures['seconds']:.1f} s (target < {TARGET_SECONDS:.0f} s; "
        f"CPU {figures['cpu_seconds']:.1f} s in {processes} processes, "
        f"load average {load:.1f} on {os.cpu_count()} cores), "
        f"peak RSS {max(total_mb, figures['peak_rss_mb']):.0f} MB, all processes together "
        f"(target < {TARGET_MB:.0f} MB; main process alone {figures['peak_rss_mb']:.0f} MB), "
        f"exit {figures['exit_code']}, {figures['bootstrap_replicates']} bootstrap replicates"
    )
    print(
        f"lower bound (csv.reader pass over the file): {floor:.1f} s; "
        f"ratio {figures['seconds'] / floor:.1f}"
    )


if __name__ == "__main__":
    main()
