"""Field mappings: load and validate mapping TOML, and translate between CRM records and canonical models.

A mapping file names, for each canonical object (account, invoice, task), the CRM object and,
for each canonical field, the CRM field and how to convert it. Presets are the TOML files of the
top-level `mappings` package, shipped as package data (one copy, read by admins and loaded here).

This is the only package that sees canonical names and CRM names side by side (STYLE.md, 7).
Its modules, each with one job: `schema` (what a file may say), `load` (presets, files and
`extends`), `convert` (CRM values to canonical ones), `fields` (one field compiled),
`read` (records to canonical models), `compiled` (the FieldMapping), `dump` (back to TOML),
`check` (a mapping against the CRM's live metadata), `plan` (the custom fields to create) and
`lookup` (where a mapped path lands in the described fields, shared by check and plan).
"""

from __future__ import annotations

from connector.mapping.compiled import FieldMapping
from connector.mapping.convert import ISO_CURRENCIES
from connector.mapping.dump import dumps_toml
from connector.mapping.fields import ELLIPSIS, CompiledField
from connector.mapping.load import PRESET_DIR, load_mapping, preset_names
from connector.mapping.read import OPEN_TOLERANCE
from connector.mapping.schema import (
    CANONICAL_LABELS,
    CANONICAL_READ,
    CANONICAL_WRITE,
    DEFAULT_CRM_TYPE,
    MAX_AMOUNT,
    CrmType,
    Direction,
    FieldSpec,
    MappingFile,
    ObjectSpec,
    OnNull,
    Scalar,
    ValidationRules,
    WriteMode,
    canonical_type,
)

__all__ = [
    "CANONICAL_LABELS",
    "CANONICAL_READ",
    "CANONICAL_WRITE",
    "DEFAULT_CRM_TYPE",
    "ELLIPSIS",
    "ISO_CURRENCIES",
    "MAX_AMOUNT",
    "OPEN_TOLERANCE",
    "PRESET_DIR",
    "CompiledField",
    "CrmType",
    "Direction",
    "FieldMapping",
    "FieldSpec",
    "MappingFile",
    "ObjectSpec",
    "OnNull",
    "Scalar",
    "ValidationRules",
    "WriteMode",
    "canonical_type",
    "dumps_toml",
    "load_mapping",
    "preset_names",
]
