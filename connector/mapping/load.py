"""Load a mapping: a preset or a file, its `extends` chain merged, each key blamed on its file."""

from __future__ import annotations

import difflib
import importlib.resources
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from connector.errors import MappingError, MappingErrors, unreadable
from connector.mapping.compiled import FieldMapping
from connector.mapping.schema import FieldSpec, MappingFile, ObjectSpec, ValidationRules

PRESET_DIR = Path(str(importlib.resources.files("mappings")))


def preset_names() -> list[str]:
    """Names of the presets shipped with the package, e.g. `zoho.inventory`."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.toml"))


_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
# Maps whose entries replace the parent's as a whole: merging two value maps would keep
# stale CRM values the user meant to drop.
_REPLACE_KEYS = frozenset({"values", "exclude", "include"})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingErrors(
            [MappingError(f"mapping file {unreadable(path, exc)}", mapping_file=str(path))]
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_POSITION.search(str(exc))
        where = f"line {found.group(1)}, column {found.group(2)}" if found else ""
        message = _TOML_POSITION.sub("", str(exc)).strip()
        raise MappingErrors(
            [MappingError(f"invalid TOML: {message}", mapping_file=str(path), key=where)]
        ) from None


def _resolve_ref(ref: str, base_dir: Path | None) -> Path:
    looks_like_path = ref.endswith(".toml") or "/" in ref or "\\" in ref
    if not looks_like_path:
        preset = PRESET_DIR / f"{ref}.toml"
        if preset.is_file():
            return preset
    candidate = Path(ref).expanduser()
    if not candidate.is_absolute():
        candidate = (base_dir or Path.cwd()) / candidate
    if candidate.is_file():
        return candidate.resolve()
    names = preset_names()
    raise MappingErrors(
        [
            MappingError(
                f"no preset or mapping file {ref!r} (presets: {', '.join(names)})",
                mapping_file=str(candidate),
                key="mapping",
                suggestions=difflib.get_close_matches(ref, names, n=3, cutoff=0.5),
            )
        ]
    )


def _blame(value: Any, origins: dict[str, str], file: str, path: str) -> None:
    origins[path] = file
    if isinstance(value, dict):
        for key, inner in value.items():
            _blame(inner, origins, file, f"{path}.{key}")


def _merge(
    parent: dict[str, Any], child: dict[str, Any], origins: dict[str, str], file: str, path: str
) -> dict[str, Any]:
    merged = dict(parent)
    for key, value in child.items():
        key_path = f"{path}.{key}" if path else key
        if (
            isinstance(value, dict)
            and isinstance(merged.get(key), dict)
            and key not in _REPLACE_KEYS
        ):
            # A table both files have: the child touched it last; keys it did not set keep
            # their own (deeper) origin.
            merged[key] = _merge(merged[key], value, origins, file, key_path)
            origins[key_path] = file
        else:
            merged[key] = value
            _blame(value, origins, file, key_path)
    return merged


def _load_raw(
    path: Path, origins: dict[str, str], chain: list[Path]
) -> tuple[dict[str, Any], list[Path]]:
    if path in chain:
        cycle = " -> ".join(str(item) for item in [*chain, path])
        raise MappingErrors(
            [MappingError(f"extends cycle: {cycle}", mapping_file=str(path), key="extends")]
        )
    data = _read_toml(path)
    extends = data.pop("extends", None)
    if extends is None:
        _merge({}, data, origins, str(path), "")
        return data, [*chain, path]
    if not isinstance(extends, str):
        raise MappingErrors(
            [
                MappingError(
                    "extends must be a preset name or a path", mapping_file=str(path), key="extends"
                )
            ]
        )
    try:
        parent_path = _resolve_ref(extends, path.parent)
    except MappingErrors as exc:
        # Name the file that says `extends`, not the one it failed to find.
        raise MappingErrors(
            [
                MappingError(
                    error.message,
                    mapping_file=str(path),
                    key="extends",
                    suggestions=error.suggestions,
                )
                for error in exc.errors
            ]
        ) from None
    parent, seen = _load_raw(parent_path, origins, [*chain, path])
    return _merge(parent, data, origins, str(path), ""), seen


def load_mapping(ref: str, *, base_dir: Path | None = None) -> FieldMapping:
    """Load a preset by name or a mapping file by path, resolving `extends` chains.

    Args:
        ref: a preset name (`zoho.inventory`) or a path, relative to `base_dir`.
        base_dir: the folder of the config file that names the mapping (default: cwd).

    Returns:
        The validated mapping, with converters compiled once.

    Raises:
        MappingErrors: every problem found, each naming the file and the key.
    """
    path = _resolve_ref(ref, base_dir)
    origins: dict[str, str] = {}
    data, chain = _load_raw(path, origins, [])
    source = str(path)

    def origin(key_path: str) -> str:
        # The file that set the deepest known prefix of the key.
        parts = key_path.split(".")
        for end in range(len(parts), 0, -1):
            found = origins.get(".".join(parts[:end]))
            if found:
                return found
        return source

    try:
        spec = MappingFile.model_validate(data)
    except ValidationError as exc:
        errors = []
        for item in exc.errors(include_input=False, include_url=False):
            key = ".".join(str(part) for part in item["loc"])
            message = item["msg"]
            suggestions: list[str] = []
            if item["type"] == "extra_forbidden":
                parent_key = key.rsplit(".", 1)[0] if "." in key else ""
                allowed = _allowed_keys(parent_key)
                suggestions = difflib.get_close_matches(str(item["loc"][-1]), allowed, n=3)
                message = "unknown key"
            errors.append(
                MappingError(message, mapping_file=origin(key), key=key, suggestions=suggestions)
            )
        raise MappingErrors(errors) from None
    return FieldMapping(spec, source=source, chain=[str(item) for item in chain], origin=origin)


def _allowed_keys(parent_key: str) -> list[str]:
    depth = parent_key.count(".") + 1 if parent_key else 0
    if depth == 0:
        return list(MappingFile.model_fields)
    if parent_key == "validation":
        return list(ValidationRules.model_fields)
    if depth == 2:
        return list(ObjectSpec.model_fields)
    return list(FieldSpec.model_fields)
