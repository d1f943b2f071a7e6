"""The credit manager's portfolio report: figures from the state store, as HTML or JSON."""

from __future__ import annotations

from connector.report.build import build_figures
from connector.report.figures import Figures
from connector.report.html import render_html

__all__ = ["Figures", "build_figures", "render_html"]
