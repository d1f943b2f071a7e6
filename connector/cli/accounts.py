"""Accounts as people name them on the command line: by CRM id (in any form the CRM uses) or by name."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

from connector.engine.digests import APPROVALS
from connector.errors import UsageError

# How many candidates an ambiguous name lists.
SHOWN = 8


def resolve_account(
    store: Any, connection: str, text: str, *, normalise: Callable[[str], str]
) -> Any:
    """The one stored account `text` names: its CRM id, or its name (whole, or a unique part).

    Args:
        store: the state store.
        connection: the connection's name.
        text: what the user typed (`--account`, `explain ACCOUNT`).
        normalise: the adapter's id normaliser (Salesforce's 15-character ids).

    Returns:
        The StoredAccount.

    Raises:
        UsageError: no account matches, or a name matches several (they are listed with ids).
    """
    for candidate in dict.fromkeys((text.strip(), normalise(text))):
        found = store.get_account(connection, candidate)
        if found is not None:
            return found
    wanted = text.strip().casefold()
    accounts = list(store.iter_accounts(connection))
    exact = [stored for stored in accounts if stored.account.name.casefold() == wanted]
    partial = [stored for stored in accounts if wanted and wanted in stored.account.name.casefold()]
    for matches in (exact, partial):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            listed = "; ".join(f"{m.account.name} ({m.account.crm_id})" for m in matches[:SHOWN])
            more = f"; and {len(matches) - SHOWN} more" if len(matches) > SHOWN else ""
            raise UsageError(
                f"{text!r} matches {len(matches)} accounts of connection {connection}: "
                f"{listed}{more}; give the id or the whole name"
            )
    names = [stored.account.name for stored in accounts]
    close = difflib.get_close_matches(text.strip(), names, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(name) for name in close)}?" if close else ""
    raise UsageError(
        f"no account with the id or name {text!r} in the state store of connection "
        f"{connection} ({len(accounts)} accounts){hint}; give the CRM record id or the account "
        "name, and if the account is new in the CRM, run `crm-risk sync` first"
    )


def account_names(store: Any, connection: str, ids: Iterable[str]) -> dict[str, str]:
    """Names of the given accounts by id (an id the store does not know maps to itself)."""
    names: dict[str, str] = {}
    for account_id in dict.fromkeys(ids):
        if account_id.startswith("@"):
            # A digest task's pseudo-account: the credit manager's approvals, or one owner's.
            names[account_id] = (
                "(approvals digest)" if account_id == APPROVALS else f"(digest {account_id[1:]})"
            )
            continue
        stored = store.get_account(connection, account_id) if account_id else None
        names[account_id] = stored.account.name if stored is not None else account_id
    return names
