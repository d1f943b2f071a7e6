"""Field metadata of the Zoho CRM sandbox org: modules, fields, picklists, as /settings/fields serves them.

Field choices (for mapping authors): `Risk_Score` is a Decimal field (`double`, 1 decimal place)
so 42.5 round-trips, where shared/reference/zoho.md §10 suggests an integer; the connector
writes decimal scores. `Risk_Reasons` is a Multi Line field (`textarea`) of 2,000 characters
as the reference says. `Sub_Total` and `Grand_Total` on Invoices are read-only formula fields
returning currency, as a real org's export shows them (reference §4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandboxes.seed import HOME_CURRENCY as SEED_HOME_CURRENCY
from sandboxes.seed import INDUSTRIES as SEED_INDUSTRIES
from sandboxes.seed import RATES_PER_EUR

# Zoho ids are 64-bit integers written as strings; this org's ids share one 10-digit prefix.
ORG_PREFIX = "5725767"
ORG_ID = "20100000001"
HOME_CURRENCY = SEED_HOME_CURRENCY

# Units of the record currency per 1 unit of the home currency (Zoho's Exchange_Rate), today.
EXCHANGE_RATES: dict[str, float] = {code: float(rate) for code, rate in RATES_PER_EUR.items()}

NONE_VALUE = "-None-"  # every Zoho picklist starts with it; writing it clears the field

INDUSTRIES = tuple(sorted(SEED_INDUSTRIES))  # the seed's, by name
# A customised Invoices Status list, as real orgs have (reference §4).
INVOICE_STATUSES = (
    "Draft",
    "Sent",
    "Approved",
    "Awaiting Payment",
    "Overdue",
    "Partially Paid",
    "Paid",
    "Disputed",
    "Written Off",
    "Void",
    "Cancelled",
)
TASK_STATUSES = ("Not Started", "Deferred", "In Progress", "Completed", "Waiting for input")
TASK_PRIORITIES = ("High", "Highest", "Low", "Lowest", "Normal")

TEXT_TYPES = frozenset({"text", "textarea", "email", "phone", "website", "autonumber"})
NUMBER_TYPES = frozenset({"integer", "bigint", "double", "currency", "percent"})
LOOKUP_TYPES = frozenset({"lookup", "ownerlookup", "userlookup"})
# Zoho refuses multi-line fields in COQL criteria (COQL limitations page).
MULTILINE_TYPES = frozenset({"textarea"})


@dataclass(frozen=True)
class ZField:
    """One field of a module, as /settings/fields describes it."""

    api_name: str
    label: str
    data_type: str
    length: int | None = None
    decimal_place: int | None = None
    read_only: bool = False
    custom: bool = False
    mandatory: bool = False
    picklist: tuple[str, ...] = ()
    lookup: str | None = None
    unique: bool = False
    return_type: str | None = None

    @property
    def value_type(self) -> str:
        """The data type values follow (a formula's return type)."""
        return self.return_type or self.data_type

    @property
    def json_type(self) -> str:
        """Zoho's json_type: string, integer, double, boolean, jsonobject or jsonarray."""
        kind = self.value_type
        if kind in ("integer", "bigint"):
            return "integer"
        if kind in ("double", "currency", "percent"):
            return "double"
        if kind == "boolean":
            return "boolean"
        if kind in LOOKUP_TYPES:
            return "jsonobject"
        if kind in ("multiselectpicklist", "subform"):
            return "jsonarray"
        return "string"


@dataclass(frozen=True)
class ZModule:
    """One module: its API name, labels, fields and id."""

    api_name: str
    singular: str
    fields: tuple[ZField, ...]
    id: str
    by_name: dict[str, ZField] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.api_name: f for f in self.fields})

    def field(self, name: str) -> ZField | None:
        """The field of that API name (case-sensitive, as Zoho's API names are)."""
        return self.by_name.get(name)


def _system_fields() -> list[ZField]:
    return [
        ZField("Created_Time", "Created Time", "datetime", read_only=True),
        ZField("Modified_Time", "Modified Time", "datetime", read_only=True),
        ZField("Created_By", "Created By", "ownerlookup", read_only=True, lookup="users"),
        ZField("Modified_By", "Modified By", "ownerlookup", read_only=True, lookup="users"),
        ZField("Locked__s", "Locked", "boolean", read_only=True),
    ]


def _picklist(values: tuple[str, ...]) -> tuple[str, ...]:
    return (NONE_VALUE, *values)


