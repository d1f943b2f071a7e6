"""Deterministic, CRM-neutral demo portfolios: users, B2B accounts and invoice histories with payment personalities."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

# Fixed so that the same (accounts, seed) gives byte-identical data on any day.
DEFAULT_AS_OF = date(2026, 11, 1)

PERSONALITIES = (
    "prompt",
    "slow",
    "deteriorating",
    "disputed",
    "overdue_90",
    "written_off",
    "thin_file",
    "over_limit",
)
# Mix after the first 3 of each: most customers pay well, as in a real book.
_WEIGHTS = (40, 18, 8, 6, 8, 4, 8, 8)

INVOICE_STATUSES = ("open", "paid", "partially_paid", "void", "disputed", "written_off")

CENT = Decimal("0.01")

# The sandbox orgs' home (corporate) currency and its exchange rates: units of each currency
# per one EUR, the direction both CRMs use (Salesforce ConversionRate, Zoho exchange_rate).
HOME_CURRENCY = "EUR"
RATES_PER_EUR: dict[str, Decimal] = {
    "EUR": Decimal(1),
    "USD": Decimal("1.08"),
    "GBP": Decimal("0.85"),
    "CHF": Decimal("0.95"),
    "PLN": Decimal("4.3"),
    "SEK": Decimal("11.5"),
    "CAD": Decimal("1.47"),
    "CNY": Decimal("7.8"),
    "JPY": Decimal("160"),
    "INR": Decimal("90"),
    "BRL": Decimal("5.9"),
    "AUD": Decimal("1.65"),
}
# Rates moved over the year: (first day, factor on today's rate). Salesforce serves them as
# DatedConversionRate periods; Zoho freezes the rate of its day on each record (Exchange_Rate).
RATE_PERIODS: tuple[tuple[date, Decimal], ...] = (
    (date(2025, 1, 1), Decimal("0.94")),
    (date(2025, 7, 1), Decimal("0.97")),
    (date(2026, 1, 1), Decimal("1.02")),
    (date(2026, 7, 1), Decimal(1)),
)


def rate_on(currency: str, day: date) -> Decimal:
    """Units of `currency` per EUR valid on `day` (the period's factor on today's rate)."""
    base = RATES_PER_EUR[currency]
    if currency == HOME_CURRENCY:
        return base
    factor = RATE_PERIODS[0][1]
    for start, value in RATE_PERIODS:
        if day >= start:
            factor = value
    return (base * factor).quantize(Decimal("0.000001"))


@dataclass(frozen=True, slots=True)
class SeedUser:
    """A CRM user who can own accounts; one of them is inactive."""

    key: str
    name: str
    email: str
    active: bool


@dataclass(frozen=True, slots=True)
class SeedAccount:
    """A B2B customer with firmographics, terms, limits and a payment personality."""

    key: str
    name: str
    owner_key: str
    industry: str
    country: str
    currency: str
    annual_revenue: Decimal | None
    employees: int | None
    created_at: datetime
    payment_terms_days: int
    credit_limit: Decimal | None
    external_score: int | None
    insured_limit: Decimal | None
    personality: str


@dataclass(frozen=True, slots=True)
class SeedInvoice:
    """One receivable; `status` is one of INVOICE_STATUSES."""

    key: str
    account_key: str
    number: str
    issue_date: date
    due_date: date
    amount: Decimal
    open_amount: Decimal
    paid_date: date | None
    status: str


@dataclass(frozen=True, slots=True)
class Portfolio:
    """Everything a sandbox CRM is seeded with."""

    users: list[SeedUser]
    accounts: list[SeedAccount]
    invoices: list[SeedInvoice]
    as_of: date


@dataclass(frozen=True, slots=True)
class PortfolioStream:
    """A portfolio too large to hold twice: users up front, (account, invoices) pairs on demand."""

    users: list[SeedUser]
    as_of: date
    pairs: Iterator[tuple[SeedAccount, list[SeedInvoice]]]


_USERS = (
    ("Anna Schmidt", True),
    ("Marco Rossi", True),
    ("Li Wei", True),
    ("Sarah Johnson", True),
    ("Pierre Martin", False),
)

# country, currency, rough units per EUR, legal suffixes, weight
_COUNTRIES: tuple[tuple[str, str, int, tuple[str, ...], int], ...] = (
    ("DE", "EUR", 1, ("GmbH", "AG", "GmbH & Co. KG"), 14),
    ("FR", "EUR", 1, ("SAS", "SA", "SARL"), 8),
    ("NL", "EUR", 1, ("B.V.", "N.V."), 5),
    ("IT", "EUR", 1, ("S.p.A.", "S.r.l."), 6),
    ("ES", "EUR", 1, ("S.L.", "S.A."), 5),
    ("PL", "PLN", 4, ("Sp. z o.o.", "S.A."), 4),
    ("SE", "SEK", 11, ("AB",), 3),
    ("GB", "GBP", 1, ("Ltd", "PLC"), 8),
    ("CH", "CHF", 1, ("AG", "SA"), 3),
    ("US", "USD", 1, ("Inc.", "LLC", "Corp."), 16),
    ("CA", "CAD", 1, ("Inc.", "Ltd."), 3),
    ("CN", "CNY", 8, ("Co., Ltd.", "Group Co., Ltd."), 12),
    ("JP", "JPY", 160, ("K.K.", "Co., Ltd."), 4),
    ("IN", "INR", 90, ("Pvt. Ltd.", "Ltd."), 4),
    ("BR", "BRL", 6, ("Ltda.", "S.A."), 3),
    ("AU", "AUD", 2, ("Pty Ltd",), 2),
)

INDUSTRIES = (
    "Manufacturing",
    "Wholesale",
    "Retail",
    "Construction",
    "Transportation",
    "Technology",
    "Healthcare",
    "Chemicals",
    "Food & Beverage",
    "Energy",
    "Electronics",
    "Automotive",
    "Agriculture",
    "Telecommunications",
    "Consulting",
)

_FIRST = (
    "Nordwind",
    "Alpen",
    "Blue Harbor",
    "Golden Gate",
    "Huaxing",
    "Sakura",
    "Atlas",
    "Orion",
    "Lumen",
    "Vertex",
    "Rhein",
    "Baltic",
    "Pacific",
    "Summit",
    "Cedar",
    "Granite",
    "Meridian",
    "Aurora",
    "Delta",
    "Hanse",
    "Iberia",
    "Tulip",
    "Maple",
    "Jade",
    "Ganges",
    "Amazonas",
    "Kestrel",
    "Polaris",
    "Sierra",
    "Zenith",
)
_SECOND = (
    "Logistics",
    "Components",
    "Foods",
    "Systems",
    "Trading",
    "Metals",
    "Pharma",
    "Textiles",
    "Machinery",
    "Electronics",
    "Packaging",
    "Energy",
    "Plastics",
    "Builders",
    "Supply",
    "Chemicals",
    "Motors",
    "Networks",
    "Agro",
    "Instruments",
)


def _money(value: float) -> Decimal:
    return Decimal(str(round(value, 2))).quantize(CENT, rounding=ROUND_HALF_UP)


def _round_limit(value: Decimal, fx: int) -> Decimal:
    step = Decimal(1000 * fx)
    return ((value / step).to_integral_value(rounding=ROUND_HALF_UP) * step).quantize(CENT)


def users(seed: int = 7) -> list[SeedUser]:
    """The account owners; the last one is inactive (tasks must not be assigned to them)."""
    del seed  # owners are the same in every portfolio so demo output reads the same
    out = []
    for index, (name, active) in enumerate(_USERS, start=1):
        first, last = name.lower().split(" ", 1)
        out.append(
            SeedUser(
                key=f"user{index}",
                name=name,
                email=f"{first}.{last.replace(' ', '')}@example.com",
                active=active,
            )
        )
    return out


def _personality(index: int, rng: random.Random) -> str:
    # The first 3 x 8 accounts cover every personality three times, so small demos show every band.
    if index < 3 * len(PERSONALITIES):
        return PERSONALITIES[index % len(PERSONALITIES)]
    return rng.choices(PERSONALITIES, weights=_WEIGHTS)[0]


def _delay_days(personality: str, position: int, count: int, rng: random.Random) -> int:
    """Days after the due date at which invoice `position` (0 = oldest) would be paid."""
    if personality == "slow":
        return rng.randint(15, 45)
    if personality == "deteriorating":
        progress = position / max(count - 1, 1)
        return int(2 + progress * 65 + rng.randint(-3, 6))
    if personality in ("disputed", "over_limit"):
        return rng.randint(0, 20)
    if personality in ("overdue_90", "written_off"):
        return rng.randint(5, 35)
    return rng.randint(-5, 3)


def _account(
    index: int, seed: int, as_of: date, invoices_per_account: int, owners: list[SeedUser]
) -> tuple[SeedAccount, list[SeedInvoice]]:
    # One generator per account, drawn from in a fixed order: the same seed gives the same data.
    rng = random.Random(seed * 1_000_003 + index)
    personality = _personality(index, rng)
    country, currency, fx, suffixes, _ = rng.choices(
        _COUNTRIES, weights=[c[4] for c in _COUNTRIES]
    )[0]
    name = f"{rng.choice(_FIRST)} {rng.choice(_SECOND)} {rng.choice(suffixes)}"
    industry = rng.choice(INDUSTRIES)
    owner = _owner(index, personality, owners)
    employees = max(3, int(rng.lognormvariate(4.5, 1.3)))
    revenue_eur = employees * rng.uniform(90_000, 260_000)
    annual_revenue = None if rng.random() < 0.12 else _money(round(revenue_eur * fx, -3))
    reported_employees = None if rng.random() < 0.08 else employees
    if personality == "thin_file":
        created = as_of - timedelta(days=rng.randint(20, 170))
    else:
        created = as_of - timedelta(days=rng.randint(400, 4000))
    created_at = datetime.combine(created, time(rng.randint(7, 18), rng.randint(0, 59)), UTC)
    terms = rng.choice((14, 30, 30, 30, 45, 60)) if country not in ("IT", "ES", "CN") else 60
    # Typical invoice ~ one month of what this customer buys from us.
    typical = max(800.0, revenue_eur * rng.uniform(0.002, 0.01) / 12) * fx
    history = _History(index, personality, as_of, invoices_per_account, terms, typical)
    invoices = _invoices(history, rng)
    credit_limit, external_score, insured_limit = _credit_terms(history, invoices, fx, rng)
    account = SeedAccount(
        key=f"acc{index:06d}",
        name=name,
        owner_key=owner.key,
        industry=industry,
        country=country,
        currency=currency,
        annual_revenue=annual_revenue,
        employees=reported_employees,
        created_at=created_at,
        payment_terms_days=terms,
        credit_limit=credit_limit,
        external_score=external_score,
        insured_limit=insured_limit,
        personality=personality,
    )
    return account, invoices


def _owner(index: int, personality: str, owners: list[SeedUser]) -> SeedUser:
    # The inactive owner (someone who left) still holds a few healthy accounts nobody reassigned;
    # risky accounts have active owners so their follow-up tasks can go to them.
    active = [user for user in owners if user.active]
    inactive = [user for user in owners if not user.active]
    if inactive and personality in ("prompt", "slow") and index % 4 == 1:
        return inactive[0]
    return active[index % len(active)]


@dataclass(frozen=True, slots=True)
class _History:
    """What shapes one account's invoice history."""

    index: int
    personality: str
    as_of: date
    invoices_per_account: int
    terms: int
    typical: float


