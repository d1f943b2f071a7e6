"""Benchmark: a full and a no-change sync with 50 ms added to every sandbox answer, sequential vs the adapter's concurrency.

Run: .venv/bin/python bench/latency.py [--crm salesforce,zoho] [--sizes 1000] [--latency-ms 50]
With latency, wall time is about calls x latency / effective parallelism, so this shows what the
call count and the adapter's concurrency are worth on a real network. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import EngineRunner, Sandbox, peak_rss_mb

# "sequential" pins one request at a time; "adapter" keeps the adapter's own default.
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "salesforce": {
        "sequential": {"bulk_read_threshold": 10**12},
        "adapter": {"bulk_read_threshold": 10**12},
    },
    "zoho": {"sequential": {"max_concurrency": 1}, "adapter": {}},
}


def one(kind: str, size: int, mode: str, latency_ms: float) -> dict[str, Any]:
    sandbox = Sandbox(kind, size, latency_ms=latency_ms)
    try:
        runner = EngineRunner(sandbox, SETTINGS[kind][mode])
        try:
            full = runner.run("full")
            again = runner.run("no-change")
        finally:
            runner.close()
    finally:
        sandbox.stop()
    return {
        "crm": kind,
        "accounts": size,
        "mode": mode,
        "latency_ms": latency_ms,
        "runs": [full.to_dict(), again.to_dict()],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crm", default="salesforce,zoho")
    parser.add_argument("--sizes", default="1000")
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, size, mode = args.one.split(":")
        try:
            result = one(kind, int(size), mode, args.latency_ms)
        except Exception as exc:  # a failed configuration is a figure too
            result = {
                "crm": kind,
                "accounts": int(size),
                "mode": mode,
                "error": f"{type(exc).__name__}: {exc}"[:300],
            }
        print(json.dumps(result))
        return 0
    print(f"nproc {os.cpu_count()}; latency {args.latency_ms} ms per answer")
    results = []
    for kind in args.crm.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            for mode in SETTINGS[kind]:
                child = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        f"{kind}:{size}:{mode}",
                        "--latency-ms",
                        str(args.latency_ms),
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
                result = (
                    json.loads(lines[-1])
                    if lines
                    else {"crm": kind, "accounts": size, "mode": mode, "error": child.stderr[-300:]}
                )
                results.append(result)
                if "error" in result:
                    print(f"{kind} {size:,} {mode}: failed: {result['error']}")
                    continue
                for run in result["runs"]:
                    print(
                        f"{kind:<10} {size:>7,} {mode:<10} {run['label']:<9} calls {run['calls']:>6}"
                        f"  {run['seconds']:>8.2f}s  {run['seconds'] * 1000 / max(1, run['calls']):>6.1f} ms/call"
                        f"  RSS {run['peak_rss_mb']:.0f} MB"
                    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
