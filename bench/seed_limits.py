"""Bands and recommended limits on the sandbox seed: model v1 against the shipped default (v2).

Run: .venv/bin/python bench/seed_limits.py [--accounts 60] [--seed 7] [--json FILE]

Scores the demo portfolio (`sandboxes/seed.py`, the data `crm-risk demo` syncs) directly with
`connector.scoring.assess`, once with the v1 policy and once with the current defaults, and
prints the band distribution, bands by payment personality, and how the recommended limits
move. Limits are compared account by account in the account's own currency (never summed
across currencies).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.models import Account, Invoice, InvoiceStatus
from connector.scoring import assess, build_portfolio_context, open_exposure
from connector.scoring.policy import ScoringPolicy
from sandboxes.seed import generate

V1 = ScoringPolicy.model_validate(
    {
        "model_version": "v1",
        "windows": {"grace_days": 5, "early_payment": "floor", "early_credit_days": None},
        "curves": {
            "dbt": [[0, 0], [15, 30], [30, 60], [60, 85], [90, 100]],
            "late_share": [[0, 0], [0.5, 100]],
            "disputes": [[0, 0], [0.5, 100]],
        },
        "weights": {"dbt": 25, "late_share": 10, "trend": 10, "disputes": 5, "thin_file": 5},
        "thin_file": {"no_history_score": 50},
        "probability": {"table": []},
    }
)


def canonical(portfolio: Any) -> list[tuple[Account, list[Invoice]]]:
    """The seed as canonical records (what the mapping produces from either sandbox)."""
    invoices: dict[str, list[Invoice]] = {}
    for inv in portfolio.invoices:
        invoices.setdefault(inv.account_key, []).append(
            Invoice(
                crm_id=inv.key,
                account_id=inv.account_key,
                number=inv.number,
                issue_date=inv.issue_date,
                due_date=inv.due_date,
                amount=inv.amount,
                open_amount=inv.open_amount,
                paid_date=inv.paid_date,
                status=InvoiceStatus(inv.status),
            )
        )
    out = []
    for acc in portfolio.accounts:
        account = Account(
            crm_id=acc.key,
            name=acc.name,
            industry=acc.industry,
            country=acc.country,
            currency=acc.currency,
            annual_revenue=acc.annual_revenue,
            employees=acc.employees,
            created_at=acc.created_at,
            payment_terms_days=acc.payment_terms_days,
            current_credit_limit=acc.credit_limit,
            external_score=Decimal(acc.external_score) if acc.external_score is not None else None,
            external_score_date=portfolio.as_of if acc.external_score is not None else None,
            insured_limit=acc.insured_limit,
        )
        out.append((account, invoices.get(acc.key, [])))
    return out


def score(
    book: list[tuple[Account, list[Invoice]]], policy: ScoringPolicy, as_of: Any
) -> list[Any]:
    context = build_portfolio_context(
        (account, open_exposure(account, invoices, policy, as_of)) for account, invoices in book
    )
    return [assess(account, invoices, context, policy, as_of) for account, invoices in book]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    portfolio = generate(args.accounts, args.seed)
    personality = {acc.key: acc.personality for acc in portfolio.accounts}
    book = canonical(portfolio)
    _ = datetime.combine(portfolio.as_of, time(), UTC)
    before = score(book, V1, portfolio.as_of)
    after = score(book, ScoringPolicy(), portfolio.as_of)
    figures: dict[str, Any] = {"accounts": len(book), "seed": args.seed}
    for name, results in (("v1", before), ("v2", after)):
        figures[name] = {"bands": dict(sorted(Counter(r.band for r in results).items()))}
    by_personality: dict[str, dict[str, Counter[str]]] = {}
    for (account, _), old, new in zip(book, before, after, strict=True):
        kind = personality[account.crm_id]
        by_personality.setdefault(kind, {"v1": Counter(), "v2": Counter()})
        by_personality[kind]["v1"][old.band] += 1
        by_personality[kind]["v2"][new.band] += 1
    figures["by_personality"] = {
        kind: {k: dict(sorted(v.items())) for k, v in counts.items()}
        for kind, counts in sorted(by_personality.items())
    }
    ratios = []
    moves = Counter()
    for old, new in zip(before, after, strict=True):
        a, b = old.recommended_credit_limit, new.recommended_credit_limit
        if a is None or b is None:
            moves["no recommendation"] += 1
            continue
        if a == b:
            moves["same"] += 1
        elif b > a:
            moves["higher"] += 1
        else:
            moves["lower"] += 1
        if a > 0:
            ratios.append(float(b / a))
    figures["limits"] = {
        "moves": dict(moves),
        "median_ratio_v2_to_v1": round(statistics.median(ratios), 3) if ratios else None,
        "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)]
        if len(ratios) > 1
        else None,
    }
    figures["probability_late_v2"] = {
        band: round(
            statistics.mean(
                r.probability_late
                for r in after
                if r.band == band and r.probability_late is not None
            ),
            3,
        )
        for band in sorted({r.band for r in after})
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
