"""A parser, type checker and evaluator for the subset of ES|QL the README's alert rules use.

No Elasticsearch engine runs in the tests and no ES|QL parser is installable (Kibana's `@elastic/esql` is
not on the npm registry, PyPI has none), so the README's rules are checked with this. It follows Elastic's
ES|QL reference: "ES|QL syntax reference", "ES|QL commands", "ES|QL functions and operators" and
"Combine data from multiple indices with ENRICH" (elastic.co/docs/reference/query-languages/esql/).

- Enrich policies: `match` (`indices`, `match_field`, `enrich_fields`) with an optional `query` that is one
  `range` on a date field bounded by `now` date math (`now-90m`); see `enrich_index`.

- Commands: FROM (index patterns), WHERE, EVAL, STATS … BY (a group may be `name = expression`),
  ENRICH policy [ON column] [WITH [name =] field, …] (a `match` policy), SORT (ASC/DESC), KEEP, LIMIT.
- Operators: OR, AND, NOT, ==, !=, <, <=, >, >=, IS [NOT] NULL, +, -, *, /, %; `//` comments.
- Literals: numbers, "strings", TRUE, FALSE, NULL, time spans (`20 minutes`, `2 hours`: a time_duration
  of ms/s/min/h, or whole days/weeks).
- Functions: ROUND, CASE, COALESCE, CONCAT, NOW, MV_MIN; aggregations MAX, MIN, SUM, AVG, COUNT (which may sit
  inside an expression, as in `MAX(x) * 100`).
- Types (`check_types`): every column a query reads must be mapped ("Unknown column [x]" otherwise, as
  Elasticsearch answers); arithmetic and SUM/AVG/ROUND need numbers, MAX/MIN numbers or dates (recent
  releases also take keywords; outside this subset); a comparison needs operands of one family; a date
  moves only by a time span (`NOW() - 20 minutes`); CONCAT takes strings; ENRICH's ON column has the
  type of the policy's match field and its WITH fields must be the policy's enrich fields.
- Nulls: an operator or function with a null operand is null (CASE, COALESCE and IS NULL aside); logic
  is three-valued; WHERE keeps rows whose condition is true; aggregations skip nulls; null group keys
  form their own group; SORT puts nulls last ascending and first descending.
- Multi-values (an array in a document, or an ENRICH key matched by several enrich documents, "combined
  into multi-values"): an operator or scalar function over one is null (Elasticsearch adds a warning),
  aggregations take each value, MV_MIN reduces one to its smallest value.
- Numbers: integer operands give integer results (division and % truncate toward zero), any double
  makes a double; division by zero is null.

Anything outside the subset is an error, so a rule edited beyond it fails its test loudly.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

INTEGER_TYPES = frozenset({"long", "integer", "short", "byte"})
NUMERIC_TYPES = INTEGER_TYPES | {"double", "float", "half_float", "scaled_float"}
STRING_TYPES = frozenset({"keyword", "constant_keyword", "text"})
AGGREGATIONS = frozenset({"MAX", "MIN", "SUM", "AVG", "COUNT"})
FUNCTIONS = frozenset({"ROUND", "CASE", "COALESCE", "CONCAT", "NOW", "MV_MIN"})
COMMANDS = frozenset({"WHERE", "EVAL", "STATS", "ENRICH", "SORT", "KEEP", "LIMIT"})
KEYWORDS = frozenset({"BY", "AND", "OR", "NOT", "IS", "NULL", "ON", "WITH", "ASC", "DESC", "TRUE", "FALSE"})
# Time span units (syntax reference, "Time spans"): a fixed time_duration, or whole days and weeks.
SPAN_UNITS = {
    **dict.fromkeys(("millisecond", "milliseconds", "ms"), timedelta(milliseconds=1)),
    **dict.fromkeys(("second", "seconds", "sec", "s"), timedelta(seconds=1)),
    **dict.fromkeys(("minute", "minutes", "min"), timedelta(minutes=1)),
    **dict.fromkeys(("hour", "hours", "h"), timedelta(hours=1)),
    **dict.fromkeys(("day", "days", "d"), timedelta(days=1)),
    **dict.fromkeys(("week", "weeks", "w"), timedelta(weeks=1)),
}


# Date math units of fixed length (Elasticsearch reference, "Common options" → "Date math": `m` is minutes,
# `h`/`H` hours). Months (`M`), years (`y`) and rounding (`/d`) are calendar-dependent: outside the subset.
DATE_MATH_UNITS = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "H": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
DATE_MATH = re.compile(r"now(?:[+-]\d+[smhHdw])*")
RANGE_BOUNDS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class EsqlError(Exception):
    pass


@dataclass(frozen=True)
class Enrich:
    """A `match` enrich policy (`indices`, `match_field`, `enrich_fields`, optional `query`) and its source
    indices' mapping."""

    indices: str
    match_field: str
    enrich_fields: tuple[str, ...]
    mapping: Mapping[str, str] = field(default_factory=dict, compare=False)
    query: Mapping[str, Any] | None = field(default=None, compare=False)


