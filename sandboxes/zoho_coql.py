"""COQL subset of the Zoho sandbox: tokenizer, parser and the documented limits (reference §3.2).

Supported: `select <cols> from <Module> [where <criteria>] [order by <col> [asc|desc], ...]
[limit N [offset M] | limit M, N]`, criteria with = != <> < > <= >= `in`, `not in`,
`is null`, `is not null`, `between`, `like`, `not like`, and `and`/`or` bracketed in pairs
as COQL demands: `(A and (B and C))`; an unbracketed `A and B and C` is a syntax error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

_Item = TypeVar("_Item")

# https://www.zoho.com/crm/developer/docs/api/v8/COQL-Limitations.html
MAX_COLUMNS = 50
MAX_CRITERIA = 25
MAX_IN_VALUES = 50
MAX_ORDER_BY = 10
MAX_LIMIT = 2000
DEFAULT_LIMIT = 200
MAX_REACH = 100_000

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<string>'(?:[^'\\]|\\.)*')"
    r"|(?P<number>-?\d+(?:\.\d+)?)(?![A-Za-z_])"
    r"|(?P<op><=|>=|!=|<>|=|<|>)"
    r"|(?P<punct>[(),])"
    r"|(?P<name>[A-Za-z_$][A-Za-z0-9_$.]*)"
    r"|(?P<other>\S)"
    r")"
)
_KEYWORDS = frozenset(
    {
        "select",
        "from",
        "where",
        "order",
        "by",
        "asc",
        "desc",
        "limit",
        "offset",
        "and",
        "or",
        "not",
        "in",
        "is",
        "null",
        "like",
        "between",
        "true",
        "false",
    }
)


class CoqlError(Exception):
    """A query Zoho refuses: HTTP 400 with code SYNTAX_ERROR, INVALID_QUERY or LIMIT_EXCEEDED."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass(frozen=True)
class Token:
    """One lexical token with its 1-based column."""

    kind: str
    text: str
    column: int

    @property
    def word(self) -> str:
        """Lower-cased text, for keyword checks."""
        return self.text.lower()


@dataclass(frozen=True)
class Condition:
    """`column <op> values`; op is one of = != < > <= >= in not_in is_null is_not_null between
    not_between like not_like."""

    column: str
    op: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class BoolOp:
    """`left and|or right`."""

    op: str
    left: Condition | BoolOp
    right: Condition | BoolOp


Criteria = Condition | BoolOp


@dataclass(frozen=True)
class Query:
    """A parsed select query."""

    columns: tuple[str, ...]
    module: str
    where: Criteria | None
    order_by: tuple[tuple[str, bool], ...]  # (column, descending)
    limit: int
    offset: int


