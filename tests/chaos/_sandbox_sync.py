"""Runs the real engine against a running sandbox CRM, as a user's config would, with no real back-off sleeps."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any
from unittest import mock

from connector.config import AppConfig, ConnectionConfig, load_config
from connector.engine.report import RunReport
from connector.engine.sync import SyncOptions, run_sync
from connector.mapping import FieldMapping, load_mapping
from connector.registry import create_adapter
from connector.store import SqlStore, open_store


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


UNCAPPED_TASKS: dict[str, Any] = {"max_new_per_run": 100000, "max_new_per_owner": 100000}
# CHAOS_CONCURRENCY=4: write batches of 5 records sent 4 at a time, so the suite's 24 accounts
# make several batches in flight together (issue 18). Every adapter takes both options
# (tests/unit/test_adapter_settings.py); options a test passes win.
CONCURRENCY = int(os.environ.get("CHAOS_CONCURRENCY", "0"))
CONCURRENT_OPTIONS: dict[str, Any] = (
    {"max_concurrency": CONCURRENCY, "write_batch": 5} if CONCURRENCY else {}
)


def write_config(
    sandbox: Any,
    folder: Path,
    *,
    state: str = "state.db",
    options: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    extra: str = "",
    tasks: dict[str, Any] | None = None,
) -> Path:
    """The sandbox's own config snippet plus a store, adapter options and extra sections.

    New tasks are not capped here: these suites compare the CRM after some runs with the CRM
    after one clean run, which the caps (more tasks open on each later run) would not allow.
    """
    options = {**CONCURRENT_OPTIONS, **(options or {})}
    lines = [f"[store]\nurl = {_toml(str(folder / state))}\n", sandbox.config_snippet()]
    for key, value in (settings or {}).items():
        lines.append(f"{key} = {_toml(value)}\n")
    if options:
        lines.append(f"options = {_toml(options)}\n")
    lines.append(extra)
    section = {**UNCAPPED_TASKS, **(tasks or {})}
    lines.append("\n[tasks]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in section.items()))
    path = folder / f"crm-risk-{state}.toml"
    path.write_text("".join(lines))
    return path


class SandboxSync:
    """One connection to one sandbox: load its config once, then run syncs on a state file."""

    def __init__(self, sandbox: Any, config_path: Path) -> None:
        self.sandbox = sandbox
        with mock.patch.dict(os.environ, sandbox.env_vars()):
            self.config: AppConfig = load_config(config_path)
        self.connection: ConnectionConfig = self.config.connection(None)
        self.mapping: FieldMapping = load_mapping(self.connection.mapping)
        self.as_of: date | None = getattr(sandbox.emulator, "as_of", None)

    @contextmanager
    def store(self) -> Any:
        store = open_store(self.config.store.url)
        try:
            yield store
        finally:
            store.close()

    def run(
        self,
        store: SqlStore,
        *,
        sleep: Callable[[float], None] = lambda seconds: None,
        adapter_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> RunReport:
        adapter = create_adapter(
            self.connection.crm_settings(), state=store, sleep=sleep, **(adapter_options or {})
        )
        try:
            return run_sync(
                config=self.config,
                connection=self.connection,
                adapter=adapter,
                store=store,
                mapping=self.mapping,
                options=SyncOptions(as_of=self.as_of, **options),
            )
        finally:
            adapter.close()

    def owned_fields(self) -> dict[str, str]:
        """CRM field name -> canonical name of every account field the connector writes."""
        return {
            self.mapping.field("account", name).crm: name for name in self.mapping.write_fields()
        }
