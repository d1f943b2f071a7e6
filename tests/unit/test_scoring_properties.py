"""Property tests: worse payment facts never lower the score; limits respect every cap."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.models import Account, Invoice, InvoiceStatus
from connector.scoring import PortfolioContext, assess, band_for
from connector.scoring.limits import floor_to_step
from connector.scoring.policy import BANDS, ScoringPolicy

AS_OF = date(2025, 6, 30)
POLICY = ScoringPolicy()
BOOK = PortfolioContext()
FAST = settings(max_examples=60, deadline=None)

money = st.integers(min_value=1, max_value=200_000).map(Decimal)
maybe_money = st.none() | st.integers(min_value=-10_000, max_value=500_000).map(Decimal)


@st.composite
def settled_invoice(draw: st.DrawFn, n: int) -> Invoice:
    issue = AS_OF - timedelta(days=draw(st.integers(31, 700)))
    due = issue + timedelta(days=draw(st.integers(0, 60)))
    paid = min(due + timedelta(days=draw(st.integers(-20, 120))), AS_OF)
    disputed = draw(st.booleans())
    return Invoice(
        crm_id=f"s{n}",
        account_id="a",
        issue_date=issue,
        due_date=due,
        amount=draw(money),
        open_amount=Decimal(0),
        paid_date=paid,
        status=InvoiceStatus.PAID,
        disputed_since=issue if disputed else None,
    )


@st.composite
def open_invoice(draw: st.DrawFn, n: int, min_dpd: int = -60) -> Invoice:
    dpd = draw(st.integers(min_dpd, 200))
    due = AS_OF - timedelta(days=dpd)
    issue = min(due - timedelta(days=30), AS_OF)
    amount = draw(money)
    open_amount = Decimal(draw(st.integers(1, int(amount))))
    return Invoice(
        crm_id=f"o{n}",
        account_id="a",
        issue_date=issue,
        due_date=due,
        amount=amount,
        open_amount=open_amount,
        status=InvoiceStatus.PARTIALLY_PAID if open_amount < amount else InvoiceStatus.OPEN,
        disputed_since=issue if draw(st.booleans()) else None,
    )


@st.composite
def accounts(draw: st.DrawFn) -> Account:
    score = draw(st.none() | st.integers(0, 100))
    return Account(
        crm_id="a",
        current_credit_limit=draw(st.none() | money),
        manual_credit_limit=draw(st.none() | money),
        agency_limit=draw(st.none() | money),
        net_worth=draw(maybe_money),
        working_capital=draw(maybe_money),
        insured_limit=draw(st.none() | money),
        external_score=None if score is None else Decimal(score),
        external_score_date=AS_OF - timedelta(days=draw(st.integers(0, 150))),
        payment_terms_days=draw(st.none() | st.integers(0, 90)),
    )


@st.composite
def books(draw: st.DrawFn) -> tuple[Account, list[Invoice], list[Invoice]]:
    settled = [draw(settled_invoice(i)) for i in range(draw(st.integers(0, 10)))]
    extra_open = [draw(open_invoice(i)) for i in range(draw(st.integers(0, 4)))]
    return draw(accounts()), settled, extra_open


def score(account: Account, invoices: list[Invoice]) -> float:
    return assess(account, invoices, BOOK, POLICY, AS_OF).score


@FAST
@given(books(), st.data())
def test_more_days_overdue_never_lowers_the_score(book, data) -> None:
    account, settled, others = book
    target = data.draw(open_invoice(99, min_dpd=0))
    more = data.draw(st.integers(1, 300))
    later = target.model_copy(update={"due_date": target.due_date - timedelta(days=more)})
    assert score(account, [*settled, *others, later]) >= score(account, [*settled, *others, target])


@FAST
@given(books(), st.data())
def test_more_overdue_amount_never_lowers_the_score(book, data) -> None:
    account, settled, others = book
    target = data.draw(open_invoice(99, min_dpd=1))
    bigger = data.draw(st.integers(int(target.open_amount), int(target.amount)))
    more = target.model_copy(update={"open_amount": Decimal(bigger)})
    assert score(account, [*settled, *others, more]) >= score(account, [*settled, *others, target])


@FAST
@given(books(), st.integers(0, 100), st.integers(0, 100))
def test_worse_external_score_never_lowers_the_score(book, first, second) -> None:
    account, settled, others = book
    better, worse = max(first, second), min(first, second)
    good = account.model_copy(update={"external_score": Decimal(better)})
    bad = account.model_copy(update={"external_score": Decimal(worse)})
    invoices = [*settled, *others]
    assert score(bad, invoices) >= score(good, invoices)


@FAST
@given(books(), st.data())
def test_worse_recent_payment_trend_never_lowers_the_score(book, data) -> None:
    account, settled, others = book
    recent: list[Invoice] = []
    slower: list[Invoice] = []
    for i in range(data.draw(st.integers(1, 4))):
        due = AS_OF - timedelta(days=data.draw(st.integers(1, 85)))
        room = (AS_OF - due).days
        late = data.draw(st.integers(0, room))
        later = data.draw(st.integers(late, room))
        base = Invoice(
            crm_id=f"r{i}",
            account_id="a",
            issue_date=due - timedelta(days=30),
            due_date=due,
            amount=data.draw(money),
            open_amount=Decimal(0),
            paid_date=due + timedelta(days=late),
            status=InvoiceStatus.PAID,
        )
        recent.append(base)
        slower.append(base.model_copy(update={"paid_date": due + timedelta(days=later)}))
    before = assess(account, [*settled, *others, *recent], BOOK, POLICY, AS_OF)
    after = assess(account, [*settled, *others, *slower], BOOK, POLICY, AS_OF)
    if before.features["trend"] is not None:
        assert after.features["trend"] >= before.features["trend"]
    assert after.score >= before.score


@FAST
@given(books(), st.integers(0, 200), st.integers(0, 5_000_000).map(Decimal))
def test_limit_never_exceeds_a_cap_or_the_manual_limit(book, accounts_in_book, total) -> None:
    account, settled, others = book
    portfolio = PortfolioContext(total_exposure=total, account_count=accounts_in_book)
    policy = ScoringPolicy(
        limits={"uninsured_appetite": Decimal(2500), "max_limit": Decimal(90000)}
    )
    result = assess(account, [*settled, *others], portfolio, policy, AS_OF)
    limit = result.recommended_credit_limit
    if limit is None:
        assert not [*settled, *others] or account.current_credit_limit is None
        return
    lp = policy.limits
    caps = [lp.max_limit]
    if account.agency_limit is not None:
        caps.append(account.agency_limit)
    if account.net_worth is not None:
        caps.append(max(account.net_worth, Decimal(0)) * Decimal("0.1"))
    if account.working_capital is not None:
        caps.append(max(account.working_capital, Decimal(0)) * Decimal("0.1"))
    if account.insured_limit is not None:
        caps.append(account.insured_limit + lp.uninsured_appetite)
    if total > 0 and accounts_in_book >= lp.concentration_min_accounts:
        caps.append(total * Decimal("0.1"))
    if account.manual_credit_limit is not None:
        caps.append(account.manual_credit_limit)
    assert limit >= 0
    for cap in caps:
        assert cap is not None
        assert limit <= cap, (cap, result.limit_derivation)


@FAST
@given(books())
def test_band_is_a_monotone_function_of_the_score(book) -> None:
    account, settled, others = book
    result = assess(account, [*settled, *others], BOOK, POLICY, AS_OF)
    assert result.band == band_for(result.score, POLICY.bands.cutoffs)
    assert result.level == POLICY.bands.levels[result.band]
    assert 0 <= result.score <= 100
    assert 0 <= result.confidence <= 1


@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=2, max_size=30))
def test_band_for_is_monotone(scores) -> None:
    bands = [band_for(s, POLICY.bands.cutoffs) for s in sorted(scores)]
    assert [BANDS.index(b) for b in bands] == sorted(BANDS.index(b) for b in bands)


@FAST
@given(books(), st.randoms(use_true_random=False))
def test_assessment_is_deterministic(book, rng: random.Random) -> None:
    account, settled, others = book
    invoices = [*settled, *others]
    first = assess(account, invoices, BOOK, POLICY, AS_OF)
    again = assess(account, list(invoices), BOOK, POLICY, AS_OF)
    assert first.model_dump() == again.model_dump()
    shuffled = list(invoices)
    rng.shuffle(shuffled)
    other_order = assess(account, shuffled, BOOK, POLICY, AS_OF)
    assert other_order.band == first.band
    assert abs(other_order.score - first.score) <= 0.01
    assert other_order.recommended_credit_limit == first.recommended_credit_limit


@given(
    st.decimals(min_value=0, max_value=10**9, places=2),
    st.sampled_from([Decimal(1), Decimal(500), Decimal(1000)]),
)
def test_rounding_never_rounds_up(value, step) -> None:
    rounded = floor_to_step(value, step)
    assert 0 <= rounded <= value
    if value >= step:
        assert rounded % step == 0
        assert value - rounded < step
