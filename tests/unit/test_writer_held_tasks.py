"""An account whose new tasks wait for the end of a capped run is kept small, and finishes the same."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from connector.engine.writer_state import HeldCreate, PendingAccount
from connector.models import Account, Invoice, InvoiceStatus, TaskAction
from connector.planning.governance import GovernancePolicy
from connector.planning.planner import TaskPlan, plan_account
from connector.scoring import PortfolioContext, assess
from connector.scoring.policy import ScoringPolicy

AS_OF = date(2025, 6, 30)
FIELDS = [
    "risk_band",
    "risk_score",
    "recommended_credit_limit",
    "current_credit_limit",
    "risk_reasons",
]


def _pending() -> PendingAccount:
    """A late payer: its limit cut held for approval, a band a person edited, a downgrade task waiting."""
    account = Account(
        crm_id="acc-1",
        name="Acme GmbH",
        currency="EUR",
        created_at=datetime(2022, 1, 1, tzinfo=UTC),
        current_credit_limit=Decimal(500_000),
    )
    invoices = [
        Invoice(
            crm_id=f"i{n}",
            account_id="acc-1",
            issue_date=AS_OF - timedelta(days=40 + 30 * n),
            due_date=AS_OF - timedelta(days=10 + 30 * n),
            amount=Decimal(40_000),
            open_amount=Decimal(40_000) if n < 2 else Decimal(0),
            paid_date=None if n < 2 else AS_OF - timedelta(days=30 * n - 25),
            status=InvoiceStatus.OPEN if n < 2 else InvoiceStatus.PAID,
        )
        for n in range(12)
    ]
    assessment = assess(account, invoices, PortfolioContext(), ScoringPolicy(), AS_OF)
    plan = plan_account(
        account,
        assessment,
        crm_values={"risk_band": "A", "current_credit_limit": Decimal(500_000)},
        last_written={"risk_band": "B"},
        write_fields=FIELDS,
        write_modes={name: "always" for name in FIELDS},
        max_lengths={},
        governance=GovernancePolicy(),
        now=datetime(2025, 6, 30, 12, tzinfo=UTC),
    )
    create = TaskAction(
        action="create",
        account_id="acc-1",
        rule="band_downgrade",
        dedupe_key="c:acc-1:band_downgrade:1",
        subject="Risk rating of Acme GmbH fell",
        description="Score 38 (was 71). " * 20,
    )
    return PendingAccount(
        account_id="acc-1",
        assessment=assessment,
        exposure=Decimal(160_000),
        plan=plan,
        tasks=TaskPlan(actions=(create,), levels={"band_downgrade": 1}),
        ledger={},
        baseline_meta={"band_downgrade": "A"},
        name="Acme GmbH",
    )


def test_a_waiting_account_is_kept_as_a_fraction_of_its_plan_and_assessment() -> None:
    # Memory the Python objects take, as the writer would hold them (not their pickled size).
    _pending().finishing(pack=True)  # imports and caches warmed outside the measurement
    tracemalloc.start()
    try:
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        pending = _pending()
        gc.collect()
        whole = tracemalloc.get_traced_memory()[0] - start
        waiting = pending.finishing(pack=True)
        gc.collect()
        compact = tracemalloc.get_traced_memory()[0] - start - whole
    finally:
        tracemalloc.stop()
    assert isinstance(waiting.assessment, bytes)
    assert compact * 5 < whole, f"{compact} bytes kept for an account of {whole}"


def test_a_waiting_account_finishes_with_the_assessment_the_store_would_have_kept() -> None:
    pending = _pending()
    waiting = pending.finishing(pack=True)
    # The store keeps `model_dump_json()`: the unpacked assessment gives the same bytes.
    assert waiting.risk_assessment().model_dump_json() == pending.assessment.model_dump_json()
    assert (waiting.score, waiting.band) == (pending.assessment.score, pending.assessment.band)


def test_a_waiting_account_keeps_every_figure_finishing_reports() -> None:
    pending = _pending()
    plan = pending.plan
    for pack in (True, False):
        item = pending.finishing(pack=pack)
        for action in ("unchanged", "frozen", "held", "conflict", "write"):
            assert item.count(action) == plan.count(action)
        assert item.kept_back == tuple(
            decision for decision in plan.decisions if decision.action in ("conflict", "held")
        )
        assert item.baseline == plan.baseline
        assert item.levels == pending.tasks.levels
        assert item.baseline_meta == pending.baseline_meta
    assert {decision.action for decision in plan.decisions} >= {"held", "conflict", "write"}
    assert pending.finishing(pack=False).assessment is pending.assessment


def test_a_waiting_create_is_sent_as_it_was_queued() -> None:
    task = (
        _pending()
        .tasks.actions[0]
        .model_copy(
            update={"owner_id": "005-owner", "due_date": date(2025, 7, 7), "cause": "fell from A"}
        )
    )
    held = HeldCreate.of(task)
    assert held.task() == task
    assert held.task().model_dump_json() == task.model_dump_json()
    # What the caps order by and a deferral lists, without unpacking.
    assert (held.account_id, held.rule, held.owner_id, held.priority, held.subject) == (
        task.account_id,
        task.rule,
        task.owner_id,
        task.priority,
        task.subject,
    )
    assert len(held.packed) < len(task.model_dump_json())
