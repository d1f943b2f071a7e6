"""Shared bench plumbing: a sandbox CRM in its own process, the engine run in this one, calls and the lower bound."""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connector.config import load_config  # noqa: E402
from connector.engine.sync import SyncOptions, run_sync  # noqa: E402
from connector.mapping import load_mapping  # noqa: E402
from connector.registry import create_adapter  # noqa: E402
from connector.store import open_store  # noqa: E402

TASK_ACTIONS = ("create", "escalate", "comment", "complete")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def own_cpu_seconds() -> float:
    """User + system CPU of this process (every thread), so never the sandbox's, which runs in another."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of another live process, from /proc/<pid>/stat (fields 14 and 15, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of another live process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sandbox:
    """`bench/_serve.py serve` (the sandbox CLI plus TCP_NODELAY) in a child process, so its memory is not counted as ours."""

    def __init__(
        self,
        kind: str,
        accounts: int,
        *,
        latency_ms: float = 0,
        faults: str = "",
        nagle: bool = False,
    ) -> None:
        serve = str(ROOT / "bench" / "_serve.py")
        cmd = [sys.executable, serve, "serve", "--crm", kind, "--accounts", str(accounts), "--json"]
        if nagle:
            cmd.append("--keep-nagle")
        if latency_ms:
            cmd += ["--latency-ms", str(latency_ms)]
        if faults:
            cmd += ["--faults", faults]
        started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"the {kind} sandbox did not start (exit {self.proc.returncode})")
        self.info: dict[str, Any] = json.loads(line)
        self.seed_seconds = time.perf_counter() - started

    def cpu_seconds(self) -> float:
        """The sandbox's own CPU so far (seeding included): what the connector's figures leave out."""
        return process_cpu_seconds(self.proc.pid)

    def peak_rss_mb(self) -> float:
        return process_peak_rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


@dataclass
class RunFigures:
    """One sync: what it did, what it cost, and the least it could have cost."""

    label: str
    seconds: float
    calls: dict[str, int]
    read: dict[str, int]
    written: int
    task_actions: int
    lower_bound: int
    peak_rss_mb: float
    status: str
    cpu_seconds: float = 0.0
    sandbox_cpu_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def ratio(self) -> float:
        return self.total / self.lower_bound if self.lower_bound else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "seconds": round(self.seconds, 2),
            "calls": self.total,
            "by_endpoint": self.calls,
            "read": self.read,
            "written": self.written,
            "task_actions": self.task_actions,
            "lower_bound": self.lower_bound,
            "ratio": round(self.ratio, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "cpu_seconds": round(self.cpu_seconds, 2),
            "sandbox_cpu_seconds": round(self.sandbox_cpu_seconds, 2),
            "status": self.status,
            **self.extra,
        }


def lower_bound(
    read: dict[str, int], written: int, task_actions: int, page: int, batch: int
) -> int:
    """Pages needed to read what was read (at least one per object: you must ask), write batches, task batches.

    Auth and metadata calls are not in the bound: they are the overhead the ratio shows.
    """
    pages = sum(max(1, math.ceil(n / page)) for n in read.values())
    return pages + math.ceil(written / batch) + math.ceil(task_actions / batch)


class EngineRunner:
    """A config for the sandbox's connection with adapter options, and a state file, in a temp folder."""

    def __init__(
        self, sandbox: Sandbox, options: dict[str, Any] | None = None, *, extra: str = ""
    ) -> None:
        """Write the config (`extra`: TOML tables appended after the connection) and open the store."""
        self.folder = Path(tempfile.mkdtemp(prefix="crm-bench-"))
        self.sandbox = sandbox
        info = sandbox.info
        text = (
            f"[store]\nurl = {json.dumps(str(self.folder / 'state.db'))}\n" + info["config_snippet"]
        )
        if options:
            text += f"options = {toml_value(options)}\n"
        text += extra
        path = self.folder / "crm-risk.toml"
        path.write_text(text)
        with mock.patch.dict(os.environ, info["env"]):
            self.config = load_config(path)
        self.connection = self.config.connection(None)
        self.mapping = load_mapping(self.connection.mapping)
        self.store = open_store(self.config.store.url)

    def run(self, label: str, *, as_of: date | None = None) -> RunFigures:
        adapter = create_adapter(self.connection.crm_settings(), state=self.store)
        caps = adapter.capabilities
        started = time.perf_counter()
        cpu_started = own_cpu_seconds()
        sandbox_started = self.sandbox.cpu_seconds()
        try:
            report = run_sync(
                config=self.config,
                connection=self.connection,
                adapter=adapter,
                store=self.store,
                mapping=self.mapping,
                options=SyncOptions(trigger="bench", as_of=as_of),
            )
        finally:
            adapter.close()
        seconds = time.perf_counter() - started
        cpu = own_cpu_seconds() - cpu_started
        sandbox_cpu = self.sandbox.cpu_seconds() - sandbox_started
        data = report.to_dict()
        read = {kind: int(counts.get("read", 0)) for kind, counts in data["objects"].items()}
        account_writes = data["writes"].get("account", {})
        written = int(account_writes.get("planned", 0))
        tasks = sum(int(data["tasks"].get(f"planned_{a}", 0)) for a in TASK_ACTIONS)
        bound = lower_bound(read, written, tasks, caps.max_read_page, caps.max_write_batch)
        return RunFigures(
            label,
            seconds,
            dict(data["api"]["by_endpoint"]),
            read,
            written,
            tasks,
            bound,
            peak_rss_mb(),
            data["status"],
            cpu,
            sandbox_cpu,
            {
                "page": caps.max_read_page,
                "batch": caps.max_write_batch,
                "written_ok": int(account_writes.get("written", 0)),
                "concurrency": caps.max_concurrency,
            },
        )

    def close(self) -> None:
        self.store.close()


def run_child(script: str, args: list[str], failed: dict[str, Any]) -> dict[str, Any]:
    """Run `script --one ...` in a fresh process (its own peak RSS) and return the JSON it printed last.

    A child that printed no JSON (it crashed) gives `failed` with the end of its stderr as `error`.
    """
    child = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, check=False
    )
    lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
    if lines:
        result: dict[str, Any] = json.loads(lines[-1])
        return result
    tail = (child.stderr or "no output").strip().splitlines()[-3:]
    return {**failed, "error": " | ".join(tail)[-300:]}
