"""Which text encoding a CSV file is in: UTF-8 (with or without BOM), UTF-16 with BOM, GB18030.

Detected in that order and checked over the whole file (in 1 MiB chunks, so a 50 MB file costs no
memory), so a bad byte is named by line and offset before any row is read.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from connector.errors import DataError, DataProblem

_CHUNK = 1 << 20


def _scan(path: Path, codec: str, skip: int) -> tuple[int, int] | None:
    """Decode the whole file in chunks; None if clean, else (line, byte offset) of the failure."""
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    lines = 1
    offset = 0
    with path.open("rb") as handle:
        handle.seek(skip)
        while True:
            chunk = handle.read(_CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                position = max(0, min(len(chunk), exc.start))
                return lines + chunk.count(b"\n", 0, position), skip + offset + position
            if not chunk:
                return None
            lines += chunk.count(b"\n")
            offset += len(chunk)


def detect_encoding(path: Path) -> tuple[str, str]:
    """The codec to read a CSV with and its name for the report.

    Args:
        path: the file.

    Returns:
        (Python codec, label) for UTF-8 (with or without BOM), UTF-16 with BOM or GB18030.

    Raises:
        DataError: the file cannot be read, holds binary data, or decodes in none of them.
    """
    source = str(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(_CHUNK)
    except OSError as exc:
        raise DataError(
            source, [DataProblem(None, "", f"cannot read the file: {exc.strerror}")]
        ) from None
    if head.startswith(codecs.BOM_UTF8):
        codec, label, skip = "utf-8", "UTF-8 with BOM", 3
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec, label, skip = "utf-16", "UTF-16 with BOM", 0
    else:
        nul = head.find(b"\x00")
        if nul >= 0:
            line = head.count(b"\n", 0, nul) + 1
            raise DataError(
                source,
                [
                    DataProblem(
                        line, "", f"binary data (a NUL byte at byte {nul}): not a CSV text file"
                    )
                ],
                hint="Export the history as CSV (UTF-8); a UTF-16 file needs its byte-order mark.",
            )
        codec, label, skip = "utf-8", "UTF-8", 0
    failure = _scan(path, codec, skip)
    if failure is None:
        return ("utf-8-sig" if skip == 3 else codec), label
    if codec == "utf-8" and skip == 0 and _scan(path, "gb18030", 0) is None:
        return "gb18030", "GB18030"
    line, offset = failure
    raise DataError(
        source,
        [DataProblem(line, "", f"bytes that are not valid {label} text (byte {offset})")],
        hint="Save the file as UTF-8 CSV (UTF-16 needs a byte-order mark; GB18030/GBK is also read).",
    )
