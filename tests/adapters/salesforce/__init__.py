"""Salesforce adapter tests (responses-mocked HTTP)."""