def tokenize(text: str) -> list[Token]:
    """Split a query into tokens (strings keep their quotes)."""
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            break
        kind = match.lastgroup or "other"
        value = match.group(kind)
        tokens.append(Token(kind, value, match.start(kind) + 1))
        position = match.end()
    return tokens


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.criteria = 0

    def peek(self, offset: int = 0) -> Token | None:
        index = self.index + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def comma_list(self, item: Callable[[], _Item]) -> list[_Item]:
        """One or more items separated by commas."""
        items = [item()]
        while (token := self.peek()) is not None and token.text == ",":
            self.index += 1
            items.append(item())
        return items

    def error(self, token: Token | None = None) -> CoqlError:
        token = token or self.peek()
        if token is None:
            last = self.tokens[-1] if self.tokens else Token("other", "", 1)
            return CoqlError(
                "SYNTAX_ERROR",
                "error in query",
                {"line": 1, "column": last.column + len(last.text), "near": last.text},
            )
        return CoqlError(
            "SYNTAX_ERROR",
            "error in query",
            {"line": 1, "column": token.column, "near": token.text},
        )

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.error()
        self.index += 1
        return token

    def accept(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "name" and token.word in words:
            self.index += 1
            return True
        return False

    def expect(self, word: str) -> None:
        token = self.peek()
        if token is None or token.kind != "name" or token.word != word:
            raise self.error(token)
        self.index += 1

    def expect_punct(self, text: str) -> None:
        token = self.peek()
        if token is None or token.text != text:
            raise self.error(token)
        self.index += 1

    def identifier(self) -> str:
        token = self.next()
        if token.kind != "name" or token.word in _KEYWORDS:
            raise self.error(token)
        return token.text

    def integer(self) -> int:
        token = self.next()
        if token.kind != "number" or not token.text.isdigit():
            raise self.error(token)
        return int(token.text)

    def value(self) -> Any:
        token = self.next()
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "number":
            return float(token.text) if "." in token.text else int(token.text)
        if token.kind == "name" and token.word in ("true", "false"):
            return token.word == "true"
        if token.kind == "name" and token.word == "null":
            return None
        raise self.error(token)

    def parse(self) -> Query:
        self.expect("select")
        columns = self.comma_list(self.identifier)
        self.expect("from")
        module = self.identifier()
        where: Criteria | None = None
        if self.accept("where"):
            where = self.criteria_expr()
        order: list[tuple[str, bool]] = []
        if self.accept("order"):
            self.expect("by")
            while True:
                column = self.identifier()
                descending = False
                if self.accept("desc"):
                    descending = True
                else:
                    self.accept("asc")
                order.append((column, descending))
                token = self.peek()
                if token is None or token.text != ",":
                    break
                self.index += 1
        limit, offset = DEFAULT_LIMIT, 0
        if self.accept("limit"):
            first = self.integer()
            token = self.peek()
            if token is not None and token.text == ",":
                # `limit offset, count`, the MySQL form COQL also accepts.
                self.index += 1
                offset, limit = first, self.integer()
            else:
                limit = first
                if self.accept("offset"):
                    offset = self.integer()
        if self.peek() is not None:
            raise self.error()
        self.check_limits(columns, order, limit, offset)
        return Query(tuple(columns), module, where, tuple(order), limit, offset)

    def check_limits(
        self, columns: list[str], order: list[tuple[str, bool]], limit: int, offset: int
    ) -> None:
        if len(columns) > MAX_COLUMNS:
            raise CoqlError(
                "LIMIT_EXCEEDED", "select column limit exceeded", {"limit": MAX_COLUMNS}
            )
        if self.criteria > MAX_CRITERIA:
            raise CoqlError("LIMIT_EXCEEDED", "criteria limit exceeded", {"limit": MAX_CRITERIA})
        if len(order) > MAX_ORDER_BY:
            raise CoqlError("LIMIT_EXCEEDED", "order by limit exceeded", {"limit": MAX_ORDER_BY})
        if not 1 <= limit <= MAX_LIMIT:
            raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", {"limit": MAX_LIMIT})
        if offset + limit > MAX_REACH:
            raise CoqlError(
                "LIMIT_EXCEEDED", "offset and limit exceed the maximum", {"limit": MAX_REACH}
            )

    def criteria_expr(self) -> Criteria:
        # At most one and/or per bracket level: COQL wants (A and (B and C)).
        left = self.primary()
        token = self.peek()
        if token is not None and token.kind == "name" and token.word in ("and", "or"):
            self.index += 1
            right = self.primary()
            after = self.peek()
            if after is not None and after.kind == "name" and after.word in ("and", "or"):
                raise self.error(after)
            return BoolOp(token.word, left, right)
        return left

    def primary(self) -> Criteria:
        token = self.peek()
        if token is not None and token.text == "(":
            self.index += 1
            inner = self.criteria_expr()
            self.expect_punct(")")
            return inner
        return self.condition()

    def condition(self) -> Condition:
        column = self.identifier()
        self.criteria += 1
        token = self.next()
        if token.kind == "op":
            op = "!=" if token.text == "<>" else token.text
            return Condition(column, op, (self.value(),))
        if token.kind != "name":
            raise self.error(token)
        word = token.word
        negated = False
        if word == "not":
            negated = True
            token = self.next()
            word = token.word if token.kind == "name" else ""
        if word == "in":
            self.expect_punct("(")
            values = self.comma_list(self.value)
            self.expect_punct(")")
            if len(values) > MAX_IN_VALUES:
                raise CoqlError(
                    "LIMIT_EXCEEDED", "in operator value limit exceeded", {"limit": MAX_IN_VALUES}
                )
            return Condition(column, "not_in" if negated else "in", tuple(values))
        if word == "between":
            low = self.value()
            self.expect("and")
            high = self.value()
            return Condition(column, "not_between" if negated else "between", (low, high))
        if word == "like":
            pattern = self.value()
            if not isinstance(pattern, str):
                raise self.error(token)
            return Condition(column, "not_like" if negated else "like", (pattern,))
        if word == "is" and not negated:
            is_not = self.accept("not")
            self.expect("null")
            return Condition(column, "is_not_null" if is_not else "is_null", ())
        raise self.error(token)


def parse(text: str) -> Query:
    """Parse one select query.

    Raises:
        CoqlError: SYNTAX_ERROR with {line, column, near}, or LIMIT_EXCEEDED.
    """
    if not isinstance(text, str) or not text.strip():
        raise CoqlError("SYNTAX_ERROR", "error in query", {"clause": "select"})
    return _Parser(text.strip().rstrip(";")).parse()


def criteria_columns(criteria: Criteria | None) -> list[str]:
    """Every column the criteria mention."""
    if criteria is None:
        return []
    if isinstance(criteria, Condition):
        return [criteria.column]
    return criteria_columns(criteria.left) + criteria_columns(criteria.right)


def like_regex(pattern: str) -> re.Pattern[str]:
    """A COQL `like` pattern ('%' any run of characters) as a case-insensitive regex."""
    parts = [re.escape(piece) for piece in pattern.split("%")]
    return re.compile("^" + ".*".join(parts) + "$", re.IGNORECASE | re.DOTALL)


def credit_cost(limit: int) -> int:
    """Credits one COQL call costs by its LIMIT: 1-200 -> 1, 201-1000 -> 2, 1001-2000 -> 3."""
    if limit <= 200:
        return 1
    if limit <= 1000:
        return 2
    return 3
