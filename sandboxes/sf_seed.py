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


class _SharedStrings:
    """One string per date and stamp: a million invoices repeat a few hundred of each."""

    def __init__(self) -> None:
        self._strings: dict[Any, str] = {}

    def iso(self, day: date) -> str:
        return self._strings.setdefault(day, day.isoformat())

    def stamp(self, moment: datetime) -> str:
        return self._strings.setdefault(moment, sf_datetime(moment))


def _pairs(
    portfolio: Portfolio | PortfolioStream,
) -> Iterable[tuple[SeedAccount, list[SeedInvoice]]]:
    """Each account with its invoices, from a whole portfolio or a stream of them."""
    if not isinstance(portfolio, Portfolio):
        return portfolio.pairs
    by_account: dict[str, list[SeedInvoice]] = {a.key: [] for a in portfolio.accounts}
    for invoice in portfolio.invoices:
        by_account[invoice.account_key].append(invoice)
    return ((a, by_account[a.key]) for a in portfolio.accounts)


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
        stamp = sf_datetime(load - timedelta(days=400))
        user_ids = self._seed_users(portfolio, stamp)
        self._seed_currencies(stamp)
        strings = _SharedStrings()
        count = 0
        for index, (acc, invoices) in enumerate(_pairs(portfolio)):
            modstamp = strings.stamp(load + timedelta(seconds=index // 25))
            aid = self._seed_account(acc, user_ids[acc.owner_key], modstamp)
            for inv in invoices:
                modstamp = strings.stamp(load + timedelta(hours=1, seconds=count // 200))
                count += 1
                self._seed_invoice(
                    inv, aid, acc.currency, modstamp, count, strings, invoice_objects
                )
        self.emulator._last_stamp = sf_datetime(load + timedelta(days=1))

    def _seed_users(self, portfolio: Portfolio | PortfolioStream, stamp: str) -> dict[str, str]:
        """The integration user (the API's caller) and the seed's users; their ids by seed key."""
        integration = self._new_id("User")
        self.emulator.integration_user_id = integration
        users = self.emulator.rows["User"]
        username = self.emulator.username
        users[integration] = self._user_row(integration, "Integration User", username, True, stamp)
        user_ids: dict[str, str] = {}
        for user in portfolio.users:
            uid = self._new_id("User")
            user_ids[user.key] = uid
            users[uid] = self._user_row(uid, user.name, user.email, user.active, stamp)
        return user_ids

    def _user_row(
        self, uid: str, name: str, username: str, active: bool, stamp: str
    ) -> dict[str, Any]:
        return self._blank("User") | {
            "Id": uid,
            "Name": name,
            "Username": username,
            "Email": username,
            "IsActive": active,
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
            "SystemModstamp": stamp,
        }

    def _seed_account(self, acc: SeedAccount, owner_id: str, modstamp: str) -> str:
        aid = self._new_id("Account")
        self.emulator.rows["Account"][aid] = self._blank("Account") | {
            "Id": aid,
            "Name": acc.name,
            "OwnerId": owner_id,
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
            "External_Score__c": None if acc.external_score is None else float(acc.external_score),
            "Insured_Limit__c": _num(acc.insured_limit),
            "Credit_Hold__c": False,
            "Manual_Override__c": False,
        }
        return aid

    def _seed_invoice(
        self,
        inv: SeedInvoice,
        aid: str,
        currency: str,
        modstamp: str,
        count: int,
        strings: _SharedStrings,
        invoice_objects: set[str],
    ) -> None:
        """One seed invoice as a Billing invoice (with its payments) and as a custom Invoice__c,
        for each of the two the org serves."""
        created = strings.stamp(datetime.combine(inv.issue_date, datetime.min.time(), UTC))
        issued, due = strings.iso(inv.issue_date), strings.iso(inv.due_date)
        if "blng__Invoice__c" in invoice_objects:
            bid = self._new_id("blng__Invoice__c")
            days = (self.emulator.as_of - inv.due_date).days if inv.open_amount > 0 else 0
            head = self._invoice_head(bid, inv.number, currency, created, modstamp)
            self.emulator.rows["blng__Invoice__c"][bid] = head | {
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
            self._seed_allocations(inv, bid, aid, currency, modstamp, count)
        if "Invoice__c" in invoice_objects:
            cid = self._new_id("Invoice__c")
            head = self._invoice_head(cid, inv.number, currency, created, modstamp)
            self.emulator.rows["Invoice__c"][cid] = head | {
                "Account__c": aid,
                "Invoice_Date__c": issued,
                "Due_Date__c": due,
                "Amount__c": float(inv.amount),
                "Balance__c": float(inv.open_amount),
                "Paid_Date__c": strings.iso(inv.paid_date) if inv.paid_date else None,
                "Status__c": _CUSTOM_STATUS[inv.status],
            }

    def _invoice_head(
        self, record_id: str, number: str, currency: str, created: str, modstamp: str
    ) -> dict[str, Any]:
        """The system fields, Name and currency both invoice objects start with."""
        integration = self.emulator.integration_user_id
        return {
            "Id": record_id,
            "IsDeleted": False,
            "CreatedDate": created,
            "LastModifiedDate": modstamp,
            "SystemModstamp": modstamp,
            "CreatedById": integration,
            "LastModifiedById": integration,
            "Name": number,
            "CurrencyIsoCode": currency,
        }

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
