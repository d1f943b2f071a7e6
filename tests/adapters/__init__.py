"""Adapter tests with mocked HTTP (responses), one folder per CRM."""
