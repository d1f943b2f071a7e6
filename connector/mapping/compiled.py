"""The compiled mapping: every field's converters built once, looked up by canonical name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from connector.errors import MappingError, MappingErrors
from connector.mapping.convert import BadValue, getter, to_str
from connector.mapping.dump import dumps_toml, ordered
from connector.mapping.fields import CompiledField, compile_field, crm_format
from connector.mapping.read import Filter, RecordReader
from connector.mapping.schema import CANONICAL_READ, REQUIRED_FIELDS, MappingFile, ObjectSpec
from connector.models import RawRecord


def _needs_write(direction: str) -> bool:
    return direction in ("write", "read_write")


def _needs_read(direction: str) -> bool:
    return direction in ("read", "read_write")


class FieldMapping(RecordReader):
    """A validated mapping: CRM names per canonical object and field, with compiled converters."""

    def __init__(
        self,
        spec: MappingFile,
        *,
        source: str,
        chain: Iterable[str] = (),
        origin: Callable[[str], str] | None = None,
    ) -> None:
        """Compile a mapping; raises MappingErrors naming file and key for every problem."""
        self.spec = spec
        self.rules = spec.validation
        self.source = source
        self.chain = list(chain)
        self.name = spec.name
        self.crm = spec.crm
        self._objects = {
            str(k): v for k, v in spec.objects.items() if v.enabled or k in ("account", "invoice")
        }
        self._origin = origin or (lambda _key: source)
        self._fields = {}
        self._filters = {}
        self._filter_paths = {}
        errors: list[MappingError] = []
        for kind in ("account", "invoice"):
            if kind not in spec.objects:
                errors.append(
                    MappingError(
                        f"missing [objects.{kind}]", mapping_file=source, key=f"objects.{kind}"
                    )
                )
        for kind, obj in spec.objects.items():
            if str(kind) not in self._objects:
                continue
            errors.extend(self._compile_object(kind, obj))
        errors.extend(self._unmapped_required())
        if errors:
            raise MappingErrors(errors)
        self._account_readers = [
            item
            for item in self._fields["account"].values()
            if _needs_read(item.direction) and item.name in CANONICAL_READ["account"]
        ]
        self._invoice_readers = list(self._fields["invoice"].values())

    def _compile_object(self, kind: str, obj: ObjectSpec) -> list[MappingError]:
        """Compile one object's fields and filters; the problems found."""
        where = self._origin
        errors: list[MappingError] = []
        if not obj.crm_object:
            errors.append(
                MappingError(
                    "crm_object is required",
                    mapping_file=where(f"objects.{kind}"),
                    key=f"objects.{kind}.crm_object",
                )
            )
        compiled: dict[str, CompiledField] = {}
        for name, field_spec in obj.fields.items():
            if not field_spec.enabled:
                continue
            key = f"objects.{kind}.fields.{name}"
            item, problems = compile_field(kind, name, field_spec, where(key), key)
            errors.extend(problems)
            if item is not None:
                compiled[name] = item
        self._fields[kind] = compiled
        errors.extend(self._compile_filters(kind, obj, compiled))
        return errors

    def _compile_filters(
        self, kind: str, obj: ObjectSpec, compiled: Mapping[str, CompiledField]
    ) -> list[MappingError]:
        """Build an object's exclude/include filters on CRM paths; the problems found."""
        errors: list[MappingError] = []
        filters: list[Filter] = []
        paths: list[str] = []
        for rule, negate in ((obj.exclude, True), (obj.include, False)):
            for filter_key, listed in rule.items():
                target = compiled.get(filter_key)
                path = target.crm if target is not None else filter_key
                if not path:
                    errors.append(
                        MappingError(
                            "filter on a static value",
                            mapping_file=self._origin(f"objects.{kind}"),
                            key=f"objects.{kind}.{'exclude' if negate else 'include'}.{filter_key}",
                        )
                    )
                    continue
                filters.append((getter(path), frozenset(to_str(value) for value in listed), negate))
                paths.append(path)
        self._filters[kind] = filters
        self._filter_paths[kind] = paths
        return errors

    def _unmapped_required(self) -> list[MappingError]:
        """A problem for each field an optional object must map when the mapping maps it."""
        errors: list[MappingError] = []
        for kind, required in REQUIRED_FIELDS.items():
            mapped = self._objects.get(kind)
            if mapped is None:
                continue
            for name in required:
                declared = mapped.fields.get(name)
                if declared is None or not declared.enabled:
                    errors.append(
                        MappingError(
                            f"{name} must be mapped",
                            mapping_file=self.source,
                            key=f"objects.{kind}.fields.{name}",
                        )
                    )
        return errors

    # -- lookups ---------------------------------------------------------------------------------

    def fields(self, kind: str) -> dict[str, CompiledField]:
        """The compiled fields of one object, by canonical name."""
        return dict(self._fields.get(kind, {}))

    def field(self, kind: str, name: str) -> CompiledField:
        """One compiled field; raises MappingError when the mapping does not map it."""
        try:
            return self._fields[kind][name]
        except KeyError:
            raise MappingError(
                f"{name} is not mapped",
                mapping_file=self.source,
                key=f"objects.{kind}.fields.{name}",
            ) from None

    def file_for(self, key: str) -> str:
        """The mapping file that set a key (the user's file or the preset it extends)."""
        return self._origin(key)

    def crm_object(self, kind: str) -> str:
        """The CRM object (Salesforce sObject, Zoho module) holding this canonical kind."""
        obj = self._objects.get(kind)
        if obj is None or not obj.crm_object:
            raise MappingError(
                f"no [objects.{kind}] in the mapping",
                mapping_file=self.source,
                key=f"objects.{kind}",
            )
        return str(obj.crm_object)

    def object_spec(self, kind: str) -> ObjectSpec | None:
        """The object section as written (after extends), or None when absent."""
        return self._objects.get(kind)

    def has_object(self, kind: str) -> bool:
        """Whether the mapping configures this kind (task is optional)."""
        return kind in self._objects

    def read_fields(self, kind: str) -> list[str]:
        """CRM field paths to request: every mapped field (write fields too, for diffing) and filters."""
        paths: list[str] = []
        for item in self._fields.get(kind, {}).values():
            if item.crm:
                paths.append(item.crm)
        paths.extend(self._filter_paths.get(kind, []))
        return list(dict.fromkeys(paths))

    def write_fields(self) -> list[str]:
        """Canonical account fields the mapping writes, in file order."""
        return [
            name for name, item in self._fields["account"].items() if _needs_write(item.direction)
        ]

    def write_mode(self, kind: str, name: str) -> str:
        """The write mode of one write field: always, if_empty or respect_manual."""
        return self.field(kind, name).spec.write_mode

    def on_null(self, kind: str, name: str) -> str:
        """What a None canonical value does on write: skip or clear."""
        return self.field(kind, name).spec.on_null

    def max_lengths(self, kind: str) -> dict[str, int]:
        """Configured text lengths by canonical name (the planner truncates reasons to them)."""
        return {
            name: item.spec.max_length
            for name, item in self._fields.get(kind, {}).items()
            if item.spec.max_length is not None
        }

    def crm_value_to_canonical(self, kind: str, canonical_name: str, raw_record: RawRecord) -> Any:
        """The CRM's current value of a mapped field, in canonical form (None when empty or junk).

        Junk (a text in a number field) reads as None, so the planner sees a difference and
        overwrites it instead of quarantining the whole account.
        """
        item = self.field(kind, canonical_name)
        try:
            return item.read(raw_record.fields)
        except BadValue:
            return None

    # -- writing -------------------------------------------------------------------------------

    def to_crm_values(
        self, kind: str, canonical: dict[str, Any], *, clear_nulls: bool = False
    ) -> dict[str, Any]:
        """Canonical values -> CRM field names and CRM value formats, ready for an adapter.

        Money and numbers become Decimal (percent fields x100), dates ISO dates, date-times ISO
        8601 with offset in the field's time zone (or its `format`), labels go through the
        inverted value map, text is cut to `max_length` with an ellipsis. A None value is sent
        as null only when the field says `on_null = "clear"` (or `clear_nulls`, when a
        revert restores a field that was empty).

        Raises:
            MappingError: a canonical name the mapping does not write.
        """
        out: dict[str, Any] = {}
        for name, value in canonical.items():
            item = self.field(kind, name)
            if not _needs_write(item.direction) or not item.crm:
                raise MappingError(
                    f"{name} is not mapped for writing",
                    mapping_file=self.source,
                    key=f"objects.{kind}.fields.{name}",
                )
            if value is None:
                if clear_nulls or item.spec.on_null == "clear":
                    out[item.crm] = None
                continue
            out[item.crm] = crm_format(item, value)
        return out

    # -- showing -------------------------------------------------------------------------------

    def effective_dict(self) -> dict[str, Any]:
        """The mapping after `extends` and overrides, as the keys an admin would write."""
        data = self.spec.model_dump(mode="json", exclude_unset=True, exclude_none=True)
        return ordered(data)

    def to_toml(self) -> str:
        """The effective mapping as a TOML file that loads back to the same mapping."""
        header = [f"# Effective mapping from {self.source}"]
        if len(self.chain) > 1:
            header.append("# extends chain: " + " -> ".join(self.chain))
        return "\n".join(header) + "\n" + dumps_toml(self.effective_dict())
