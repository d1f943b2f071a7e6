"""Writing the report where readers find it: a file replaced atomically, never half written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str) -> int:
    """Write `text` as UTF-8 to `path` through a temporary file and a rename; returns the bytes.

    A browser or a web server reading the file while a run regenerates it sees the old report
    or the new one, never a truncated mix.
    """
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return len(data)


__all__ = ["write_atomically"]
