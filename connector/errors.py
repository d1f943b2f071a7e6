"""The exception tree: the class of an error says what the engine does next (retry, skip, stop)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Exit codes (sysexits-style; the README's table is checked against these by tests/test_docs.py).
EXIT_OK = 0
EXIT_REJECTIONS = 1
EXIT_USAGE = 64  # EX_USAGE: the command line is wrong (unknown option, bad value, unknown id)
EXIT_DATAERR = 65
EXIT_SOFTWARE = 70  # EX_SOFTWARE: a bug; the traceback is written to a crash file
EXIT_TEMPFAIL = 75
EXIT_NOPERM = 77
EXIT_CONFIG = 78
EXIT_INTERRUPTED = 130  # 128 + SIGINT: the user pressed Ctrl-C; the run stopped cleanly
# Kept for callers of v1: a crash used to exit 2, which argparse also uses for usage errors.
EXIT_CRASH = EXIT_SOFTWARE

# Every code the CLI can exit with, and what it means (the README's table and `--help`).
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_REJECTIONS: "finished, but this run met a new problem: writes refused or unconfirmed, "
    "records newly quarantined (backtest: rows left out)",
    EXIT_USAGE: "usage error: unknown option or command, bad option value, unknown account",
    EXIT_DATAERR: "input data unusable (backtest: no usable row, undecodable or binary file)",
    EXIT_SOFTWARE: "internal error (a bug, or a request the CRM refuses as malformed): "
    "see the crash file named in the message",
    EXIT_TEMPFAIL: "try again later: CRM unreachable or unavailable, quota spent, run lock held, "
    "stopped by SIGTERM",
    EXIT_NOPERM: "the CRM refused the credentials or a permission",
    EXIT_CONFIG: "configuration or setup to fix: a setting, a path, a CA bundle, a URL "
    "answering as another service, the mapping, the state file",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): stopped cleanly after the current batch",
}


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose.

    `connection` and `setting` say where to look: the connection the error happened on and the
    setting to fix (a key of the connection's section, such as `ca_bundle` or `client_secret`,
    or a dotted path such as `store.url`). The CLI adds where that setting's value came from.
    """

    exit_code: int = EXIT_SOFTWARE
    connection: str = ""
    setting: str = ""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in the configuration, with the key path and where the value could come from."""

    key_path: str
    message: str
    source_hint: str = ""
    # Where the value came from when it is not the config file ("environment variable",
    # "secrets file x.toml"); the error then names that instead of the config file.
    origin: str = ""

    def __str__(self) -> str:
        hint = f"; {self.source_hint}" if self.source_hint else ""
        return f"{self.key_path}: {self.message}{hint}"


class ConfigError(ConnectorError):
    """The configuration is invalid; every problem is listed. Fix the config and run again."""

    exit_code = EXIT_CONFIG

    def __init__(self, problems: Sequence[ConfigProblem], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = []
        for problem in self.problems:
            where = problem.origin or self.source
            lines.append(f"{where} {problem}" if where else str(problem))
        return "invalid configuration:\n  " + "\n  ".join(lines)

    @property
    def setting(self) -> str:  # type: ignore[override]
        """The first problem's setting (key path, or the environment variable)."""
        return self.problems[0].key_path if self.problems else ""


class MappingError(ConnectorError):
    """A field mapping names a field that is missing, read-only or of the wrong type."""

    exit_code = EXIT_CONFIG

    def __init__(
        self,
        message: str,
        *,
        mapping_file: str = "",
        key: str = "",
        crm_object: str = "",
        crm_field: str = "",
        suggestions: Sequence[str] = (),
        category: str = "",
    ) -> None:
        self.message = message
        self.mapping_file = mapping_file
        self.key = key
        self.crm_object = crm_object
        self.crm_field = crm_field
        self.suggestions = list(suggestions)
        # What kind of problem: object, missing, type, read_only (the schema changed) or
        # length, picklist, filter (values); "" when not from a check against the CRM.
        self.category = category
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ":".join(part for part in (self.mapping_file, self.key) if part)
        target = ".".join(part for part in (self.crm_object, self.crm_field) if part)
        text = f"{where} ({target}): {self.message}" if target else f"{where}: {self.message}"
        if self.suggestions:
            text += f" (did you mean: {', '.join(self.suggestions)}?)"
        return text


