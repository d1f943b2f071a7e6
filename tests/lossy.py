"""A requests session whose chosen answers get lost: the CRM applied the call, the client never hears back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from adapters._transport import AbortableAdapter


class _LosingAdapter(AbortableAdapter):
    def __init__(self, lose: Callable[[requests.PreparedRequest], bool]) -> None:
        super().__init__()
        self.lose = lose
        self.lost = 0
        # (method, url, body) of every request sent, for tests that check what went out.
        self.sent: list[tuple[str, str, str]] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        body = request.body or b""
        text = body.decode() if isinstance(body, bytes) else str(body)
        self.sent.append((str(request.method), str(request.url), text))
        response = super().send(request, *args, **kwargs)
        if self.lose(request):
            self.lost += 1
            response.close()
            raise requests.ConnectionError("connection reset after the request was sent (test)")
        return response


def lossy_session(
    ca_bundle: str | None, lose: Callable[[requests.PreparedRequest], bool]
) -> tuple[requests.Session, _LosingAdapter]:
    """A session trusting the sandbox CA whose answers to requests matching `lose` are dropped."""
    session = requests.Session()
    session.verify = ca_bundle or True
    session.trust_env = False
    adapter = _LosingAdapter(lose)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, adapter


def is_task_create(request: requests.PreparedRequest) -> bool:
    """A call that creates tasks on Salesforce (sObject or collection), Zoho or Fxiaoke (a sales record)."""
    url = request.url or ""
    body = request.body or b""
    text = body.decode() if isinstance(body, bytes) else str(body)
    if request.method != "POST":
        return False
    if url.split("?")[0].endswith(("/sobjects/Task/", "/sobjects/Task", "/crm/v8/Tasks")):
        return True
    if url.split("?")[0].endswith("/cgi/crm/v2/data/create"):
        return "ActiveRecordObj" in text
    return url.split("?")[0].endswith("/composite/sobjects") and '"type": "Task"' in text