class MultiValue(tuple[Any, ...]):
    """A column holding several values."""


# ------------------------------------------------------------------------------------------ syntax

TOKEN = re.compile(
    r"""\s*(?:
      (?P<comment>//[^\n]*)
    | (?P<number>\d+\.\d+|\d+)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<op>==|!=|<=|>=|[|,()=<>+\-*/%])
    | (?P<quoted>`[^`]+`)
    | (?P<word>[A-Za-z_@][A-Za-z0-9_.@]*)
    )""",
    re.X,
)
# FROM's index patterns are unquoted names that may hold `-` and `*` (syntax reference, "Identifiers").
INDEX_PATTERN = re.compile(r"\s*(?P<pattern>[A-Za-z0-9_.@*][A-Za-z0-9_.@*\-:]*)")


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str


def tokenize(text: str) -> list[Tok]:
    tokens: list[Tok] = []
    position = 0
    in_from = False  # between a leading FROM and the first pipe, where names are index patterns
    while position < len(text):
        if in_from and tokens[-1].text.upper() in ("FROM", ","):
            pattern = INDEX_PATTERN.match(text, position)
            if pattern:
                tokens.append(Tok("pattern", pattern.group("pattern")))
                position = pattern.end()
                continue
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            if text[position:].strip():
                raise EsqlError(f"unexpected {text[position : position + 20]!r}")
            break
        position = match.end()
        kind = match.lastgroup
        assert kind is not None
        if kind != "comment":
            tokens.append(Tok(kind, match.group(kind)))
            in_from = (in_from or (len(tokens) == 1 and tokens[0].text.upper() == "FROM")) and tokens[-1].text != "|"
    return tokens


@dataclass(frozen=True)
class Field:
    name: str


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Any


@dataclass(frozen=True)
class Binary:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class IsNull:
    operand: Any
    negated: bool


@dataclass(frozen=True)
class EnrichArgs:
    policy: str
    on: str | None
    fields: tuple[tuple[str, str], ...] | None  # (column, enrich field); None: every enrich field


@dataclass(frozen=True)
class Command:
    name: str
    args: Any


class Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, offset: int = 0) -> Tok | None:
        index = self.i + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, text: str | None = None, kind: str | None = None) -> Tok:
        tok = self.peek()
        if tok is None:
            raise EsqlError(f"unexpected end of query; expected {text or kind}")
        if (text is not None and tok.text.upper() != text) or (kind is not None and tok.kind != kind):
            raise EsqlError(f"expected {text or kind}, found {tok.text!r}")
        self.i += 1
        return tok

    def at(self, *texts: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind in ("word", "op") and tok.text.upper() in texts

    def query(self) -> list[Command]:
        self.take("FROM")
        patterns = [self.take(kind="pattern").text]
        while self.at(","):
            self.take(",")
            patterns.append(self.take(kind="pattern").text)
        commands = [Command("FROM", tuple(patterns))]
        while self.peek() is not None:
            self.take("|")
            name = self.take(kind="word").text.upper()
            if name not in COMMANDS:
                raise EsqlError(f"unsupported command {name}")
            commands.append(Command(name, getattr(self, f"_{name.lower()}")()))
            rest = self.peek()
            if rest is not None and rest.text != "|":
                raise EsqlError(f"unexpected {rest.text!r} in {name}")
        return commands

    def _where(self) -> Any:
        return self.expression()

    def _assignment(self) -> tuple[str, Any]:
        following = self.peek(1)
        if following is not None and following.text == "=":
            name = self.field_name()
            self.take("=")
            return name, self.expression()
        expr = self.expression()
        return _render(expr), expr

    def _assignments(self) -> tuple[tuple[str, Any], ...]:
        items = [self._assignment()]
        while self.at(","):
            self.take(",")
            items.append(self._assignment())
        return tuple(items)

    def _eval(self) -> Any:
        return self._assignments()

    def _stats(self) -> Any:
        aggregates = self._assignments()
        groups: tuple[tuple[str, Any], ...] = ()
        if self.at("BY"):
            self.take("BY")
            groups = self._assignments()
        return aggregates, groups

    def _enrich(self) -> EnrichArgs:
        policy = self.take(kind="word").text
        on = None
        if self.at("ON"):
            self.take("ON")
            on = self.field_name()
        fields = None
        if self.at("WITH"):
            self.take("WITH")
            pairs = []
            while True:
                name = self.field_name()
                if self.at("="):
                    self.take("=")
                    pairs.append((name, self.field_name()))
                else:
                    pairs.append((name, name))
                if not self.at(","):
                    break
                self.take(",")
            fields = tuple(pairs)
        return EnrichArgs(policy, on, fields)

    def _sort(self) -> Any:
        keys = []
        while True:
            name = self.field_name()
            descending = False
            if self.at("ASC", "DESC"):
                descending = self.take(kind="word").text.upper() == "DESC"
            keys.append((name, descending))
            if not self.at(","):
                return tuple(keys)
            self.take(",")

    def _keep(self) -> Any:
        names = [self.field_name()]
        while self.at(","):
            self.take(",")
            names.append(self.field_name())
        return tuple(names)

    def _limit(self) -> Any:
        return int(self.take(kind="number").text)

    def field_name(self) -> str:
        tok = self.take()
        if tok.kind == "quoted":
            return tok.text[1:-1]
        if tok.kind != "word" or tok.text.upper() in KEYWORDS:
            raise EsqlError(f"expected a field name, found {tok.text!r}")
        return tok.text

    # Precedence, lowest first: OR, AND, NOT, comparison / IS NULL, + -, * / %, unary -.
    def expression(self) -> Any:
        left = self.conjunction()
        while self.at("OR"):
            self.take("OR")
            left = Binary("OR", left, self.conjunction())
        return left

    def conjunction(self) -> Any:
        left = self.negation()
        while self.at("AND"):
            self.take("AND")
            left = Binary("AND", left, self.negation())
        return left

    def negation(self) -> Any:
        if self.at("NOT"):
            self.take("NOT")
            return Unary("NOT", self.negation())
        return self.comparison()

    def comparison(self) -> Any:
        left = self.additive()
        if self.at("IS"):
            self.take("IS")
            negated = self.at("NOT")
            if negated:
                self.take("NOT")
            self.take("NULL")
            return IsNull(left, negated)
        if self.at("==", "!=", "<", "<=", ">", ">="):
            op = self.take(kind="op").text
            return Binary(op, left, self.additive())
        return left

    def additive(self) -> Any:
        left = self.multiplicative()
        while self.at("+", "-"):
            op = self.take(kind="op").text
            left = Binary(op, left, self.multiplicative())
        return left

    def multiplicative(self) -> Any:
        left = self.unary()
        while self.at("*", "/", "%"):
            op = self.take(kind="op").text
            left = Binary(op, left, self.unary())
        return left

    def unary(self) -> Any:
        if self.at("-"):
            self.take("-")
            return Unary("-", self.unary())
        return self.primary()

    def primary(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise EsqlError("unexpected end of query in an expression")
        if tok.text == "(":
            self.take("(")
            inner = self.expression()
            self.take(")")
            return inner
        if tok.kind == "number":
            self.i += 1
            unit = self.peek()
            if unit is not None and unit.kind == "word" and unit.text.lower() in SPAN_UNITS:
                self.i += 1
                if "." in tok.text:
                    raise EsqlError(f"a time span takes a whole number, not {tok.text}")
                return Literal(int(tok.text) * SPAN_UNITS[unit.text.lower()])
            return Literal(float(tok.text) if "." in tok.text else int(tok.text))
        if tok.kind == "string":
            self.i += 1
            return Literal(tok.text[1:-1].replace('\\"', '"').replace("\\\\", "\\"))
        if tok.kind == "word" and tok.text.upper() in ("TRUE", "FALSE", "NULL"):
            self.i += 1
            return Literal({"TRUE": True, "FALSE": False, "NULL": None}[tok.text.upper()])
        nxt = self.peek(1)
        if tok.kind == "word" and nxt is not None and nxt.text == "(":
            name = tok.text.upper()
            if name not in AGGREGATIONS | FUNCTIONS:
                raise EsqlError(f"unsupported function {tok.text}")
            self.i += 2
            args: list[Any] = []
            if name == "COUNT" and self.at("*"):
                self.take("*")
                args.append(Literal("*"))
            elif not self.at(")"):
                args.append(self.expression())
                while self.at(","):
                    self.take(",")
                    args.append(self.expression())
            self.take(")")
            _check_arity(name, len(args))
            return Call(name, tuple(args))
        return Field(self.field_name())


def _check_arity(name: str, count: int) -> None:
    arity = {"NOW": (0, 0), "ROUND": (1, 2), "CONCAT": (2, 99), "COALESCE": (1, 99), "CASE": (2, 99)}
    low, high = arity.get(name, (1, 1))
    if not low <= count <= high:
        raise EsqlError(f"{name} takes {low}..{high} arguments, got {count}")


def parse(text: str) -> list[Command]:
    return Parser(text).query()


def _render(node: Any) -> str:
    if isinstance(node, Field):
        return node.name
    if isinstance(node, Literal):
        return "*" if node.value == "*" else repr(node.value)
    if isinstance(node, Call):
        return f"{node.name}({', '.join(map(_render, node.args))})"
    if isinstance(node, Binary):
        return f"{_render(node.left)} {node.op} {_render(node.right)}"
    return str(node)


def _children(node: Any) -> tuple[Any, ...]:
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Unary | IsNull):
        return (node.operand,)
    return ()


def source_fields(commands: Iterable[Command]) -> set[str]:
    """Fields read from the documents (not the columns the query itself creates)."""
    created: set[str] = set()
    read: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Field) and node.name not in created:
            read.add(node.name)
        for child in _children(node):
            walk(child)

    for command in commands:
        if command.name == "WHERE":
            walk(command.args)
        elif command.name == "EVAL":
            for name, expr in command.args:
                walk(expr)
                created.add(name)
        elif command.name == "STATS":
            aggregates, groups = command.args
            for _, expr in (*aggregates, *groups):
                walk(expr)
            created = {name for name, _ in (*aggregates, *groups)}
        elif command.name == "ENRICH":
            if command.args.on is not None:
                walk(Field(command.args.on))
            created.update(name for name, _ in command.args.fields or ())
        elif command.name in ("SORT", "KEEP"):
            names = [n for n, _ in command.args] if command.name == "SORT" else list(command.args)
            read.update(n for n in names if n not in created)
    return read


