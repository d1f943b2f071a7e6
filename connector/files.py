"""Why an admin's file (config, secrets, mapping, policy, key) cannot be read, and how to fix it.

The usual cause in a deployment is ownership: Docker Compose bind-mounts a file secret with the
host file's owner and mode, so a secrets file kept `chmod 600` by root is unreadable by the
image's user (uid 10001); a systemd unit runs as its own user. The message names the file, the
user this process runs as and the fix, instead of a crash.
"""

from __future__ import annotations

import os
from pathlib import Path


def _user() -> str:
    uid = os.getuid() if hasattr(os, "getuid") else None
    if uid is None:
        return "this user"
    try:
        import pwd

        name = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"
    return f"uid {uid} ({name})"


def unreadable(path: str | Path, exc: OSError, *, alternative: str = "") -> str:
    """Why a file could not be read, with what to do about it (the caller names the file first).

    Args:
        path: the file.
        exc: the error opening or reading it.
        alternative: another way to give the same values (e.g. environment variables).
    """
    reason = exc.strerror or type(exc).__name__
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    if not isinstance(exc, PermissionError):
        return f"cannot be read ({reason})"
    uid = str(os.getuid()) if hasattr(os, "getuid") else "USER"
    fix = (
        f"cannot be read ({reason}): this process runs as {_user()}; make the file readable by "
        f"that user and no one else, e.g. `chown {uid} {path} && chmod 600 {path}`"
    )
    return f"{fix}, or {alternative}" if alternative else fix