def _invoices(history: _History, rng: random.Random) -> list[SeedInvoice]:
    """The account's invoices, oldest first, about a month apart."""
    personality, as_of = history.personality, history.as_of
    count = rng.randint(1, 2) if personality == "thin_file" else history.invoices_per_account
    newest_issue = as_of - timedelta(days=rng.randint(3, 20))
    issues = [newest_issue - timedelta(days=30 * k + rng.randint(0, 6)) for k in range(count)]
    issues.reverse()  # oldest first
    special: dict[int, str] = {}
    if personality == "disputed" and count:
        special[max(count - 3, 0)] = "disputed"
    if personality == "overdue_90" and count:
        # The oldest invoices are the ones 90+ days past due.
        for position in range(min(2, count)):
            special[position] = "overdue_90"
    if personality == "written_off" and count:
        special[max(count - 7, 0)] = "written_off"
    if personality == "over_limit":
        for position in range(max(count - 4, 0), count):
            special[position] = "open"
    return [
        _invoice(history, rng, position, issue, count, special.get(position))
        for position, issue in enumerate(issues)
    ]


def _invoice(
    history: _History,
    rng: random.Random,
    position: int,
    issue: date,
    count: int,
    kind: str | None,
) -> SeedInvoice:
    """One invoice, paid as the personality pays or in the state `kind` says."""
    as_of, terms, typical = history.as_of, history.terms, history.typical
    due = issue + timedelta(days=terms)
    amount = _money(typical * rng.uniform(0.5, 1.6))
    paid: date | None = due + timedelta(days=_delay_days(history.personality, position, count, rng))
    status = "paid"
    open_amount = Decimal("0.00")
    if kind == "overdue_90":
        due = min(due, as_of - timedelta(days=95 + 20 * position))
        issue = due - timedelta(days=terms)
        amount = _money(typical * rng.uniform(2.0, 3.5))  # material, not a rounding error
        paid, status, open_amount = None, "open", amount
    elif kind == "disputed":
        due = min(due, as_of - timedelta(days=10))
        issue = due - timedelta(days=terms)
        paid, status, open_amount = None, "disputed", amount
    elif kind == "written_off":
        due = min(due, as_of - timedelta(days=200))
        issue = due - timedelta(days=terms)
        paid, status, open_amount = None, "written_off", Decimal("0.00")
    elif kind == "open" or (paid is not None and paid > as_of):
        paid, status, open_amount = None, "open", amount
        if due < as_of and rng.random() < 0.15:
            status = "partially_paid"
            open_amount = _money(float(amount) * rng.uniform(0.3, 0.7))
    elif rng.random() < 0.02:
        paid, status = None, "void"
    index = history.index
    return SeedInvoice(
        key=f"inv{index:06d}-{position:02d}",
        account_key=f"acc{index:06d}",
        number=f"INV-{index * max(history.invoices_per_account, 2) + position + 1:07d}",
        issue_date=issue,
        due_date=due,
        amount=amount,
        open_amount=open_amount,
        paid_date=paid,
        status=status,
    )


