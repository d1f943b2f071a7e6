"""Benchmark: score 100,000 accounts with 1,000,000 synthetic invoices; print accounts/s and peak memory.

Run: .venv/bin/python bench/scoring.py [--accounts N] [--invoices-per-account K]
Invoices are generated per account (as the engine streams them from the store), so memory
reflects scoring, not a million objects held at once. Generation time is reported apart.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.models import Account, Invoice, InvoiceStatus
from connector.scoring import PortfolioContext, assess
from connector.scoring.policy import ScoringPolicy

AS_OF = date(2025, 6, 30)


def make_account(rng: random.Random, n: int, per_account: int) -> tuple[Account, list[Invoice]]:
    account = Account.model_construct(
        crm_id=f"acc-{n}",
        name=f"Account {n}",
        currency="EUR",
        current_credit_limit=Decimal(rng.choice((10000, 25000, 50000, 100000))),
        external_score=Decimal(rng.randint(10, 95)) if rng.random() < 0.5 else None,
        external_score_date=AS_OF - timedelta(days=rng.randint(0, 300)),
        insured_limit=Decimal(40000) if rng.random() < 0.3 else None,
    )
    slowness = rng.choice((0, 0, 5, 15, 40))
    invoices = []
    for i in range(per_account):
        issue = AS_OF - timedelta(days=rng.randint(0, 540))
        due = issue + timedelta(days=30)
        amount = Decimal(rng.randint(100, 20000))
        late = max(-10, int(rng.gauss(slowness, 10)))
        paid = due + timedelta(days=late)
        is_open = paid > AS_OF
        invoices.append(
            Invoice.model_construct(
                crm_id=f"inv-{n}-{i}",
                account_id=account.crm_id,
                issue_date=issue,
                due_date=due,
                amount=amount,
                open_amount=amount if is_open else Decimal(0),
                paid_date=None if is_open else paid,
                status=InvoiceStatus.OPEN if is_open else InvoiceStatus.PAID,
                disputed_since=issue if rng.random() < 0.03 else None,
                currency="EUR",
                exchange_rate=None,
                deleted=False,
                modified_at=None,
            )
        )
    return account, invoices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--invoices-per-account", type=int, default=10)
    args = parser.parse_args()
    rng = random.Random(42)
    policy = ScoringPolicy()
    portfolio = PortfolioContext(total_exposure=Decimal(500_000_000), account_count=args.accounts)
    scoring = generating = 0.0
    bands: dict[str, int] = {}
    for n in range(args.accounts):
        started = time.perf_counter()
        account, invoices = make_account(rng, n, args.invoices_per_account)
        middle = time.perf_counter()
        result = assess(account, invoices, portfolio, policy, AS_OF)
        scoring += time.perf_counter() - middle
        generating += middle - started
        bands[result.band] = bands.get(result.band, 0) + 1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = args.accounts * args.invoices_per_account
    print(f"accounts: {args.accounts:,}  invoices: {total:,}")
    print(
        f"scoring: {scoring:.1f} s  ({args.accounts / scoring:,.0f} accounts/s, {total / scoring:,.0f} invoices/s)"
    )
    print(f"generating synthetic data (not scoring): {generating:.1f} s")
    print(f"peak memory (ru_maxrss): {peak_mb:,.0f} MB")
    print("bands: " + ", ".join(f"{band} {count:,}" for band, count in sorted(bands.items())))


if __name__ == "__main__":
    main()
