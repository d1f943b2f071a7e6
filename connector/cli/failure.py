"""What the CLI prints when a command fails: one message (or one JSON document) and its exit code.

Every failure names what to fix: the connection it happened on and the setting, with where that
setting's value came from (the config file and key, the secrets file, or the environment
variable), so an admin can go straight to it. A crash (a bug) writes its traceback to a crash
file and says where; nothing but a short line reaches the terminal.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import textwrap
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector import __version__
from connector.errors import (
    EXIT_INTERRUPTED,
    EXIT_SOFTWARE,
    AuthError,
    ConfigError,
    ConnectorError,
    CrmError,
    RecordError,
)
from connector.redaction import json_text, redact


@dataclass
class CliContext:
    """What the running command has loaded so far: the config, and the connection it works on."""

    config: Any = None
    connection: str = ""
    json_output: bool = False
    argv: list[str] = field(default_factory=list)


CONTEXT = CliContext()


def reset_context(argv: list[str]) -> CliContext:
    """The context emptied for one CLI invocation (the same object: modules hold it)."""
    CONTEXT.config = None
    CONTEXT.connection = ""
    CONTEXT.json_output = False
    CONTEXT.argv = list(argv)
    return CONTEXT


@dataclass(frozen=True)
class Failure:
    """One failed command, ready to print as text or JSON."""

    code: str
    message: str
    exit_code: int
    connection: str = ""
    setting: str = ""
    details: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON document `--json` commands print on failure."""
        return {
            "ok": False,
            "error": {
                "code": self.code,
                "message": self.message,
                "exit_code": self.exit_code,
                "connection": self.connection or None,
                "setting": self.setting or None,
                "details": list(self.details),
            },
        }

    def text(self, width: int | None = None) -> str:
        """The lines printed on stderr, one fact per line.

        Args:
            width: wrap each fact to this many columns, continuation lines indented (on a
                terminal); None keeps each fact on one line, to grep for in logs and pipes.
        """
        facts = [("error: ", self.message)] + [("  ", line) for line in self.details]
        if width is None:
            return "".join(f"{lead}{fact}\n" for lead, fact in facts)
        return "".join(
            textwrap.fill(
                fact,
                width=max(40, width),
                initial_indent=lead,
                subsequent_indent=" " * (len(lead) + 2),
                break_long_words=False,
                break_on_hyphens=False,
            )
            + "\n"
            for lead, fact in facts
        )


def _setting_path(connection: str, setting: str) -> str:
    if not setting or "." in setting or not connection:
        return setting
    return f"connections.{connection}.{setting}"


def _where(context: CliContext, path: str) -> str:
    config = context.config
    if config is None or not path:
        from connector.config import setting_label

        return setting_label(path) if path else ""
    return str(config.describe_setting(path))


def _credential_sources(context: CliContext, connection: str) -> str:
    config = context.config
    if config is None or connection not in getattr(config, "connections", {}):
        return ""
    conn = config.connections[connection]
    parts = []
    # The adapter's settings model knows which keys its configured flow sends.
    for key in conn.settings.credential_keys():
        origin = config.origin(f"connections.{connection}.{key}")
        if origin:
            origin = origin.removesuffix(f" [connections.{connection}] {key}")
            parts.append(f"{key} from {origin}")
    return "; ".join(parts)


def describe(error: BaseException, context: CliContext) -> Failure:
    """Turn an exception into what the user reads: message, exit code, connection and setting."""
    if isinstance(error, KeyboardInterrupt):
        return Failure("Interrupted", "interrupted", EXIT_INTERRUPTED, context.connection)
    if not isinstance(error, ConnectorError):
        return _crash(error, context)
    connection = error.connection or context.connection
    if isinstance(error, ConfigError):
        return _config_failure(error, context)
    # The CRM's code and status go to the JSON document; the sentence is for people.
    plain = isinstance(error, CrmError) and not isinstance(error, RecordError)
    message = redact(error.message if isinstance(error, CrmError) and plain else str(error))
    code = error.code if isinstance(error, CrmError) and error.code else type(error).__name__
    path = _setting_path(connection, error.setting)
    details: list[str] = []
    if isinstance(error, AuthError):
        message = f"the CRM refused the credentials of connection {connection}: {message}"
        sources = _credential_sources(context, connection)
        if sources:
            details.append(f"credentials used: {sources}")
        details.append("fix them where they are set, then run `crm-risk check`")
    elif connection and connection not in message:
        message = f"connection {connection}: {message}"
    if path:
        details.insert(0, f"setting: {_where(context, path)}")
    return Failure(
        code=code,
        message=message,
        exit_code=error.exit_code,
        connection=connection,
        setting=_where(context, path) if path else "",
        details=tuple(details),
    )


def _config_failure(error: ConfigError, context: CliContext) -> Failure:
    first = error.problems[0] if error.problems else None
    setting = ""
    connection = error.connection or context.connection
    if first is not None:
        setting = first.key_path
        if first.origin:
            setting = f"{first.origin} {first.key_path}"
        elif error.source:
            setting = f"{first.key_path} (in {error.source})"
        if first.key_path.startswith("[connections."):
            connection = first.key_path.split("]", 1)[0].removeprefix("[connections.")
    return Failure(
        code=type(error).__name__,
        message=redact(str(error)),
        exit_code=error.exit_code,
        connection=connection,
        setting=setting,
    )


def _crash(error: BaseException, context: CliContext) -> Failure:
    path = write_crash_file(error, context)
    where = f"the traceback is in {path}" if path else "run again with --log-level DEBUG"
    return Failure(
        code="Crash",
        message=redact(f"internal error: {type(error).__name__}: {error}"),
        exit_code=EXIT_SOFTWARE,
        connection=context.connection,
        details=(f"this is a bug in crm-risk: {where}; please report it with that file",),
    )


def write_crash_file(error: BaseException, context: CliContext) -> str:
    """Write the (redacted) traceback to an owner-only file in the temp folder; return its path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = Path(tempfile.gettempdir()) / f"crm-risk-crash-{stamp}-{os.getpid()}.txt"
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    body = (
        f"crm-risk {__version__} on Python {platform.python_version()} ({sys.platform})\n"
        f"command: crm-risk {' '.join(context.argv)}\n\n{text}"
    )
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(redact(body))
    except OSError:
        return ""
    return str(path)


def report(failure: Failure, *, json_output: bool) -> None:
    """Print the failure: the JSON document on stdout for --json commands, text on stderr."""
    if json_output:
        sys.stdout.write(json_text(failure.to_dict(), indent=2) + "\n")
    # The text goes to stderr in both modes: a person watching a --json run sees it too.
    width = shutil.get_terminal_size().columns if sys.stderr.isatty() else None
    sys.stderr.write(failure.text(width))
