"""One connection opened for runs: its mapping, the state store and the adapter, checked one way.

`crm-risk sync`, the scheduler's runner and `crm-risk demo` open a connection through
`open_session`, so the three load the mapping, open the store, create the adapter and check the
mapping the same way, and close what they opened in the same order.

The mapping-check policy (one for every caller): before a session's first run the mapping is
checked against the CRM's metadata, and any error stops the run with `MappingErrors` (exit 78)
before anything is read or written. A passing check is remembered in the state store for a day
per (connection, effective mapping, CRM org), so routine runs spend no API calls on metadata,
whether they come from a long-lived service, from cron starting `crm-risk sync` (a new process
each time: a per-process memory would check on every run) or from several workers sharing one
store.
It is checked again:

* when the mapping changes (the record carries the effective mapping's digest);
* when the connection points at another CRM or org (the record carries a digest of its kind and
  non-secret settings: base URL, instance, data centre...);
* after a day, so a service that runs for weeks still notices a CRM changed outside any run;
* when asked (`sync --full`);
* as soon as a run finds the CRM changed under it: `FieldDrift` forgets the record when a refusal
  proves a mapped field gone, read-only or retyped, and a run that stops on any mapping error
  forgets it here, so the next run of any process checks again and refuses to start.

The scheduler used to remember a pass in its process only (never again while it ran) and the
demo did not check at all; both now follow this policy.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from connector import registry
from connector.engine.drift import forget_mapping_check, refuse_on_mapping_errors
from connector.engine.sync import SyncOptions, run_sync
from connector.errors import MappingErrors
from connector.mapping import FieldMapping, load_mapping
from connector.store import SqlStore, open_store

if TYPE_CHECKING:
    from connector.config import AppConfig, ConnectionConfig
    from connector.engine.report import RunReport
    from connector.protocol import CrmAdapter


def mapping_base_dir(config: AppConfig) -> Path:
    """Where a connection's relative mapping path starts: the config file's folder.

    A loaded configuration carries it (`base_dir`); one built in code without it falls back to
    the folder of its `source` file, then to the working directory.
    """
    if config.base_dir:
        return Path(config.base_dir)
    if config.source and config.source != "environment":
        return Path(config.source).parent
    return Path.cwd()


def load_connection_mapping(config: AppConfig, connection: ConnectionConfig) -> FieldMapping:
    """The connection's field mapping, preset or file, validated (raises MappingErrors)."""
    return load_mapping(connection.mapping, base_dir=mapping_base_dir(config))


class Session:
    """A connection opened for runs: the mapping, the state store and the adapter, closed together.

    Use it as a context manager. It closes the adapter, and the store when it opened the store
    itself; a store passed to `open_session` stays the caller's to close.
    """

    def __init__(
        self,
        config: AppConfig,
        connection: ConnectionConfig,
        mapping: FieldMapping,
        store: SqlStore,
        adapter: CrmAdapter,
        *,
        owns_store: bool,
    ) -> None:
        """Hold the opened parts; `open_session` is how callers make one."""
        self.config = config
        self.connection = connection
        self.mapping = mapping
        self.store = store
        self.adapter = adapter
        self.owns_store = owns_store
        self.mapping_checked = False

    def check_mapping(self, *, force: bool = False) -> None:
        """Stop on any mapping error, by the module's policy; once per session unless forced.

        Args:
            force: check against the CRM even when a pass is remembered (`sync --full`).

        Raises:
            MappingErrors: every error the check found (exit 78).
        """
        if self.mapping_checked and not force:
            return
        refuse_on_mapping_errors(
            self.adapter,
            self.mapping,
            store=self.store,
            connection=self.connection.name,
            crm=self.connection.crm_settings(),
            force=force,
        )
        self.mapping_checked = True

    def run(self, options: SyncOptions | None = None) -> RunReport:
        """Check the mapping if this session has not, then run one sync.

        Args:
            options: dry run, full rescore (which also forces the mapping check), trigger,
                clock, cancellation.

        Returns:
            The run's report.

        Raises:
            MappingErrors: the mapping does not fit the CRM (before the run, or found by it;
                the remembered check is then forgotten).
            LockHeldError: another process runs this connection (exit 75).
            ConnectorError: what `run_sync` raises, after the run is recorded.
        """
        options = options or SyncOptions()
        if not self.mapping_checked:
            self.check_mapping(force=options.full)
        try:
            return run_sync(
                config=self.config,
                connection=self.connection,
                adapter=self.adapter,
                store=self.store,
                mapping=self.mapping,
                options=options,
            )
        except MappingErrors:
            # The CRM changed under the check, or the mapping asks what the CRM cannot give.
            forget_mapping_check(self.store, self.connection.name)
            self.mapping_checked = False
            raise

    def close(self) -> None:
        """Close the adapter, then the store if this session opened it."""
        try:
            self.adapter.close()
        finally:
            if self.owns_store:
                self.store.close()

    def __enter__(self) -> Session:
        """The session itself."""
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the session, whatever happened inside."""
        self.close()


def open_session(
    config: AppConfig,
    connection: ConnectionConfig,
    *,
    store: SqlStore | None = None,
    cancel: threading.Event | None = None,
) -> Session:
    """Load the connection's mapping, open the state store and create its adapter.

    Nothing is asked of the CRM yet: the mapping is checked at the first run (or by
    `Session.check_mapping`). When a step fails, what was opened before it is closed.

    Args:
        config: the configuration.
        connection: the connection to open.
        store: an open state store to use (the caller keeps closing it); default: open
            `[store] url`, creating it when missing, and close it with the session.
        cancel: set to stop a slow CRM call of the adapter within seconds.

    Returns:
        The open session.

    Raises:
        MappingErrors: the mapping file is invalid (exit 78).
        ConfigError: the adapter is not installed or its settings are wrong (exit 78).
        StoreError: the state store cannot be opened.
    """
    mapping = load_connection_mapping(config, connection)
    owns_store = store is None
    opened = open_store(config.store.url) if store is None else store
    try:
        # Only a caller that can stop a run passes `cancel`; an adapter need not take it.
        extra = {} if cancel is None else {"cancel": cancel}
        adapter = registry.create_adapter(connection.crm_settings(), state=opened, **extra)
    except BaseException:
        if owns_store:
            opened.close()
        raise
    return Session(config, connection, mapping, opened, adapter, owns_store=owns_store)


__all__ = ["Session", "load_connection_mapping", "mapping_base_dir", "open_session"]