class MappingErrors(ConnectorError):
    """Several mapping problems reported together, so an admin fixes them in one pass."""

    exit_code = EXIT_CONFIG

    def __init__(self, errors: Sequence[MappingError]) -> None:
        self.errors = list(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "invalid mapping:\n  " + "\n  ".join(str(error) for error in self.errors)


class MappingDriftError(MappingErrors):
    """The CRM changed after `crm-risk check` passed (a mapped field deleted, made read-only or
    retyped): the cached check is forgotten and the run stops. Run `crm-risk check`."""

    def __init__(self, errors: Sequence[MappingError], cause: str = "") -> None:
        self.cause = cause
        super().__init__(errors)

    def __str__(self) -> str:
        lines = [str(error) for error in self.errors]
        text = "the CRM changed after the mapping check passed:\n  " + "\n  ".join(lines)
        if self.cause:
            text += f"\n  the CRM said: {self.cause}"
        return text + "\n  run `crm-risk check`, then fix the mapping or the CRM field"


class CrmError(ConnectorError):
    """A CRM answered with an error. `code` is the CRM's own error code when it sent one."""

    def __init__(self, message: str, *, code: str = "", status: int | None = None) -> None:
        self.message = message
        self.code = code
        self.status = status
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.message]
        if self.code:
            parts.append(f"code={self.code}")
        if self.status is not None:
            parts.append(f"http={self.status}")
        return " ".join(parts)


class RetriableCrmError(CrmError):
    """Transient CRM failure (429, 5xx, dropped connection): retry with backoff, or next run."""

    exit_code = EXIT_TEMPFAIL

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, code=code, status=status)


class QuotaExhaustedError(RetriableCrmError):
    """The API budget for this run or the org's daily quota is spent: stop cleanly, resume next run."""


class ConcurrencyLimitError(RetriableCrmError):
    """The CRM refused a call because too many of ours (or the org's) were in flight at once.

    Salesforce: REQUEST_LIMIT_EXCEEDED "ConcurrentPerOrgLongTxn Limit exceeded"; Zoho: 429
    TOO_MANY_REQUESTS. The engine sends fewer calls at once and tries the call again.
    """


class FatalCrmError(CrmError):
    """A CRM error that retrying will not fix (malformed request, unknown object): stop the run."""

    exit_code = EXIT_SOFTWARE


class CrmSetupError(CrmError):
    """The way to the CRM is set up wrong: fix `setting`; retrying does not help (exit 78).

    A CA bundle that is missing or does not sign the CRM's certificate (`ca_bundle`), a URL that
    answers as some other service (`base_url`, `token_url`, `login_url`).
    """

    exit_code = EXIT_CONFIG

    def __init__(
        self, message: str, *, setting: str, code: str = "SETUP", status: int | None = None
    ) -> None:
        self.setting = setting
        super().__init__(message, code=code, status=status)

    def __str__(self) -> str:
        return self.message


class AuthError(CrmError):
    """Authentication or permission refused: fix credentials; never retried automatically.

    `setting` names the secret the CRM refused when the answer says which (`refresh_token`,
    `client_secret`, `password`); the CLI names where each credential came from.
    """

    exit_code = EXIT_NOPERM

    def __init__(
        self, message: str, *, code: str = "", status: int | None = None, setting: str = ""
    ) -> None:
        self.setting = setting
        super().__init__(message, code=code, status=status)


class PermissionRefused(AuthError):
    """The credentials work, but the integration user may not make this call (an OAuth scope or a
    profile permission is missing).

    Kept apart from other AuthErrors because a run may go on without an optional read (the CRM's
    exchange rates) when the user may not make it, but never when the credentials themselves fail:
    a token refused mid-run says nothing about what the user may read.
    """


class RecordError(CrmError):
    """One record was rejected or is invalid: log it, keep it for retry, and go on with the others."""

    def __init__(
        self,
        message: str,
        *,
        record_id: str,
        code: str = "",
        fields: Sequence[str] = (),
        status: int | None = None,
        value: str = "",
    ) -> None:
        self.record_id = record_id
        self.fields = list(fields)
        # The offending value as shown to an admin (short, never a secret: it is record data).
        self.value = value
        super().__init__(message, code=code, status=status)

    def __str__(self) -> str:
        fields = f" fields={','.join(self.fields)}" if self.fields else ""
        return f"record {self.record_id}: {super().__str__()}{fields}"


class LockHeldError(ConnectorError):
    """Another process holds this connection's run lease: try again later."""

    exit_code = EXIT_TEMPFAIL

    def __init__(self, connection: str, holder: str, expires_at: str) -> None:
        self.connection = connection
        self.holder = holder
        self.expires_at = expires_at
        super().__init__(
            f"connection {connection!r} is already running (held by {holder} until {expires_at})"
        )


class StoreError(ConnectorError):
    """The state store is unusable (schema newer than this program, corrupt file): fix the setup."""

    exit_code = EXIT_CONFIG
    setting = "store.url"


class StoreMissingError(ConnectorError):
    """A command that only reads found no state store where the config says it is: nothing was created."""

    exit_code = EXIT_CONFIG
    setting = "store.url"

    def __init__(self, path: str, source: str = "") -> None:
        self.path = path
        self.source = source
        where = f" ([store] url in {source}; relative paths follow the config file's folder)"
        super().__init__(
            f"no state store at {path}{where if source else ''}: run `crm-risk sync` first, "
            "or point [store] url at the existing state file"
        )


