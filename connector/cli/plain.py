"""Rich output that shows user text as it is: CRM names and values are never read as markup.

An account called `[/]`, `[bold]` or `[link=https://…]` is text a person typed into the CRM;
handed to Rich as a plain string it is parsed as console markup and either crashes the command
(`MarkupError: closing tag '[/]' … has nothing to close`) or changes what is shown. Every table
the CLI prints is a `PlainTable` (cells, title and caption are literal `Text`), and the CLI's
consoles are made with `plain_console` (markup and emoji codes off), so a string printed
anywhere is shown as it is; styling is done with `Text` and `style=`, never with markup.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, RenderableType
from rich.table import Column, Table
from rich.text import Text


def literal(value: Any) -> RenderableType:
    """A cell or title: strings become literal Text; other renderables pass through."""
    if isinstance(value, str):
        return Text(value)
    return value  # type: ignore[no-any-return]


class PlainTable(Table):
    """A rich Table whose string cells, title and caption are never parsed as markup."""

    def __init__(
        self,
        *headers: Column | str,
        title: str | Text | None = None,
        caption: str | Text | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            *(Column(header=Text(h)) if isinstance(h, str) else h for h in headers),
            title=Text(title) if isinstance(title, str) else title,
            caption=Text(caption) if isinstance(caption, str) else caption,
            **kwargs,
        )

    def add_column(self, header: Any = "", *args: Any, **kwargs: Any) -> None:
        super().add_column(literal(header), *args, **kwargs)

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*(None if r is None else literal(r) for r in renderables), **kwargs)


def plain_console(*, stderr: bool = False) -> Console:
    """A console that prints strings as they are (no markup, no :emoji: codes, no highlighting)."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False)


__all__ = ["PlainTable", "literal", "plain_console"]
