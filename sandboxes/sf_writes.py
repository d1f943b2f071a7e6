"""The Salesforce sandbox's sObject Collections writes: each record validated, coerced and applied as Salesforce does."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandboxes.server import Request, Response
from sandboxes.sf_common import (
    _ROLLED_BACK,
    COLLECTION_LIMIT,
    RecordError,
    _collection_records,
    _error,
    _not_found,
    _typed_record,
)
from sandboxes.sf_schema import (
    CLOSED_TASK_STATUSES,
    FieldDef,
    SObject,
    to_id18,
)
from sandboxes.sf_soql import FieldRef
from sandboxes.sf_values import coerce

if TYPE_CHECKING:
    from sandboxes.salesforce import SalesforceEmulator

# A record ready to apply: its object, the id to update (None: create) and its coerced fields.
_Staged = tuple[SObject, str | None, dict[str, Any]]
# An upsert's match: the id to update (None: create) and the fields to write.
_Plan = tuple[str | None, dict[str, Any]]


class CollectionWrites:
    """Part of SalesforceEmulator (sandboxes/salesforce.py), holding no state of its own."""

    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.emulator = emulator

    def _collections(self, request: Request, version: str, parts: list[str]) -> Response:
        method = request.method
        if method in ("GET", "POST") and len(parts) == 1:
            return self._collections_retrieve(request, version, parts[0])
        if method == "PATCH" and len(parts) == 2:
            return self._collections_upsert(request, parts[0], parts[1])
        if method == "DELETE":
            return self._collections_delete(request)
        if method not in ("POST", "PATCH") or parts:
            return _not_found()
        return self._collections_save(request, creating=method == "POST")

    def _collections_delete(self, request: Request) -> Response:
        ids = [i for i in (request.param("ids") or "").split(",") if i]
        deleted: list[dict[str, Any]] = []
        with self.emulator._lock:
            for raw in ids[:COLLECTION_LIMIT]:
                rid = to_id18(raw) or raw
                row = next((t[rid] for t in self.emulator.rows.values() if rid in t), None)
                if row is None or row["IsDeleted"]:
                    deleted.append(
                        {
                            "success": False,
                            "errors": [
                                {
                                    "statusCode": "ENTITY_IS_DELETED",
                                    "message": "entity is deleted",
                                    "fields": [],
                                }
                            ],
                        }
                    )
                    continue
                row["IsDeleted"] = True
                self.emulator._touch(row, self.emulator._stamp())
                deleted.append({"id": rid, "success": True, "errors": []})
        return Response.json(200, deleted)

    def _collections_save(self, request: Request, *, creating: bool) -> Response:
        """POST (create) or PATCH (update) composite/sobjects: up to 200 records of any types."""
        parsed = _collection_records(request)
        if isinstance(parsed, Response):
            return parsed
        records, all_or_none = parsed
        # Salesforce processes each run of same-type records as one chunk; keep order.
        with self.emulator._lock:
            prepared = self._prepare_saves(records, creating)
            if isinstance(prepared, Response):
                return prepared
            outcomes: list[_Staged | RecordError] = []
            for obj, record_id, data, problem in prepared:
                if problem is None:
                    try:
                        clean = self._validate(obj, record_id, data, creating, request)
                        outcomes.append((obj, record_id, clean))
                        continue
                    except RecordError as exc:
                        problem = exc
                outcomes.append(problem)
            # A refused update names the id it was given; a refused create has none.
            error_ids = [None if creating else record_id for _, record_id, _, _ in prepared]
            results = self._commit(outcomes, all_or_none, error_ids=error_ids)
        return Response.json(200, results)

    def _prepare_saves(
        self, records: list[Any], creating: bool
    ) -> list[tuple[SObject, str | None, dict[str, Any], RecordError | None]] | Response:
        """Each record's object, id and fields, and what refuses it before validation; or the
        error that refuses the whole request (no type, an unknown type, an update without id)."""
        prepared: list[tuple[SObject, str | None, dict[str, Any], RecordError | None]] = []
        for raw in records:
            typed = _typed_record(raw)
            if isinstance(typed, Response):
                return typed
            data, type_name = typed
            obj = self.emulator._find_object(type_name)
            if obj is None:
                return _error(400, "INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
            record_id: str | None = None
            problem: RecordError | None = None
            if creating:
                if "id" in data or "Id" in data:
                    problem = RecordError(
                        "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"]
                    )
            else:
                raw_id = data.pop("id", None) or data.pop("Id", None)
                if not raw_id:
                    return _error(400, "MISSING_ARGUMENT", "Id not specified in an update call")
                record_id = to_id18(str(raw_id))
                if record_id is None:
                    problem = RecordError("MALFORMED_ID", f"malformed id {raw_id}", ["Id"])
            prepared.append((obj, record_id or (None if creating else str(raw_id)), data, problem))
        return prepared

    def _commit(
        self,
        outcomes: list[_Staged | RecordError],
        all_or_none: bool,
        *,
        error_ids: list[str | None] | None = None,
        upsert: bool = False,
    ) -> list[dict[str, Any]]:
        """Apply the validated records in order and answer one result each; with allOrNone,
        one refused record rolls every other back."""
        failed = any(isinstance(o, RecordError) for o in outcomes)
        results: list[dict[str, Any]] = []
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, RecordError):
                result: dict[str, Any] = {"success": False, "errors": [outcome.as_result()]}
                error_id = error_ids[index] if error_ids else None
                if error_id:
                    result = {"id": error_id} | result
                results.append(result)
                continue
            if failed and all_or_none:
                results.append({"success": False, "errors": [_ROLLED_BACK]})
                continue
            obj, record_id, clean = outcome
            new_id = self._apply(obj, record_id, clean, self.emulator._stamp())
            result = {"id": new_id, "success": True, "errors": []}
            if upsert:
                result["created"] = record_id is None
            results.append(result)
        return results

    def _collections_retrieve(self, request: Request, version: str, object_name: str) -> Response:
        # sObject Collections retrieve: GET ?ids=&fields= (up to 800 ids in the URL) or POST
        # {"ids": [...], "fields": [...]} (up to 2,000 ids); null for ids that are not there
        # (REST API guide, resources_composite_sobjects_collections_retrieve).
        obj = self.emulator._find_object(object_name)
        if obj is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        if request.method == "POST":
            try:
                body = request.json()
            except ValueError:
                return _error(400, "JSON_PARSER_ERROR", "Malformed JSON body")
            if not isinstance(body, dict):
                return _error(400, "JSON_PARSER_ERROR", "Expected a JSON object")
            ids = [str(i) for i in body.get("ids") or []]
            names = [str(n) for n in body.get("fields") or []]
            cap = 2000
        else:
            ids = [i for i in (request.param("ids") or "").split(",") if i]
            names = [n for n in (request.param("fields") or "").split(",") if n]
            cap = 800
        if not ids or not names:
            missing = "ids" if not ids else "fields"
            return _error(400, "MISSING_ARGUMENT", f"{missing} is required")
        if len(ids) > cap:
            return _error(400, "EXCEEDED_ID_LIMIT", f"cannot retrieve more than {cap} ids")
        plan: list[FieldRef] = []
        for name in names:
            ref = FieldRef(tuple(name.strip().split(".")), 1)
            if ref.path == ("Id",) or self._find_path(obj, ref.path):
                plan.append(ref)
                continue
            return _error(
                400, "INVALID_FIELD", f"No such column '{name}' on entity '{obj.name}'", [name]
            )
        if all(ref.path != ("Id",) for ref in plan):
            plan.insert(0, FieldRef(("Id",), 1))
        out: list[dict[str, Any] | None] = []
        with self.emulator._lock:
            for raw in ids:
                row = self.emulator.rows[obj.name].get(to_id18(raw) or raw)
                out.append(
                    None
                    if row is None or row["IsDeleted"]
                    else self.emulator.soql._render(obj, row, plan, version)
                )
        return Response.json(200, out)

    def _find_path(self, obj: SObject, path: tuple[str, ...]) -> bool:
        current = obj
        for hop in path[:-1]:
            link = current.relationships.get(hop.lower())
            if link is None or not link.reference_to:
                return False
            current = self.emulator.schema[link.reference_to[0]]
        return current.field(path[-1]) is not None

    def _collections_upsert(self, request: Request, object_name: str, field_name: str) -> Response:
        # PATCH composite/sobjects/{object}/{externalIdField}: create or update up to 200
        # records matched on an external id; each result says `created` (REST API guide,
        # resources_composite_sobjects_collections_upsert).
        obj = self.emulator._find_object(object_name)
        if obj is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        key = obj.field(field_name)
        if key is None or not (key.external_id or key.name == "Id"):
            return _error(
                400,
                "INVALID_FIELD",
                f"Field name provided, {field_name} is not an External ID or indexed field for "
                f"{obj.name}",
            )
        parsed = _collection_records(request)
        if isinstance(parsed, Response):
            return parsed
        records, all_or_none = parsed
        with self.emulator._lock:
            matched = self._upsert_plans(obj, key, records)
            if isinstance(matched, Response):
                return matched
            plans, seen = matched
            outcomes: list[_Staged | RecordError] = []
            for index, plan in enumerate(plans):
                if isinstance(plan, RecordError):
                    outcomes.append(plan)
                    continue
                value = str(
                    next(v for k, v in records[index].items() if k.lower() == key.name.lower())
                )
                if seen[value] > 1:
                    outcomes.append(
                        RecordError(
                            "DUPLICATE_VALUE",
                            f"Duplicate external id specified: {value}",
                            [key.name],
                        )
                    )
                    continue
                record_id, data = plan
                try:
                    clean = self._validate(obj, record_id, data, record_id is None, request)
                except RecordError as exc:
                    outcomes.append(exc)
                    continue
                outcomes.append((obj, record_id, clean))
            results = self._commit(outcomes, all_or_none, upsert=True)
        return Response.json(200, results)

    def _upsert_plans(
        self, obj: SObject, key: FieldDef, records: list[Any]
    ) -> tuple[list[_Plan | RecordError], Counter[str]] | Response:
        """Each record's match on `key` (the id to update, None to create) or what refuses it,
        with how often each key value occurs; or the error that refuses the whole request."""
        plans: list[_Plan | RecordError] = []
        seen: Counter[str] = Counter()
        for raw in records:
            typed = _typed_record(raw)
            if isinstance(typed, Response):
                return typed
            data, type_name = typed
            if type_name.lower() != obj.name.lower():
                return _error(
                    400, "INVALID_TYPE", f"Record type {type_name} does not match {obj.name}"
                )
            value = next((v for k, v in data.items() if k.lower() == key.name.lower()), None)
            if value in (None, ""):
                plans.append(
                    RecordError("MISSING_ARGUMENT", f"{key.name} not specified in an upsert call")
                )
                continue
            seen[str(value)] += 1
            plans.append(self._upsert_match(obj, key, value, data))
        return plans, seen

    def _upsert_match(
        self, obj: SObject, key: FieldDef, value: Any, data: dict[str, Any]
    ) -> _Plan | RecordError:
        found = [
            row["Id"]
            for row in self.emulator.rows[obj.name].values()
            if not row["IsDeleted"] and str(row.get(key.name)) == str(value)
        ]
        if len(found) > 1:
            return RecordError(
                "DUPLICATE_EXTERNAL_ID",
                f"{key.name}: more than one record found for external id field: {found}",
                [key.name],
            )
        if not found and key.name == "Id":
            return RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        if found:  # matched on it; the key itself is not rewritten
            data = {k: v for k, v in data.items() if k.lower() != key.name.lower()}
        return (found[0] if found else None, data)

    def _write(
        self,
        obj: SObject,
        items: list[tuple[str | None, dict[str, Any]]],
        *,
        creating: bool,
        request: Request | None = None,
    ) -> list[dict[str, Any]]:
        """Validate then apply; raises the first RecordError (single-record semantics)."""
        staged = [(rid, self._validate(obj, rid, data, creating, request)) for rid, data in items]
        stamp = self.emulator._stamp()
        return [{"id": self._apply(obj, rid, clean, stamp)} for rid, clean in staged]

    def _validate(
        self,
        obj: SObject,
        record_id: str | None,
        data: dict[str, Any],
        creating: bool,
        request: Request | None,
    ) -> dict[str, Any]:
        """The record's fields coerced for writing; raises the RecordError Salesforce answers."""
        if not creating:
            if record_id is None or record_id not in self.emulator.rows[obj.name]:
                raise RecordError(
                    "INVALID_CROSS_REFERENCE_KEY" if record_id else "MALFORMED_ID",
                    "invalid cross reference id",
                    [],
                )
            if self.emulator.rows[obj.name][record_id]["IsDeleted"]:
                raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [])
        clean = self._writable_fields(obj, data, creating)
        _check_required(obj, clean, creating)
        if obj.name == "Task":
            owner = clean.get("OwnerId")
            if owner is not None and not self.emulator.rows["User"][owner]["IsActive"]:
                raise RecordError(
                    "INACTIVE_OWNER_OR_USER", "operation performed with inactive user", ["OwnerId"]
                )
        self._check_org_refusals(obj, record_id, clean, request)
        return clean

    def _writable_fields(
        self, obj: SObject, data: dict[str, Any], creating: bool
    ) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        not_writable: list[str] = []
        for key, value in data.items():
            fdef = obj.field(key)
            if fdef is None:
                raise RecordError(
                    "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}", [key]
                )
            if not (fdef.createable if creating else fdef.updateable):
                not_writable.append(fdef.name)
                continue
            clean[fdef.name] = coerce(self.emulator, fdef, value)
        if not_writable:
            names = ", ".join(not_writable)
            raise RecordError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {names}. Please check the security settings of "
                "this field and verify that it is read/write for your profile or permission set.",
                not_writable,
            )
        return clean

    def _check_org_refusals(
        self,
        obj: SObject,
        record_id: str | None,
        clean: dict[str, Any],
        request: Request | None,
    ) -> None:
        """A locked row, an injected fault or a validation rule the org's admin added."""
        if record_id is not None and self.emulator._locks.get(record_id, 0) > 0:
            self.emulator._locks[record_id] -= 1
            raise RecordError(
                "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", []
            )
        faults = request.faults if request is not None else None
        if faults is not None:
            if faults.roll(faults.lock_error_rate):
                raise RecordError(
                    "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", []
                )
            if faults.roll(faults.record_error_rate):
                raise RecordError(
                    "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                    "Sandbox validation rule rejected this record (injected fault)",
                    [],
                )
        if self.emulator._validation_rules:
            merged = dict(self.emulator.rows[obj.name][record_id]) if record_id else {}
            merged.update(clean)
            for rule in self.emulator._validation_rules:
                message = rule(obj.name, merged)
                if message:
                    raise RecordError("FIELD_CUSTOM_VALIDATION_EXCEPTION", message, [])

    def _apply(self, obj: SObject, record_id: str | None, clean: dict[str, Any], stamp: str) -> str:
        table = self.emulator.rows[obj.name]
        if record_id is None:
            record_id = self.emulator.seeder._new_id(obj.name)
            row = self.emulator.seeder._blank(obj.name) | {"Id": record_id, "CreatedDate": stamp}
            if "OwnerId" in obj.position:
                row["OwnerId"] = self.emulator.integration_user_id
            table[record_id] = row
            op = "create"
        else:
            row = table[record_id]
            op = "update"
        row.update(clean)
        if obj.name == "Task":
            row["IsClosed"] = row.get("Status") in CLOSED_TASK_STATUSES
            what = row.get("WhatId")
            row["AccountId"] = what if what and what in self.emulator.rows["Account"] else None
        self.emulator._touch(row, stamp)
        self.emulator.writes_log.append(
            {"object": obj.name, "id": record_id, "op": op, "fields": dict(clean)}
        )
        if obj.name == "blng__PaymentAllocationInvoice__c":
            self._roll_up_payments(row.get("blng__Invoice__c"), stamp)
        return record_id

    def _roll_up_payments(self, invoice_id: Any, stamp: str) -> None:
        """Billing's roll-up: an allocation changes its invoice's balance and payment status.

        The impact of an allocation is its amount, of an unallocation minus its amount; the
        invoice's balance is its total less the impacts, and like any roll-up summary the
        change stamps the invoice, so an incremental read sees it again.
        """
        invoice = self.emulator.rows["blng__Invoice__c"].get(str(invoice_id))
        if invoice is None:
            return
        applied = sum(
            (-1 if row.get("blng__Type__c") == "Unallocation" else 1)
            * Decimal(str(row.get("blng__Amount__c") or 0))
            for row in self.emulator.rows["blng__PaymentAllocationInvoice__c"].values()
            if row.get("blng__Invoice__c") == invoice["Id"] and not row["IsDeleted"]
        )
        total = Decimal(str(invoice.get("blng__TotalAmount__c") or 0))
        balance = max(total - applied, Decimal(0))
        invoice["blng__Balance__c"] = float(balance)
        invoice["blng__PaymentStatus__c"] = (
            "Paid" if balance <= 0 else "Partially Paid" if balance < total else "Unpaid"
        )
        self.emulator._touch(invoice, stamp)


def _check_required(obj: SObject, clean: dict[str, Any], creating: bool) -> None:
    """A create must fill every required field; an update must not empty one."""
    if creating:
        for fdef in obj.fields:
            # OwnerId defaults to the calling user, as in Salesforce.
            required = not fdef.nillable and fdef.createable and fdef.default is None
            if required and fdef.name != "OwnerId" and clean.get(fdef.name) is None:
                raise RecordError(
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{fdef.name}]",
                    [fdef.name],
                )
    else:
        for name, value in clean.items():
            if value is None and not obj.by_lower[name.lower()].nillable:
                raise RecordError(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", [name]
                )
