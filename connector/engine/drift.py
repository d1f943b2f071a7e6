"""The mapping check a run relies on, and what happens when the CRM changes after it passed.

A passing `check` is remembered for a day, so routine runs spend no API calls on metadata. When
the CRM later refuses a call because of the schema (a mapped field deleted, made read-only or
retyped), `FieldDrift` confirms it against the CRM's metadata, forgets the remembered check and
stops the run with exit 78. When the CRM refuses one value of one field (a picklist value it
lacks), the field is held back for that account until the mapping or the CRM field changes,
and the account's other changes are still written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connector.errors import CrmError, FatalCrmError, MappingDriftError, MappingErrors
from connector.mapping import FieldMapping
from connector.mapping.check import check_mapping, schema_drift
from connector.planning.planner import normalize
from connector.protocol import ConnectionSettings, CrmAdapter, ObjectDescription, secret_paths
from connector.redaction import redact
from connector.store import SqlStore

log = logging.getLogger("crm_risk.drift")

MAPPING_CHECK_TTL_SECONDS = 24 * 3600


def _check_key(connection: str) -> str:
    return f"mapping_check:{connection}"


def mapping_digest(mapping: FieldMapping) -> str:
    """A fingerprint of the effective mapping (fields, value maps, filters, validation rules)."""
    text = json.dumps(mapping.effective_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def crm_digest(settings: ConnectionSettings | None) -> str:
    """A fingerprint of the CRM a connection points at: its kind and non-secret settings.

    Pointing a connection from a sandbox org at production (another base URL, instance or data
    centre) changes it, so a pass remembered for the old org is not trusted. Secrets are left
    out, so the stored record holds nothing derived from them.
    """
    if settings is None:
        return ""
    exclude: dict[str, Any] = {}
    for path in secret_paths(type(settings)):
        node = exclude
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = True
    public = settings.model_dump(mode="json", exclude=exclude)
    text = json.dumps(public, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def refuse_on_mapping_errors(
    adapter: CrmAdapter,
    mapping: FieldMapping,
    *,
    store: SqlStore | None = None,
    connection: str = "",
    crm: ConnectionSettings | None = None,
    force: bool = False,
) -> None:
    """Stop before a run on any mapping error, rather than skipping the field.

    A passing check is remembered for a day per (connection, effective mapping, CRM the
    connection points at: `crm`, its settings); `force`, a mapping change, a change of CRM or
    org, or a drift found by a run (`forget_mapping_check`) checks again.

    Raises:
        MappingErrors: every error `check_mapping` found (exit 78).
    """
    digest = mapping_digest(mapping)
    org = crm_digest(crm)
    if store is not None and not force:
        remembered = store.get_value(_check_key(connection))
        try:
            entry = json.loads(remembered) if remembered else None
        except ValueError:
            entry = None
        if (
            isinstance(entry, dict)
            and entry.get("mapping") == digest
            and entry.get("crm", "") == org
            and time.time() - float(entry.get("at", 0)) < MAPPING_CHECK_TTL_SECONDS
        ):
            return
    errors = [
        error
        for error in check_mapping(mapping, adapter.describe)
        if getattr(error, "severity", "error") == "error"
    ]
    if errors:
        raise MappingErrors(errors)
    if store is not None:
        store.set_value(
            _check_key(connection),
            json.dumps({"mapping": digest, "crm": org, "at": time.time()}),
        )


def forget_mapping_check(store: SqlStore, connection: str) -> None:
    """The CRM changed under a passing check: the next run checks the mapping again."""
    store.delete_values([_check_key(connection)])


@dataclass(frozen=True)
class Refusal:
    """The CRM refused one value of one field of one account."""

    field: str
    value: Any
    code: str
    message: str


class FieldDrift:
    """Reads the CRM's metadata (once per run, only when needed) to explain a refusal."""

    def __init__(
        self, adapter: CrmAdapter, mapping: FieldMapping, store: SqlStore, connection: str
    ) -> None:
        self.adapter = adapter
        self.mapping = mapping
        self.store = store
        self.connection = connection
        self._described: dict[str, ObjectDescription] = {}
        self._blocks: dict[tuple[str, str], dict[str, Any]] | None = None
        # Accounts whose refused values were forgotten this run (mapping or CRM field changed).
        self._released: set[str] = set()

    def describe(self, crm_object: str) -> ObjectDescription:
        """The object's metadata, read once per run."""
        if crm_object not in self._described:
            self._described[crm_object] = self.adapter.describe(crm_object)
        return self._described[crm_object]

    # -- schema drift -------------------------------------------------------------------------

    def stop_if_schema_changed(self, cause: CrmError, crm_fields: Iterable[str] | None) -> None:
        """Raise MappingDriftError when the CRM's metadata shows a mapped field gone or read-only.

        Args:
            cause: the CRM's refusal (its full message goes into the error).
            crm_fields: the CRM fields the refusal named; None when it named none.

        Raises:
            MappingDriftError: the schema no longer fits the mapping (the cached check is
                forgotten first).
        """
        try:
            problems = schema_drift(self.mapping, self.describe, crm_fields)
        except CrmError:
            # Metadata unreadable now: the original refusal is the better report.
            return
        if not problems:
            return
        forget_mapping_check(self.store, self.connection)
        log.error(
            "the CRM changed after the mapping check passed; stopping",
            extra={"detail": redact(str(cause))},
        )
        raise MappingDriftError(problems, cause=redact(cause.message or str(cause)))

    def explain_fatal(self, exc: FatalCrmError) -> None:
        """A whole call refused: schema drift (exit 78) if the metadata shows one, else nothing."""
        self.stop_if_schema_changed(exc, getattr(exc, "fields", None) or None)

    # -- refused values ---------------------------------------------------------------------

    def canonical(self, crm_field: str) -> str | None:
        """The canonical account write field mapped to a CRM field name, if any."""
        lowered = crm_field.lower()
        for name in self.mapping.write_fields():
            if self.mapping.field("account", name).crm.lower() == lowered:
                return name
        return None

    def guard(self, field: str) -> str:
        """A fingerprint of what could make a refused value acceptable: the mapping entry of the
        field and the CRM field's definition (type, edit access, picklist values, length)."""
        item = self.mapping.field("account", field)
        crm_object = self.mapping.crm_object("account")
        described = self.describe(crm_object).fields.get(item.crm.split(".", 1)[0])
        definition = (
            None
            if described is None
            else [
                described.type,
                described.updateable,
                sorted(described.picklist_values),
                described.length,
                described.precision,
                described.scale,
            ]
        )
        text = json.dumps(
            [item.spec.model_dump(mode="json"), definition], sort_keys=True, default=str
        )
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def blocks(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Refused fields still in force, by (account, field); stale ones are forgotten.

        The CRM's metadata is read only when refusals exist (one describe per run).
        """
        if self._blocks is None:
            rows = self.store.field_blocks(self.connection)
            live: dict[tuple[str, str], dict[str, Any]] = {}
            guards: dict[str, str] = {}
            for row in rows:
                field = row["field"]
                if field not in self.mapping.write_fields():
                    self.store.clear_field_blocks(self.connection, field=field)
                    self._released.add(str(row["account_id"]))
                    continue
                if field not in guards:
                    guards[field] = self.guard(field)
                if guards[field] != row["guard"]:
                    # The mapping or the CRM field changed: try the value again.
                    self.store.clear_field_blocks(
                        self.connection, account_id=row["account_id"], field=field
                    )
                    self._released.add(str(row["account_id"]))
                    continue
                live[(row["account_id"], field)] = row
            if live:
                log.warning(
                    "%d field values stay unsent: the CRM refused them and neither the mapping "
                    "nor the CRM field changed since",
                    len(live),
                )
            self._blocks = live
        return self._blocks

    def retry_changed(self) -> set[str]:
        """Accounts with a refused value that may be accepted now: the mapping entry or the CRM
        field changed since the refusal. Their refusals are forgotten; the caller plans them
        again. Reads the CRM's metadata only when refusals exist."""
        self.blocks()
        return set(self._released)

    def explains(self, field: str, value: Any) -> bool:
        """Whether the CRM's metadata explains refusing `value`: a picklist without it, a text
        longer than the field, a number beyond its precision. Only such a refusal is remembered;
        an unexplained one (a validation rule, a hiccup) is retried next run like any other."""
        item = self.mapping.field("account", field)
        described = self.describe(self.mapping.crm_object("account")).fields.get(
            item.crm.split(".", 1)[0]
        )
        if described is None:
            return False
        sent = self.mapping.to_crm_values("account", {field: value}).get(item.crm)
        if sent is None:
            return False
        if described.family == "picklist" and described.picklist_values:
            return str(sent) not in described.picklist_values
        if isinstance(sent, str) and described.length:
            return len(sent) > described.length
        if described.precision and isinstance(sent, int | float | Decimal):
            whole_digits = described.precision - (described.scale or 0)
            return abs(Decimal(str(sent))) >= Decimal(10) ** whole_digits
        return False

    def held_back(self, account_id: str, fields: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The fields of an update the CRM refused before with the same value, by name."""
        blocks = self.blocks()
        if not blocks:
            return {}
        out = {}
        for name, value in fields.items():
            block = blocks.get((account_id, name))
            if block is not None and normalize(name, block["value"]) == normalize(name, value):
                out[name] = block
        return out

    def remember(self, account_id: str, refusal: Refusal) -> None:
        """Hold this value of this field back for the account until the mapping or CRM changes."""
        guard = self.guard(refusal.field)
        self.store.block_field(
            self.connection,
            account_id,
            refusal.field,
            refusal.value,
            refusal.code,
            refusal.message,
            guard,
        )
        if self._blocks is not None:
            self._blocks[(account_id, refusal.field)] = {
                "field": refusal.field,
                "value": refusal.value,
                "guard": guard,
            }

    def forget(self, account_id: str, fields: Iterable[str]) -> None:
        """These fields were written after all: their refusals no longer apply."""
        blocks = self.blocks()
        for name in fields:
            if (account_id, name) in blocks:
                del blocks[(account_id, name)]
                self.store.clear_field_blocks(self.connection, account_id=account_id, field=name)
