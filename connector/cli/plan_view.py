"""What `sync --dry-run` shows: a summary of the plan by default, every change with --detail, one account.

The plan of a large book runs to thousands of field changes; people first need the shape (how
many of each field and rule, what is held or kept), then a few accounts by name, then one
account in full. The JSON report keeps every entry.
"""

from __future__ import annotations

import textwrap
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

# Accounts listed, one line each, in the summary.
FIRST_ACCOUNTS = 10


@dataclass
class AccountPlan:
    """Everything planned for one account, gathered from the report's entries."""

    account_id: str
    name: str
    cause: str = ""
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The account's name, or its id when the report has no name."""
        return self.name or self.account_id


def gather(planned: Iterable[dict[str, Any]]) -> list[AccountPlan]:
    """The report's planned entries grouped by account, in the order the run planned them."""
    accounts: dict[str, AccountPlan] = {}
    for entry in planned:
        if not entry.get("account_id"):
            continue  # a digest task (one per owner or for approvals): see `digests`
        account_id = str(entry["account_id"])
        plan = accounts.setdefault(
            account_id, AccountPlan(account_id, str(entry.get("account_name") or ""))
        )
        if "fields" in entry:
            plan.fields.update(entry["fields"])
            plan.cause = plan.cause or str(entry.get("cause") or "")
        elif "task" in entry:
            plan.tasks.append(entry)
        elif "decision" in entry:
            plan.decisions.append(entry)
    return list(accounts.values())