# ------------------------------------------------------------------------------------------ types


def check_types(
    commands: list[Command], mapping: Mapping[str, str], policies: Mapping[str, Enrich] | None = None
) -> dict[str, str]:
    """Infer every column's type from the mapping of the indices FROM reads (path → type); raise on a
    column that does not exist or an operand of the wrong type. Returns the result's columns."""
    columns = dict(mapping)

    def infer(node: Any) -> str:
        if isinstance(node, Field):
            if node.name not in columns:
                raise EsqlError(f"Unknown column [{node.name}]")
            return columns[node.name]
        if isinstance(node, Literal):
            return _literal_type(node.value)
        if isinstance(node, IsNull):
            infer(node.operand)
            return "boolean"
        if isinstance(node, Unary):
            inner = infer(node.operand)
            if node.op == "-" and _family(inner) not in ("number", "time_duration"):
                raise EsqlError(f"- needs a number, got {inner}")
            if node.op == "NOT" and inner not in ("boolean", "null"):
                raise EsqlError(f"NOT needs a boolean, got {inner}")
            return inner if node.op == "-" else "boolean"
        if isinstance(node, Binary):
            return _binary_type(node, infer(node.left), infer(node.right))
        if isinstance(node, Call):
            return _call_type(node, [infer(a) for a in node.args if a != Literal("*")])
        raise EsqlError(f"cannot type {node!r}")

    for command in commands[1:]:
        if command.name == "WHERE":
            if infer(command.args) not in ("boolean", "null"):
                raise EsqlError("WHERE needs a boolean condition")
        elif command.name == "EVAL":
            for name, expr in command.args:
                columns[name] = infer(expr)
        elif command.name == "STATS":
            aggregates, groups = command.args
            result = {name: infer(expr) for name, expr in aggregates}
            for name, expr in groups:
                if _has_aggregation(expr):
                    raise EsqlError(f"an aggregation cannot group: {_render(expr)}")
                result[name] = infer(expr)
            for _, expr in aggregates:
                if not _has_aggregation(expr):
                    raise EsqlError(f"{_render(expr)} is neither an aggregation nor built from them")
            columns = result
        elif command.name == "ENRICH":
            policy = _policy(command.args, policies)
            on_type = infer(Field(command.args.on or policy.match_field))
            match_type = policy.mapping.get(policy.match_field)
            if match_type is None:
                raise EsqlError(f"match field [{policy.match_field}] is not mapped in [{policy.indices}]")
            if _family(on_type) != _family(match_type):
                raise EsqlError(f"ENRICH ON a {on_type} column, but the match field is a {match_type}")
            _policy_range(policy)
            for name, source in _enrich_fields(command.args, policy):
                if source not in policy.mapping:
                    raise EsqlError(f"enrich field [{source}] is not mapped in [{policy.indices}]")
                columns[name] = policy.mapping[source]
        elif command.name == "KEEP":
            columns = {n: infer(Field(n)) for n in command.args}
        elif command.name == "SORT":
            for name, _ in command.args:
                infer(Field(name))
    return columns


