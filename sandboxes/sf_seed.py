"""The Salesforce sandbox's seed: the shared payment personalities as Accounts, Invoices, Tasks and users."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandboxes.seed import (
    HOME_CURRENCY,
    RATE_PERIODS,
    RATES_PER_EUR,
    Portfolio,
    PortfolioStream,
    SeedAccount,
    SeedInvoice,
    rate_on,
)
from sandboxes.sf_common import (
    _CUSTOM_STATUS,
    _PAYMENT_STATUS,
    ORG_ID,
    _num,
    sf_datetime,
)
from sandboxes.sf_schema import (
    make_id,
)

if TYPE_CHECKING:
    from sandboxes.salesforce import SalesforceEmulator


class OrgSeed:
    """Part of SalesforceEmulator (sandboxes/salesforce.py), holding no state of its own."""

    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.emulator = emulator

    def _new_id(self, object_name: str) -> str:
        self.emulator._seq += 1
        return make_id(self.emulator.schema[object_name].key_prefix, self.emulator._seq)

    def _seed(self, portfolio: Portfolio | PortfolioStream, invoice_objects: set[str]) -> None:
        # A data load stamps many rows in the same millisecond; adapters must break ties by Id.
        load = datetime.combine(portfolio.as_of - timedelta(days=2), datetime.min.time(), UTC)
        load = load.replace(hour=10)
        user_ids: dict[str, str] = {}
        users = self.emulator.rows["User"]
        integration = self._new_id("User")
        self.emulator.integration_user_id = integration
        stamp = sf_datetime(load - timedelta(days=400))
        users[integration] = self._blank("User") | {
            "Id": integration,
            "Name": "Integration User",
            "Username": self.emulator.username,
            "Email": self.emulator.username,
            "IsActive": True,
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
            "SystemModstamp": stamp,
        }
        for user in portfolio.users:
            uid = self._new_id("User")
            user_ids[user.key] = uid
            users[uid] = self._blank("User") | {
                "Id": uid,
                "Name": user.name,
                "Username": user.email,
                "Email": user.email,
                "IsActive": user.active,
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            }
        self._seed_currencies(stamp)
        if isinstance(portfolio, Portfolio):
            by_account: dict[str, list[SeedInvoice]] = {a.key: [] for a in portfolio.accounts}
            for invoice in portfolio.invoices:
                by_account[invoice.account_key].append(invoice)
            pairs: Iterable[tuple[SeedAccount, list[SeedInvoice]]] = (
                (a, by_account[a.key]) for a in portfolio.accounts
            )
        else:
            pairs = portfolio.pairs
        # Shared strings: a million invoices repeat a few hundred dates and stamps.
        strings: dict[Any, str] = {}

        def iso(day: date) -> str:
            return strings.setdefault(day, day.isoformat())

        def stamp_at(moment: datetime) -> str:
            return strings.setdefault(moment, sf_datetime(moment))

        accounts = self.emulator.rows["Account"]
        blng = self.emulator.rows["blng__Invoice__c"]
        custom = self.emulator.rows["Invoice__c"]
        with_blng = "blng__Invoice__c" in invoice_objects
        with_custom = "Invoice__c" in invoice_objects
        count = 0
        for index, (acc, invoices) in enumerate(pairs):
            aid = self._new_id("Account")
            modstamp = stamp_at(load + timedelta(seconds=index // 25))
            accounts[aid] = self._blank("Account") | {
                "Id": aid,
                "Name": acc.name,
                "OwnerId": user_ids[acc.owner_key],
                "Industry": acc.industry,
                "BillingCountry": acc.country,
                "AnnualRevenue": _num(acc.annual_revenue),
                "NumberOfEmployees": acc.employees,
                "CurrencyIsoCode": acc.currency,
                "CreatedDate": sf_datetime(acc.created_at),
                "LastModifiedDate": modstamp,
                "SystemModstamp": modstamp,
                "Payment_Terms_Days__c": float(acc.payment_terms_days),
                "Credit_Limit__c": _num(acc.credit_limit),
                "External_Score__c": None
                if acc.external_score is None
                else float(acc.external_score),
                "Insured_Limit__c": _num(acc.insured_limit),
                "Credit_Hold__c": False,
                "Manual_Override__c": False,
            }
            for inv in invoices:
                modstamp = stamp_at(load + timedelta(hours=1, seconds=count // 200))
                count += 1
                created = stamp_at(datetime.combine(inv.issue_date, datetime.min.time(), UTC))
                issued, due = iso(inv.issue_date), iso(inv.due_date)
                if with_blng:
                    bid = self._new_id("blng__Invoice__c")
                    days = (self.emulator.as_of - inv.due_date).days if inv.open_amount > 0 else 0
                    blng[bid] = {
                        "Id": bid,
                        "IsDeleted": False,
                        "CreatedDate": created,
                        "LastModifiedDate": modstamp,
                        "SystemModstamp": modstamp,
                        "CreatedById": integration,
                        "LastModifiedById": integration,
                        "Name": inv.number,
                        "CurrencyIsoCode": acc.currency,
                        "blng__Account__c": aid,
                        "blng__InvoiceDate__c": issued,
                        "blng__DueDate__c": due,
                        "blng__InvoicePostedDate__c": issued,
                        "blng__TotalAmount__c": float(inv.amount),
                        "blng__Balance__c": float(inv.open_amount),
                        "blng__InvoiceStatus__c": "Cancelled" if inv.status == "void" else "Posted",
                        "blng__PaymentStatus__c": _PAYMENT_STATUS[inv.status],
                        "blng__DaysOutstanding__c": float(max(days, 0)),
                        "blng__UniqueId__c": inv.key,
                    }
                    self._seed_allocations(inv, bid, aid, acc.currency, modstamp, count)
                if with_custom:
                    cid = self._new_id("Invoice__c")
                    custom[cid] = {
                        "Id": cid,
                        "IsDeleted": False,
                        "CreatedDate": created,
                        "LastModifiedDate": modstamp,
                        "SystemModstamp": modstamp,
                        "CreatedById": integration,
                        "LastModifiedById": integration,
                        "Name": inv.number,
                        "CurrencyIsoCode": acc.currency,
                        "Account__c": aid,
                        "Invoice_Date__c": issued,
                        "Due_Date__c": due,
                        "Amount__c": float(inv.amount),
                        "Balance__c": float(inv.open_amount),
                        "Paid_Date__c": iso(inv.paid_date) if inv.paid_date else None,
                        "Status__c": _CUSTOM_STATUS[inv.status],
                    }
        self.emulator._last_stamp = sf_datetime(load + timedelta(days=1))

    def _seed_allocations(
        self, inv: SeedInvoice, invoice_id: str, account_id: str, currency: str, stamp: str, n: int
    ) -> None:
        """Billing's payments applied to one invoice: how its paid date can be known.

        A paid invoice is settled by one payment on its paid date; every fifth by two (half
        earlier, the rest on the paid date); every seventh also had a later payment applied
        and taken back (the allocation flagged unallocated, plus its unallocation record),
        which must not date it. A partly paid invoice has one payment for the part paid.
        """
        if inv.status == "paid" and inv.paid_date is not None:
            parts = [(inv.paid_date, inv.amount)]
            if n % 5 == 0 and inv.paid_date > inv.issue_date:
                half = (inv.amount / 2).quantize(Decimal("0.01"))
                earlier = inv.issue_date + (inv.paid_date - inv.issue_date) / 2
                parts = [(earlier, half), (inv.paid_date, inv.amount - half)]
            for day, amount in parts:
                self._seed_payment(invoice_id, account_id, currency, stamp, day, amount)
            if n % 7 == 0:
                later = inv.paid_date + timedelta(days=3)
                self._seed_payment(
                    invoice_id, account_id, currency, stamp, later, inv.amount, taken_back=True
                )
        elif inv.status == "partially_paid" and inv.amount > inv.open_amount:
            day = inv.issue_date + (inv.due_date - inv.issue_date) / 2
            self._seed_payment(
                invoice_id, account_id, currency, stamp, day, inv.amount - inv.open_amount
            )

    def _seed_payment(
        self,
        invoice_id: str,
        account_id: str,
        currency: str,
        stamp: str,
        day: date,
        amount: Decimal,
        *,
        taken_back: bool = False,
    ) -> None:
        pid = self._new_id("blng__Payment__c")
        common = {"CreatedDate": stamp, "LastModifiedDate": stamp, "SystemModstamp": stamp}
        self.emulator.rows["blng__Payment__c"][pid] = (
            self._blank("blng__Payment__c")
            | common
            | {
                "Id": pid,
                "Name": f"P-{pid[-6:]}",
                "CurrencyIsoCode": currency,
                "blng__Account__c": account_id,
                "blng__Amount__c": float(amount),
                "blng__PaymentDate__c": day.isoformat(),
                "blng__Status__c": "Processed",
            }
        )
        rows = [("Allocation", taken_back)] + ([("Unallocation", False)] if taken_back else [])
        for kind, flagged in rows:
            lid = self._new_id("blng__PaymentAllocationInvoice__c")
            self.emulator.rows["blng__PaymentAllocationInvoice__c"][lid] = (
                self._blank("blng__PaymentAllocationInvoice__c")
                | common
                | {
                    "Id": lid,
                    "Name": f"PAI-{lid[-6:]}",
                    "CurrencyIsoCode": currency,
                    "blng__Amount__c": float(amount),
                    "blng__Invoice__c": invoice_id,
                    "blng__Payment__c": pid,
                    "blng__Type__c": kind,
                    "blng__Unallocated__c": flagged,
                }
            )

    def _seed_currencies(self, stamp: str) -> None:
        """A multi-currency org with advanced currency management: EUR corporate, dated rates."""
        self.emulator.rows["Organization"][ORG_ID] = self._blank("Organization") | {
            "Id": ORG_ID,
            "Name": "crm-risk sandbox org",
            "DefaultCurrencyIsoCode": HOME_CURRENCY,
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
            "SystemModstamp": stamp,
        }
        for code, rate in RATES_PER_EUR.items():
            cid = self._new_id("CurrencyType")
            self.emulator.rows["CurrencyType"][cid] = self._blank("CurrencyType") | {
                "Id": cid,
                "IsoCode": code,
                "ConversionRate": float(rate),
                "DecimalPlaces": 0 if code == "JPY" else 2,
                "IsActive": True,
                "IsCorporate": code == HOME_CURRENCY,
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            }
            starts = [start for start, _ in RATE_PERIODS]
            for index, start in enumerate(starts):
                did = self._new_id("DatedConversionRate")
                following = starts[index + 1] if index + 1 < len(starts) else None
                self.emulator.rows["DatedConversionRate"][did] = self._blank(
                    "DatedConversionRate"
                ) | {
                    "Id": did,
                    "IsoCode": code,
                    "ConversionRate": float(rate_on(code, start)),
                    "StartDate": start.isoformat(),
                    "NextStartDate": following.isoformat() if following else None,
                    "CreatedDate": stamp,
                    "LastModifiedDate": stamp,
                    "SystemModstamp": stamp,
                }

    def _blank(self, object_name: str) -> dict[str, Any]:
        # Seeded and API-made rows alike are created and changed by the integration user.
        return {f.name: f.default for f in self.emulator.schema[object_name].fields} | {
            "IsDeleted": False,
            "CreatedById": self.emulator.integration_user_id,
            "LastModifiedById": self.emulator.integration_user_id,
        }
