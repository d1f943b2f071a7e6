"""The Salesforce sandbox's query endpoints: a parsed SOQL query run over the org's rows, with cursors for the next pages."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sandboxes.server import Request, Response
from sandboxes.sf_common import (
    _APEX_TYPES,
    PlanItem,
    _aggregate_value,
    _ChildPlan,
    _Cursor,
    _error,
    _fold,
    _row_key,
    sf_datetime,
)
from sandboxes.sf_describe import child_relationship_name
from sandboxes.sf_schema import (
    NUMBER_TYPES,
    STRING_TYPES,
    FieldDef,
    SObject,
    to_id18,
)
from sandboxes.sf_soql import (
    BoolOp,
    Comparison,
    Condition,
    DateKeyword,
    DateLiteral,
    DateTimeLiteral,
    FieldRef,
    Not,
    Query,
    SoqlError,
    like_to_regex,
    parse,
    resolve_date_keyword,
)

if TYPE_CHECKING:
    from sandboxes.salesforce import SalesforceEmulator


class SoqlQueries:
    """Part of SalesforceEmulator (sandboxes/salesforce.py), holding no state of its own."""

    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.emulator = emulator

    def _invalid_field(self, query: Query, ref: FieldRef, entity: str, name: str) -> SoqlError:
        caret = " " * (ref.column - 1) + "^"
        return SoqlError(
            "INVALID_FIELD",
            f"\n{query.text}\n{caret}\nERROR at Row:1:Column:{ref.column}\n"
            f"No such column '{name}' on entity '{entity}'. If you are attempting to use a "
            "custom field, be sure to append the '__c' after the custom field name. Please "
            "reference your WSDL or the describe call for the appropriate names.",
        )

    def _resolve(self, query: Query, obj: SObject, ref: FieldRef) -> list[tuple[SObject, FieldDef]]:
        """The chain of (object, field) a path walks: relationships, then the final field."""
        chain: list[tuple[SObject, FieldDef]] = []
        current = obj
        for part in ref.path[:-1]:
            rel = current.relationships.get(part.lower())
            if rel is None:
                raise self._invalid_field(query, ref, current.name, part)
            chain.append((current, rel))
            current = self.emulator.schema[rel.reference_to[0]]
        fdef = current.field(ref.path[-1])
        if fdef is None:
            raise self._invalid_field(query, ref, current.name, ref.path[-1])
        chain.append((current, fdef))
        return chain

    def _getter(self, chain: list[tuple[SObject, FieldDef]]) -> Callable[[dict[str, Any]], Any]:
        if len(chain) == 1:
            name = chain[0][1].name
            return lambda row: row.get(name)
        steps = [
            (self.emulator.rows[self.emulator.schema[f.reference_to[0]].name], f.name)
            for _, f in chain[:-1]
        ]
        last = chain[-1][1].name

        def get(row: dict[str, Any]) -> Any:
            current: dict[str, Any] | None = row
            for table, fname in steps:
                ref_id = current.get(fname) if current else None
                current = table.get(ref_id) if ref_id else None
            return current.get(last) if current else None

        return get

    def _compile(
        self, query: Query, obj: SObject, cond: Condition
    ) -> Callable[[dict[str, Any]], bool]:
        if isinstance(cond, BoolOp):
            parts = [self._compile(query, obj, p) for p in cond.parts]
            if cond.op == "and":
                return lambda row: all(p(row) for p in parts)
            return lambda row: any(p(row) for p in parts)
        if isinstance(cond, Not):
            inner = self._compile(query, obj, cond.part)
            return lambda row: not inner(row)
        return self._compile_comparison(query, obj, cond)

    def _compile_comparison(
        self, query: Query, obj: SObject, cond: Comparison
    ) -> Callable[[dict[str, Any]], bool]:
        chain = self._resolve(query, obj, cond.field)
        fdef = chain[-1][1]
        get = self._getter(chain)
        op = cond.op
        if op in ("IN", "NOTIN"):
            values = {self._literal(fdef, v, cond) for v in cond.value}
            folded = {_fold(fdef, v) for v in values}
            if op == "IN":
                return lambda row: _fold(fdef, get(row)) in folded
            return lambda row: _fold(fdef, get(row)) not in folded
        if op == "LIKE":
            regex = like_to_regex(cond.value)
            return lambda row: (v := get(row)) is not None and bool(regex.match(str(v)))
        if isinstance(cond.value, DateKeyword) and fdef.type in ("date", "datetime"):
            start, end = resolve_date_keyword(cond.value, self.emulator.clock().date())
            lo, hi = start.isoformat(), end.isoformat()

            def keyword_match(row: dict[str, Any]) -> bool:
                value = get(row)
                if value is None:
                    return op == "!="
                day = str(value)[:10]
                outcome: bool = {
                    "=": lo <= day <= hi,
                    "!=": not lo <= day <= hi,
                    "<": day < lo,
                    "<=": day <= hi,
                    ">": day > hi,
                    ">=": day >= lo,
                }[op]
                return outcome

            return keyword_match
        literal = self._literal(fdef, cond.value, cond)
        if literal is None:
            if op == "=":
                return lambda row: get(row) is None
            if op == "!=":
                return lambda row: get(row) is not None
            raise SoqlError("MALFORMED_QUERY", "null can only be compared with = or !=")
        target = _fold(fdef, literal)
        compare: Callable[[Any, Any], bool] = {
            "=": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }[op]

        def match(row: dict[str, Any]) -> bool:
            value = get(row)
            if value is None:
                return op == "!="
            return compare(_fold(fdef, value), target)

        return match

    def _literal(self, fdef: FieldDef, value: Any, cond: Comparison) -> Any:
        if value is None:
            return None
        kind = fdef.type
        if kind == "datetime":
            if isinstance(value, DateTimeLiteral):
                return sf_datetime(value.value)
            raise SoqlError(
                "INVALID_FIELD",
                f"value of filter criterion for field '{fdef.name}' must be of type dateTime "
                "and should not be enclosed in quotes",
            )
        if kind == "date":
            if isinstance(value, DateLiteral):
                return value.value.isoformat()
            raise SoqlError(
                "INVALID_FIELD",
                f"value of filter criterion for field '{fdef.name}' must be of type date "
                "and should not be enclosed in quotes",
            )
        if kind in NUMBER_TYPES:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SoqlError(
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{fdef.name}' must be of type "
                    f"{kind} and should not be enclosed in quotes",
                )
            return float(value)
        if kind == "boolean":
            if not isinstance(value, bool):
                raise SoqlError(
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{fdef.name}' must be of type boolean "
                    "and should not be enclosed in quotes",
                )
            return value
        if not isinstance(value, str):
            raise SoqlError(
                "MALFORMED_QUERY",
                f"value of filter criterion for field '{fdef.name}' must be a quoted string",
            )
        if kind in ("id", "reference"):
            return to_id18(value) or value
        return value

    def _object_for(self, query: Query) -> SObject:
        obj = self.emulator._find_object(query.object_name)
        if obj is None:
            caret = " " * (query.object_column - 1) + "^"
            raise SoqlError(
                "INVALID_TYPE",
                f"\n{query.text}\n{caret}\nERROR at Row:1:Column:{query.object_column}\n"
                f"sObject type '{query.object_name}' is not supported. If you are attempting "
                "to use a custom object, be sure to append the '__c' after the entity name. "
                "Please reference your WSDL or the describe call for the appropriate names.",
            )
        return obj

    def _select_rows(
        self, query: Query, obj: SObject, include_deleted: bool, *, ordered: bool = True
    ) -> list[dict[str, Any]]:
        """Rows of `obj` that pass WHERE, in ORDER BY order (call with the lock held)."""
        predicate = self._compile(query, obj, query.where) if query.where else None
        rows = [
            row
            for row in self.emulator.rows[obj.name].values()
            if (include_deleted or not row["IsDeleted"]) and (predicate is None or predicate(row))
        ]
        if not ordered:
            return rows
        for item in reversed(query.order_by):
            chain = self._resolve(query, obj, item.field)
            get, fdef = self._getter(chain), chain[-1][1]
            nulls_last = item.nulls_last if item.nulls_last is not None else item.descending
            present = [r for r in rows if get(r) is not None]
            missing = [r for r in rows if get(r) is None]
            present.sort(key=_row_key(fdef, get), reverse=item.descending)
            rows = present + missing if nulls_last else missing + present
        return rows

    def _child_plan(self, parent: SObject, sub: Query, include_deleted: bool) -> _ChildPlan:
        """Resolve `(SELECT ... FROM Tasks)` on `parent` and run it for every parent at once."""
        for child in self.emulator.schema.values():
            for fdef in child.fields:
                name = child_relationship_name(child, fdef)
                if (
                    parent.name in fdef.reference_to
                    and name
                    and name.lower() == sub.object_name.lower()
                ):
                    for ref in sub.fields:
                        self._resolve(sub, child, ref)
                    by_parent: dict[str, list[str]] = {}
                    for row in self._select_rows(sub, child, include_deleted):
                        owner = row.get(fdef.name)
                        if owner:
                            by_parent.setdefault(owner, []).append(row["Id"])
                    if sub.limit is not None:
                        by_parent = {k: v[: sub.limit] for k, v in by_parent.items()}
                    return _ChildPlan(name, child, list(sub.fields), by_parent)
        raise SoqlError(
            "INVALID_TYPE",
            f"\n{sub.text}\nERROR at Row:1:Column:{sub.object_column}\nDidn't understand "
            f"relationship '{sub.object_name}' in FROM part of query call. If you are attempting "
            "to use a custom relationship, be sure to append the '__r' after the custom "
            "relationship name. Please reference your WSDL or the describe call for the "
            "appropriate names.",
        )

    def _run(
        self, query: Query, include_deleted: bool
    ) -> tuple[SObject, list[str], list[PlanItem]]:
        obj = self._object_for(query)
        for ref in query.fields:
            self._resolve(query, obj, ref)
        plan: list[PlanItem] = list(query.fields)
        with self.emulator._lock:
            plan += [self._child_plan(obj, sub, include_deleted) for sub in query.subqueries]
            ids = [row["Id"] for row in self._select_rows(query, obj, include_deleted)]
        ids = ids[query.offset :]
        if query.limit is not None:
            ids = ids[: query.limit]
        return obj, ids, plan

    def _aggregate(self, query: Query, include_deleted: bool) -> dict[str, Any]:
        """A grouped or aggregate SELECT: one AggregateResult row per group (no query locator)."""
        obj = self._object_for(query)
        grouped = {tuple(p.lower() for p in ref.path) for ref in query.group_by}
        for ref in query.fields:
            if tuple(p.lower() for p in ref.path) not in grouped:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"\n{query.text}\nERROR at Row:1:Column:{ref.column}\n"
                    f"Field must be grouped or aggregated: {ref.text}",
                )
        keys = [(ref, self._resolve(query, obj, ref)) for ref in query.group_by]
        key_getters = [self._getter(chain) for _, chain in keys]
        measures = [
            (agg, self._getter(self._resolve(query, obj, agg.field)) if agg.field else None)
            for agg in query.aggregates
        ]
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        with self.emulator._lock:
            for row in self._select_rows(query, obj, include_deleted, ordered=False):
                groups.setdefault(tuple(g(row) for g in key_getters), []).append(row)
        if not query.group_by and not groups:
            groups[()] = []  # an aggregate without GROUP BY always answers one row
        records: list[dict[str, Any]] = []
        sort_keys: list[list[Any]] = []
        unnamed = 0
        names: list[str] = []
        for agg, _ in measures:
            if agg.alias:
                names.append(agg.alias)
            else:
                names.append(f"expr{unnamed}")
                unnamed += 1
        for key, members in groups.items():
            record: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
            for (ref, chain), value in zip(keys, key, strict=True):
                if any(ref.path == f.path for f in query.fields):
                    record[chain[-1][1].name] = value
            for name, (agg, get) in zip(names, measures, strict=True):
                record[name] = _aggregate_value(agg.func, get, members)
            records.append(record)
            order: list[Any] = []
            for item in query.order_by:
                if item.aggregate is not None:
                    agg = item.aggregate
                    get = self._getter(self._resolve(query, obj, agg.field)) if agg.field else None
                    order.append(_aggregate_value(agg.func, get, members))
                else:
                    path = tuple(p.lower() for p in item.field.path)
                    position = [tuple(p.lower() for p in r.path) for r, _ in keys].index(path)
                    order.append(key[position])
            sort_keys.append(order)
        ranked = list(range(len(records)))
        for index, item in reversed(list(enumerate(query.order_by))):
            nulls_last = item.nulls_last if item.nulls_last is not None else item.descending
            present = [i for i in ranked if sort_keys[i][index] is not None]
            missing = [i for i in ranked if sort_keys[i][index] is None]
            present.sort(key=lambda i: sort_keys[i][index], reverse=item.descending)
            ranked = present + missing if nulls_last else missing + present
        rows = [records[i] for i in ranked][query.offset :]
        if query.limit is not None:
            rows = rows[: query.limit]
        return {"totalSize": len(rows), "done": True, "records": rows}

    def _render(
        self, obj: SObject, row: dict[str, Any], plan: Sequence[PlanItem], version: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": obj.name,
                "url": f"/services/data/v{version}/sobjects/{obj.name}/{row['Id']}",
            }
        }
        for item in plan:
            if isinstance(item, _ChildPlan):
                # Children nest as a query result of their own; none at all is null, not [].
                table = self.emulator.rows[item.obj.name]
                kids = [table[i] for i in item.by_parent.get(row["Id"], ()) if i in table]
                out[item.name] = (
                    {
                        "totalSize": len(kids),
                        "done": True,
                        "records": [self._render(item.obj, k, item.plan, version) for k in kids],
                    }
                    if kids
                    else None
                )
                continue
            self._render_path(obj, row, item.path, out, version)
        return out

    def _render_path(
        self,
        obj: SObject,
        row: dict[str, Any] | None,
        path: tuple[str, ...],
        out: dict[str, Any],
        version: str,
    ) -> None:
        if len(path) == 1:
            fdef = obj.field(path[0])
            if fdef is not None:
                out[fdef.name] = row.get(fdef.name) if row else None
            return
        rel = obj.relationships[path[0].lower()]
        target = self.emulator.schema[rel.reference_to[0]]
        ref_id = row.get(rel.name) if row else None
        parent = self.emulator.rows[target.name].get(ref_id) if ref_id else None
        key = rel.relationship_name or rel.name
        if parent is None:
            out.setdefault(key, None)
            return
        nested = out.get(key)
        if not isinstance(nested, dict):
            nested = {
                "attributes": {
                    "type": target.name,
                    "url": f"/services/data/v{version}/sobjects/{target.name}/{parent['Id']}",
                }
            }
            out[key] = nested
        self._render_path(target, parent, path[1:], nested, version)

    def _column(self, fdef: FieldDef, name: str, display: str) -> dict[str, Any]:
        return {
            "aggregate": False,
            "apexType": _APEX_TYPES.get(fdef.type, "String"),
            "booleanType": fdef.type == "boolean",
            "columnName": name,
            "custom": fdef.custom,
            "displayName": display,
            "foreignKeyName": None,
            "insertable": fdef.createable,
            "joinColumns": [],
            "numberType": fdef.type in NUMBER_TYPES,
            "textType": fdef.type in STRING_TYPES and fdef.type not in ("id", "reference"),
            "updatable": fdef.updateable,
        }

    def _columns(self, query: Query) -> dict[str, Any]:
        """`query?q=...&columns=true`: the columns a query returns, not its rows.

        Undocumented but served by Salesforce and read by its CLI (`sf data query`) and the
        Developer Console: relationship paths nest as joinColumns under the relationship,
        subqueries and functions are `aggregate` columns.
        """
        obj = self._object_for(query)
        columns: list[dict[str, Any]] = []

        def place(target: list[dict[str, Any]], owner: SObject, ref: FieldRef) -> None:
            chain = self._resolve(query, owner, ref)
            prefix = ""
            level = target
            for _owner, rel in chain[:-1]:
                name = rel.relationship_name or rel.name
                prefix += name + "."
                found = next((c for c in level if c["columnName"] == name), None)
                if found is None:
                    found = self._column(rel, name, prefix[:-1]) | {"foreignKeyName": rel.name}
                    level.append(found)
                level = found["joinColumns"]
            fdef = chain[-1][1]
            level.append(self._column(fdef, fdef.name, prefix + fdef.name))

        for ref in query.fields:
            place(columns, obj, ref)
        with self.emulator._lock:
            for sub in query.subqueries:
                child = self._child_plan(obj, sub, include_deleted=False)
                joined: list[dict[str, Any]] = []
                for ref in sub.fields:
                    place(joined, child.obj, ref)
                columns.append(
                    {
                        "aggregate": True,
                        "apexType": None,
                        "booleanType": False,
                        "columnName": child.name,
                        "custom": child.name.endswith("__r"),
                        "displayName": child.name,
                        "foreignKeyName": None,
                        "insertable": False,
                        "joinColumns": joined,
                        "numberType": False,
                        "textType": False,
                        "updatable": False,
                    }
                )
        unnamed = 0
        for agg in query.aggregates:
            name = agg.alias or f"expr{unnamed}"
            unnamed += 0 if agg.alias else 1
            numeric = agg.func in ("COUNT", "COUNT_DISTINCT", "SUM", "AVG")
            columns.append(
                {
                    "aggregate": True,
                    "apexType": "Integer" if agg.func.startswith("COUNT") else "Decimal",
                    "booleanType": False,
                    "columnName": name,
                    "custom": False,
                    "displayName": agg.alias or agg.text,
                    "foreignKeyName": None,
                    "insertable": False,
                    "joinColumns": [],
                    "numberType": numeric,
                    "textType": False,
                    "updatable": False,
                }
            )
        return {
            "columnMetadata": columns,
            "entityName": obj.name,
            "groupBy": bool(query.group_by),
            "idSelected": any(ref.path == ("Id",) for ref in query.fields),
            "keyPrefix": obj.key_prefix,
        }

    def _page_size(self, request: Request) -> int:
        options = request.headers.get("sforce-query-options", "")
        found = re.search(r"batchSize\s*=\s*(\d+)", options, re.IGNORECASE)
        if not found:
            return 2000
        return min(max(int(found.group(1)), 200), 2000)

    def _query(self, request: Request, version: str, text: str, include_deleted: bool) -> Response:
        query = parse(text)
        if (request.param("columns") or "").lower() == "true":
            return Response.json(200, self._columns(query))
        if query.is_aggregate:
            return Response.json(200, self._aggregate(query, include_deleted))
        obj, ids, plan = self._run(query, include_deleted)
        if query.count_only:
            return Response.json(200, {"totalSize": len(ids), "done": True, "records": []})
        locator = None
        if len(ids) > self._page_size(request):
            locator = "01g" + secrets.token_hex(8)[:12].upper() + "AA2"
            with self.emulator._lock:
                self.emulator._cursors[locator] = _Cursor(obj.name, plan, ids)
                while (
                    len(self.emulator._cursors) > 500
                ):  # bounded, like Salesforce's open-cursor limit
                    self.emulator._cursors.pop(next(iter(self.emulator._cursors)))
        return self._page(request, version, obj, plan, ids, 0, locator)

    def _page(
        self,
        request: Request,
        version: str,
        obj: SObject,
        plan: list[PlanItem],
        ids: list[str],
        start: int,
        locator: str | None,
    ) -> Response:
        size = self._page_size(request)
        chunk = ids[start : start + size]
        table = self.emulator.rows[obj.name]
        with self.emulator._lock:
            records = [self._render(obj, table[i], plan, version) for i in chunk if i in table]
        payload: dict[str, Any] = {"totalSize": len(ids), "done": True, "records": records}
        end = start + len(chunk)
        if end < len(ids) and locator:
            payload["done"] = False
            payload["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        return Response.json(200, payload)

    def _query_more(self, request: Request, version: str, token: str) -> Response:
        locator, _, position = token.rpartition("-")
        cursor = self.emulator._cursors.get(locator)
        if cursor is None or not position.isdigit():
            return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        obj = self.emulator.schema[cursor.object_name]
        return self._page(request, version, obj, cursor.plan, cursor.ids, int(position), locator)
