"""Fxiaoke sandbox wire constants: the errorCode table and its messages, token lifetimes, paths, the refusal a call answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, timezone
from decimal import Decimal

CHINA = timezone(timedelta(hours=8))
TOKEN_LIFETIME_S = 7200
SAME_TOKEN_FOR_S = 6600
TOKEN_CALLS_PER_MINUTE = 10
INTERFACE_CALLS_PER_20_S = 100
SYSTEM_USER = "-10000"
CENT = Decimal("0.01")
CRM_PREFIX = "/cgi/crm/v2/"
# Keys of object_data that name the record rather than set a field (the create examples of the
# manual send object_describe_api_name next to dataObjectApiName).
ENVELOPE_KEYS = frozenset({"_id", "dataObjectApiName", "object_describe_api_name"})
CUSTOM_PREFIX = "/cgi/crm/custom/v2/"

# errorCode table (reference §3; [P] codes.html as copied by API Evangelist, [F] where marked).
OK = 0
SYSTEM_BUSY = -1
MISSING_PARAMETER = 10006
OFFSET_OUT_OF_RANGE = 10013  # [F] deep-paging.html
CALL_LIMIT = 14001
INVALID_PARAMETER = 15002
NO_PERMISSION = 15003
TOKEN_MISSING = 20005  # "accessToken does not exist or has expired"
MISSING_CORP_TOKEN = 10013  # the global table's "missing corpAccessToken" (10013 twice over)
MISSING_CORP_ID = 10014
MISSING_OPEN_USER = 10010
OPEN_USER_NOT_FOUND = 20012
EMPLOYEE_NOT_FOUND = 30027
WRONG_APP_SECRET = 20006
WRONG_PERMANENT_CODE = 20015
TOKEN_EXPIRED = 20016
DAILY_QUOTA_USED = 30002
NO_API_PACK = 30003
PER_SECOND_LIMIT = 30004
SERVICE_TIMEOUT = 50009

MESSAGES = {
    SYSTEM_BUSY: ("系统繁忙", "system busy, please retry"),
    CALL_LIMIT: ("接口调用超过限制", "call limit exceeded"),
    TOKEN_MISSING: ("accessToken不存在或者已经过期", "access token missing or expired"),
    MISSING_CORP_TOKEN: ("缺少参数corpAccessToken", "corpAccessToken is missing"),
    MISSING_CORP_ID: ("缺少参数corpId", "corpId is missing"),
    MISSING_OPEN_USER: ("缺少参数openUserId", "currentOpenUserId is missing"),
    WRONG_APP_SECRET: ("appId或appSecret错误", "wrong appId or appSecret"),
    WRONG_PERMANENT_CODE: ("permanentCode错误", "wrong permanentCode"),
    TOKEN_EXPIRED: ("corpAccessToken已过期", "access token expired or invalid"),
    DAILY_QUOTA_USED: ("今日调用次数已用完", "daily quota used up; resets at 00:00"),
    NO_API_PACK: ("企业未购买OpenAPI资源包", "no Open API pack purchased"),
    PER_SECOND_LIMIT: ("每秒调用次数超过限制", "per-second rate exceeded"),
    SERVICE_TIMEOUT: ("服务超时", "service timeout"),
}


class ApiError(Exception):
    """A call the API refuses: the errorCode, message and description it answers with."""

    def __init__(
        self, code: int, message: str | None = None, description: str | None = None
    ) -> None:
        default = MESSAGES.get(code, ("参数错误", "invalid parameter"))
        super().__init__(message or default[0])
        self.code = code
        self.message = message or default[0]
        self.description = description or default[1]


@dataclass
class Token:
    """An access token the tenant issued."""

    value: str
    style: str  # "bearer" or "legacy"
    issued_at: float
    expires_at: float