# External (bureau) score range by personality.
_SCORE_RANGES = {
    "prompt": (65, 95),
    "slow": (45, 75),
    "deteriorating": (35, 60),
    "disputed": (40, 70),
    "overdue_90": (15, 40),
    "written_off": (8, 30),
    "thin_file": (40, 70),
    "over_limit": (35, 60),
}


def _credit_terms(
    history: _History, invoices: list[SeedInvoice], fx: int, rng: random.Random
) -> tuple[Decimal | None, int | None, Decimal | None]:
    """The account's credit limit, external score and insured limit."""
    personality, terms = history.personality, history.terms
    exposure = sum((inv.open_amount for inv in invoices), Decimal(0))
    credit_limit: Decimal | None = _round_limit(
        Decimal(history.typical * (terms / 30 + 1) * 1.8), fx
    )
    if personality == "over_limit":
        credit_limit = max(_round_limit(exposure * Decimal("0.6"), fx), Decimal(1000 * fx))
        if credit_limit >= exposure:  # tiny exposure: still make it breach
            credit_limit = (exposure * Decimal("0.5")).quantize(CENT)
    elif personality == "thin_file" and rng.random() < 0.5:
        credit_limit = None
    low, high = _SCORE_RANGES[personality]
    no_score = 0.6 if personality == "thin_file" else 0.12
    external_score = None if rng.random() < no_score else rng.randint(low, high)
    insured_limit = None
    if credit_limit is not None and rng.random() < 0.4:
        insured_limit = _round_limit(credit_limit * Decimal(str(rng.uniform(0.5, 1.0))), fx)
    return credit_limit, external_score, insured_limit


