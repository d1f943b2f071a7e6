"""The portfolio report's stress scenarios as config TOML, shared by its integration test and benchmark.

`SECTOR_AND_COUNTRY` holds the issue's two kinds of scenario, a sector moving down one band
(Electronics) and a country defaulting at 40 % (DE); `EVERYONE_LATE` selects the whole book.
"""

from __future__ import annotations

SECTOR_AND_COUNTRY = """
[report.scenarios.electronics_down]
industry = "Electronics"
bands_down = 1

[report.scenarios.germany_defaults]
label = "Germany defaults at 40 %"
country = "DE"
default_rate = 0.4
"""
EVERYONE_LATE = """
[report.scenarios.everyone_60_days_late]
days_late = 60
"""

__all__ = ["EVERYONE_LATE", "SECTOR_AND_COUNTRY"]
