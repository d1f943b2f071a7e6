"""The replay's worker process: start it on part of a history, read its rated decisions back."""

from __future__ import annotations

import contextlib
import logging
import pickle
import subprocess
import sys
import threading
from array import array
from pathlib import Path
from typing import IO, Any

from connector.scoring.history import History
from connector.scoring.policy import ScoringPolicy
from connector.scoring.rating import FACTORS
from connector.scoring.replayed import Rated

# What a worker is sent of its part of the history.
PART_COLUMNS = ("customer", "issue", "due", "paid", "amount", "flags")

log = logging.getLogger("crm_risk.backtest")


class Worker:
    """A Python process rating part of a history's decisions over pipes.

    It runs `code` (`backtest._WORKER_CODE`: `backtest._serve_replay`), which reads the policy
    and the part's `PART_COLUMNS` from stdin and answers with `Rated.buffers`.
    """

    def __init__(self, process: subprocess.Popen[bytes], feeding: threading.Thread) -> None:
        self.process = process
        self.feeding = feeding

    @classmethod
    def start(cls, part: History, policy: ScoringPolicy, code: str) -> Worker | None:
        """Start a worker running `code` on `part`; None (logged) when no process can start."""
        request = pickle.dumps(
            (policy, {name: getattr(part, name) for name in PART_COLUMNS}),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        # The worker runs this very copy of the package (installed or a checkout): its folder
        # goes first on the worker's path unless the path has it already.
        top = str(Path(__file__).resolve().parents[2])
        try:
            process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed code
                [sys.executable, "-c", code, top],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError as exc:
            log.warning("backtest: no worker process (%s); replaying on one core", exc)
            return None
        stdin = process.stdin
        assert stdin is not None

        def feed() -> None:
            # From a thread: the worker reads only once it has imported, and this process
            # has its own part to rate meanwhile.
            with contextlib.suppress(OSError), stdin:
                stdin.write(request)

        feeding = threading.Thread(target=feed, name="backtest-worker-feed", daemon=True)
        feeding.start()
        return cls(process, feeding)

    def result(self, rows: int, patience: float) -> Rated | None:
        """The worker's rated decisions for its `rows` rows, or None (logged) if it failed.

        A worker that has not answered within `patience` seconds is stopped (and has failed).
        """
        stdout = self.process.stdout
        assert stdout is not None
        rated: Rated | None = None
        failure = ""
        deadline = threading.Timer(patience, self.process.kill)
        deadline.start()
        try:
            with stdout:
                count = array("q", bytes(8))
                read_into(stdout, count)
                decided = count[0]
                rated = Rated(
                    array("q", bytes(8 * rows)),
                    array("d", bytes(8 * decided)),
                    bytearray(decided),
                    array("d", bytes(8 * decided)),
                    bytearray(decided),
                    [array("d", bytes(8 * decided)) for _ in FACTORS],
                )
                for column in rated.buffers():
                    read_into(stdout, column)
        except (EOFError, OSError, MemoryError, ValueError) as exc:
            rated, failure = None, f"{type(exc).__name__}: {exc}"
        finally:
            deadline.cancel()
        self.feeding.join()
        code = self.process.wait()
        if code == 0 and rated is not None:
            return rated
        log.warning(
            "backtest: the worker process failed (exit %s%s); replaying its part here",
            code,
            f", {failure}" if failure else "",
        )
        return None


def read_into(stream: IO[bytes], buffer: array[Any] | bytearray) -> None:
    """Fill `buffer` from `stream` (EOFError if the stream ends first)."""
    view = memoryview(buffer).cast("B")
    while view:
        got = stream.readinto(view)  # type: ignore[attr-defined]
        if not got:
            raise EOFError("the worker's answer ended early")
        view = view[got:]
