"""Fxiaoke sandbox tokens: both token styles, their renewal window and rate limits, call authentication, the metered quota."""

from __future__ import annotations

import secrets
import time
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sandboxes.fxiaoke.protocol import (
    CALL_LIMIT,
    CHINA,
    DAILY_QUOTA_USED,
    EMPLOYEE_NOT_FOUND,
    INVALID_PARAMETER,
    MISSING_CORP_ID,
    MISSING_CORP_TOKEN,
    MISSING_OPEN_USER,
    MISSING_PARAMETER,
    NO_API_PACK,
    NO_PERMISSION,
    OPEN_USER_NOT_FOUND,
    SAME_TOKEN_FOR_S,
    TOKEN_EXPIRED,
    TOKEN_LIFETIME_S,
    TOKEN_MISSING,
    WRONG_APP_SECRET,
    WRONG_PERMANENT_CODE,
    ApiError,
    Token,
)
from sandboxes.server import Request

if TYPE_CHECKING:
    from sandboxes.fxiaoke.emulator import FxiaokeEmulator


class TokenDesk:
    """Part of FxiaokeEmulator (emulator.py), holding no state of its own."""

    def __init__(self, emulator: FxiaokeEmulator) -> None:
        self.emulator = emulator

    def token(self, body: dict[str, Any], style: str, request: Request) -> dict[str, Any]:
        if not self.emulator._token_lock.acquire(blocking=False):
            with self.emulator._lock:
                self.emulator.token_refusals += 1
            # [P] the token endpoint takes no concurrent calls; the refusal code is not published [A].
            raise ApiError(CALL_LIMIT, "获取token接口不允许并发调用", "concurrent token calls")
        try:
            # Held a moment, as a real round trip is: a concurrent caller would collide with it.
            time.sleep(0.02)
            return self.issue(body, style, request.faults.expire_tokens_after_s)
        finally:
            self.emulator._token_lock.release()

    def issue(self, body: dict[str, Any], style: str, expire_after: float | None) -> dict[str, Any]:
        with self.emulator._lock:
            self.emulator.token_calls += 1
            now = self.emulator.now()
            while self.emulator._token_times and now - self.emulator._token_times[0] >= 60:
                self.emulator._token_times.popleft()
            limit = self.emulator.token_calls_per_minute
            if limit is not None and len(self.emulator._token_times) >= limit:
                self.emulator.token_refusals += 1
                raise ApiError(
                    CALL_LIMIT, "获取token接口调用超过每分钟10次", "token calls over 10 a minute"
                )
            self.emulator._token_times.append(now)
            for key in ("appId", "appSecret", "permanentCode"):
                if not body.get(key):
                    raise ApiError(MISSING_PARAMETER, f"参数{key}缺失", f"{key} is missing")
            if style == "bearer" and body.get("grantType") != "app_secret":
                raise ApiError(INVALID_PARAMETER, "grantType不合法", "grantType must be app_secret")
            if (
                body["appId"] != self.emulator.client_id
                or body["appSecret"] != self.emulator.client_secret
            ):
                raise ApiError(WRONG_APP_SECRET)
            if body["permanentCode"] != self.emulator.refresh_token:
                raise ApiError(WRONG_PERMANENT_CODE)
            token = self.emulator._current.get(style)
            # A token killed early by the expire_tokens_after_s fault is not handed out again.
            dead_at = token.expires_at if token is not None else 0.0
            if token is not None and expire_after is not None:
                dead_at = min(dead_at, token.issued_at + expire_after)
            if token is None or now - token.issued_at >= SAME_TOKEN_FOR_S or now >= dead_at:
                lifetime = float(TOKEN_LIFETIME_S)
                token = Token(secrets.token_hex(16).upper(), style, now, now + lifetime)
                self.emulator._tokens[token.value] = token
                self.emulator._current[style] = token
            expires_in = max(0, int(token.expires_at - now))
        if style == "bearer":
            return {
                "accessToken": token.value,
                "expiresIn": expires_in,
                "appId": self.emulator.client_id,
                "ea": self.emulator.ea,
                "openUserId": self.emulator.corp_id,
            }
        return {
            "corpAccessToken": token.value,
            "corpId": self.emulator.corp_id,
            "expiresIn": expires_in,
        }

    def authenticate(self, request: Request, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        header = request.headers.get("authorization", "")
        expire_after = request.faults.expire_tokens_after_s
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise ApiError(TOKEN_MISSING)
            token = self.valid_token(value.strip(), "bearer", expire_after)
            ea = request.headers.get("x-fs-ea")
            user_id = request.headers.get("x-fs-userid")
            if not ea:
                raise ApiError(MISSING_PARAMETER, "请求头x-fs-ea缺失", "header x-fs-ea is missing")
            if ea != self.emulator.ea:
                raise ApiError(
                    NO_PERMISSION, "企业账号与token不匹配", "x-fs-ea does not match the token"
                )
            if not user_id:
                raise ApiError(
                    MISSING_PARAMETER, "请求头x-fs-userid缺失", "header x-fs-userid is missing"
                )
            del token
            return "bearer", self.employee(user_id, by="id")
        body_token = body.get("corpAccessToken")
        if not body_token:
            raise ApiError(MISSING_CORP_TOKEN)
        self.valid_token(str(body_token), "legacy", expire_after)
        if not body.get("corpId"):
            raise ApiError(MISSING_CORP_ID)
        if body["corpId"] != self.emulator.corp_id:
            raise ApiError(NO_PERMISSION, "corpId与token不匹配", "corpId does not match the token")
        open_user = body.get("currentOpenUserId")
        if not open_user:
            raise ApiError(MISSING_OPEN_USER)
        return "legacy", self.employee(str(open_user), by="openUserId")

    def valid_token(self, value: str, style: str, expire_after: float | None) -> Token:
        with self.emulator._lock:
            token = self.emulator._tokens.get(value)
            now = self.emulator.now()
            if token is None or token.style != style:
                raise ApiError(TOKEN_EXPIRED)
            deadline = token.expires_at
            if expire_after is not None:
                deadline = min(deadline, token.issued_at + expire_after)
            if now >= deadline:
                raise ApiError(TOKEN_EXPIRED)
            return token

    def employee(self, value: str, *, by: str) -> dict[str, Any]:
        for employee in self.emulator.employees:
            if employee[by] == value:
                if employee["status"] != 0:
                    raise ApiError(NO_PERMISSION, "员工已停用", f"employee {value} is stopped")
                return employee
        # Global return codes: 20012 openUserId not found, 30027 employee does not exist.
        code = OPEN_USER_NOT_FOUND if by == "openUserId" else EMPLOYEE_NOT_FOUND
        raise ApiError(code, "员工不存在", f"no employee {value}")

    def meter(self, path: str) -> None:
        """Count the call against the daily pack and the per-interface window (reference §4)."""
        with self.emulator._lock:
            if not self.emulator.api_pack:
                raise ApiError(NO_API_PACK)
            today = datetime.fromtimestamp(self.emulator.now(), CHINA).date()
            if self.emulator._quota_day != today:  # [A] the daily cap resets at 00:00 China time
                self.emulator._quota_day = today
                self.emulator.api_calls_today = 0
            if (
                self.emulator.daily_api_limit is not None
                and self.emulator.api_calls_today >= self.emulator.daily_api_limit
            ):
                raise ApiError(DAILY_QUOTA_USED)
            if self.emulator.interface_limit is not None:
                window = self.emulator._interface_times.setdefault(path, deque())
                now = self.emulator.now()
                while window and now - window[0] >= 20:
                    window.popleft()
                if len(window) >= self.emulator.interface_limit:
                    raise ApiError(CALL_LIMIT)
                window.append(now)
            self.emulator.api_calls_today += 1
