"""The run's exchange rates: a refused permission falls back on [policy] rates, nothing else does."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connector.engine.money import read_rates
from connector.errors import AuthError, CrmError, PermissionRefused, RetriableCrmError
from connector.models import CrmRates
from connector.scoring.policy import ScoringPolicy


class _Currencies:
    """Just enough adapter for read_rates: a CurrencySource whose answer is given."""

    def __init__(self, answer: CrmRates | CrmError) -> None:
        self.answer = answer

    def currencies(self) -> CrmRates:
        if isinstance(self.answer, CrmError):
            raise self.answer
        return self.answer


POLICY = ScoringPolicy(home_currency="EUR", rates={"USD": Decimal("0.5")})


def test_the_crms_rates_are_used_when_readable() -> None:
    crm = CrmRates(reference="EUR", rates={"EUR": Decimal(1), "USD": Decimal("0.9")})
    book = read_rates(_Currencies(crm), POLICY)  # type: ignore[arg-type]
    assert book.home == "EUR"
    assert book.rates["USD"] == Decimal("0.9")


def test_a_refused_permission_falls_back_on_the_policy_rates_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = PermissionRefused("the token lacks the OAuth scope", code="OAUTH_SCOPE_MISMATCH")
    book = read_rates(_Currencies(refused), POLICY)  # type: ignore[arg-type]
    assert book.rates["USD"] == Decimal("0.5")
    assert "only [policy] rates convert amounts" in caplog.text


@pytest.mark.parametrize(
    "failure",
    [
        AuthError("access token refused", code="INVALID_TOKEN", status=401),
        RetriableCrmError("Zoho internal error", code="INTERNAL_ERROR", status=500),
    ],
    ids=["token refused", "server error"],
)
def test_any_other_failure_ends_the_run_instead_of_converting_at_other_rates(
    failure: CrmError,
) -> None:
    # Found by CHAOS_SEEDS=200 under load: a token that expired between re-auth and the call
    # made one run convert at [policy] rates, and the follow-up it opened kept that run's amount
    # (140,075 USD) where a healthy run says 129,699 EUR.
    with pytest.raises(type(failure)):
        read_rates(_Currencies(failure), POLICY)  # type: ignore[arg-type]
