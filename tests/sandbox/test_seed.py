"""The demo portfolio is reproducible and shows every payment personality the risk model reacts to."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal
from itertools import islice

import pytest

from sandboxes.seed import (
    DEFAULT_AS_OF,
    INVOICE_STATUSES,
    PERSONALITIES,
    Portfolio,
    SeedInvoice,
    generate,
    iter_generate,
)


@pytest.fixture(scope="module")
def portfolio() -> Portfolio:
    return generate()


def invoices_of(portfolio: Portfolio, personality: str) -> dict[str, list[SeedInvoice]]:
    keys = {a.key for a in portfolio.accounts if a.personality == personality}
    out: dict[str, list[SeedInvoice]] = {key: [] for key in keys}
    for invoice in portfolio.invoices:
        if invoice.account_key in keys:
            out[invoice.account_key].append(invoice)
    return out


def test_same_arguments_give_identical_data(portfolio: Portfolio) -> None:
    assert generate() == portfolio
    assert generate(seed=8) != portfolio
    assert portfolio.as_of == DEFAULT_AS_OF


def test_a_small_portfolio_is_a_prefix_of_a_larger_one(portfolio: Portfolio) -> None:
    small = generate(accounts=12)
    assert small.accounts == portfolio.accounts[:12]


def test_every_personality_appears_at_least_three_times(portfolio: Portfolio) -> None:
    counts = Counter(a.personality for a in portfolio.accounts)
    assert set(counts) == set(PERSONALITIES)
    assert min(counts.values()) >= 3


def test_portfolio_is_varied_like_a_real_book(portfolio: Portfolio) -> None:
    assert 4 <= len(portfolio.users) <= 6
    assert sum(not u.active for u in portfolio.users) == 1
    countries = {a.country for a in portfolio.accounts}
    assert {"DE", "US", "CN"} <= countries and len(countries) >= 8
    assert len({a.industry for a in portfolio.accounts}) >= 8
    assert len({a.name for a in portfolio.accounts}) == len(portfolio.accounts)
    assert any(a.external_score is None for a in portfolio.accounts)
    assert all(a.created_at.tzinfo is not None for a in portfolio.accounts)
    owners = {a.owner_key for a in portfolio.accounts}
    assert owners == {u.key for u in portfolio.users}


def test_invoices_are_consistent(portfolio: Portfolio) -> None:
    for inv in portfolio.invoices:
        assert inv.status in INVOICE_STATUSES
        assert inv.issue_date <= inv.due_date <= portfolio.as_of + timedelta(days=90)
        assert Decimal(0) <= inv.open_amount <= inv.amount
        if inv.status == "paid":
            assert inv.paid_date is not None and inv.open_amount == 0
            assert inv.paid_date <= portfolio.as_of
        if inv.status in ("open", "disputed"):
            assert inv.open_amount == inv.amount and inv.paid_date is None
    assert len({inv.number for inv in portfolio.invoices}) == len(portfolio.invoices)


def test_overdue_90_accounts_have_material_invoices_past_90_days(portfolio: Portfolio) -> None:
    for invoices in invoices_of(portfolio, "overdue_90").values():
        late = [
            i for i in invoices if i.open_amount > 0 and (portfolio.as_of - i.due_date).days >= 90
        ]
        assert late
        typical = sum(i.amount for i in invoices) / len(invoices)
        assert max(i.open_amount for i in late) >= typical


def test_written_off_within_the_last_year(portfolio: Portfolio) -> None:
    for invoices in invoices_of(portfolio, "written_off").values():
        offs = [i for i in invoices if i.status == "written_off"]
        assert offs and all((portfolio.as_of - i.due_date).days <= 365 for i in offs)


def test_disputed_accounts_have_an_open_dispute(portfolio: Portfolio) -> None:
    for invoices in invoices_of(portfolio, "disputed").values():
        assert any(i.status == "disputed" and i.open_amount > 0 for i in invoices)


def test_thin_files_are_new_with_one_or_two_invoices(portfolio: Portfolio) -> None:
    accounts = {a.key: a for a in portfolio.accounts}
    for key, invoices in invoices_of(portfolio, "thin_file").items():
        assert 1 <= len(invoices) <= 2
        assert (portfolio.as_of - accounts[key].created_at.date()).days < 183


def test_over_limit_exposure_exceeds_the_credit_limit(portfolio: Portfolio) -> None:
    accounts = {a.key: a for a in portfolio.accounts}
    for key, invoices in invoices_of(portfolio, "over_limit").items():
        limit = accounts[key].credit_limit
        assert limit is not None
        assert sum(i.open_amount for i in invoices) > limit


def test_deteriorating_payers_pay_later_and_later(portfolio: Portfolio) -> None:
    for invoices in invoices_of(portfolio, "deteriorating").values():
        paid = sorted((i for i in invoices if i.paid_date is not None), key=lambda i: i.issue_date)
        delays = [(i.paid_date - i.due_date).days for i in paid if i.paid_date]
        assert len(delays) >= 4
        assert sum(delays[-2:]) / 2 > sum(delays[:2]) / 2 + 20


def test_prompt_payers_pay_around_the_due_date(portfolio: Portfolio) -> None:
    for invoices in invoices_of(portfolio, "prompt").values():
        delays = [(i.paid_date - i.due_date).days for i in invoices if i.paid_date]
        assert delays and max(delays) <= 3


def test_iter_generate_is_lazy() -> None:
    # A hundred million accounts would never fit: only what is consumed is built.
    first = list(islice(iter_generate(accounts=100_000_000), 3))
    assert [a.key for a, _ in first] == ["acc000000", "acc000001", "acc000002"]
    assert all(len(invoices) >= 1 for _, invoices in first)