def _literal_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, timedelta):
        return "time_duration"
    return "keyword"


def _binary_type(node: Binary, left: str, right: str) -> str:
    families = (_family(left), _family(right))
    if node.op in ("AND", "OR"):
        if {left, right} - {"boolean", "null"}:
            raise EsqlError(f"{node.op} needs booleans, got {left} and {right}")
        return "boolean"
    if node.op in ("==", "!=", "<", "<=", ">", ">="):
        if len(set(families) - {"null"}) > 1:
            raise EsqlError(f"cannot compare {left} with {right} in {_render(node)}")
        return "boolean"
    # Date arithmetic: a date plus or minus a time span is a date (operators reference, "Add", "Subtract").
    if families in (("date", "time_duration"), ("time_duration", "date")) and node.op in ("+", "-"):
        if families[0] == "time_duration" and node.op == "-":
            raise EsqlError(f"cannot subtract a date from a time span in {_render(node)}")
        return "date"
    if families == ("time_duration", "time_duration") and node.op in ("+", "-"):
        return "time_duration"
    if "null" in families and set(families) <= {"null", "number"}:
        return "null"
    if families != ("number", "number"):
        raise EsqlError(f"arithmetic on {left} and {right} in {_render(node)}")
    return _numeric_result(left, right)


def _numeric_result(left: str, right: str) -> str:
    if left in INTEGER_TYPES and right in INTEGER_TYPES:
        return "integer" if left == right == "integer" else "long"
    return "double"


def _call_type(node: Call, types: list[str]) -> str:
    name = node.name
    if name in ("SUM", "AVG", "ROUND") and _family(types[0]) not in ("number", "null"):
        raise EsqlError(f"{name} needs a number, got {types[0]}")
    if name in ("MAX", "MIN") and _family(types[0]) not in ("number", "date", "null"):
        raise EsqlError(f"{name} needs a number or a date, got {types[0]}")
    if name in ("SUM", "AVG", "MAX", "MIN", "COUNT") and any(_has_aggregation(a) for a in node.args):
        raise EsqlError(f"an aggregation inside an aggregation: {_render(node)}")
    if name == "AVG":
        return "double"
    if name == "SUM":
        return "long" if types[0] in INTEGER_TYPES else "double"
    if name == "COUNT":
        return "long"
    if name == "NOW":
        return "date"
    if name == "ROUND" and len(types) > 1 and types[1] not in INTEGER_TYPES | {"null"}:
        raise EsqlError(f"ROUND's decimals must be an integer, got {types[1]}")
    if name == "CONCAT":
        if any(_family(t) not in ("string", "null") for t in types):
            raise EsqlError(f"CONCAT needs strings, got {types}")
        return "keyword"
    if name == "CASE":
        for condition in types[0:-1:2] if len(types) % 2 else types[0::2]:
            if condition not in ("boolean", "null"):
                raise EsqlError(f"a CASE condition must be a boolean, got {condition}")
        values = [*types[1::2], types[-1]] if len(types) % 2 else types[1::2]
        return _common(values, "CASE")
    if name == "COALESCE":
        return _common(types, "COALESCE")
    if name == "MV_MIN":
        # MV_MIN reference, "Supported types": booleans, dates, numbers, strings (text gives keyword), ...
        if _family(types[0]) not in ("number", "date", "string", "boolean", "null"):
            raise EsqlError(f"MV_MIN needs a number, date, string or boolean, got {types[0]}")
        return "keyword" if types[0] == "text" else types[0]
    return types[0]


