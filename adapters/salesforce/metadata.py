"""Missing custom fields as Salesforce metadata: CustomField XML and a permission set, source format."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from xml.etree import ElementTree as ET

from connector.protocol import MissingField

METADATA_NS = "http://soap.sforce.com/2006/04/metadata"
PERMISSION_SET = "CRM_Risk_Connector"
# Only unmanaged custom fields can be created: a namespaced one (blng__X__c) comes with its package.
CREATABLE_FIELD = r"[A-Za-z](?:[A-Za-z0-9]|_(?!_))*__c"


def _xml(root: ET.Element) -> str:
    ET.indent(root, space="    ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _sub(parent: ET.Element, tag: str, text: object) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = str(text).lower() if isinstance(text, bool) else str(text)
    return element


def field_plan_files(missing: Iterable[MissingField]) -> dict[str, str]:
    """Salesforce CustomField XML in source format, plus a permission set granting access.

    Deploy with `sf project deploy start --source-dir <output>`; then assign the permission set
    to the integration user (a field without field-level security is invisible to the API).

    Returns:
        Relative path -> file text, e.g. `objects/Account/fields/Risk_Score__c.field-meta.xml`.
    """
    files: dict[str, str] = {}
    permissions: list[MissingField] = []
    for item in missing:
        root = ET.Element("CustomField", xmlns=METADATA_NS)
        _sub(root, "fullName", item.field)
        _sub(root, "description", item.description)
        _sub(root, "externalId", False)
        _sub(root, "label", item.label)
        if item.field_type in ("Text", "LongTextArea") and item.length is not None:
            _sub(root, "length", item.length)
        if item.precision is not None:
            _sub(root, "precision", item.precision)
        _sub(root, "required", False)
        if item.scale is not None:
            _sub(root, "scale", item.scale)
        _sub(root, "trackHistory", False)
        if item.field_type == "Checkbox":
            _sub(root, "defaultValue", False)
        _sub(root, "type", item.field_type)
        if item.field_type == "Text":
            _sub(root, "unique", False)
        if item.field_type == "LongTextArea":
            _sub(root, "visibleLines", 5)
        if item.picklist_values:
            value_set = ET.SubElement(root, "valueSet")
            _sub(value_set, "restricted", True)
            definition = ET.SubElement(value_set, "valueSetDefinition")
            _sub(definition, "sorted", False)
            for value in item.picklist_values:
                entry = ET.SubElement(definition, "value")
                _sub(entry, "fullName", value)
                _sub(entry, "default", False)
                _sub(entry, "label", value)
        files[f"objects/{item.crm_object}/fields/{item.field}.field-meta.xml"] = _xml(root)
        permissions.append(item)
    if permissions:
        root = ET.Element("PermissionSet", xmlns=METADATA_NS)
        _sub(root, "description", "Field access for the crm-risk-connector integration user")
        for item in permissions:
            grant = ET.SubElement(root, "fieldPermissions")
            _sub(grant, "editable", item.writable)
            _sub(grant, "field", f"{item.crm_object}.{item.field}")
            _sub(grant, "readable", True)
        _sub(root, "hasActivationRequired", False)
        _sub(root, "label", "CRM Risk Connector")
        files[f"permissionsets/{PERMISSION_SET}.permissionset-meta.xml"] = _xml(root)
    return files


def files_written(files: Mapping[str, str], output: Path) -> str:
    """What was written (fields and permission sets counted apart) and how to deploy it."""
    fields = sum(1 for name in files if name.endswith(".field-meta.xml"))
    sets = sum(1 for name in files if name.endswith(".permissionset-meta.xml"))
    text = f"wrote {fields} field file{'s' if fields != 1 else ''}"
    if sets:
        text += f" and {sets} permission set{'s' if sets != 1 else ''}"
    text += f" under {output}"
    project = next(
        (
            folder
            for folder in [output.resolve(), *output.resolve().parents]
            if (folder / "sfdx-project.json").is_file()
        ),
        None,
    )
    if project is None:
        return (
            f"{text}. `sf project deploy start` needs a Salesforce DX project: run "
            "`sf project generate --name crm-risk-fields` and give --output "
            "crm-risk-fields/force-app/main/default, or add an sfdx-project.json whose "
            "packageDirectories contain this folder; then `sf project deploy start --source-dir "
            "force-app` there, and assign the permission set to the integration user"
        )
    return (
        f"{text}; deploy from {project}: sf project deploy start --source-dir "
        f"{output.resolve().relative_to(project)}, then assign the permission set to the "
        "integration user"
    )
