"""Fxiaoke (纷享销客 / ShareCRM) adapter package."""

from __future__ import annotations

from .adapter import FxiaokeAdapter

__all__ = ["FxiaokeAdapter"]