def _common(types: list[str], where: str) -> str:
    families = {_family(t) for t in types} - {"null"}
    if len(families) > 1:
        raise EsqlError(f"{where} mixes {types}")
    if "double" in types:
        return "double"
    return next((t for t in types if t != "null"), "null")


def _has_aggregation(node: Any) -> bool:
    return (isinstance(node, Call) and node.name in AGGREGATIONS) or any(map(_has_aggregation, _children(node)))


def _family(es_type: str) -> str:
    if es_type in NUMERIC_TYPES:
        return "number"
    if es_type in STRING_TYPES:
        return "string"
    return es_type


def _policy(args: EnrichArgs, policies: Mapping[str, Enrich] | None) -> Enrich:
    policy = (policies or {}).get(args.policy)
    if policy is None:
        raise EsqlError(f"unresolved enrich policy [{args.policy}]")
    return policy


def _policy_range(policy: Enrich) -> tuple[str, list[tuple[str, str]]] | None:
    """The policy's `query`, checked: None, or one `range` on a date field with `now` date math bounds,
    as (field, [(comparison, date math), ...])."""
    if policy.query is None:
        return None
    ranges = policy.query.get("range")
    if list(policy.query) != ["range"] or not isinstance(ranges, Mapping) or len(ranges) != 1:
        raise EsqlError(f"policy query {dict(policy.query)} is outside the subset: one `range` query")
    ((name, bounds),) = ranges.items()
    if policy.mapping.get(name) != "date":
        raise EsqlError(f"policy query range field [{name}] is not a date in [{policy.indices}]")
    if not isinstance(bounds, Mapping) or not bounds or set(bounds) - set(RANGE_BOUNDS):
        raise EsqlError(f"policy query range takes {sorted(RANGE_BOUNDS)} (with `now` date math), got {bounds}")
    for expression in bounds.values():
        if not isinstance(expression, str) or not DATE_MATH.fullmatch(expression):
            raise EsqlError(f"policy query date {expression!r} is outside the subset: now, now-90m, now-1h-30m")
    return name, [(RANGE_BOUNDS[k], v) for k, v in bounds.items()]


def _date_math(expression: str, now: datetime) -> datetime:
    moment = now
    for sign, amount, unit in re.findall(r"([+-])(\d+)([smhHdw])", expression):
        step = int(amount) * DATE_MATH_UNITS[unit]
        moment = moment + step if sign == "+" else moment - step
    return moment


def _enrich_fields(args: EnrichArgs, policy: Enrich) -> tuple[tuple[str, str], ...]:
    pairs = args.fields if args.fields is not None else tuple((f, f) for f in policy.enrich_fields)
    for _, source in pairs:
        if source not in policy.enrich_fields:
            raise EsqlError(f"enrich field [{source}] is not one of policy [{args.policy}]'s enrich fields")
    return pairs


# ------------------------------------------------------------------------------------------ evaluation


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def load_rows(documents: Iterable[Mapping[str, Any]], mapping: Mapping[str, str]) -> list[dict[str, Any]]:
    """Documents as ES|QL sees them: flattened, each value of the type its field is mapped as, an array
    of several values a multi-value."""
    rows = []
    for document in documents:
        row = {}
        for path, value in flatten(document).items():
            es_type = mapping.get(path, "")
            values = [_typed(v, es_type) for v in (value if isinstance(value, list) else [value]) if v is not None]
            row[path] = None if not values else values[0] if len(values) == 1 else MultiValue(values)
        rows.append(row)
    return rows


def _typed(value: Any, es_type: str) -> Any:
    if es_type in INTEGER_TYPES:
        return int(value)
    if es_type in NUMERIC_TYPES:
        return float(value)
    if es_type == "date":
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value / 1000, UTC)
        return datetime.fromisoformat(value).astimezone(UTC)
    return value