class StoreUnavailableError(StoreError):
    """The state store cannot be reached (database down, restarting, connection lost): retry later.

    Nothing half-written survives: the transaction in flight is rolled back by the database.
    """

    exit_code = EXIT_TEMPFAIL


class StoreDamagedError(StoreError):
    """The state file is not a database any more (corrupt header, truncated, malformed pages).

    Nothing is written to it. Restore a backup, or move it aside and let the next sync rebuild
    the ledger from the CRM (the adoption of open tasks and our own field values).
    """

    exit_code = EXIT_CONFIG

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(
            f"state file {path} is damaged ({detail}). To recover: stop the service, move the "
            f"file aside (keep it for diagnosis), then restore your latest backup to {path} "
            "(`crm-risk store backup FILE` makes one, `crm-risk store check` verifies it), or start "
            "without one: the next sync rebuilds its ledger from the CRM, adopting the open tasks "
            "and field values already there instead of duplicating them"
        )


class StoreAccessError(StoreError):
    """The state file or its folder cannot be opened or written by this user."""

    exit_code = EXIT_CONFIG

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        if detail.endswith("does not exist"):
            text = (
                f"cannot create the state file {path}: {detail}; create the folder, or point "
                "[store] url at an existing one"
            )
        else:
            text = (
                f"cannot write the state file {path} ({detail}): give the user running "
                "crm-risk read and write access to the file and its folder (SQLite keeps -wal "
                "and -shm files beside it), or point [store] url at a writable place"
            )
        super().__init__(text)


class StoreFullError(StoreError):
    """The disk (or quota) holding the state file is full: nothing half-written was kept."""

    exit_code = EXIT_TEMPFAIL

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(
            f"no space left for the state file {path} ({detail}): free disk space; the "
            "transaction in flight was rolled back and the next run resumes from the last commit"
        )


class RunCancelled(ConnectorError):
    """A signal asked the run to stop; what was confirmed is kept, the rest waits for the next run."""

    exit_code = EXIT_TEMPFAIL


class UsageError(ConnectorError):
    """The command line names something that does not exist or cannot work (exit 64)."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class DataProblem:
    """One problem in an input data file: where (line, column), the value, and what is wrong."""

    line: int | None
    column: str
    message: str
    value: str = ""

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        where += f" {self.column}" if self.column else ""
        where += f" {self.value!r}" if self.value else ""
        return f"{where}: {self.message}"


class DataError(ConnectorError):
    """An input data file is unusable (not configuration): fix or re-export the file."""

    exit_code = EXIT_DATAERR

    def __init__(
        self,
        source: str,
        problems: Sequence[DataProblem],
        *,
        total: int | None = None,
        hint: str = "",
    ) -> None:
        self.source = source
        self.problems = list(problems)
        self.total = len(self.problems) if total is None else total
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        count = f"{self.total} problem{'s' if self.total != 1 else ''}"
        lines = [f"invalid data in {self.source}: {count}"]
        lines += [f"  {problem}" for problem in self.problems]
        if self.total > len(self.problems):
            lines.append(f"  ... {self.total - len(self.problems)} more")
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


# -- unreadable files ---------------------------------------------------------------------------
# Why an admin's file (config, secrets, mapping, policy, key) cannot be read, and how to fix it.
# The usual cause in a deployment is ownership: Docker Compose bind-mounts a file secret with the
# host file's owner and mode, so a secrets file kept `chmod 600` by root is unreadable by the
# image's user (uid 10001); a systemd unit runs as its own user. Part of the error contract so
# adapters (a JWT key file) word it the same way.


def _process_user() -> str:
    uid = os.getuid() if hasattr(os, "getuid") else None
    if uid is None:
        return "this user"
    try:
        import pwd

        name = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"
    return f"uid {uid} ({name})"


def unreadable(path: str | Path, exc: OSError, *, alternative: str = "") -> str:
    """Why a file could not be read, with what to do about it (the caller names the file first).

    Args:
        path: the file.
        exc: the error opening or reading it.
        alternative: another way to give the same values (e.g. environment variables).
    """
    reason = exc.strerror or type(exc).__name__
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    if not isinstance(exc, PermissionError):
        return f"cannot be read ({reason})"
    uid = str(os.getuid()) if hasattr(os, "getuid") else "USER"
    fix = (
        f"cannot be read ({reason}): this process runs as {_process_user()}; make the file readable by "
        f"that user and no one else, e.g. `chown {uid} {path} && chmod 600 {path}`"
    )
    return f"{fix}, or {alternative}" if alternative else fix
