"""Fxiaoke (纷享销客) sandbox CRM: the Open API's wire protocol over a seeded tenant."""

from __future__ import annotations

from sandboxes.fxiaoke.emulator import FxiaokeEmulator, rating_value

__all__ = ["FxiaokeEmulator", "rating_value"]