ACCOUNTS = ZModule(
    "Accounts",
    "Account",
    (
        ZField("Owner", "Account Owner", "ownerlookup", lookup="users"),
        ZField("Account_Name", "Account Name", "text", 200, mandatory=True, unique=True),
        ZField("Account_Number", "Account Number", "text", 40),
        ZField("Account_Type", "Account Type", "picklist", picklist=_picklist(("Customer",))),
        ZField("Industry", "Industry", "picklist", picklist=_picklist(INDUSTRIES)),
        ZField("Rating", "Rating", "picklist", picklist=_picklist(("Tier 1", "Tier 2", "Tier 3"))),
        ZField("Annual_Revenue", "Annual Revenue", "currency", 16, 2),
        ZField("Employees", "Employees", "integer", 9),
        ZField("Billing_City", "Billing City", "text", 30),
        ZField("Billing_Country", "Billing Country", "text", 30),
        ZField("Website", "Website", "website", 255),
        ZField("Phone", "Phone", "phone", 30),
        ZField("Description", "Description", "textarea", 32000),
        ZField("Currency", "Currency", "picklist", picklist=tuple(EXCHANGE_RATES)),
        ZField("Exchange_Rate", "Exchange Rate", "double", 16, 9),
        ZField("Payment_Terms_Days", "Payment Terms Days", "integer", 9, custom=True),
        ZField("Credit_Limit", "Credit Limit", "currency", 16, 2, custom=True),
        ZField(
            "Recommended_Credit_Limit", "Recommended Credit Limit", "currency", 16, 2, custom=True
        ),
        ZField("Credit_Limit_Basis", "Credit Limit Basis", "currency", 16, 2, custom=True),
        ZField("Risk_Score", "Risk Score", "double", 5, 1, custom=True),
        ZField(
            "Risk_Rating",
            "Risk Rating",
            "picklist",
            custom=True,
            picklist=_picklist(("A", "B", "C", "D", "E")),
        ),
        ZField(
            "Risk_Level",
            "Risk Level",
            "picklist",
            custom=True,
            picklist=_picklist(("Low", "Medium", "High", "Critical")),
        ),
        ZField("Risk_Reasons", "Risk Reasons", "textarea", 2000, custom=True),
        ZField("Risk_Reviewed_At", "Risk Reviewed At", "datetime", custom=True),
        ZField("External_Score", "External Score", "integer", 9, custom=True),
        ZField("Insured_Limit", "Insured Limit", "currency", 16, 2, custom=True),
        ZField("Manual_Override", "Manual Override", "boolean", custom=True),
        *_system_fields(),
    ),
    id=ORG_PREFIX + "000000000101",
)

INVOICES = ZModule(
    "Invoices",
    "Invoice",
    (
        ZField("Owner", "Invoice Owner", "ownerlookup", lookup="users"),
        ZField("Subject", "Subject", "text", 255, mandatory=True),
        ZField("Invoice_Number", "Invoice Number", "autonumber", 255, read_only=True),
        ZField("Invoice_Date", "Invoice Date", "date"),
        ZField("Due_Date", "Due Date", "date"),
        ZField("Status", "Status", "picklist", picklist=_picklist(INVOICE_STATUSES)),
        ZField("Account_Name", "Account Name", "lookup", lookup="Accounts", mandatory=True),
        ZField("Sub_Total", "Sub Total", "formula", 16, 2, read_only=True, return_type="currency"),
        ZField("Tax", "Tax", "currency", 16, 2),
        ZField("Discount", "Discount", "currency", 16, 2),
        ZField("Adjustment", "Adjustment", "currency", 16, 2),
        ZField(
            "Grand_Total", "Grand Total", "formula", 16, 2, read_only=True, return_type="currency"
        ),
        ZField("Currency", "Currency", "picklist", picklist=tuple(EXCHANGE_RATES)),
        ZField("Exchange_Rate", "Exchange Rate", "double", 16, 9),
        ZField("Balance", "Balance", "currency", 16, 2, custom=True),
        ZField("Paid_Date", "Paid Date", "date", custom=True),
        ZField("Description", "Description", "textarea", 32000),
        *_system_fields(),
    ),
    id=ORG_PREFIX + "000000000102",
)

TASKS = ZModule(
    "Tasks",
    "Task",
    (
        ZField("Owner", "Task Owner", "ownerlookup", lookup="users"),
        ZField("Subject", "Subject", "text", 255, mandatory=True),
        ZField("Due_Date", "Due Date", "date"),
        ZField("Status", "Status", "picklist", picklist=_picklist(TASK_STATUSES)),
        ZField("Priority", "Priority", "picklist", picklist=_picklist(TASK_PRIORITIES)),
        # A multi-module lookup; `$se_module` names the module of the linked record.
        ZField("What_Id", "Related To", "lookup", lookup="Accounts"),
        ZField("Description", "Description", "textarea", 32000),
        ZField("Send_Notification_Email", "Send Notification Email", "boolean"),
        ZField("Closed_Time", "Closed Time", "datetime", read_only=True),
        *_system_fields(),
    ),
    id=ORG_PREFIX + "000000000103",
)

MODULES: dict[str, ZModule] = {m.api_name: m for m in (ACCOUNTS, INVOICES, TASKS)}
# What_Id may point at these modules (with `$se_module`).
WHAT_MODULES = ("Accounts", "Invoices")
# Lookups whose target module travels with each record as `$se_module`.
SE_MODULE_LOOKUPS = frozenset({"What_Id"})
_ADMIN_PROFILE = ORG_PREFIX + "000000000497"


