"""The run report: counts per object and operation, API usage and the top errors, as one JSON-able dict."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

SAMPLE_IDS = 5


@dataclass
class ErrorTally:
    """Error codes with their counts and a few sample record ids."""

    counts: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    messages: dict[str, str] = field(default_factory=dict)

    def add(self, code: str, record_id: str, message: str = "") -> None:
        """Count one error for a record."""
        code = code or "UNKNOWN"
        self.counts[code] += 1
        if len(self.samples[code]) < SAMPLE_IDS:
            self.samples[code].append(record_id)
        if message and code not in self.messages:
            self.messages[code] = message

    def top(self, n: int = 10) -> list[dict[str, Any]]:
        """The most frequent codes first."""
        return [
            {
                "code": code,
                "count": count,
                "sample_ids": self.samples[code],
                "message": self.messages.get(code, ""),
            }
            for code, count in self.counts.most_common(n)
        ]


@dataclass
class RunReport:
    """Everything an operator needs to know about one run, without reading code."""

    run_id: str
    connection: str
    crm: str
    trigger: str
    dry_run: bool = False
    status: str = "running"
    started_at: str = ""
    ended_at: str = ""
    objects: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    writes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    tasks: Counter[str] = field(default_factory=Counter)
    scored: int = 0
    bands: Counter[str] = field(default_factory=Counter)
    errors: ErrorTally = field(default_factory=ErrorTally)
    # Records found invalid this run; "new" is False for a known hold read again unchanged.
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    # Accounts held by quarantined records (not scored or written), at the end of the pull.
    held: list[dict[str, Any]] = field(default_factory=list)
    held_count: int = 0
    api_calls: dict[str, int] = field(default_factory=dict)
    quota_remaining: int | None = None
    quota_limit: int | None = None
    watermarks_before: dict[str, str] = field(default_factory=dict)
    watermarks_after: dict[str, str] = field(default_factory=dict)
    planned: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    portfolio: dict[str, Any] = field(default_factory=dict)
    # What this run took over from the CRM because the store did not know it (lost state).
    adopted_tasks: int = 0
    adopted_fields: int = 0
    # The currency every amount in the report and the assessments is in.
    home_currency: str | None = None
    # What the admin should fix once, instead of a reason on every account (e.g. "payment
    # history not mapped").
    warnings: list[str] = field(default_factory=list)
    # The day the accounts were scored as of (today unless --as-of, or the demo's seed date).
    as_of: str = ""

    @property
    def rejected(self) -> int:
        """Records the CRM refused or did not confirm, over all objects."""
        return (
            sum(c["rejected"] + c["unknown"] + c["fields_refused"] for c in self.writes.values())
            + self.tasks["failed"]
        )

    @property
    def new_quarantined(self) -> int:
        """Records quarantined for the first time (or for a new reason) in this run."""
        return sum(1 for entry in self.quarantined if entry.get("new", True))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (what `--json` prints and the run history stores)."""
        return {
            "run_id": self.run_id,
            "connection": self.connection,
            "crm": self.crm,
            "trigger": self.trigger,
            "dry_run": self.dry_run,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "objects": {name: dict(counts) for name, counts in self.objects.items()},
            "writes": {name: dict(counts) for name, counts in self.writes.items()},
            "tasks": dict(self.tasks),
            "scored": self.scored,
            "bands": dict(sorted(self.bands.items())),
            "errors": self.errors.top(),
            "quarantined": self.quarantined[:50],
            "quarantined_count": len(self.quarantined),
            "quarantined_new": self.new_quarantined,
            "held": self.held,
            "held_count": self.held_count,
            "api": {
                "calls": sum(self.api_calls.values()),
                "by_endpoint": dict(sorted(self.api_calls.items())),
                "quota_remaining": self.quota_remaining,
                "quota_limit": self.quota_limit,
            },
            "watermarks": {"before": self.watermarks_before, "after": self.watermarks_after},
            "planned": self.planned,
            "message": self.message,
            "portfolio": self.portfolio,
            "adopted_tasks": self.adopted_tasks,
            "adopted_fields": self.adopted_fields,
            "home_currency": self.home_currency,
            "warnings": self.warnings,
            "as_of": self.as_of,
        }
