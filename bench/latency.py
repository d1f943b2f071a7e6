"""Benchmark: a full and a no-change sync with latency added to every sandbox answer, at concurrency 1, the default and 8.

Run: .venv/bin/python bench/latency.py [--crm salesforce,zoho] [--sizes 1000] [--latency-ms 50,200]
With latency, wall time is at least ceil(calls / concurrency) x latency: that lower bound and the
ratio of the wall time to it show what the engine's concurrency is worth on a real network.
"Default" is what the adapter declares for its CRM when the connection sets no `max_concurrency`.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import EngineRunner, Sandbox, peak_rss_mb, run_child

# Connection options per setting; REST reads on Salesforce so that every call is a page or a batch.
BASE: dict[str, dict[str, Any]] = {
    "salesforce": {"bulk_read_threshold": 10**12},
    "zoho": {"bulk_read_threshold": 0},
}
SETTINGS: dict[str, dict[str, Any]] = {
    "1": {"max_concurrency": 1},
    "default": {},
    "8": {"max_concurrency": 8},
}


def one(kind: str, size: int, setting: str, latency_ms: float) -> dict[str, Any]:
    sandbox = Sandbox(kind, size, latency_ms=latency_ms)
    try:
        runner = EngineRunner(sandbox, {**BASE[kind], **SETTINGS[setting]})
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
        "setting": setting,
        "latency_ms": latency_ms,
        "runs": [full.to_dict(), again.to_dict()],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def bound_seconds(calls: int, concurrency: int, latency_ms: float) -> float:
    """No engine can beat ceil(calls / concurrency) round trips of `latency_ms` each."""
    return math.ceil(calls / max(1, concurrency)) * latency_ms / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crm", default="salesforce,zoho")
    parser.add_argument("--sizes", default="1000")
    parser.add_argument(
        "--latency-ms", default="50,200", help="comma-separated milliseconds per answer"
    )
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, size, setting, latency = args.one.split(":")
        try:
            result = one(kind, int(size), setting, float(latency))
        except Exception as exc:  # a failed configuration is a figure too
            result = {
                "crm": kind,
                "accounts": int(size),
                "setting": setting,
                "error": f"{type(exc).__name__}: {exc}"[:300],
            }
        print(json.dumps(result))
        return 0
    print(f"nproc {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
    print(
        "bound = ceil(calls / concurrency) x latency; ratio = wall / bound;"
        " vs 1 = wall / the same sync's wall at concurrency 1"
    )
    results = []
    for kind in args.crm.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            for latency in (float(ms) for ms in args.latency_ms.split(",")):
                sequential: dict[str, float] = {}
                for setting in SETTINGS:
                    result = run_child(
                        __file__,
                        ["--one", f"{kind}:{size}:{setting}:{latency}"],
                        {"crm": kind, "accounts": size, "setting": setting},
                    )
                    results.append(result)
                    if "error" in result:
                        print(
                            f"{kind} {size:,} {latency:.0f} ms concurrency {setting}: failed: {result['error']}"
                        )
                        continue
                    for run in result["runs"]:
                        # The bound uses the concurrency asked for (the adapter's declared one by default).
                        asked = int(setting) if setting.isdigit() else int(run["concurrency"])
                        bound = bound_seconds(run["calls"], asked, latency)
                        if setting == "1":
                            sequential[run["label"]] = run["seconds"]
                        versus = (
                            run["seconds"] / sequential[run["label"]]
                            if run["label"] in sequential
                            else float("nan")
                        )
                        print(
                            f"{kind:<10} {size:>7,} {latency:>4.0f} ms  concurrency {setting:<7}"
                            f" (declared {run['concurrency']:>2})  {run['label']:<9} calls {run['calls']:>5}"
                            f"  wall {run['seconds']:>7.2f}s  bound {bound:>7.2f}s"
                            f"  ratio {run['seconds'] / bound if bound else float('nan'):>5.2f}"
                            f"  vs 1 {versus:>5.2f}  connector CPU {run['cpu_seconds']:.2f}s"
                        )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
