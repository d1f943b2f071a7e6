"""Structured logging: JSON lines for machines, short text on a terminal, every line redacted."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from connector.redaction import redact

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
        return json.dumps(payload, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Human text: time, level, message and the context fields that are set."""

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
        return f"{line} {context}".rstrip()


def setup_logging(fmt: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    """Configure the root `crm_risk` logger once (idempotent)."""
    stream = stream or sys.stderr
    logger = logging.getLogger("crm_risk")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    use_json = fmt == "json" or (fmt == "auto" and not getattr(stream, "isatty", lambda: False)())
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
