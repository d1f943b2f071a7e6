"""Review point 10 (issue 22) end to end on the Zoho sandbox: the cached access token is refused
(the sandbox's inspection API invalidates it) while the token endpoint is throttled (10 mints per
10 minutes, used up by another client of the same refresh token over plain HTTP). The run waits
with backoff, then exits 75 (retry later), never 77; the refused token is never sent again, not
by a later run inside the window either; once the window passes, the next run works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from connector.errors import RetriableCrmError
from tests.chaos._sandbox_sync import SandboxSync, write_config
from tests.chaos.conftest import start_sandbox

# Short waits so the test takes seconds: 0.2 s, 0.4 s, then give up before 1 s in all.
WAITS = {
    "token_throttle_wait_seconds": 0.2,
    "token_throttle_max_wait_seconds": 0.4,
    "token_wait_seconds": 1.0,
}


def _use_up_the_mint_window(sandbox: Any) -> int:
    """Mint through Zoho's token endpoint, as another client would, until it throttles."""
    session = requests.Session()
    session.verify = getattr(sandbox, "ca_bundle", None) or True
    session.trust_env = False
    form = {
        "grant_type": "refresh_token",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.refresh_token or "",
    }
    for minted in range(20):
        answer = session.post(sandbox.token_url, data=form, timeout=10)
        if answer.status_code == 400:
            assert "access_token" not in answer.json()
            return minted
        assert "access_token" in answer.json(), answer.text
    raise AssertionError("the token endpoint never throttled")


def _api_calls(sandbox: Any) -> int:
    calls = sandbox.server.calls
    return sum(n for (_, path), n in calls.items() if path.startswith("/crm/"))


def _token_calls(sandbox: Any) -> int:
    calls = sandbox.server.calls
    return sum(n for (_, path), n in calls.items() if path.startswith("/oauth/v2/token"))


def test_point10_a_refused_token_under_a_throttled_endpoint_exits_75_and_is_never_resent(
    tmp_path: Path,
) -> None:
    with start_sandbox("zoho") as sandbox:
        sync = SandboxSync(sandbox, write_config(sandbox, tmp_path, options=WAITS))
        with sync.store() as store:
            assert sync.run(store).status == "succeeded"  # mints and caches a token in the store
            sandbox.emulator.expire_tokens()  # the cached token is now refused (401)
            assert _use_up_the_mint_window(sandbox) <= 10
            sandbox.server.reset_calls()

            with pytest.raises(RetriableCrmError) as first:
                sync.run(store, sleep=lambda seconds: None)
            assert first.value.exit_code == 75
            assert "throttled" in str(first.value)
            assert _api_calls(sandbox) == 1, "one call with the cached token, refused"
            assert _token_calls(sandbox) >= 2, "the endpoint was asked again after a wait"

            sandbox.server.reset_calls()
            with pytest.raises(RetriableCrmError) as second:
                sync.run(store)
            assert second.value.exit_code == 75
            assert _api_calls(sandbox) == 0, "the refused token is not adopted again"

            sandbox.emulator.pass_token_window()
            assert sync.run(store).status == "succeeded"
