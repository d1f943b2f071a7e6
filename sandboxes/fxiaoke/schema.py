"""Fxiaoke sandbox object descriptions: the preset objects, custom risk fields and their describe payloads.

Field keys follow the describe payloads quoted in shared/reference/fxiaoke.md §8 (`api_name label
type is_required is_active define_type options target_api_name decimal_places length`). Custom
fields are named `field_<5 chars>__c`, as tenants' generated names are; the select options of the
risk rating carry opaque values, as real tenants' do (§8: write the option value, not the label).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Types a client may write (everything else is computed or owned by the system).
WRITABLE_TYPES = frozenset(
    {
        "text",
        "long_text",
        "number",
        "currency",
        "percentile",
        "date",
        "date_time",
        "true_or_false",
        "select_one",
        "select_many",
        "object_reference",
        "master_detail",
        "employee",
        "country",
        "email",
        "phone_number",
        "embedded_object_list",
    }
)
NUMBER_TYPES = frozenset({"number", "currency", "percentile"})
TIME_TYPES = frozenset({"date", "date_time"})

# The rating options: opaque values, labels A-E (reference §8, `"7e8T541Vr"`-like codes).
RATING_OPTIONS = (
    ("A", "7e8T541Va"),
    ("B", "2kQp09LxB"),
    ("C", "9cWm3Hs1C"),
    ("D", "4tRz8Nd2D"),
    ("E", "6yUe5Jf3E"),
)
LEVEL_OPTIONS = (("低", "low"), ("中", "medium"), ("高", "high"), ("严重", "critical"))
FOLLOW_UP_STATUS_OPTIONS = (("待处理", "open"), ("已完成", "done"))


@dataclass(frozen=True)
class FxField:
    """One field as describe reports it."""

    api_name: str
    label: str
    type: str
    define_type: str = "package"
    is_required: bool = False
    options: tuple[tuple[str, str], ...] = ()
    target_api_name: str | None = None
    decimal_places: int | None = None
    length: int | None = None
    read_only: bool = False  # field permission 只读 set by an admin (edit_field)

    @property
    def writable(self) -> bool:
        """Clients may set it (system fields, computed types and read-only fields may not)."""
        return self.define_type != "system" and self.type in WRITABLE_TYPES and not self.read_only

    def describe(self) -> dict[str, Any]:
        """The describe payload of this field."""
        out: dict[str, Any] = {
            "api_name": self.api_name,
            "label": self.label,
            "type": self.type,
            "define_type": self.define_type,
            "is_required": self.is_required,
            "is_active": True,
            "is_unique": self.api_name == "_id",
            "status": "released",
        }
        if self.options:
            out["options"] = [{"label": label, "value": value} for label, value in self.options]
        if self.target_api_name:
            out["target_api_name"] = self.target_api_name
        if self.decimal_places is not None:
            out["decimal_places"] = self.decimal_places
        if self.length is not None:
            out["length"] = self.length
            out["max_length"] = self.length
        if self.type == "date":
            out["date_format"] = "yyyy-MM-dd"
            out["time_zone"] = "GMT+8"
        return out


@dataclass(frozen=True)
class FxObject:
    """One object: its api name, display name and fields."""

    api_name: str
    display_name: str
    fields: dict[str, FxField] = field(default_factory=dict)
    custom: bool = False

    def describe(self) -> dict[str, Any]:
        """`data.describe` of the describe call."""
        return {
            "api_name": self.api_name,
            "display_name": self.display_name,
            "define_type": "custom" if self.custom else "package",
            "is_active": True,
            "fields": {name: f.describe() for name, f in self.fields.items()},
        }


def _system_fields() -> list[FxField]:
    """Fields every object carries (reference §5, record conventions)."""
    return [
        FxField("_id", "ID", "text", "system", length=64),
        FxField("name", "名称", "text", "package", length=200),
        FxField("owner", "负责人", "employee", "package", is_required=True),
        FxField("created_by", "创建人", "employee", "system"),
        FxField("last_modified_by", "最后修改人", "employee", "system"),
        FxField("create_time", "创建时间", "date_time", "system"),
        FxField("last_modified_time", "最后修改时间", "date_time", "system"),
        FxField(
            "life_status",
            "生命状态",
            "select_one",
            "system",
            options=(
                ("未生效", "ineffective"),
                ("审核中", "under_review"),
                ("正常", "normal"),
                ("变更中", "in_change"),
                ("作废", "invalid"),
            ),
        ),
        FxField(
            "lock_status",
            "锁定状态",
            "select_one",
            "system",
            options=(("未锁定", "0"), ("锁定", "1")),
        ),
        FxField("is_deleted", "是否删除", "true_or_false", "system"),
        FxField("version", "版本", "text", "system"),
        FxField("record_type", "业务类型", "record_type", "package"),
    ]


def _object(api_name: str, display: str, extra: list[FxField], custom: bool = False) -> FxObject:
    fields = {f.api_name: f for f in [*_system_fields(), *extra]}
    return FxObject(api_name, display, fields, custom)


def _money(api_name: str, label: str, define_type: str = "package") -> FxField:
    return FxField(api_name, label, "currency", define_type, decimal_places=2, length=14)


def _customer(required: bool = False) -> FxField:
    return FxField(
        "account_id",
        "客户名称",
        "object_reference",
        is_required=required,
        target_api_name="AccountObj",
    )


def _order() -> FxField:
    return FxField("order_id", "销售订单", "object_reference", target_api_name="SalesOrderObj")


def _cny() -> FxField:
    """The currency of a single-currency (CNY) tenant's money records."""
    return FxField("mc_currency", "币种", "select_one", options=(("人民币", "CNY"),))


