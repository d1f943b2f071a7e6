"""A mapping as TOML: the keys in the order an admin reads them, one line per field."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOP_ORDER = ("name", "crm", "description", "validation", "objects")
_OBJECT_ORDER = ("crm_object", "exclude", "include", "fields")
_KIND_ORDER = ("account", "invoice", "task")


def ordered(data: dict[str, Any]) -> dict[str, Any]:
    """The top-level, object and kind keys in the order of a hand-written mapping file."""
    out = {key: data[key] for key in _TOP_ORDER if key in data}
    objects = out.get("objects")
    if isinstance(objects, dict):
        out["objects"] = {
            kind: {key: objects[kind][key] for key in _OBJECT_ORDER if key in objects[kind]}
            for kind in _KIND_ORDER
            if kind in objects
        }
    return out


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Write a mapping dict as TOML: scalars first, `[objects.KIND]` tables, one line per field."""
    lines: list[str] = []
    for key, value in data.items():
        if key != "objects":
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for kind, obj in (data.get("objects") or {}).items():
        lines.append("")
        lines.append(f"[objects.{_toml_key(kind)}]")
        for key, value in obj.items():
            if key != "fields":
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        if "fields" in obj:
            lines.append("")
            lines.append(f"[objects.{_toml_key(kind)}.fields]")
            for name, spec in obj["fields"].items():
                lines.append(f"{_toml_key(name)} = {_toml_value(spec)}")
    return "\n".join(lines) + "\n"
