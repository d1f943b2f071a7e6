"""Missing custom fields as the setup steps a Zoho CRM admin follows (Zoho has no metadata files)."""

from __future__ import annotations

from collections.abc import Iterable

from connector.protocol import MissingField

_ZOHO_TYPES = {
    "Text": "Single Line",
    "LongTextArea": "Multi Line (Large)",
    "Picklist": "Pick List",
    "Currency": "Currency",
    "Percent": "Percent",
    "Checkbox": "Checkbox",
    "Date": "Date",
    "DateTime": "Date/Time",
}


def _zoho_type(item: MissingField) -> str:
    if item.field_type == "Number":
        if item.scale:
            return f"Decimal, {item.scale} decimal places"
        return "Number"
    kind = _ZOHO_TYPES.get(item.field_type, item.field_type)
    if item.field_type == "Text" and item.length:
        return f"{kind}, length {item.length}"
    if item.field_type == "LongTextArea" and item.length:
        return f"{kind} (up to {item.length} characters)"
    if item.picklist_values:
        return f"{kind} with options: {', '.join(item.picklist_values)}"
    return kind


def field_plan_text(missing: Iterable[MissingField]) -> str:
    """The fields to create in Zoho CRM, grouped by module, as setup steps for an admin."""
    by_module: dict[str, list[MissingField]] = {}
    for item in missing:
        by_module.setdefault(item.crm_object, []).append(item)
    if not by_module:
        return "Every mapped custom field exists.\n"
    lines = [
        "Create these fields in Zoho CRM: Setup > Customization > Modules and Fields > <module>",
        "> Layout. Zoho derives the API name from the label, so type the label exactly as shown",
        "and check the API name afterwards (Setup > Developer Hub > APIs > API names).",
        "Then make each field visible and editable for the integration user's profile.",
        "",
    ]
    for module, items in by_module.items():
        lines.append(module)
        lines.extend(f"  - {field_line(item)}" for item in items)
        lines.append("")
    return "\n".join(lines)


def field_line(item: MissingField) -> str:
    """One missing field in Zoho's words: label, API name, Zoho field type, what it is for."""
    access = "written by the connector" if item.writable else "read by the connector"
    return f"{item.label}  (API name {item.field}): {_zoho_type(item)}; {access} ({item.canonical})"
