"""A strict evaluator of the ES|QL subset the README's alert rules use, for testing them on documents.

No ES|QL engine or parser can be installed here (the npm registry has no `@elastic/esql`, PyPI no ES|QL
parser), so the README's rules are run by this: FROM, WHERE, EVAL, STATS … BY, ENRICH … ON … WITH,
SORT, KEEP, LIMIT; operators, `IS [NOT] NULL`, `NOW() - 20 minutes`, CONCAT, COALESCE; COUNT, SUM,
MIN, MAX, AVG. Anything else is an error, and so is any source field that no installed template maps
(Elasticsearch answers "Unknown column"), so a misspelt field cannot pass unnoticed. Semantics follow
the ES|QL reference: a comparison with null is null and WHERE drops it; STATS keeps only its
aggregates and groups; null group keys form their own group.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

Row = dict[str, Any]


class EsqlError(Exception):
    pass


_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?)|(?P<string>\"(?:[^\"\\]|\\.)*\")|(?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|\(|\)|,|=)"
    r"|(?P<name>`[^`]+`|[A-Za-z_@][A-Za-z0-9_.@]*))"
)
_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "BY", "ON", "WITH", "ASC", "DESC", "TRUE", "FALSE"}


def tokenize(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise EsqlError(f"cannot parse at {text[position : position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        value = match.group(kind)
        if kind == "name" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        elif kind == "name":
            value = value.strip("`")
        out.append((kind, value))
        position = match.end()
    return out


# --------------------------------------------------------------------------------------------- exprs

Expr = Callable[[Row], Any]


@dataclass
class _Parser:
    tokens: list[tuple[str, str]]
    columns: set[str]  # columns the expression may read
    now: datetime
    at: int = 0

    def peek(self, value: str | None = None, kind: str | None = None) -> bool:
        if self.at >= len(self.tokens):
            return False
        k, v = self.tokens[self.at]
        return (value is None or v == value) and (kind is None or k == kind)

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        if not self.peek(value, kind):
            found = self.tokens[self.at][1] if self.at < len(self.tokens) else "end of command"
            raise EsqlError(f"expected {value or kind}, found {found!r}")
        self.at += 1
        return self.tokens[self.at - 1][1]

    def done(self) -> bool:
        return self.at >= len(self.tokens)

    def field(self) -> str:
        name = self.take(kind="name")
        if name not in self.columns:
            raise EsqlError(f"Unknown column [{name}]")
        return name

    def expr(self) -> Expr:
        left = self.conjunction()
        while self.peek("OR"):
            self.take()
            right, first = self.conjunction(), left
            left = lambda r, a=first, b=right: _or(a(r), b(r))  # noqa: E731
        return left

    def conjunction(self) -> Expr:
        left = self.negation()
        while self.peek("AND"):
            self.take()
            right, first = self.negation(), left
            left = lambda r, a=first, b=right: _and(a(r), b(r))  # noqa: E731
        return left

    def negation(self) -> Expr:
        if self.peek("NOT"):
            self.take()
            inner = self.negation()
            return lambda r: None if (v := inner(r)) is None else not v
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.additive()
        if self.peek("IS"):
            self.take()
            negate = self.peek("NOT")
            if negate:
                self.take()
            self.take("NULL")
            return lambda r: (left(r) is not None) if negate else (left(r) is None)
        for op in ("==", "!=", "<=", ">=", "<", ">"):
            if self.peek(op, "op"):
                self.take()
                right = self.additive()
                return lambda r, o=op: _compare(o, left(r), right(r))
        return left

    def additive(self) -> Expr:
        left = self.multiplicative()
        while self.peek("+", "op") or self.peek("-", "op"):
            op = self.take()
            right, first = self.multiplicative(), left
            left = lambda r, a=first, b=right, o=op: _arith(o, a(r), b(r))  # noqa: E731
        return left

    def multiplicative(self) -> Expr:
        left = self.unary()
        while self.peek("*", "op") or self.peek("/", "op"):
            op = self.take()
            right, first = self.unary(), left
            left = lambda r, a=first, b=right, o=op: _arith(o, a(r), b(r))  # noqa: E731
        return left

    def unary(self) -> Expr:
        if self.peek("-", "op"):
            self.take()
            inner = self.unary()
            return lambda r: None if (v := inner(r)) is None else -v
        return self.primary()

    def primary(self) -> Expr:
        if self.peek("(", "op"):
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        if self.peek(kind="number"):
            text = self.take()
            number = float(text) if "." in text else int(text)
            if self.peek(kind="name") and self.tokens[self.at][1].lower() in _UNITS:
                unit = self.take().lower()
                span = timedelta(seconds=number * _UNITS[unit])
                return lambda _r: span
            return lambda _r: number
        if self.peek(kind="string"):
            value = self.take()[1:-1].replace('\\"', '"')
            return lambda _r: value
        if self.peek("TRUE") or self.peek("FALSE"):
            flag = self.take() == "TRUE"
            return lambda _r: flag
        if self.peek("NULL"):
            self.take()
            return lambda _r: None
        if self.peek(kind="name") and self.at + 1 < len(self.tokens) and self.tokens[self.at + 1][1] == "(":
            return self.function()
        name = self.field()
        return lambda r: r.get(name)

    def function(self) -> Expr:
        name = self.take().upper()
        self.take("(")
        args: list[Expr] = []
        while not self.peek(")", "op"):
            args.append(self.expr())
            if not self.peek(")", "op"):
                self.take(",")
        self.take(")")
        now = self.now
        if name == "NOW" and not args:
            return lambda _r: now
        if name == "CONCAT" and len(args) >= 2:
            return lambda r: None if any((v := a(r)) is None for a in args) else "".join(str(a(r)) for a in args)
        if name == "COALESCE" and args:
            return lambda r: next((v for a in args if (v := a(r)) is not None), None)
        raise EsqlError(f"unknown function {name}")


def _and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _time(value: Any) -> Any:
    if isinstance(value, str) and re.match(r"\d{4}-\d\d-\d\dT", value):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return value


def _compare(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if isinstance(a, datetime) or isinstance(b, datetime):
        a, b = _time(a), _time(b)
    if isinstance(a, str) != isinstance(b, str):
        raise EsqlError(f"cannot compare {a!r} with {b!r}")
    return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _arith(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    a, b = _time(a), _time(b)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b else None


# ------------------------------------------------------------------------------------------ commands

_AGGREGATES: dict[str, Callable[[list[Any]], Any]] = {
    "SUM": lambda vs: sum(vs) if vs else None,
    "MIN": lambda vs: min(vs) if vs else None,
    "MAX": lambda vs: max(vs) if vs else None,
    "AVG": lambda vs: sum(vs) / len(vs) if vs else None,
}


@dataclass(frozen=True)
class Enrich:
    """An enrich policy of type `match`: `indices`, `match_field`, `enrich_fields`."""

    indices: str
    match_field: str
    enrich_fields: Sequence[str]


def flatten(source: Mapping[str, Any], prefix: str = "") -> Row:
    row: Row = {}
    for key, value in source.items():
        if isinstance(value, Mapping):
            row.update(flatten(value, f"{prefix}{key}."))
        else:
            row[f"{prefix}{key}"] = value
    return row


def run(
    query: str,
    documents: Iterable[Mapping[str, Any]],
    *,
    mapped: set[str],
    now: datetime,
    policies: Mapping[str, Enrich] | None = None,
) -> list[Row]:
    """Run `query` over `documents` (each with `data_stream.*`); `mapped` is every field a template maps."""
    commands = [c.strip() for c in re.split(r"\n\s*\|", query.strip())]
    source = [flatten(d) for d in documents]
    rows: list[Row] = []
    columns: set[str] = set()
    for index, command in enumerate(commands):
        head, _, rest = command.partition(" ")
        head = head.upper()
        if index == 0:
            if head != "FROM":
                raise EsqlError("a query starts with FROM")
            patterns = [p.strip() for p in rest.split(",")]
            rows = [r for r in source if any(fnmatch.fnmatchcase(_index(r), p) for p in patterns)]
            columns = set(mapped)
            continue
        parser = _Parser(tokenize(rest), columns, now)
        if head == "WHERE":
            predicate = parser.expr()
            _end(parser)
            rows = [r for r in rows if predicate(r) is True]
        elif head == "EVAL":
            while True:
                name = parser.take(kind="name")
                parser.take("=")
                value = parser.expr()
                rows = [{**r, name: value(r)} for r in rows]
                columns = columns | {name}
                parser.columns = columns
                if parser.done():
                    break
                parser.take(",")
        elif head == "STATS":
            rows, columns = _stats(parser, rows)
        elif head == "ENRICH":
            rows, columns = _enrich(parser, rows, columns, source, policies or {})
        elif head == "SORT":
            keys = []
            while True:
                name = parser.field()
                descending = parser.peek("DESC")
                if parser.peek("ASC") or descending:
                    parser.take()
                keys.append((name, descending))
                if parser.done():
                    break
                parser.take(",")
            for name, descending in reversed(keys):  # ES|QL puts nulls last in ascending order
                rows.sort(
                    key=lambda r, n=name: (r.get(n) is None, r.get(n) if r.get(n) is not None else 0),
                    reverse=descending,
                )
        elif head == "KEEP":
            keep = [parser.field()]
            while not parser.done():
                parser.take(",")
                keep.append(parser.field())
            rows = [{k: r.get(k) for k in keep} for r in rows]
            columns = set(keep)
        elif head == "LIMIT":
            count = int(parser.take(kind="number"))
            _end(parser)
            rows = rows[:count]
        else:
            raise EsqlError(f"unsupported command {head}")
    return rows


def _index(row: Row) -> str:
    return f"{row.get('data_stream.type')}-{row.get('data_stream.dataset')}-{row.get('data_stream.namespace')}"


def _end(parser: _Parser) -> None:
    if not parser.done():
        raise EsqlError(f"unexpected {parser.tokens[parser.at][1]!r}")


def _stats(parser: _Parser, rows: list[Row]) -> tuple[list[Row], set[str]]:
    aggregates: list[tuple[str, str, Expr | None]] = []
    while True:
        name = parser.take(kind="name")
        if parser.peek("=", "op"):
            parser.take()
            function = parser.take(kind="name").upper()
        else:
            function, name = name.upper(), ""
        parser.take("(")
        argument: Expr | None = None
        if parser.peek("*", "op"):
            parser.take()
        else:
            argument = parser.expr()
        parser.take(")")
        if function != "COUNT" and function not in _AGGREGATES:
            raise EsqlError(f"unknown aggregate {function}")
        aggregates.append((name or f"{function.lower()}(...)", function, argument))
        if not parser.peek(","):
            break
        parser.take(",")
    groups: list[tuple[str, Expr]] = []
    if parser.peek("BY"):
        parser.take()
        while True:
            if parser.at + 1 < len(parser.tokens) and parser.tokens[parser.at + 1][1] == "=":
                name = parser.take(kind="name")
                parser.take("=")
                groups.append((name, parser.expr()))
            else:
                field_name = parser.field()
                groups.append((field_name, lambda r, f=field_name: r.get(f)))
            if parser.done():
                break
            parser.take(",")
    _end(parser)
    buckets: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        buckets.setdefault(tuple(g(row) for _, g in groups), []).append(row)
    out = []
    for key, members in buckets.items():
        result: Row = {}
        for name, function, argument in aggregates:
            values = [v for r in members if (v := (argument(r) if argument else 1)) is not None]
            result[name] = len(values) if function == "COUNT" else _AGGREGATES[function](values)
        result.update({name: value for (name, _), value in zip(groups, key, strict=True)})
        out.append(result)
    return out, {name for name, _, _ in aggregates} | {name for name, _ in groups}


def _enrich(
    parser: _Parser, rows: list[Row], columns: set[str], source: list[Row], policies: Mapping[str, Enrich]
) -> tuple[list[Row], set[str]]:
    policy_name = parser.take(kind="name")
    policy = policies.get(policy_name)
    if policy is None:
        raise EsqlError(f"unresolved enrich policy [{policy_name}]")
    parser.take("ON")
    on = parser.field()
    parser.take("WITH")
    renames: list[tuple[str, str]] = []
    while True:
        name = parser.take(kind="name")
        parser.take("=")
        field_name = parser.take(kind="name")
        if field_name not in policy.enrich_fields:
            raise EsqlError(f"enrich field [{field_name}] is not in policy [{policy_name}]")
        renames.append((name, field_name))
        if parser.done():
            break
        parser.take(",")
    # The enrich index is a snapshot of the policy's source documents at `_execute` time; a key
    # matched by several documents takes the newest here (limits change rarely, see the README).
    lookup: dict[Any, Row] = {}
    for row in sorted(source, key=lambda r: str(r.get("@timestamp"))):
        if fnmatch.fnmatchcase(_index(row), policy.indices) and row.get(policy.match_field) is not None:
            lookup[row[policy.match_field]] = row
    out = []
    for row in rows:
        match = lookup.get(row.get(on), {})
        out.append({**row, **{name: match.get(f) for name, f in renames}})
    return out, columns | {name for name, _ in renames}
