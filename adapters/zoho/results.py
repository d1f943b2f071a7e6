"""Zoho batch answers paired with the records sent: one WriteResult each, in the order sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connector.models import WriteResult

from .errors import record_outcome, write_reason


def match_results(
    expected: Sequence[str | None],
    elements: list[Any] | None,
    keys: Sequence[str] | None = None,
) -> list[WriteResult]:
    """Pair a batch answer with its requests by position, checking details.id when given."""
    keys = keys or [""] * len(expected)
    if elements is None or len(elements) != len(expected):
        got = "no" if elements is None else str(len(elements))
        return [
            WriteResult(
                crm_id=record_id,
                status="unknown",
                error_code="RESULT_MISMATCH",
                message=f"Zoho answered {got} results for {len(expected)} records",
                retriable=True,
                key=key,
            )
            for record_id, key in zip(expected, keys, strict=True)
        ]
    results = []
    for record_id, key, element in zip(expected, keys, elements, strict=True):
        outcome = record_outcome(element)
        if record_id is not None and outcome.record_id not in (None, record_id):
            results.append(
                WriteResult(
                    crm_id=record_id,
                    status="unknown",
                    error_code="RESULT_MISMATCH",
                    message="Zoho's result names another record",
                    retriable=True,
                    key=key,
                )
            )
        elif outcome.ok:
            results.append(WriteResult(crm_id=record_id or outcome.record_id, status="ok", key=key))
        else:
            results.append(
                WriteResult(
                    crm_id=record_id,
                    status="rejected",
                    error_code=outcome.code,
                    reason=write_reason(outcome.code, outcome.fields),
                    message=outcome.message,
                    fields=outcome.fields,
                    retriable=outcome.retriable,
                    key=key,
                )
            )
    return results


__all__ = ["match_results"]
