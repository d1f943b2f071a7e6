"""crm-risk-connector: explainable credit-risk scores, limits and follow-up tasks synced into CRMs."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