def _account() -> FxObject:
    return _object(
        "AccountObj",
        "客户",
        [
            FxField("name", "客户名称", "text", "package", is_required=True, length=200),
            FxField("account_no", "客户编号", "auto_number"),
            FxField("industry_level1", "行业", "text", length=100),
            FxField("country", "国家", "country"),
            FxField("tel", "电话", "phone_number"),
            _cny(),
            # Credit data lives in tenant custom fields (reference §9).
            _money("field_AnRv1__c", "年营业额", "custom"),
            FxField("field_Emp2a__c", "员工人数", "number", "custom", decimal_places=0),
            FxField("field_Trm3b__c", "账期天数", "number", "custom", decimal_places=0),
            _money("field_CrL4c__c", "信用额度", "custom"),
            FxField("field_ExS5d__c", "外部信用评分", "number", "custom", decimal_places=0),
            _money("field_Ins6e__c", "保险额度", "custom"),
            FxField("field_MnO7f__c", "人工覆盖", "true_or_false", "custom"),
            # The risk write-back fields an admin creates (`crm-risk fields plan`).
            FxField("field_Rk01a__c", "风险评级", "select_one", "custom", options=RATING_OPTIONS),
            FxField("field_Rk02b__c", "风险评分", "number", "custom", decimal_places=1),
            _money("field_Cl03c__c", "建议信用额度", "custom"),
            FxField("field_Rr04d__c", "风险原因", "long_text", "custom", length=2000),
            FxField("field_Lv05e__c", "风险等级", "select_one", "custom", options=LEVEL_OPTIONS),
            FxField("field_Rv06f__c", "风险评估时间", "date_time", "custom"),
            # The limit a review started from, written next to the limit: after a lost state
            # store it tells our own limit from a person's (issue 13).
            _money("field_Cb10j__c", "信用额度基准", "custom"),
        ],
    )


def _payment_plan() -> FxObject:
    return _object(
        "PaymentPlanObj",
        "回款计划",
        [
            _customer(required=True),
            _order(),
            _money("plan_payment_amount", "计划回款金额"),
            FxField("plan_payment_time", "计划回款日期", "date"),
            _money("actual_payment_amount", "实际回款金额"),
            FxField(
                "plan_payment_status",
                "回款状态",
                "select_one",
                options=(("未完成", "incomplete"), ("已完成", "completed"), ("已逾期", "overdue")),
            ),
            FxField("remind_time", "提前提醒天数", "number", decimal_places=0),
            _cny(),
        ],
    )


def _payment() -> FxObject:
    return _object(
        "PaymentObj",
        "回款",
        [
            _customer(required=True),
            _order(),
            _money("payment_amount", "回款金额"),
            FxField("payment_time", "回款日期", "date"),
            FxField(
                "payment_term", "回款方式", "select_one", options=(("银行转账", "1"), ("现金", "2"))
            ),
            _cny(),
        ],
    )


def _order_payment() -> FxObject:
    return _object(
        "OrderPaymentObj",
        "回款明细",
        [
            FxField(
                "payment_id",
                "回款",
                "master_detail",
                is_required=True,
                target_api_name="PaymentObj",
            ),
            _order(),
            FxField(
                "payment_plan_id", "回款计划", "object_reference", target_api_name="PaymentPlanObj"
            ),
            _customer(),
            _money("payment_amount", "本次回款金额"),
            FxField("payment_time", "回款日期", "date"),
        ],
    )


def _active_record() -> FxObject:
    return _object(
        "ActiveRecordObj",
        "销售记录",
        [
            FxField(
                "active_record_content", "跟进内容", "long_text", is_required=True, length=4000
            ),
            FxField(
                "active_record_type",
                "跟进类型",
                "select_one",
                options=(("电话", "phone"), ("拜访", "visit"), ("其他", "other")),
            ),
            # [A] Whether a related record is required is each tenant's layout rule.
            FxField("related_object_data", "关联对象", "embedded_object_list"),
            _customer(),
            # The connector's follow-up state: open until the cause is gone (fields plan creates it).
            FxField(
                "field_Fs08h__c",
                "跟进状态",
                "select_one",
                "custom",
                options=FOLLOW_UP_STATUS_OPTIONS,
            ),
            FxField("field_Du09i__c", "截止日期", "date", "custom"),
        ],
    )


def build_objects() -> dict[str, FxObject]:
    """The objects the sandbox tenant has enabled, by api name."""
    objects = (_account(), _payment_plan(), _payment(), _order_payment(), _active_record())
    return {obj.api_name: obj for obj in objects}
