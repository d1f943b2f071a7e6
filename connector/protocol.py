"""The contract between the core and every CRM adapter: one small Protocol plus declared capabilities."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, get_args, runtime_checkable

from pydantic import BaseModel, SecretStr

from connector.models import (
    CrmRates,
    RawRecord,
    RecordChange,
    StrictModel,
    TaskAction,
    TaskState,
    WriteResult,
)

TASK_MARKER_PREFIX = "[crm-risk:"
# The marker is a whole line of its own: `[crm-risk:<dedupe key>]`, nothing before or after.
# User text (account names in subjects and descriptions, a person's notes) is escaped so that
# no line of it can look like one, and the last marker line wins: a person may add notes below.
_MARKER_LINE = re.compile(r"^\[crm-risk:([^\r\n]+)\]$")
# What user text shows instead of the prefix: readable, and never a marker line.
_ESCAPED_PREFIX = "[crm-risk :"


def task_marker(dedupe_key: str) -> str:
    """The marker line written into a task's description, so a task created before a crash is found again.

    Raises:
        ValueError: a dedupe key with a line break (it could not be read back as one line).
    """
    if "\n" in dedupe_key or "\r" in dedupe_key:
        raise ValueError("a dedupe key cannot contain a line break")
    return f"{TASK_MARKER_PREFIX}{dedupe_key}]"


def escape_task_text(text: str) -> str:
    """User text made safe to put beside a marker: it can never contain a marker line."""
    return text.replace(TASK_MARKER_PREFIX, _ESCAPED_PREFIX)


def with_task_marker(description: str, dedupe_key: str) -> str:
    """A task description (escaped) followed by the marker on its own last line."""
    body = escape_task_text(description).rstrip()
    marker = task_marker(dedupe_key)
    return f"{body}\n\n{marker}" if body.strip() else marker


def append_task_comment(current: str | None, comment: str, dedupe_key: str) -> str:
    """Add a comment to a task description, keeping our marker as its last line.

    Marker lines already in the description (ours, or a v1 marker in the middle) are dropped
    from the body and the one marker is written last.
    """
    lines = [line for line in (current or "").splitlines() if not _MARKER_LINE.match(line)]
    body = "\n".join(lines).rstrip()
    parts = [part for part in (body, escape_task_text(comment).strip()) if part]
    return with_task_marker("\n\n".join(parts), dedupe_key)


def find_task_marker(text: str | None) -> str | None:
    """Return the dedupe key carried by a task description, or None.

    Only a line that is exactly `[crm-risk:KEY]` counts, and the last such line wins, so text
    that merely contains the prefix (an account named "[crm-risk:...]", a pasted note) is never
    read as a marker.
    """
    if not text:
        return None
    for line in reversed(text.splitlines()):
        found = _MARKER_LINE.match(line)
        if found:
            return found.group(1)
    return None


@dataclass(frozen=True)
class AdapterCapabilities:
    """What an adapter can do, as data read by the core or the conformance suite (no other flags).

    Rarer abilities (field creation, field-plan output, task lookup, scans, deletes, currencies)
    are optional protocols below, checked with isinstance.
    """

    name: str
    # The most records one write() may carry: the writer sizes its batches by it.
    max_write_batch: int
    # Records per read page: the conformance suite seeds more than one page's worth.
    max_read_page: int
    # False for a CRM without tasks: the conformance suite then skips the task cases.
    supports_tasks: bool = True
    # Write batches the writer sends at once (engine/writer.py); 1 sends them one by one.
    max_concurrency: int = 1


@dataclass(frozen=True)
class FieldDescription:
    """One CRM field as its metadata API describes it (Salesforce describe, Zoho settings/fields)."""

    name: str
    type: str
    label: str = ""
    updateable: bool = False
    createable: bool = False
    nillable: bool = True
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    picklist_values: tuple[str, ...] = ()
    custom: bool = False
    # Canonical type family the mapping checks against: string, text, number, integer,
    # currency, percent, boolean, date, datetime, picklist, reference, id, other.
    family: str = "other"
    # For a reference field, the name a path uses to go through it (`Owner` in `Owner.Name`
    # for the field OwnerId); "" when paths use the field's own name.
    relationship: str = ""


@dataclass(frozen=True)
class ObjectDescription:
    """A CRM object (Salesforce sObject, Zoho module) and its fields."""

    name: str
    fields: dict[str, FieldDescription]
    label: str = ""
    # The CRM matches field names whatever their case (a mapping may write `accountnumber`).
    case_insensitive_names: bool = False
    # A regular expression the name of a field we may create must match (fully); "" = any.
    creatable_field_pattern: str = ""


@dataclass
class ApiUsage:
    """API calls made by this adapter instance and the quota the CRM reports as left."""

    calls: dict[str, int] = field(default_factory=dict)
    remaining: int | None = None
    limit: int | None = None

    @property
    def total_calls(self) -> int:
        """All calls made, over every endpoint."""
        return sum(self.calls.values())


class KeyValueStore(Protocol):
    """Small persistent store an adapter may use for tokens (shared across processes)."""

    def get_value(self, key: str) -> str | None:
        """Return the stored value or None."""
        ...

    def set_value(self, key: str, value: str) -> None:
        """Store a value durably."""
        ...


class LocalPath:
    """Marks a settings field that names a local file: config resolves it next to the config file."""


class ConnectionSettings(StrictModel):
    """What every adapter's settings model extends: the connection's name and the adapter's kind.

    Each adapter declares its own strict model (`extra="forbid"`, secrets typed `SecretStr`,
    file paths annotated `Annotated[str, LocalPath()]`) and names it as the `settings_model`
    attribute of its factory. The core never names a field of it: it finds secrets by their
    type (never read from the config file, always redacted) and paths by their marker.
    """

    name: str = ""
    kind: str

    def missing_credentials(self) -> list[tuple[str, str]]:
        """Secrets this connection needs but does not have, as (key, why) pairs.

        Returns:
            One pair per missing secret, e.g. ("client_secret", "auth = 'refresh_token' needs
            it"); empty when the connection can authenticate. Checked only by commands that
            reach the CRM.
        """
        return []

    def credential_keys(self) -> tuple[str, ...]:
        """The settings this connection's authentication sends (to say where each came from).

        Returns:
            Top-level keys of this model; by default every secret field.
        """
        return tuple(path[0] for path in secret_paths(type(self)) if len(path) == 1)


def _field_models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _field_models(arg)


def _has_type(annotation: Any, wanted: type) -> bool:
    if annotation is wanted:
        return True
    return any(_has_type(arg, wanted) for arg in get_args(annotation))


def secret_paths(model: type[BaseModel]) -> list[tuple[str, ...]]:
    """Key paths of every `SecretStr` field of a settings model, nested tables included.

    Args:
        model: an adapter's settings model (or one of its nested option tables).

    Returns:
        Paths such as ("client_secret",) or ("options", "signing_key"), in field order.
    """
    paths: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        if _has_type(info.annotation, SecretStr):
            paths.append((name,))
        for nested in _field_models(info.annotation):
            paths.extend((name, *path) for path in secret_paths(nested))
    return paths


def path_fields(model: type[BaseModel]) -> list[str]:
    """Top-level fields of a settings model marked `LocalPath` (resolved next to the config file)."""
    return [
        name
        for name, info in model.model_fields.items()
        if any(isinstance(item, LocalPath) for item in info.metadata)
        or _marked_path(info.annotation)
    ]


def _marked_path(annotation: Any) -> bool:
    # `Annotated[str, LocalPath()] | None` keeps the marker inside the union's member.
    if any(isinstance(item, LocalPath) for item in getattr(annotation, "__metadata__", ())):
        return True
    return any(_marked_path(arg) for arg in get_args(annotation))


def secret_values(settings: BaseModel) -> Iterator[str]:
    """Every secret value a settings instance holds, nested tables included (for redaction)."""
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            yield value.get_secret_value()
        elif isinstance(value, BaseModel):
            yield from secret_values(value)


@runtime_checkable
class CrmAdapter(Protocol):
    """What the core needs from a CRM. Objects and fields are CRM names resolved by the mapping."""

    capabilities: AdapterCapabilities

    def describe(self, crm_object: str) -> ObjectDescription:
        """Return field metadata for one object; raises FatalCrmError if the object does not exist."""
        ...

    def read_changed(
        self, crm_object: str, fields: Sequence[str], since: datetime | None
    ) -> Iterator[RawRecord]:
        """Yield records modified at or after `since` (all when None), oldest first, ties by id.

        When `since` is given, records deleted since then are yielded with `deleted=True`.
        """
        ...

    def read_by_ids(
        self, crm_object: str, fields: Sequence[str], ids: Sequence[str]
    ) -> Iterator[RawRecord]:
        """Yield the current state of the given records (missing ids are skipped)."""
        ...

    def write(self, crm_object: str, changes: Sequence[RecordChange]) -> list[WriteResult]:
        """Update existing records; one result per change, same order. At most max_write_batch."""
        ...

    def create_tasks(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Create follow-up tasks idempotently by dedupe key; one result per task, same order."""
        ...

    def update_tasks(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Escalate, comment on or complete existing tasks (crm_task_id set); same order."""
        ...

    def usage(self) -> ApiUsage:
        """API calls made so far and the quota left as last reported by the CRM."""
        ...

    def close(self) -> None:
        """Release HTTP sessions."""
        ...


class AdapterFactory(Protocol):
    """What an adapter entry point names: a callable building the adapter, with its settings model."""

    settings_model: type[ConnectionSettings]

    def __call__(
        self, settings: Any, *, state: KeyValueStore | None = None, **options: Any
    ) -> CrmAdapter:
        """Build the adapter for one connection (settings is an instance of settings_model)."""
        ...


@dataclass(frozen=True)
class FieldSpec:
    """A custom field to create (for `crm-risk fields plan --apply`), in a neutral type vocabulary.

    `type` is one of Number, Currency, Percent, Picklist, Text, TextArea, LongTextArea, Checkbox,
    Date, DateTime; the adapter maps it to its CRM's own field types.
    """

    name: str
    label: str
    type: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    picklist_values: tuple[str, ...] = ()
    description: str = ""


@runtime_checkable
class FieldCreator(Protocol):
    """Optional: adapters whose CRM has an API to create custom fields implement this."""

    def create_fields(self, crm_object: str, fields: Sequence[FieldSpec]) -> list[WriteResult]:
        """Create the fields; one result per field, same order (crm_id = the new field's name)."""
        ...

    def field_line(self, item: MissingField) -> str:
        """One field `fields plan --apply` would create, in the CRM's words, before it asks."""
        ...


@dataclass(frozen=True)
class MissingField:
    """A custom field the mapping needs and the CRM lacks, with the type to create it as."""

    crm: str
    crm_object: str
    field: str
    canonical: str
    field_type: str  # the FieldSpec vocabulary: Number, Currency, Percent, Picklist, Text, ...
    label: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    picklist_values: tuple[str, ...] = ()
    writable: bool = True
    description: str = ""

    def __str__(self) -> str:
        size = ""
        if self.length is not None:
            size = f"({self.length})"
        elif self.precision is not None:
            size = f"({self.precision},{self.scale or 0})"
        values = f" [{', '.join(self.picklist_values)}]" if self.picklist_values else ""
        return (
            f"{self.crm_object}.{self.field}: {self.field_type}{size}{values} for {self.canonical}"
        )


@runtime_checkable
class FieldPlanFiles(Protocol):
    """Optional: the missing fields as files the CRM's own deployment tools take."""

    def field_plan_files(self, missing: Sequence[MissingField]) -> dict[str, str]:
        """Render the plan as deployable files.

        Args:
            missing: the fields `fields plan` found missing.

        Returns:
            Relative path -> file text (what `fields plan --format files` writes or prints).
        """
        ...

    def field_plan_written(self, files: Mapping[str, str], output: Path) -> str:
        """What was written under `output` (each kind of file counted) and how to deploy it."""
        ...


@runtime_checkable
class FieldPlanText(Protocol):
    """Optional: the missing fields as setup steps an admin follows in the CRM's own screens.

    Called while the adapter is open, also when nothing is missing: an adapter may add fields it
    needs itself (checked with its own describe) and word the plan in its CRM's language.
    """

    def field_plan_text(self, missing: Sequence[MissingField]) -> str:
        """Render the plan as text for people (what `fields plan` prints by default)."""
        ...


@runtime_checkable
class CredentialVerifier(Protocol):
    """Optional: adapters that can prove their credentials with a fresh exchange (what `check` does).

    A cached token proves nothing about the secret or refresh token it was minted from.
    """

    def verify_credentials(self) -> None:
        """Exchange the configured credentials for a new token; raise AuthError if refused."""
        ...


@runtime_checkable
class TaskFinder(Protocol):
    """Optional: look tasks of ours up by dedupe key (diagnostics and the conformance suite)."""

    def find_tasks(self, tasks: Mapping[str, str | None]) -> dict[str, TaskState]:
        """Find tasks this connector created, by the dedupe marker they carry.

        Args:
            tasks: dedupe key -> the account the task was opened on (None when unknown: the
                adapter then looks wider). No adapter reads anything into the key itself.

        Returns:
            The tasks found, by dedupe key; keys not found are absent.
        """
        ...


@runtime_checkable
class TaskScanner(Protocol):
    """Optional: every open task carrying our marker, in one scan (adopting state after a loss).

    Cheaper than a look-up per batch when the store knows none of the tasks (a new or restored
    store); adapters without it are asked by dedupe key, batch by batch, instead.
    """

    def open_tasks(self) -> Iterator[TaskState]:
        """Yield every open task that carries a dedupe marker."""
        ...


@runtime_checkable
class RelatedReader(Protocol):
    """Optional: the records of a child object that belong to given parents (e.g. the payment
    allocations of a batch of invoices), for CRMs that keep a fact on a child, not the parent."""

    def read_related(
        self, crm_object: str, fields: Sequence[str], parent_field: str, parent_ids: Sequence[str]
    ) -> Iterator[RawRecord]:
        """Yield the records whose `parent_field` holds one of `parent_ids` (deleted ones not)."""
        ...


@runtime_checkable
class TaskDeleter(Protocol):
    """Optional: delete tasks by id (what `revert` does when configured to delete, not complete)."""

    def delete_tasks(self, task_ids: Sequence[str]) -> list[WriteResult]:
        """Delete the tasks; one result per id, same order (an already deleted task is rejected)."""
        ...


@runtime_checkable
class CurrencySource(Protocol):
    """Optional: the CRM's own currencies and exchange rates (multi-currency orgs)."""

    def currencies(self) -> CrmRates:
        """The CRM's corporate/home currency and its rates (empty rates in a single-currency org)."""
        ...


@runtime_checkable
class RecordIdNormaliser(Protocol):
    """Optional, on the adapter class: an id as people type it, in the form the API uses.

    Called without credentials or a connection (explain, audit, sync --account), so it is a
    static method of the class the registry names. Salesforce turns the 15-character ids its UI
    shows into the 18-character API ids.
    """

    @staticmethod
    def normalise_record_id(text: str) -> str:
        """The API's form of an id (unchanged when it is not recognisably one)."""
        ...
