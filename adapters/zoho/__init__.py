"""Zoho CRM adapter (REST API v8, our own thin client; no Zoho SDK at run time)."""

from __future__ import annotations

from .adapter import ZohoAdapter

__all__ = ["ZohoAdapter"]
