"""Fxiaoke sandbox seed: the portfolio as employees, AccountObj, PaymentPlanObj, PaymentObj and OrderPaymentObj rows."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandboxes.fxiaoke.protocol import CENT, CHINA
from sandboxes.seed import RATES_PER_EUR, Portfolio, SeedAccount, SeedInvoice, rate_on

# Rows by object api name, then by _id.
Rows = dict[str, dict[str, dict[str, Any]]]


def hex_id(*parts: object) -> str:
    """A 24-hex, ObjectId-like `_id` (reference §5), stable for the same seed key."""
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()[:24]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _day_ms(day: date) -> int:
    """Date fields are epoch ms at 00:00 China time [A: the tenant's zone, GMT+8 by default]."""
    return _ms(datetime(day.year, day.month, day.day, tzinfo=CHINA))


def _money_text(value: Decimal | None) -> str | None:
    """Money comes back as a string with two decimals (reference §5)."""
    return None if value is None else str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def _to_cny(amount: Decimal | None, currency: str, day: date) -> Decimal | None:
    """The seed's amount in CNY at the rate of `day` (the sandbox tenant books in CNY)."""
    if amount is None:
        return None
    eur = amount / rate_on(currency, day)
    return (eur * RATES_PER_EUR["CNY"]).quantize(CENT, rounding=ROUND_HALF_UP)


def employee_open_id(employee_id: str) -> str:
    """The legacy style's `FSUID_...` id of an employee."""
    return "FSUID_" + hashlib.sha256(f"emp:{employee_id}".encode()).hexdigest()[:32].upper()


def seed_tenant(rows: Rows, employees: list[dict[str, Any]], portfolio: Portfolio) -> None:
    """Fill `rows` and `employees` from the seed portfolio."""
    by_key: dict[str, str] = {}
    for index, user in enumerate(portfolio.users):
        employee_id = str(1000 + index)
        by_key[user.key] = employee_id
        employees.append(
            {
                "id": employee_id,
                "openUserId": employee_open_id(employee_id),
                "name": user.name,
                "email": user.email,
                "mobile": f"1380000{1000 + index:04d}",
                "status": 0 if user.active else 1,  # 1: stopped (离职)
            }
        )
    as_of = portfolio.as_of
    accounts: dict[str, SeedAccount] = {}
    for account in portfolio.accounts:
        accounts[account.key] = account
        _seed_account(rows, account, by_key[account.owner_key], as_of)
    for invoice in portfolio.invoices:
        account = accounts[invoice.account_key]
        _seed_plan(rows, invoice, account, by_key[account.owner_key], as_of)


def base_row(obj: str, record_id: str, name: str, owner: str, created: int) -> dict[str, Any]:
    return {
        "_id": record_id,
        "name": name,
        "owner": [owner],
        "created_by": [owner],
        "last_modified_by": [owner],
        "create_time": created,
        "last_modified_time": created,
        "life_status": "normal",
        "lock_status": "0",
        "is_deleted": False,
        "version": "1",
        "record_type": "default__c",
        "object_describe_api_name": obj,
    }


def _seed_account(rows: Rows, account: SeedAccount, owner: str, as_of: date) -> None:
    record_id = hex_id("AccountObj", account.key)
    # Whole-day stamps at 09:00: many accounts share a last_modified_time, so (time, _id)
    # ties straddle page boundaries as they do after a bulk import. Accounts were last edited
    # some time in the two years before the seed's day (or on creation, if later).
    created_day = account.created_at.date()
    created = _ms(datetime(created_day.year, created_day.month, created_day.day, 9, tzinfo=CHINA))
    edited_day = as_of - timedelta(days=int(record_id[:6], 16) % 700)
    edited = _ms(datetime(edited_day.year, edited_day.month, edited_day.day, 9, tzinfo=CHINA))
    row = base_row("AccountObj", record_id, account.name, owner, created)
    row["last_modified_time"] = max(created, edited)
    row.update(
        {
            "account_no": f"KH{account.key[3:]}",
            "industry_level1": account.industry,
            "country": account.country,
            "mc_currency": "CNY",
            "field_AnRv1__c": _money_text(_to_cny(account.annual_revenue, account.currency, as_of)),
            "field_Emp2a__c": None if account.employees is None else str(account.employees),
            "field_Trm3b__c": str(account.payment_terms_days),
            "field_CrL4c__c": _money_text(_to_cny(account.credit_limit, account.currency, as_of)),
            "field_ExS5d__c": None
            if account.external_score is None
            else str(account.external_score),
            "field_Ins6e__c": _money_text(_to_cny(account.insured_limit, account.currency, as_of)),
            "field_MnO7f__c": False,
            "field_Rk01a__c": None,
            "field_Rk02b__c": None,
            "field_Cl03c__c": None,
            "field_Rr04d__c": None,
            "field_Lv05e__c": None,
            "field_Rv06f__c": None,
            "field_Cb10j__c": None,
        }
    )
    rows["AccountObj"][record_id] = row


def _seed_plan(
    rows: Rows, invoice: SeedInvoice, account: SeedAccount, owner: str, as_of: date
) -> None:
    account_id = hex_id("AccountObj", account.key)
    plan_id = hex_id("PaymentPlanObj", invoice.key)
    created = _ms(
        datetime(
            invoice.issue_date.year,
            invoice.issue_date.month,
            invoice.issue_date.day,
            10,
            tzinfo=CHINA,
        )
    )
    amount = _to_cny(invoice.amount, account.currency, invoice.issue_date) or Decimal(0)
    open_amount = _to_cny(invoice.open_amount, account.currency, invoice.issue_date) or Decimal(0)
    if invoice.status == "written_off":
        open_amount = amount  # nothing was collected; the plan is invalidated below
    paid = amount - open_amount
    if open_amount <= 0:
        status = "completed"
    elif invoice.due_date < as_of:
        status = "overdue"
    else:
        status = "incomplete"
    row = base_row("PaymentPlanObj", plan_id, invoice.number, owner, created)
    row.update(
        {
            "account_id": account_id,
            "account_id__r": account.name,
            "order_id": None,
            "plan_payment_amount": _money_text(amount),
            "plan_payment_time": _day_ms(invoice.due_date),
            "actual_payment_amount": _money_text(paid),
            "plan_payment_status": status,
            "remind_time": "3",
            "mc_currency": "CNY",
        }
    )
    if invoice.status in ("void", "written_off"):
        # [A] No write-off or void state exists on PaymentPlanObj; tenants invalidate (作废) it.
        row["life_status"] = "invalid"
    last = created
    if paid > 0:
        paid_day = invoice.paid_date or min(as_of, invoice.due_date + timedelta(days=20))
        last = max(last, _seed_payment(rows, invoice, account, owner, plan_id, paid, paid_day))
    row["last_modified_time"] = last
    rows["PaymentPlanObj"][plan_id] = row


def _seed_payment(
    rows: Rows,
    invoice: SeedInvoice,
    account: SeedAccount,
    owner: str,
    plan_id: str,
    paid: Decimal,
    paid_day: date,
) -> int:
    """The payment (PaymentObj) that collected `paid` of a plan, with its line against the plan
    (OrderPaymentObj); returns the time both were booked (epoch ms)."""
    account_id = hex_id("AccountObj", account.key)
    paid_ms = _day_ms(paid_day) + 11 * 3_600_000
    payment_id = hex_id("PaymentObj", invoice.key)
    payment = base_row("PaymentObj", payment_id, f"HK{invoice.number[4:]}", owner, paid_ms)
    payment.update(
        {
            "account_id": account_id,
            "account_id__r": account.name,
            "order_id": None,
            "payment_amount": _money_text(paid),
            "payment_time": _day_ms(paid_day),
            "payment_term": "1",
            "mc_currency": "CNY",
        }
    )
    line_id = hex_id("OrderPaymentObj", invoice.key)
    line = base_row("OrderPaymentObj", line_id, f"HKMX{invoice.number[4:]}", owner, paid_ms)
    line.update(
        {
            "payment_id": payment_id,
            "order_id": None,
            "payment_plan_id": plan_id,
            "account_id": account_id,
            "payment_amount": _money_text(paid),
            "payment_time": _day_ms(paid_day),
        }
    )
    rows["PaymentObj"][payment_id] = payment
    rows["OrderPaymentObj"][line_id] = line
    return paid_ms
