"""The latest portfolio report of each connection, regenerated after each run and served at /report."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from connector.errors import ConfigError, ConfigProblem
from connector.redaction import redact
from connector.report.html import CSP

if TYPE_CHECKING:
    from connector.config import AppConfig
    from connector.store import SqlStore

log = logging.getLogger("crm_risk.report")

# What the endpoint answers: status line, content type, body.
Answer = tuple[str, str, bytes]
HEADERS_EXTRA = (
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
)
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Page:
    """One connection's report as the last regeneration left it."""

    html: bytes
    generated_at: datetime
    run_id: str | None


def html_path_for(template: str, connection: str, several: bool) -> Path:
    """Where `[report] html` puts a connection's file: `{connection}` is replaced; with several
    connections and no placeholder, `-NAME` goes before the suffix, so no two overwrite each other.
    """
    if "{connection}" in template:
        return Path(template.replace("{connection}", connection))
    path = Path(template)
    if several:
        return path.with_name(f"{path.stem}-{connection}{path.suffix}")
    return path


def check_report_settings(config: AppConfig) -> None:
    """Refuse `[report] serve` without the endpoint it is served on.

    Raises:
        ConfigError: serve = true and no [metrics] port.
    """
    if config.report.serve and config.metrics.port is None:
        raise ConfigError(
            [
                ConfigProblem(
                    "[report] serve",
                    "the report is served beside /metrics, and [metrics] port is not set",
                    "set [metrics] port (e.g. 9464) or remove [report] serve",
                )
            ],
            config.source,
        )


class LatestReports:
    """The newest report page per connection; thread-safe (runs write, the endpoint reads)."""

    def __init__(
        self,
        config: AppConfig,
        open_store: Callable[[], SqlStore],
        *,
        connections: list[str],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Remember where to read the book and where to write the file.

        Args:
            config: the configuration ([report], the policies, the connections).
            open_store: a new store connection (each regeneration opens and closes its own).
            connections: the enabled connections, in the order the index lists them.
            clock: the current time (tests).
        """
        self.config = config
        self._open_store = open_store
        self.connections = list(connections)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._pages: dict[str, Page] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether anything asks for the report (served, written to a file, or both)."""
        return self.config.report.serve or self.config.report.html is not None

    def regenerate(self, connection: str, run_id: str | None = None) -> Page | None:
        """Build the connection's report from the store, keep it, and write `[report] html`.

        A failure is logged and leaves the previous page in place: the report must never break
        the service that runs the syncs.
        """
        from connector.report import build_figures, render_html
        from connector.report.output import write_atomically

        try:
            store = self._open_store()
            try:
                now = self._clock()
                figures = build_figures(
                    store, self.config, self.config.connection(connection), now=now
                ).to_dict()
            finally:
                store.close()
            text = render_html(figures)
            page = Page(text.encode("utf-8"), now, run_id)
            target = self.config.report.html
            if target is not None:
                path = html_path_for(target, connection, len(self.connections) > 1)
                write_atomically(path, text)
        except Exception as exc:  # the report must never stop the syncs
            log.warning(
                "portfolio report not regenerated: %s",
                redact(f"{type(exc).__name__}: {exc}"),
                extra={"connection": connection},
            )
            return None
        with self._lock:
            kept = self._pages.get(connection)
            # A slower regeneration that started earlier must not replace a newer page.
            if kept is not None and kept.generated_at > page.generated_at:
                return kept
            self._pages[connection] = page
        log.info(
            "portfolio report regenerated",
            extra={"connection": connection, "detail": f"{len(page.html) / 1024:,.0f} KB"},
        )
        return page

    def warm(self, ran_before: Callable[[str], bool]) -> None:
        """At start-up, rebuild the page of every connection that already has a stored book, so
        /report answers with the last run's book until the next run (not 503 for a whole interval).
        """
        for name in self.connections:
            try:
                if self.page(name) is None and ran_before(name):
                    self.regenerate(name)
            except Exception as exc:  # a store that is down now: the next run regenerates
                log.warning(
                    "portfolio report not rebuilt at start-up: %s",
                    redact(f"{type(exc).__name__}: {exc}"),
                    extra={"connection": name},
                )

    def page(self, connection: str) -> Page | None:
        """The kept page of a connection, if any run has produced one."""
        with self._lock:
            return self._pages.get(connection)

    def answer(self, path: str) -> Answer:
        """What GET `path` (/report or /report/NAME) answers."""
        if not self.config.report.serve:
            return _text("404 Not Found", "the report is not served: set [report] serve = true")
        rest = path.removeprefix("/report").strip("/")
        if not rest:
            if len(self.connections) == 1:
                return self._one(self.connections[0])
            return ("200 OK", HTML, self._index())
        name = unquote(rest)
        if name not in self.connections:
            return _text("404 Not Found", f"no enabled connection named {name!r}")
        return self._one(name)

    def _one(self, connection: str) -> Answer:
        page = self.page(connection)
        if page is None:
            return _text(
                "503 Service Unavailable",
                f"no report yet for {connection}: it is built after the connection's first run",
            )
        return ("200 OK", HTML, page.html)

    def _index(self) -> bytes:
        items = []
        for name in self.connections:
            page = self.page(name)
            when = (
                f"generated {page.generated_at.isoformat(timespec='seconds')}"
                if page
                else "no report yet (after the first run)"
            )
            items.append(
                f'<li><a href="/report/{quote(name, safe="")}">{escape(name)}</a> · {escape(when)}</li>'
            )
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            "<title>Portfolio reports</title></head><body><h1>Portfolio reports</h1>"
            f"<ul>{''.join(items)}</ul></body></html>\n"
        ).encode()


def _text(status: str, message: str) -> Answer:
    return (status, "text/plain; charset=utf-8", (message + "\n").encode())


__all__ = [
    "HEADERS_EXTRA",
    "LatestReports",
    "Page",
    "check_report_settings",
    "html_path_for",
]