def digests(planned: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The planned digest tasks: one per owner (capped tasks) or for the credit manager."""
    return [entry for entry in planned if not entry.get("account_id")]


def value_text(value: Any, limit: int = 60) -> str:
    """A value for a person: `(empty)` for nothing, lines joined, long text cut."""
    if value is None or value == "":
        return "(empty)"
    text = " · ".join(line.strip() for line in str(value).splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary(report: dict[str, Any], accounts: list[AccountPlan], width: int) -> RenderableType:
    """Counts by field, decision and task rule, then the first accounts in one line each."""
    lines: list[RenderableType] = []
    fields: Counter[str] = Counter()
    tasks: dict[str, Counter[str]] = defaultdict(Counter)
    decisions: dict[str, Counter[str]] = defaultdict(Counter)
    for plan in accounts:
        fields.update(plan.fields.keys())
        for task in plan.tasks:
            tasks[str(task["task"])][str(task["rule"])] += 1
        for decision in plan.decisions:
            decisions[str(decision["decision"])][str(decision["field"])] += 1
    changed = sum(1 for plan in accounts if plan.fields)
    lines.append(Text("Planned (nothing was written)", style="bold"))
    if fields:
        counted = ", ".join(f"{name} {count}" for name, count in fields.most_common())
        lines.append(_wrapped(f"field changes on {changed} accounts: {counted}", width))
    else:
        lines.append(Text("  no field changes: the CRM already holds every value"))
    for kind, label in (
        ("held", "held for approval (a limit change above the thresholds)"),
        ("conflict", "kept: changed in the CRM by a person since we wrote it"),
    ):
        if decisions[kind]:
            counted = ", ".join(f"{name} {n}" for name, n in decisions[kind].most_common())
            lines.append(_wrapped(f"{label}: {counted}", width))
    for verb in ("create", "escalate", "comment", "complete"):
        if tasks[verb]:
            total = sum(tasks[verb].values())
            rules = ", ".join(f"{rule} {n}" for rule, n in tasks[verb].most_common())
            lines.append(_wrapped(f"tasks to {verb}: {total} ({rules})", width))
    waiting = digests(report.get("planned", []))
    if waiting:
        digest_rules = Counter(str(entry.get("rule")) for entry in waiting)
        counted = ", ".join(f"{rule} {n}" for rule, n in digest_rules.most_common())
        lines.append(_wrapped(f"digest tasks to create: {len(waiting)} ({counted})", width))
    shown = [plan for plan in accounts if plan.fields or plan.tasks or plan.decisions]
    if shown:
        lines.append(Text(""))
        head = f"First {min(FIRST_ACCOUNTS, len(shown))} of {len(shown)} accounts with changes"
        lines.append(Text(f"{head} (--account NAME for one, --detail for all):", style="bold"))
        lines.append(Text("  (field new value, or old→new when the CRM has one)", style="dim"))
        name_width = min(28, max(len(plan.label) for plan in shown[:FIRST_ACCOUNTS]))
        for plan in shown[:FIRST_ACCOUNTS]:
            rest = max(30, width - name_width - 4)
            line = f"  {_fit(plan.label, name_width).ljust(name_width)}  {one_line(plan, rest)}"
            lines.append(Text(_fit(line, width)))
    return Group(*lines)


# The fields people look at first, with the short labels the one-line form uses; the others
# (reasons, review time...) follow and are counted when they do not fit.
FIRST_FIELDS = {
    "risk_band": "band",
    "risk_score": "score",
    "current_credit_limit": "limit",
    "recommended_credit_limit": "recommended",
}


def one_line(plan: AccountPlan, width: int = 80) -> str:
    """An account's changes in at most `width` characters, the fields people look at first.

    `band (empty)→C, score (empty)→48.2, +4 more; tasks past_due`: what does not fit is
    counted, never cut in the middle of a value.
    """
    rules = [
        str(task["rule"]) if task["task"] == "create" else f"{task['task']} {task['rule']}"
        for task in plan.tasks
    ]
    tail = f"; {'task' if len(rules) == 1 else 'tasks'} {', '.join(rules)}" if rules else ""
    tail = _fit(tail, max(16, width // 3))
    order = sorted(
        plan.fields,
        key=lambda name: (
            list(FIRST_FIELDS).index(name) if name in FIRST_FIELDS else len(FIRST_FIELDS)
        ),
    )
    parts = [_change(FIRST_FIELDS.get(name, name), plan.fields[name]) for name in order]
    parts += [f"{FIRST_FIELDS.get(d['field'], d['field'])} {d['decision']}" for d in plan.decisions]
    shown: list[str] = []
    for index, part in enumerate(parts):
        left = len(parts) - index - 1
        more = f", +{left} more" if left else ""
        if shown and len(", ".join([*shown, part]) + more + tail) > width:
            shown.append(f"+{len(parts) - index} more")
            break
        shown.append(part)
    text = ", ".join(shown)
    return (text + tail) if text else tail.removeprefix("; ")


def _change(label: str, change: dict[str, Any]) -> str:
    """`limit 16000.00→12800.00`, or `band C` when the CRM had no value."""
    new = value_text(change["new"], 14)
    if change["old"] is None or change["old"] == "":
        return f"{label} {new}"
    return f"{label} {value_text(change['old'], 14)}→{new}"


def detail(accounts: list[AccountPlan], width: int) -> RenderableType:
    """Every planned change, account by account: the cause once, then one line per change."""
    lines: list[RenderableType] = []
    limit = max(30, width - 28)
    for plan in accounts:
        head = f"{plan.label} ({plan.account_id})" if plan.name else plan.account_id
        lines.append(Text(head, style="bold"))
        if plan.cause:
            lines.append(Text(_fit(f"  why: {plan.cause}", width)))
        for name, change in plan.fields.items():
            old, new = value_text(change["old"], limit // 2), value_text(change["new"], limit)
            lines.append(Text(_fit(f"  {name:<24} {old} → {new}", width)))
        for decision in plan.decisions:
            what = "held for approval" if decision["decision"] == "held" else "kept CRM value"
            line = (
                f"  {decision['field']:<24} {what}: CRM {value_text(decision['crm_value'])}, "
                f"we would write {value_text(decision['desired'])} ({decision['cause']})"
            )
            lines.append(Text(_fit(line, width)))
        for task in plan.tasks:
            line = (
                f"  task {task['task']} {task['rule']} ({task['priority']}): "
                f"{value_text(task['subject'], limit)}"
            )
            lines.append(Text(_fit(line, width)))
        lines.append(Text(""))
    return Group(*lines)


def select(
    accounts: list[AccountPlan], wanted: str, normalise: Callable[[str], str]
) -> list[AccountPlan]:
    """The plans of the account `wanted` names: id (any form the CRM uses), whole name, or part."""
    ids = {wanted.strip(), normalise(wanted)}
    by_id = [plan for plan in accounts if plan.account_id in ids]
    if by_id:
        return by_id
    text = wanted.strip().casefold()
    exact = [plan for plan in accounts if plan.name.casefold() == text]
    if exact:
        return exact
    return [plan for plan in accounts if text and text in plan.name.casefold()]


def _wrapped(text: str, width: int) -> Text:
    """One summary item, indented, its continuation lines indented further."""
    return Text(
        textwrap.fill(text, width=max(40, width), initial_indent="  ", subsequent_indent="      ")
    )


def _fit(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"