def iter_generate(
    accounts: int = 60,
    seed: int = 7,
    invoices_per_account: int = 10,
    as_of: date | None = None,
) -> Iterator[tuple[SeedAccount, list[SeedInvoice]]]:
    """Yield each account with its invoices, one at a time, for portfolios too large to hold twice.

    Users come from `users(seed)`. Account `i` depends only on (seed, i), so a prefix of a large
    portfolio equals the smaller portfolio. Names repeat in large portfolios as in real CRMs;
    within one run a repeated name gets a number so demo tables stay readable.
    """
    day = as_of or DEFAULT_AS_OF
    owners = users(seed)
    seen: dict[str, int] = {}
    for index in range(accounts):
        account, invoices = _account(index, seed, day, invoices_per_account, owners)
        times = seen.get(account.name, 0)
        seen[account.name] = times + 1
        if times:
            account = replace(account, name=f"{account.name} ({times + 1})")
        yield account, invoices


def generate(
    accounts: int = 60,
    seed: int = 7,
    invoices_per_account: int = 10,
    as_of: date | None = None,
) -> Portfolio:
    """Build a whole portfolio in memory; the same arguments always give identical data."""
    day = as_of or DEFAULT_AS_OF
    account_list: list[SeedAccount] = []
    invoice_list: list[SeedInvoice] = []
    for account, invoices in iter_generate(accounts, seed, invoices_per_account, day):
        account_list.append(account)
        invoice_list.extend(invoices)
    return Portfolio(users=users(seed), accounts=account_list, invoices=invoice_list, as_of=day)


def stream(
    accounts: int = 60,
    seed: int = 7,
    invoices_per_account: int = 10,
    as_of: date | None = None,
) -> PortfolioStream:
    """The same data as generate(), consumed once, for emulators seeding 100k+ accounts."""
    day = as_of or DEFAULT_AS_OF
    return PortfolioStream(
        users=users(seed),
        as_of=day,
        pairs=iter_generate(accounts, seed, invoices_per_account, day),
    )
