"""The person's client of tests/crm_user.py tells a new CRM's author what to add, by name."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.crm_user import crm_user


def test_a_crm_without_a_persons_client_is_named_with_the_file_to_edit() -> None:
    with pytest.raises(NotImplementedError) as raised:
        crm_user(SimpleNamespace(crm="acmecrm"))
    message = str(raised.value)
    assert "'acmecrm'" in message
    assert "tests/crm_user.py" in message