def by_data_stream(
    documents: Iterable[Mapping[str, Any]], mapping: Mapping[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """Documents loaded into the data streams their `data_stream` fields name (`type-dataset-namespace`)."""
    streams: dict[str, list[Mapping[str, Any]]] = {}
    for document in documents:
        ds = document["data_stream"]
        streams.setdefault(f"{ds['type']}-{ds['dataset']}-{ds['namespace']}", []).append(document)
    return {name: load_rows(docs, mapping) for name, docs in streams.items()}


def enrich_index(
    policy: Enrich, indices: Mapping[str, list[dict[str, Any]]], executed: datetime | None
) -> list[dict[str, Any]]:
    """The enrich index `_execute` builds at `executed`: the rows of the indices the policy's pattern matches
    that its `query` keeps.

    Enrich policy definition: `query` (optional, Query DSL) filters the source documents used to build the
    enrich index. `_execute` reindexes the source indices with that query (EnrichPolicyRunner, "transfer data
    to enrich index", elastic/elasticsearch x-pack/plugin/enrich), so `now` in a range's date math is the time
    `_execute` ran; the index is a snapshot until the next `_execute` (execute enrich policy API). Range query
    reference: a document matches when one of the field's values lies within every bound; one without the
    field does not match."""
    sources = [r for name, rs in indices.items() if fnmatch.fnmatchcase(name, policy.indices) for r in rs]
    checked = _policy_range(policy)
    if checked is None:
        return sources
    if executed is None:
        raise EsqlError(f"policy [{policy.indices}] has a `now` query: give the time `_execute` ran")
    name, bounds = checked
    limits = [(op, _date_math(expression, executed)) for op, expression in bounds]
    return [r for r in sources if any(all(_operate(op, v, at) for op, at in limits) for v in _values(r.get(name)))]


def evaluate(
    commands: list[Command],
    indices: Mapping[str, list[dict[str, Any]]],
    *,
    now: datetime | None = None,
    policies: Mapping[str, Enrich] | None = None,
    executed: datetime | None = None,
) -> list[dict[str, Any]]:
    """Run the query over `indices` (index or data stream name → rows, as `load_rows` makes them).
    `now` is NOW(); an enrich policy's index is `enrich_index` of `indices` as `_execute` built it at
    `executed`."""
    run = _Run(now)
    patterns = commands[0].args
    rows = [dict(r) for name, rs in indices.items() if any(fnmatch.fnmatchcase(name, p) for p in patterns) for r in rs]
    for command in commands[1:]:
        if command.name == "WHERE":
            rows = [r for r in rows if run.value(command.args, r) is True]
        elif command.name == "EVAL":
            for row in rows:
                for name, expr in command.args:
                    row[name] = run.value(expr, row)
        elif command.name == "STATS":
            rows = run.stats(command.args, rows)
        elif command.name == "ENRICH":
            policy = _policy(command.args, policies)
            rows = _enrich(command.args, policy, rows, enrich_index(policy, indices, executed))
        elif command.name == "SORT":
            for name, descending in reversed(command.args):
                # Nulls last ascending, first descending (SORT reference: NULLS LAST is ASC's default,
                # NULLS FIRST DESC's). Stable sorts, last key first, give the multi-key order.
                present = [r for r in rows if r.get(name) is not None]
                missing = [r for r in rows if r.get(name) is None]
                present.sort(key=lambda r, n=name: r[n], reverse=descending)
                rows = missing + present if descending else present + missing
        elif command.name == "KEEP":
            rows = [{n: r.get(n) for n in command.args} for r in rows]
        elif command.name == "LIMIT":
            rows = rows[: command.args]
    return rows


def _enrich(
    args: EnrichArgs, policy: Enrich, rows: list[dict[str, Any]], sources: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    pairs = _enrich_fields(args, policy)
    matches: dict[Any, list[dict[str, Any]]] = {}
    for source in sources:
        for key in _values(source.get(policy.match_field)):
            matches.setdefault(key, []).append(source)
    out = []
    for row in rows:
        key = row.get(args.on or policy.match_field)
        found = [] if key is None or isinstance(key, MultiValue) else matches.get(key, [])
        enriched = dict(row)
        for name, source in pairs:
            # Several matching enrich documents are "combined into multi-values" (ENRICH reference).
            values = [v for match in found for v in _values(match.get(source))]
            enriched[name] = None if not values else values[0] if len(values) == 1 else MultiValue(values)
        out.append(enriched)
    return out


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, MultiValue) else [value]


@dataclass
class _Run:
    now: datetime | None

    def stats(self, args: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        aggregates, groups = args
        buckets: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for row in rows:
            # A multi-valued group key puts the row in the group of each of its values (STATS reference).
            keys = [_values(self.value(expr, row)) or [None] for _, expr in groups]
            for key in itertools.product(*keys):
                buckets.setdefault(key, []).append(row)
        if not groups and not buckets:
            buckets[()] = []  # STATS without BY over no rows still gives one row
        out = []
        for key, members in buckets.items():
            result = {name: self.aggregate(expr, members) for name, expr in aggregates}
            result.update(zip((name for name, _ in groups), key, strict=True))
            out.append(result)
        return out

    def aggregate(self, node: Any, rows: list[dict[str, Any]]) -> Any:
        if isinstance(node, Call) and node.name in AGGREGATIONS:
            if node.name == "COUNT" and node.args == (Literal("*"),):
                return len(rows)
            values = [v for r in rows for v in _values(self.value(node.args[0], r))]
            if node.name == "COUNT":
                return len(values)
            if not values:
                return None
            if node.name == "MAX":
                return max(values)
            if node.name == "MIN":
                return min(values)
            if node.name == "SUM":
                return sum(values)
            return sum(values) / len(values)
        if isinstance(node, Binary):
            return _operate(node.op, self.aggregate(node.left, rows), self.aggregate(node.right, rows))
        if isinstance(node, Unary):
            return self._unary(node.op, self.aggregate(node.operand, rows))
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Call):
            return self._call(node.name, [self.aggregate(a, rows) for a in node.args])
        raise EsqlError(f"{_render(node)} is neither an aggregation nor built from them")

    def value(self, node: Any, row: Mapping[str, Any]) -> Any:
        if isinstance(node, Field):
            return row.get(node.name)
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, IsNull):
            return (self.value(node.operand, row) is None) != node.negated
        if isinstance(node, Unary):
            return self._unary(node.op, self.value(node.operand, row))
        if isinstance(node, Binary):
            left, right = self.value(node.left, row), self.value(node.right, row)
            return _logic(node.op, left, right) if node.op in ("AND", "OR") else _operate(node.op, left, right)
        if isinstance(node, Call):
            if node.name in AGGREGATIONS:
                raise EsqlError(f"{node.name} outside STATS")
            if node.name == "CASE":
                args = node.args
                for condition, result in zip(args[0::2], args[1::2], strict=False):
                    if self.value(condition, row) is True:
                        return self.value(result, row)
                return self.value(args[-1], row) if len(args) % 2 else None
            return self._call(node.name, [self.value(a, row) for a in node.args])
        raise EsqlError(f"cannot evaluate {node!r}")

    @staticmethod
    def _unary(op: str, inner: Any) -> Any:
        if inner is None or isinstance(inner, MultiValue):
            return None
        return -inner if op == "-" else not inner

    def _call(self, name: str, args: list[Any]) -> Any:
        if name == "NOW":
            if self.now is None:
                raise EsqlError("NOW() needs the evaluation's `now`")
            return self.now
        if name == "COALESCE":
            return next((a for a in args if a is not None), None)
        if name == "MV_MIN":
            # "Converts a multivalued expression into a single valued column containing the minimum value"
            # (MV_MIN reference); null stays null.
            return min(args[0]) if isinstance(args[0], MultiValue) else args[0]
        if any(a is None or isinstance(a, MultiValue) for a in args):
            return None
        if name == "CONCAT":
            return "".join(args)
        if name == "ROUND":
            value, digits = args[0], (args[1] if len(args) > 1 else 0)
            if isinstance(value, int):
                return value
            # ES|QL rounds half away from zero.
            scale = 10.0**digits
            return math.copysign(math.floor(abs(value) * scale + 0.5) / scale, value)
        raise EsqlError(f"unsupported function {name}")


def _logic(op: str, left: Any, right: Any) -> Any:
    """Three-valued logic."""
    left, right = (None if isinstance(v, MultiValue) else v for v in (left, right))
    if op == "AND":
        if left is False or right is False:
            return False
        return None if left is None or right is None else True
    if left is True or right is True:
        return True
    return None if left is None or right is None else False


def _operate(op: str, left: Any, right: Any) -> Any:
    if left is None or right is None or isinstance(left, MultiValue) or isinstance(right, MultiValue):
        return None
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if op in ("<", "<=", ">", ">="):
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    both_integers = isinstance(left, int) and isinstance(right, int)
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op in ("/", "%"):
        if right == 0:
            return None  # ES|QL: division by zero is null (with a warning)
        if both_integers:
            quotient = abs(left) // abs(right) * (1 if (left >= 0) == (right >= 0) else -1)
            return quotient if op == "/" else left - right * quotient
        return left / right if op == "/" else math.fmod(left, right)
    raise EsqlError(f"unsupported operator {op}")
