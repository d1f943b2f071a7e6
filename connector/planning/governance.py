"""Credit governance policy: approval thresholds for limit changes and how to treat hand-edited fields."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from connector.models import StrictModel

ManualChangeMode = Literal["respect", "overwrite", "if_empty"]
_DEFAULT_MANUAL: dict[str, ManualChangeMode] = {"current_credit_limit": "respect"}


class GovernancePolicy(StrictModel):
    """Internal control: which limit changes need a human, and who wins when a person edited a field."""

    # Write the recommendation into the live credit limit field at all (else only the recommended field).
    apply_credit_limit: bool = True
    # A change above either threshold is held for approval (relative to the current limit).
    increase_relative: float = Field(default=0.20, ge=0)
    increase_absolute: Decimal = Field(default=Decimal(50000), ge=0)
    decrease_relative: float = Field(default=0.20, ge=0)
    decrease_absolute: Decimal = Field(default=Decimal(50000), ge=0)
    # Decreases forced by a hard rule (90+ days past due, write-off, insolvency) skip approval.
    auto_apply_hard_rule_decreases: bool = True
    # A first limit (the CRM field is empty) up to this amount is applied without approval.
    initial_limit_auto_max: Decimal = Field(default=Decimal(25000), ge=0)
    # When the CRM value differs from what we last wrote, a person changed it.
    manual_changes: dict[str, ManualChangeMode] = Field(
        default_factory=lambda: dict(_DEFAULT_MANUAL)
    )
    default_manual_change: ManualChangeMode = "respect"
    # Fields still written while the account's manual-override flag is set.
    override_flag_allows: tuple[str, ...] = ("risk_score", "risk_reasons", "risk_reviewed_at")
    # Score change (points) below which the score field is not rewritten, to avoid churn.
    score_write_tolerance: float = Field(default=0.0, ge=0)

    def manual_change_mode(self, field: str) -> ManualChangeMode:
        """How a hand-edited value of `field` is treated."""
        return self.manual_changes.get(field, self.default_manual_change)
