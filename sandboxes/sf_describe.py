"""Describe documents of the Salesforce sandbox: sObject describe, describeGlobal entries, child relationships.

Key sets follow the REST API guide (resources_sobject_describe, resources_describeGlobal) and the
SOAP API's DescribeSObjectResult / Field / ChildRelationship types, which the REST answers mirror.
Flags that only a real org's setup decides (feeds, layouts, search) carry the values an ordinary
Enterprise org shows for these objects.
"""

from __future__ import annotations

from typing import Any

from sandboxes.sf_schema import FieldDef, SObject

# The relationship names Salesforce gives standard lookups; custom lookups are named below.
_STANDARD_CHILD_NAMES = {("Task", "WhatId"): "Tasks"}
_MASTER_RECORD_TYPE = "012000000000000AAA"


def child_relationship_name(child: SObject, fdef: FieldDef) -> str | None:
    """The parent-side name of a lookup (`Tasks`, `Invoices__r`), or None when it has none."""
    known = _STANDARD_CHILD_NAMES.get((child.name, fdef.name))
    if known is not None or not fdef.custom:
        return known
    # A custom lookup's child relationship defaults to the child object's plural label, with
    # the object's namespace prefix, plus __r (Setup > Lookup field > Child Relationship Name).
    namespace = child.name.split("__")[0] + "__" if child.name.count("__") > 1 else ""
    return f"{namespace}{child.label.replace(' ', '_')}s__r"


def child_relationships(schema: dict[str, SObject], parent: SObject) -> list[dict[str, Any]]:
    """Every lookup of another object that points at `parent`, as describe() lists them."""
    out = []
    for child in schema.values():
        for fdef in child.fields:
            if parent.name not in fdef.reference_to:
                continue
            out.append(
                {
                    "cascadeDelete": False,
                    "childSObject": child.name,
                    "deprecatedAndHidden": False,
                    "field": fdef.name,
                    "junctionIdListNames": [],
                    "junctionReferenceTo": [],
                    "relationshipName": child_relationship_name(child, fdef),
                    "restrictedDelete": False,
                }
            )
    return out


def field_describe(fdef: FieldDef) -> dict[str, Any]:
    """A field's describe() entry with every documented key of the Field type."""
    base = fdef.describe()
    extras: dict[str, Any] = {
        "aggregatable": fdef.type not in ("textarea",),
        "aiPredictionField": False,
        "cascadeDelete": False,
        "caseSensitive": False,
        "compoundFieldName": None,
        "controllerName": None,
        "calculatedFormula": None,
        "defaultValueFormula": None,
        "dependentPicklist": False,
        "deprecatedAndHidden": False,
        "displayLocationInDecimal": False,
        "encrypted": False,
        "extraTypeInfo": None,
        "filteredLookupInfo": None,
        "formulaTreatNullNumberAsZero": False,
        "groupable": fdef.type not in ("textarea", "double", "currency", "percent", "datetime"),
        "highScaleNumber": False,
        "htmlFormatted": False,
        "inlineHelpText": None,
        "mask": None,
        "maskType": None,
        "nameField": fdef.name == "Name",
        "namePointing": False,
        "permissionable": fdef.nillable and fdef.custom,
        "polymorphicForeignKey": len(fdef.reference_to) > 1,
        "queryByDistance": False,
        "referenceTargetField": None,
        "relationshipOrder": None,
        "restrictedDelete": False,
        "searchPrefilterable": fdef.type == "reference",
        "writeRequiresMasterRead": False,
    }
    return dict(sorted((base | extras).items()))


def object_urls(obj: SObject, version: str) -> dict[str, str]:
    """The `urls` block of an object's describe."""
    base = f"/services/data/v{version}/sobjects/{obj.name}"
    return {
        "compactLayouts": f"{base}/describe/compactLayouts",
        "rowTemplate": f"{base}/{{ID}}",
        "approvalLayouts": f"{base}/describe/approvalLayouts",
        "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
        "listviews": f"{base}/listviews",
        "describe": f"{base}/describe",
        "quickActions": f"{base}/quickActions",
        "layouts": f"{base}/describe/layouts",
        "sobject": base,
    }


def object_flags(obj: SObject) -> dict[str, Any]:
    """The describeGlobal entry of an object (every key but `urls`)."""
    writable = obj.name != "User"
    return {
        "activateable": False,
        "associateEntityType": None,
        "associateParentEntity": None,
        "createable": writable,
        "custom": obj.custom,
        "customSetting": False,
        "deepCloneable": False,
        "deletable": writable,
        "deprecatedAndHidden": False,
        "feedEnabled": not obj.custom,
        "hasSubtypes": False,
        "isInterface": False,
        "isSubtype": False,
        "keyPrefix": obj.key_prefix,
        "label": obj.label,
        "labelPlural": obj.label + "s",
        "layoutable": True,
        "mergeable": obj.name == "Account",
        "mruEnabled": True,
        "name": obj.name,
        "queryable": True,
        "replicateable": True,
        "retrieveable": True,
        "searchable": True,
        "triggerable": True,
        "undeletable": writable,
        "updateable": writable,
    }


def object_describe(schema: dict[str, SObject], obj: SObject, version: str) -> dict[str, Any]:
    """`GET sobjects/{object}/describe`: flags, fields, child relationships, record types, urls."""
    flags = object_flags(obj)
    return dict(
        sorted(
            (
                flags
                | {
                    "actionOverrides": [],
                    "childRelationships": child_relationships(schema, obj),
                    "compactLayoutable": True,
                    "defaultImplementation": None,
                    "extendedBy": None,
                    "extendsInterfaces": None,
                    "fields": [field_describe(f) for f in obj.fields],
                    "implementedBy": None,
                    "implementsInterfaces": None,
                    "listviewable": None,
                    "lookupLayoutable": None,
                    "namedLayoutInfos": [],
                    "networkScopeFieldName": None,
                    "recordTypeInfos": [
                        {
                            "active": True,
                            "available": True,
                            "defaultRecordTypeMapping": True,
                            "developerName": "Master",
                            "master": True,
                            "name": "Master",
                            "recordTypeId": _MASTER_RECORD_TYPE,
                            "urls": {
                                "layout": f"/services/data/v{version}/sobjects/{obj.name}"
                                f"/describe/layouts/{_MASTER_RECORD_TYPE}"
                            },
                        }
                    ],
                    "searchLayoutable": True,
                    "sobjectDescribeOption": "FULL",
                    "supportedScopes": [
                        {"label": "All " + obj.label.lower() + "s", "name": "everything"},
                        {"label": "My " + obj.label.lower() + "s", "name": "mine"},
                    ],
                    "urls": object_urls(obj, version),
                }
            ).items()
        )
    )


def global_entry(obj: SObject, version: str) -> dict[str, Any]:
    """One object of `GET sobjects/` (describeGlobal)."""
    base = f"/services/data/v{version}/sobjects/{obj.name}"
    urls = {"rowTemplate": f"{base}/{{ID}}", "describe": f"{base}/describe", "sobject": base}
    return object_flags(obj) | {"urls": urls}
