"""The Zoho sandbox's seed: the shared payment personalities as Accounts, Invoices, Tasks and users."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any

from sandboxes.seed import Portfolio, SeedInvoice, rate_on
from sandboxes.zoho_common import (
    _INVOICE_STATUS,
    _instant,
    _number,
)
from sandboxes.zoho_schema import (
    EXCHANGE_RATES,
    MODULES,
    ORG_PREFIX,
    ZModule,
)

if TYPE_CHECKING:
    from sandboxes.zoho import ZohoEmulator


@dataclass
class _Load:
    """What one seed load shares: the portfolio, the ids it gave users and accounts, when the
    import ran and who ran it."""

    portfolio: Portfolio
    user_ids: dict[str, str]
    import_at: datetime
    system: dict[str, Any]
    account_ids: dict[str, str] = field(default_factory=dict)


class OrgSeed:
    """Part of ZohoEmulator (sandboxes/zoho.py), holding no state of its own."""

    def __init__(self, emulator: ZohoEmulator) -> None:
        self.emulator = emulator

    def _blank(self, module: ZModule) -> dict[str, Any]:
        return {"id": ""} | {f.api_name: None for f in module.fields} | {"Locked__s": False}

    def _seed(self, portfolio: Portfolio) -> None:
        api_user_id, user_ids = self._seed_users(portfolio)
        system = self.emulator._user_ref(api_user_id, with_email=False)
        # Records arrive by bulk import: 20 accounts or 40 invoices share one Modified_Time,
        # as imports do, so clients' tie-breakers on equal timestamps get exercised.
        import_at = datetime.combine(portfolio.as_of, dtime(1, 0), UTC)
        load = _Load(portfolio, user_ids, import_at, system)
        self._seed_accounts(load)
        self._seed_invoices(load)
        self._seed_tasks(load)
        stamps = [r["Modified_Time"] for rows in self.emulator.rows.values() for r in rows.values()]
        self.emulator._last_stamp = max(stamps, key=_instant, default="")

    def _seed_users(self, portfolio: Portfolio) -> tuple[str, dict[str, str]]:
        """The API user and the seed's users; the API user's id and the others' by seed key."""
        api_user: dict[str, Any] = {
            "id": self.emulator._new_id(),
            "full_name": "CRM Risk Integration",
            "first_name": "CRM Risk",
            "last_name": "Integration",
            "email": "integration@example.com",
            "status": "active",
            "role": {"name": "CEO", "id": ORG_PREFIX + "000000000201"},
            "profile": {"name": "Administrator", "id": ORG_PREFIX + "000000000301"},
        }
        self.emulator.users.append(api_user)
        user_ids: dict[str, str] = {}
        for seed_user in portfolio.users:
            first, _, last = seed_user.name.partition(" ")
            user: dict[str, Any] = {
                "id": self.emulator._new_id(),
                "full_name": seed_user.name,
                "first_name": first,
                "last_name": last,
                "email": seed_user.email,
                "status": "active" if seed_user.active else "disabled",
                "role": {"name": "Sales Manager", "id": ORG_PREFIX + "000000000202"},
                "profile": {"name": "Standard", "id": ORG_PREFIX + "000000000302"},
            }
            self.emulator.users.append(user)
            user_ids[seed_user.key] = user["id"]
        return api_user["id"], user_ids

    def _seed_accounts(self, load: _Load) -> None:
        """The seed's accounts; their record ids go to `load.account_ids`."""
        portfolio, user_ids, system = load.portfolio, load.user_ids, load.system
        import_at = load.import_at
        accounts = MODULES["Accounts"]
        account_ids = load.account_ids
        for index, seed in enumerate(portfolio.accounts):
            row = self._blank(accounts)
            record_id = self.emulator._new_id()
            account_ids[seed.key] = record_id
            row.update(
                {
                    "id": record_id,
                    "Owner": self.emulator._user_ref(user_ids[seed.owner_key]),
                    "Account_Name": seed.name,
                    "Account_Number": f"A-{index + 1:06d}",
                    "Account_Type": "Customer",
                    "Industry": seed.industry,
                    "Billing_Country": seed.country,
                    "Annual_Revenue": _number(seed.annual_revenue),
                    "Employees": seed.employees,
                    "Currency": seed.currency,
                    "Exchange_Rate": EXCHANGE_RATES.get(seed.currency, 1.0),
                    "Payment_Terms_Days": seed.payment_terms_days,
                    "Credit_Limit": _number(seed.credit_limit),
                    "External_Score": seed.external_score,
                    "Insured_Limit": _number(seed.insured_limit),
                    "Manual_Override": False,
                    "Created_Time": self.emulator.fmt(seed.created_at),
                    "Modified_Time": self.emulator.fmt(import_at + timedelta(seconds=index // 20)),
                    "Created_By": system,
                    "Modified_By": system,
                }
            )
            self.emulator.rows["Accounts"][record_id] = row

    def _seed_invoices(self, load: _Load) -> None:
        """The seed's invoices, each owned by its account's owner."""
        portfolio, user_ids, system = load.portfolio, load.user_ids, load.system
        account_ids, import_at = load.account_ids, load.import_at
        invoices = MODULES["Invoices"]
        invoice_at = import_at + timedelta(minutes=30)
        by_key = {seed.key: seed for seed in portfolio.accounts}
        for index, seed_invoice in enumerate(portfolio.invoices):
            account = by_key[seed_invoice.account_key]
            account_id = account_ids[account.key]
            row = self._blank(invoices)
            record_id = self.emulator._new_id()
            amount = float(seed_invoice.amount)
            row.update(
                {
                    "id": record_id,
                    "Owner": self.emulator._user_ref(user_ids[account.owner_key]),
                    "Subject": f"Invoice {seed_invoice.number}",
                    "Invoice_Number": seed_invoice.number,
                    "Invoice_Date": seed_invoice.issue_date.isoformat(),
                    "Due_Date": seed_invoice.due_date.isoformat(),
                    "Status": self._invoice_status(seed_invoice, portfolio.as_of, index),
                    "Account_Name": {"id": account_id, "name": account.name},
                    "Sub_Total": amount,
                    "Tax": 0.0,
                    "Discount": 0.0,
                    "Adjustment": 0.0,
                    "Grand_Total": amount,
                    "Currency": account.currency,
                    # Zoho freezes the rate of the record's day on the record.
                    "Exchange_Rate": float(rate_on(account.currency, seed_invoice.issue_date)),
                    "Balance": float(seed_invoice.open_amount),
                    "Paid_Date": (
                        seed_invoice.paid_date.isoformat() if seed_invoice.paid_date else None
                    ),
                    "Created_Time": self.emulator.fmt(
                        datetime.combine(seed_invoice.issue_date, dtime(9, 0), UTC)
                    ),
                    "Modified_Time": self.emulator.fmt(invoice_at + timedelta(seconds=index // 40)),
                    "Created_By": system,
                    "Modified_By": system,
                }
            )
            self.emulator.rows["Invoices"][record_id] = row

    @staticmethod
    def _invoice_status(invoice: SeedInvoice, as_of: date, index: int) -> str:
        if invoice.status in _INVOICE_STATUS:
            return _INVOICE_STATUS[invoice.status]
        if invoice.due_date < as_of:
            return "Overdue"
        return "Sent" if index % 2 else "Awaiting Payment"

    def _seed_tasks(self, load: _Load) -> None:
        # Two tasks a person made by hand, so clients meet tasks that are not theirs.
        portfolio, user_ids, system = load.portfolio, load.user_ids, load.system
        account_ids, when = load.account_ids, load.import_at
        active = [u.key for u in portfolio.users if u.active]
        tasks = MODULES["Tasks"]
        for position, (subject, status) in enumerate(
            (("Renewal call", "Not Started"), ("Send account statement", "Completed"))
        ):
            if position >= len(portfolio.accounts) or not active:
                break
            account = portfolio.accounts[position]
            owner = account.owner_key if account.owner_key in active else active[0]
            row = self._blank(tasks)
            record_id = self.emulator._new_id()
            stamp = self.emulator.fmt(when + timedelta(hours=1))
            row.update(
                {
                    "id": record_id,
                    "Owner": self.emulator._user_ref(user_ids[owner]),
                    "Subject": subject,
                    "Due_Date": (portfolio.as_of + timedelta(days=7)).isoformat(),
                    "Status": status,
                    "Priority": "Normal",
                    "What_Id": {"id": account_ids[account.key], "name": account.name},
                    "$se_module": "Accounts",
                    "Description": "Created by hand in the CRM.",
                    "Send_Notification_Email": False,
                    "Closed_Time": stamp if status == "Completed" else None,
                    "Created_Time": stamp,
                    "Modified_Time": stamp,
                    "Created_By": system,
                    "Modified_By": system,
                }
            )
            self.emulator.rows["Tasks"][record_id] = row
