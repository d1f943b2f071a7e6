"""One customer's point-in-time features on successive days, updated as its invoices' events pass.

The backtest needs the features of every customer on every day it was invoiced: `extract` on the
invoices known that day. Calling `extract` for each such day redoes the whole history each time;
`CustomerTimeline` keeps, between days, which invoices are open, which settled ones are inside the
trailing window and how many write-offs are in the look-back, moving invoices in and out as their
issue, payment and window-exit days pass. For each day it then adds up only the invoices that
count, in the order `extract` would add them, and hands the sums to `features.finish`, so every
feature, every float included, equals `extract(account, invoices issued before the day, empty
portfolio, policy, day)`: `tests/unit/test_timeline.py` checks this on random histories and policies,
and the replay of the IBM sample against one built on `extract`.

The invoices are the backtest's (`scoring.history`): an amount, issue and due dates, a settlement
day (paid, or written off; 0 = still open), whether it was written off and whether it was
disputed (known once settled). The account has only a creation date; there is no portfolio.
The sync does not use this module: it scores with `extract` on the CRM's invoices.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Sequence
from datetime import UTC, date, datetime

from connector.models import Account
from connector.scoring.features import Features, InvoiceTotals, age_open_invoice, finish
from connector.scoring.policy import ScoringPolicy
from connector.scoring.portfolio import PortfolioContext

_NO_PORTFOLIO = PortfolioContext()
_NEVER = date.max.toordinal() + 1


@functools.lru_cache(maxsize=4096)
def _account_created(created: int | None) -> Account:
    """The account `finish` reads: nothing but a creation date (shared: `finish` only reads it).

    Building a pydantic model per customer cost about a tenth of a large replay; customers
    created on the same day share one.
    """
    return Account.model_construct(
        crm_id="",
        created_at=None
        if created is None
        else datetime.combine(date.fromordinal(created), datetime.min.time(), UTC),
    )


class CustomerTimeline:
    """Features of one customer on non-decreasing days, from its invoices in issue order.

    Args:
        amounts: invoiced amounts (positive).
        issue: issue dates (ordinals), non-decreasing: the order `extract` is compared with.
        due: due dates (ordinals).
        settled: payment or write-off dates (ordinals); 0 = still open.
        written_off: whether each invoice was written off (on its `settled` day).
        disputed: whether each invoice was disputed (known from its `settled` day).
        created: the account's creation date (ordinal), or None.
        policy: the scoring policy (windows, aging, hard rules, limits settings).
    """

    def __init__(
        self,
        amounts: Sequence[float],
        issue: Sequence[int],
        due: Sequence[int],
        settled: Sequence[int],
        written_off: Sequence[bool],
        disputed: Sequence[bool],
        created: int | None,
        policy: ScoringPolicy,
    ) -> None:
        if any(b < a for a, b in itertools.pairwise(issue)):
            raise ValueError("invoices must come in issue-date order")
        self.policy = policy
        windows = policy.windows
        self.trailing = windows.trailing_days
        self.recent = windows.trend_recent_days
        self.lookback = policy.hard_rules.write_off_lookback_days
        self.months = policy.dso_max_months
        self.need = policy.limits.need_window_days
        self.widest = max(30 * self.months, self.need, self.trailing)
        self.amount = list(amounts)
        self.issue = list(issue)
        self.due = list(due)
        self.settled = list(settled)
        self.written_off = [bool(w) for w in written_off]
        self.disputed = [bool(d) for d in disputed]
        self.account = _account_created(created)
        # The day each invoice was paid (not written off), for the dispute share; never = inf.
        self.paid_on = [
            s if s and not w else _NEVER
            for s, w in zip(self.settled, self.written_off, strict=True)
        ]
        # Per paid invoice, the products `extract` adds (the same float operations).
        grace = windows.grace_days
        cap = windows.early_credit_days
        signed = windows.early_payment == "signed"
        self.beyond_amount: list[float] = []
        self.credit_amount: list[float] = []
        self.measure_amount: list[float] = []
        self.late: list[bool] = []
        for a, d, s in zip(self.amount, self.due, self.settled, strict=True):
            days_late = s - d
            beyond = days_late if days_late > 0 else 0
            credit = days_late if cap is None or days_late >= -cap else -cap
            self.beyond_amount.append(a * beyond)
            self.credit_amount.append(a * credit)
            self.measure_amount.append(a * (credit if signed else beyond))
            self.late.append(days_late > grace)
        # Events, each a (day, position) list sorted by day: a settled invoice counts from the
        # day after it was both issued and settled, and leaves its window `trailing` (paid) or
        # `lookback` (written off) days after settling.
        paid_in: list[tuple[int, int]] = []
        paid_out: list[tuple[int, int]] = []
        off_in: list[tuple[int, int]] = []
        off_out: list[tuple[int, int]] = []
        for j, s in enumerate(self.settled):
            if not s:
                continue
            start = max(s, self.issue[j] + 1)
            if self.written_off[j]:
                off_in.append((start, j))
                off_out.append((s + self.lookback, j))
            else:
                paid_in.append((start, j))
                paid_out.append((s + self.trailing, j))
        self.paid_in = sorted(paid_in)
        self.paid_out = sorted(paid_out)
        self.off_in = sorted(off_in)
        self.off_out = sorted(off_out)
        self.cursor = [0, 0, 0, 0]
        self.known = 0  # invoices issued before the current day
        self.day = -1
        self.open: list[int] = []  # positions of known invoices not settled yet
        self.paid_window: list[int] = []  # positions of paid invoices in the trailing window
        self.off_window: set[int] = set()
        self.ever_paid = False
        self.terms: list[int] = []

    def _advance(self, today: int) -> None:
        if today < self.day:
            raise ValueError("days must not go back")
        self.day = today
        issue = self.issue
        while self.known < len(issue) and issue[self.known] < today:
            j = self.known
            self.known += 1
            self.open.append(j)
            bisect.insort(self.terms, self.due[j] - issue[j])
        settled = self.settled
        self.open = [j for j in self.open if not 0 < settled[j] <= today]
        cursor = self.cursor
        paid_in, paid_out = self.paid_in, self.paid_out
        while cursor[0] < len(paid_in) and paid_in[cursor[0]][0] <= today:
            j = paid_in[cursor[0]][1]
            cursor[0] += 1
            self.ever_paid = True
            if settled[j] + self.trailing > today:
                bisect.insort(self.paid_window, j)
        while cursor[1] < len(paid_out) and paid_out[cursor[1]][0] <= today:
            j = paid_out[cursor[1]][1]
            cursor[1] += 1
            k = bisect.bisect_left(self.paid_window, j)
            if k < len(self.paid_window) and self.paid_window[k] == j:
                del self.paid_window[k]
        off_in, off_out = self.off_in, self.off_out
        while cursor[2] < len(off_in) and off_in[cursor[2]][0] <= today:
            j = off_in[cursor[2]][1]
            cursor[2] += 1
            if settled[j] + self.lookback > today:
                self.off_window.add(j)
        while cursor[3] < len(off_out) and off_out[cursor[3]][0] <= today:
            self.off_window.discard(off_out[cursor[3]][1])
            cursor[3] += 1

    def _issued_sums(self, today: int, t: InvoiceTotals) -> list[float]:
        """Sums over invoices by issue date: the need window and dispute share into `t`.

        Returns:
            The invoiced amount per 30-day block back from today (for the DSO), newest first.
        """
        amount, issue = self.amount, self.issue
        monthly = [0.0] * self.months
        month_span = 30 * self.months
        need, trailing = self.need, self.trailing
        need_sum = invoiced = disputed = 0.0
        paid_on, disputed_flags = self.paid_on, self.disputed
        known = self.known
        for j in range(bisect.bisect_right(issue, today - self.widest, 0, known), known):
            age = today - issue[j]
            a = amount[j]
            if age < month_span:
                monthly[age // 30] += a
            if age < need:
                need_sum += a
            if age < trailing and paid_on[j] <= today:
                invoiced += a
                if disputed_flags[j]:
                    disputed += a
        t.need_invoiced = need_sum
        t.invoiced = invoiced
        t.disputed = disputed
        return monthly

    def _paid_sums(self, today: int, t: InvoiceTotals) -> None:
        """Sums over the paid invoices in the trailing window, in invoice order, into `t`."""
        amount, settled = self.amount, self.settled
        recent_start = today - self.recent
        dbt_num = dbt_den = delay_num = late_amt = 0.0
        rec_num = rec_den = prior_num = prior_den = 0.0
        beyond, credit, measure, late = (
            self.beyond_amount,
            self.credit_amount,
            self.measure_amount,
            self.late,
        )
        for j in self.paid_window:
            a = amount[j]
            dbt_num += beyond[j]
            delay_num += credit[j]
            dbt_den += a  # `extract`'s paid amount is the same sum, in the same order
            if late[j]:
                late_amt += a
            if settled[j] > recent_start:
                rec_num += measure[j]
                rec_den += a
            else:
                prior_num += measure[j]
                prior_den += a
        t.dbt_num, t.dbt_den, t.delay_num = dbt_num, dbt_den, delay_num
        t.paid_amt, t.late_amt = dbt_den, late_amt
        t.rec_num, t.rec_den, t.prior_num, t.prior_den = rec_num, rec_den, prior_num, prior_den

    def at(self, day: date | int) -> Features:
        """The features on `day` from the invoices issued before it (days must not go back).

        Args:
            day: the decision date (a date or its ordinal).

        Returns:
            What `extract` returns for the account, those invoices, no portfolio and the policy.
        """
        today = day if isinstance(day, int) else day.toordinal()
        self._advance(today)
        known = self.known
        amount, issue = self.amount, self.issue
        f = Features()
        f.invoice_count = known
        f.write_offs = len(self.off_window)
        f.settled_count = len(self.paid_window)
        f.has_experience = self.ever_paid
        t = InvoiceTotals()
        monthly = self._issued_sums(today, t)
        self._paid_sums(today, t)

        # Open invoices, aged to today.
        due, policy = self.due, self.policy
        for j in self.open:
            age_open_invoice(f, t, amount[j], amount[j], today - due[j], policy)

        terms = self.terms
        return finish(
            f,
            t,
            monthly,
            terms[len(terms) // 2] if terms else None,
            issue[0] if known else None,
            self.policy.home_currency,
            self.account,
            _NO_PORTFOLIO,
            self.policy,
            today,
        )
