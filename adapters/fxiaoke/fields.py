"""`fields plan` for Fxiaoke: the custom fields an admin creates, in Chinese and English, in Fxiaoke's field types.

Fxiaoke generates custom field API names (`field_xxxxx__c`) and the public Open API has no call
to create fields that we could confirm, so the plan is a list of set-up steps: create each field
under 后台管理 > 业务定制 > 对象管理 (Admin > Customization > Objects), then copy the generated
API name into the mapping file at the key shown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .settings import FxiaokeOptions

# canonical name -> (中文 label, English label)
LABELS: dict[str, tuple[str, str]] = {
    "risk_score": ("风险评分", "Risk score"),
    "risk_band": ("风险评级", "Risk rating"),
    "risk_level": ("风险等级", "Risk level"),
    "risk_reasons": ("风险原因", "Risk reasons"),
    "recommended_credit_limit": ("建议信用额度", "Recommended credit limit"),
    "current_credit_limit": ("信用额度", "Credit limit"),
    "credit_limit_basis": ("信用额度基准", "Credit limit basis"),
    "risk_reviewed_at": ("风险评估时间", "Risk reviewed at"),
    "probability_late": ("逾期概率", "Probability of late payment"),
    "external_score": ("外部信用评分", "External credit score"),
    "insured_limit": ("保险额度", "Insured limit"),
    "payment_terms_days": ("账期天数", "Payment terms (days)"),
    "manual_override": ("人工覆盖", "Manual override"),
    "annual_revenue": ("年营业额", "Annual revenue"),
    "employees": ("员工人数", "Employees"),
}
# Salesforce-vocabulary types of the plan -> (Fxiaoke 字段类型, describe type)
TYPES: dict[str, tuple[str, str]] = {
    "Number": ("数字", "number"),
    "Currency": ("金额", "currency"),
    "Percent": ("百分数", "percentile"),
    "Picklist": ("单选", "select_one"),
    "Text": ("单行文本", "text"),
    "TextArea": ("多行文本", "long_text"),
    "LongTextArea": ("多行文本", "long_text"),
    "Checkbox": ("布尔值", "true_or_false"),
    "Date": ("日期", "date"),
    "DateTime": ("日期时间", "date_time"),
}
# The Fxiaoke preset maps these level labels to the canonical Low..Critical.
LEVEL_OPTIONS = ("低", "中", "高", "严重")


def _type_text(item: Any) -> str:
    chinese, english = TYPES.get(str(item.field_type), (str(item.field_type), str(item.field_type)))
    detail = ""
    values = tuple(getattr(item, "picklist_values", ()) or ())
    if item.canonical == "risk_level":
        values = LEVEL_OPTIONS
    if values:
        detail = f"; 选项 options: {', '.join(values)}"
    elif getattr(item, "scale", None):
        detail = f"; {item.scale} 位小数 decimal places"
    elif getattr(item, "length", None) and english in ("text", "long_text"):
        detail = f"; 最大长度 max length {item.length}"
    return f"{chinese} ({english}){detail}"


def instructions(
    missing: Sequence[Any],
    options: FxiaokeOptions,
    task_fields: Callable[[], set[str] | None],
) -> str:
    """The plan as set-up steps, every field in Chinese and English.

    Args:
        missing: the mapping's fields the tenant lacks (connector.mapping.check.MissingField).
        options: the connection's Fxiaoke options (the follow-up status and due fields).
        task_fields: the follow-up object's field names from describe (None: object missing).
    """
    lines = [
        "在纷享销客后台创建以下自定义字段 / Create these custom fields in Fxiaoke:",
        "  后台管理 > 业务定制 > 对象管理 > <对象> > 字段管理 > 新建字段",
        "  (Admin > Customization > Object management > <object> > Fields > New field)",
        "纷享销客会生成 API 名称 (field_xxxxx__c)：把它填入映射文件中所示的键。",
        "Fxiaoke generates the API name (field_xxxxx__c): copy it into your mapping file at the key shown.",
        "并在 字段权限 中为集成应用的身份开放读写 / and make each field readable and writable for the app's user.",
        "",
    ]
    by_object: dict[str, list[Any]] = {}
    for item in missing:
        by_object.setdefault(str(item.crm_object), []).append(item)
    for crm_object, items in by_object.items():
        lines.append(crm_object)
        for item in items:
            chinese, english = LABELS.get(item.canonical, (item.canonical, item.canonical))
            access = "由连接器写入 written" if item.writable else "由连接器读取 read"
            lines.append(
                f"  - {chinese} / {english}: {_type_text(item)}; {access}; "
                f"映射键 mapping key objects.{_kind(crm_object, items)}.fields.{item.canonical}"
            )
        lines.append("")
    present = task_fields()
    needed = [
        (options.task_status_field, "跟进状态 / Follow-up status",
         f"单选 (select_one); 选项 options: {options.task_open_label}, {options.task_done_label}",
         "options.task_status_field"),
    ]  # fmt: skip
    if options.task_due_field:
        needed.append(
            (options.task_due_field, "截止日期 / Due date", "日期 (date)", "options.task_due_field")
        )
    absent = [entry for entry in needed if present is None or entry[0] not in present]
    if absent:
        lines.append(f"{options.task_object} (销售记录 / sales records: the follow-ups)")
        for _, label, kind, key in absent:
            lines.append(f"  - {label}: {kind}; 连接设置 connection setting {key}")
        lines.append("")
    if not missing and not absent:
        return "每个映射的自定义字段都已存在 / every mapped custom field exists"
    lines.append("然后运行 / then run: crm-risk check")
    return "\n".join(lines)


def _kind(crm_object: str, items: Sequence[Any]) -> str:
    # The mapping's kind is not on the item; the key path reads the same for every field of it.
    return "account" if crm_object == "AccountObj" else "invoice"
