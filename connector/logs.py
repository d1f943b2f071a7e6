"""Structured logging: JSON lines for machines, short text on a terminal, every line redacted."""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import textwrap
import warnings
from datetime import UTC, datetime
from typing import Any

from connector.redaction import json_text, redact

CONTEXT_FIELDS = ("run_id", "connection", "crm", "object", "record_id", "error_code", "detail")


class RedactingFilter(logging.Filter):
    """Redacts the message and every context field before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        record.msg = redact(record.getMessage())
        record.args = None
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the run context fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise one record."""
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                payload[name] = value
        if record.exc_info:
            payload["exc"] = redact(self.formatException(record.exc_info))
        return json_text(payload, default=str)


class TextFormatter(logging.Formatter):
    """Human text: time, level, message and the context fields that are set.

    On a terminal (width given) a long record wraps under its message, so it fits the window;
    in a file or pipe each record stays one line.
    """

    def __init__(self, width: int | None = None) -> None:
        super().__init__()
        self.width = width

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a line."""
        context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        text = f"{line} {context}".rstrip()
        if self.width is None or record.exc_info:
            return text
        return textwrap.fill(
            text,
            width=max(40, self.width),
            subsequent_indent=" " * 17,  # under the message: "HH:MM:SS LEVEL   "
            break_long_words=False,
            break_on_hyphens=False,
        )


# Third-party loggers whose records go through our handler and format (never their own).
THIRD_PARTY_LOGGERS = ("py.warnings", "urllib3", "requests")


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """warnings.showwarning: a library's warning becomes a log line in our format."""
    logging.getLogger("py.warnings").warning(
        "%s: %s", category.__name__, message, extra={"detail": f"{filename}:{lineno}"}
    )


def setup_logging(fmt: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    """Configure the `crm_risk` logger and route third-party warnings through it (idempotent).

    Library warnings (urllib3's InsecureRequestWarning with verify_tls = false, deprecations)
    would otherwise print plain text in the middle of JSON logs: `warnings` are shown through the
    `py.warnings` logger and that and urllib3's loggers use our handler. InsecureRequestWarning
    is shown once per process: the connector already says loudly that verification is off.
    """
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    use_json = fmt == "json" or (fmt == "auto" and not getattr(stream, "isatty", lambda: False)())
    terminal = getattr(stream, "isatty", lambda: False)()
    width = shutil.get_terminal_size().columns if terminal else None
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter(width))
    handler.addFilter(RedactingFilter())
    # Libraries speak at WARNING and above (their DEBUG would drown ours), or as high as we do.
    third_level = level if logging.getLevelName(level) > logging.WARNING else "WARNING"
    for name, logger_level in (
        ("crm_risk", level),
        *((third, third_level) for third in THIRD_PARTY_LOGGERS),
    ):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(logger_level)
        logger.propagate = False
    warnings.showwarning = _show_warning
    with contextlib.suppress(ImportError):
        from urllib3.exceptions import InsecureRequestWarning

        warnings.filterwarnings("once", category=InsecureRequestWarning)
