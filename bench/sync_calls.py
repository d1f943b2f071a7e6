"""Benchmark: API calls of a full sync, a no-change sync and a steady-state sync against each sandbox CRM.

Run: .venv/bin/python bench/sync_calls.py [--crm salesforce,zoho] [--sizes 1000,10000] [--with-100k]
Each (CRM, size, mode) runs in a fresh child process with the sandbox in another one, so the
peak RSS printed is the connector's alone. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import EngineRunner, Sandbox, peak_rss_mb, run_child

# Options passed through the connection's `options` table, as a user would set them.
MODES: dict[str, dict[str, dict[str, Any]]] = {
    "salesforce": {
        "rest": {"bulk_read_threshold": 10**12},
        "bulk": {
            "bulk_read_threshold": 2000,
            "bulk_write": True,
            "bulk_write_threshold": 1000,
            "bulk_poll_seconds": 0.1,
        },
    },
    # Zoho: Bulk Read for first full syncs above a threshold; Zoho has no bulk update here.
    "zoho": {
        "rest": {"bulk_read_threshold": 0},
        "bulk": {"bulk_read_threshold": 2000, "bulk_poll_seconds": 0.1},
    },
}
INVOICES_PER_ACCOUNT = 10


class NaiveClient:
    """The reference a first integration usually is: N+1 invoice queries and one PATCH per account."""

    def __init__(self, kind: str, info: dict[str, Any]) -> None:
        self.kind = kind
        self.info = info
        self.session = requests.Session()
        # Per request: REQUESTS_CA_BUNDLE in the environment would override a session default.
        self.verify: str | bool = info["ca_bundle"] or True
        self.calls = 0

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        self.calls += 1
        response = self.session.request(method, url, timeout=60, verify=self.verify, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        updated = self._salesforce() if self.kind == "salesforce" else self._zoho()
        self.session.close()
        return {
            "calls": self.calls,
            "updated": updated,
            "seconds": round(time.perf_counter() - started, 2),
        }

    def _salesforce(self) -> int:
        info = self.info
        token = self._call(
            "POST",
            info["token_url"],
            data={
                "grant_type": "client_credentials",
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
            },
        )
        instance = token["instance_url"]
        base = f"{instance}/services/data/v62.0"
        self.session.headers["Authorization"] = f"Bearer {token['access_token']}"
        ids: list[str] = []
        page = self._call("GET", f"{base}/query", params={"q": "SELECT Id FROM Account"})
        while True:
            ids += [r["Id"] for r in page["records"]]
            if page.get("done", True):
                break
            page = self._call("GET", instance + page["nextRecordsUrl"])
        for account_id in ids:
            soql = (
                "SELECT Id, blng__Balance__c, blng__DueDate__c FROM blng__Invoice__c "
                f"WHERE blng__Account__c = '{account_id}'"
            )
            self._call("GET", f"{base}/query", params={"q": soql})
            self._call("PATCH", f"{base}/sobjects/Account/{account_id}", json={"Risk_Score__c": 50})
        return len(ids)

    def _zoho(self) -> int:
        info = self.info
        token = self._call(
            "POST",
            info["token_url"],
            data={
                "grant_type": "refresh_token",
                "refresh_token": info["refresh_token"],
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
            },
        )
        api = f"{token.get('api_domain') or info['base_url']}/crm/v8"
        self.session.headers["Authorization"] = f"Zoho-oauthtoken {token['access_token']}"
        ids: list[str] = []
        params: dict[str, Any] = {"fields": "id,Account_Name", "per_page": 200, "page": 1}
        while True:
            body = self._call("GET", f"{api}/Accounts", params=params) or {}
            ids += [str(r["id"]) for r in body.get("data", [])]
            info_block = body.get("info") or {}
            if not info_block.get("more_records"):
                break
            if info_block.get("next_page_token"):
                params = {
                    "fields": "id,Account_Name",
                    "per_page": 200,
                    "page_token": info_block["next_page_token"],
                }
            else:
                params["page"] += 1
        for account_id in ids:
            # Per account, as a first integration would: Zoho's documented per-record filter that the
            # sandbox serves is COQL (POST /crm/v8/coql; zoho.md §3.2); Search is not served there.
            self._call(
                "POST",
                f"{api}/coql",
                json={
                    "select_query": "select id, Grand_Total, Due_Date from Invoices"
                    f" where Account_Name = '{account_id}' limit 2000"
                },
            )
            self._call("PUT", f"{api}/Accounts/{account_id}", json={"data": [{"Risk_Score": 50}]})
        return len(ids)


RUN_LABELS = ("1 full", "2 no-change (re-reads our writes)", "3 steady state")


def one(
    kind: str,
    size: int,
    mode: str,
    naive: bool,
    profile: str | None = None,
    runs: int = len(RUN_LABELS),
) -> dict[str, Any]:
    """Everything for one (CRM, size, mode), in this process; `profile`: cProfile the full sync into
    that file; `runs`: how many of the three syncs (1: the full sync alone, for 100,000 accounts).
    """
    sandbox = Sandbox(kind, size)
    result: dict[str, Any] = {
        "crm": kind,
        "accounts": size,
        "mode": mode,
        "sandbox_seed_s": round(sandbox.seed_seconds, 1),
    }
    try:
        runner = EngineRunner(sandbox, MODES[kind][mode])
        try:
            result["runs"] = []
            for label in RUN_LABELS[:runs]:
                profiler = cProfile.Profile() if profile and not result["runs"] else None
                if profiler:
                    profiler.enable()
                result["runs"].append(runner.run(label).to_dict())
                if profiler:
                    profiler.disable()
                    profiler.dump_stats(profile)
        finally:
            runner.close()
        result["peak_rss_mb"] = round(peak_rss_mb(), 1)
        result["sandbox_peak_rss_mb"] = round(sandbox.peak_rss_mb(), 1)
        result["sandbox_cpu_seconds"] = round(sandbox.cpu_seconds(), 1)
        if naive:
            try:
                result["naive"] = NaiveClient(kind, sandbox.info).run()
            except (requests.RequestException, KeyError, ValueError) as exc:
                result["naive"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    finally:
        sandbox.stop()
    return result


def print_result(result: dict[str, Any]) -> None:
    head = f"{result['crm']} {result['accounts']:,} accounts x {INVOICES_PER_ACCOUNT} invoices, {result['mode']}"
    print(
        f"\n== {head} (sandbox seeded in {result['sandbox_seed_s']}s; connector peak RSS"
        f" {result.get('peak_rss_mb')} MB; sandbox peak RSS {result.get('sandbox_peak_rss_mb')} MB,"
        f" CPU {result.get('sandbox_cpu_seconds')} s with seeding)"
    )
    if "error" in result:
        print(f"   failed: {result['error']}")
        return
    for run in result["runs"]:
        print(
            f"   run {run['label']:<36} {run['status']:<26} calls {run['calls']:>6}  lower bound {run['lower_bound']:>6}"
            f"  ratio {run['ratio']:>6.3f}  {run['seconds']:>8.2f}s  RSS {run['peak_rss_mb']:>7.1f} MB"
        )
        print(
            f"       connector CPU {run['cpu_seconds']:.2f}s (user+system of its own process);"
            f" sandbox CPU {run['sandbox_cpu_seconds']:.2f}s; wall {run['seconds']:.2f}s"
        )
        print(
            f"       read {run['read']}  written {run['written_ok']}/{run['written']}  task actions {run['task_actions']}"
            f"  page {run['page']} batch {run['batch']}"
        )
        print(f"       by endpoint {json.dumps(run['by_endpoint'])}")
    naive = result.get("naive")
    if naive:
        if "error" in naive:
            print(f"   naive reference client: {naive['error']}")
        else:
            full = result["runs"][0]
            print(
                f"   naive reference client: {naive['calls']} calls for {naive['updated']} accounts in {naive['seconds']}s"
                f"  -> {naive['calls'] / max(1, full['calls']):.1f}x our full sync's calls,"
                f" {naive['calls'] / max(1, full['lower_bound']):.1f}x the lower bound"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crm", default="salesforce,zoho")
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument(
        "--with-100k", action="store_true", help="add 100,000 accounts (1M invoices)"
    )
    parser.add_argument(
        "--naive-max", type=int, default=10_000, help="largest size the naive client runs at"
    )
    parser.add_argument("--modes", default="rest,bulk")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument(
        "--profile",
        help="cProfile each configuration's full sync into <this>-<crm>-<size>-<mode>.prof",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="syncs per configuration: 1 = the full sync alone"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, size, mode = args.one.split(":")
        try:
            result = one(
                kind,
                int(size),
                mode,
                naive=int(size) <= args.naive_max and mode == "rest",
                profile=f"{args.profile}-{kind}-{size}-{mode}.prof" if args.profile else None,
                runs=args.runs,
            )
        except Exception as exc:  # a failed configuration is a figure too
            result = {
                "crm": kind,
                "accounts": int(size),
                "mode": mode,
                "sandbox_seed_s": "?",
                "error": f"{type(exc).__name__}: {exc}"[:300],
            }
        print(json.dumps(result))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")] + ([100_000] if args.with_100k else [])
    print(f"nproc {os.cpu_count()}; python {sys.version.split()[0]}")
    results = []
    for kind in args.crm.split(","):
        for size in sizes:
            for mode in args.modes.split(","):
                if mode not in MODES[kind]:
                    print(f"\n== {kind} {size:,} {mode}: not supported by the {kind} adapter")
                    continue
                result = run_child(
                    __file__,
                    [
                        "--one",
                        f"{kind}:{size}:{mode}",
                        "--naive-max",
                        str(args.naive_max),
                        "--runs",
                        str(args.runs),
                        *(["--profile", args.profile] if args.profile else []),
                    ],
                    {"crm": kind, "accounts": size, "mode": mode, "sandbox_seed_s": "?"},
                )
                print_result(result)
                results.append(result)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