def find_module(name: str) -> ZModule | None:
    """The module of that API name; Zoho matches module names case-insensitively."""
    for module in MODULES.values():
        if module.api_name.lower() == name.lower():
            return module
    return None


def _field_id(module: ZModule, index: int) -> str:
    return f"{ORG_PREFIX}{int(module.id[-3:]):03d}{index + 1:09d}"


def field_metadata(module: ZModule) -> list[dict[str, Any]]:
    """The `fields` array of GET /settings/fields?module=X (reference §7)."""
    out: list[dict[str, Any]] = []
    for index, item in enumerate(module.fields):
        field_id = _field_id(module, index)
        entry: dict[str, Any] = {
            "api_name": item.api_name,
            "field_label": item.label,
            "display_label": item.label,
            "id": field_id,
            "data_type": item.data_type,
            "json_type": item.json_type,
            "length": item.length,
            "decimal_place": item.decimal_place,
            "read_only": item.read_only,
            "field_read_only": item.read_only,
            "custom_field": item.custom,
            "system_mandatory": item.mandatory,
            "visible": True,
            "unique": {"casesensitive": False} if item.unique else {},
            "pick_list_values": [
                {
                    "display_value": value,
                    "actual_value": value,
                    "id": f"{field_id[:-3]}{position:03d}",
                    "sequence_number": position + 1,
                    "type": "used",
                }
                for position, value in enumerate(item.picklist)
            ],
            "lookup": {},
            "currency": {},
            "formula": {},
        }
        entry |= _v8_field_keys(item, index, module)
        if item.api_name in SE_MODULE_LOOKUPS:
            # Zoho's "Related To" on activities is one lookup over several modules: the record
            # names its module in `$se_module`, so the metadata points at that key instead of a
            # module (a captured v8 layouts answer shows exactly this block).
            entry["lookup"] = {
                "display_label": "activities",
                "api_name": None,
                "module": {"api_name": "se_module"},
                "id": None,
            }
        elif item.lookup:
            target = MODULES.get(item.lookup)
            entry["lookup"] = {
                "display_label": item.label,
                "api_name": item.api_name,
                "module": {
                    "api_name": item.lookup,
                    "id": target.id if target else ORG_PREFIX + "000000000100",
                },
            }
        if item.value_type == "currency":
            entry["currency"] = {"precision": item.decimal_place or 2, "rounding_option": "normal"}
        if item.return_type:
            entry["formula"] = {"return_type": item.return_type, "expression": "computed"}
        out.append(entry)
    return out


def _v8_field_keys(item: ZField, index: int, module: ZModule) -> dict[str, Any]:
    """The other keys v8's field object documents (zoho/crm-oas v8.0/fields.json `fields`).

    Values are what an ordinary org shows for a standard or custom field of this type; layout
    and UI internals (column_name, ui_type) are left out.
    """
    writable = not item.read_only
    return {
        "associated_module": None,
        "additional_column": None,
        "association_details": None,
        "auto_number": {},
        "businesscard_supported": True,
        "category": 0,
        "colour_code_enabled_by_system": False,
        "created_source": "custom" if item.custom else "default",
        "created_time": None,
        "crypt": None,
        "customizable_properties": [],
        "default_value": None,
        "display_field": item.api_name == module.fields[0].api_name,
        "display_type": -1,
        "email_parser": {"fields_update_supported": False, "record_operations_supported": False},
        "enable_colour_code": False,
        "external": None,
        "filterable": item.data_type not in ("textarea", "subform"),
        "hipaa_compliance_enabled": False,
        "history_tracking": None,
        "mass_update": writable and item.data_type not in LOOKUP_TYPES,
        "modified_time": None,
        "multi_module_lookup": {},
        "multiselectlookup": {},
        "operation_type": {
            "web_update": writable,
            "api_create": writable,
            "web_create": writable,
            "api_update": writable,
        },
        "pick_list_values_sorted_lexically": False,
        "private": None,
        "profiles": [
            {
                "permission_type": "read_write" if writable else "read_only",
                "name": "Administrator",
                "id": _ADMIN_PROFILE,
            }
        ],
        "refer_from_field": None,
        "rollup_summary": {},
        "searchable": item.data_type not in ("subform",),
        "separator": False,
        "sequence_number": index + 1,
        "sortable": item.data_type not in ("textarea", "subform", "multiselectpicklist"),
        "textarea": {"type": "large"} if item.data_type == "textarea" else None,
        "tooltip": None,
        "type": "used",
        "view_type": {"view": True, "edit": writable, "quick_create": False, "create": writable},
        "virtual_field": False,
        "webhook": True,
    }


def module_metadata() -> list[dict[str, Any]]:
    """The `modules` array of GET /settings/modules."""
    return [
        {
            "api_name": module.api_name,
            "module_name": module.api_name,
            "singular_label": module.singular,
            "plural_label": module.api_name,
            "id": module.id,
            "api_supported": True,
            "generated_type": "default",
            "creatable": True,
            "editable": True,
            "deletable": True,
            "viewable": True,
            "status": "visible",
        }
        for module in MODULES.values()
    ]
