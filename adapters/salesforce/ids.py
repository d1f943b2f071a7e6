"""Salesforce record ids: the 15-character form people copy from the UI, as the 18-character API id."""

from __future__ import annotations

_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def _suffix(case_sensitive_id: str) -> str:
    # Each block of 5 characters gives one suffix character: bit i set when character i is an
    # upper-case letter (the documented checksum of the case-insensitive 18-character id).
    chars = []
    for start in (0, 5, 10):
        bits = sum(
            1 << i for i, ch in enumerate(case_sensitive_id[start : start + 5]) if ch.isupper()
        )
        chars.append(_SUFFIX[bits])
    return "".join(chars)


def normalise_record_id(text: str) -> str:
    """The 18-character id for a 15-character one, and an 18-character id in its exact case.

    The API always answers with 18 characters; the UI and reports show 15 (case-sensitive).
    An 18-character id pasted in the wrong case is repaired from its suffix. Anything else
    is returned as it is.

    Args:
        text: an id as a person typed or pasted it.

    Returns:
        The 18-character API id, or `text` unchanged when it is not a Salesforce id.
    """
    value = text.strip()
    if not value.isalnum() or not value.isascii():
        return text
    if len(value) == 15:
        return value + _suffix(value)
    if len(value) == 18:
        suffix = value[15:].upper()
        if any(ch not in _SUFFIX for ch in suffix):
            return text
        repaired = []
        for block, code in enumerate(suffix):
            bits = _SUFFIX.index(code)
            for offset, ch in enumerate(value[block * 5 : block * 5 + 5]):
                repaired.append(ch.upper() if bits >> offset & 1 else ch.lower())
        return "".join(repaired) + suffix
    return text
