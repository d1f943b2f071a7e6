"""Leaving a `with` block stops a server: one `__exit__` for the sandboxes and the test servers."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class StopsOnExit:
    """Something running that a `with` block stops on the way out, however the block ends.

    A subclass defines `stop()`. One that is not running yet when the block starts overrides
    `__enter__` to start it, and returns itself.
    """

    def stop(self) -> None:
        """Stop and release what is held; called again, it does nothing."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["StopsOnExit"]
