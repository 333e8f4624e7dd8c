"""A parser, type checker and evaluator for the subset of ES|QL the README's alert rules use.

No Elasticsearch engine runs here and no ES|QL parser is installable, so this follows Elastic's ES|QL
reference (docs: "ES|QL commands", "ES|QL functions and operators", "ES|QL syntax reference"):

- commands FROM (index patterns), WHERE, EVAL, STATS ... BY, SORT (ASC/DESC), KEEP, LIMIT;
- operators OR, AND, NOT, ==, !=, <, <=, >, >=, IS [NOT] NULL, +, -, *, /, %; `//` comments;
- functions ROUND, CASE, COALESCE; aggregations MAX, MIN, SUM, AVG, COUNT (an aggregation may sit inside an
  expression, as in `MAX(x) * 100`);
- null semantics: an operator or function with a null operand is null (CASE and COALESCE aside), WHERE
  keeps rows whose condition is true, aggregations skip nulls;
- numbers: integer operands give integer results (division truncates), any double makes a double.

Anything outside the subset is a parse error, so a rule edited beyond it fails the test loudly.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NUMERIC_TYPES = frozenset({"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"})
STRING_TYPES = frozenset({"keyword", "constant_keyword", "text"})
AGGREGATIONS = frozenset({"MAX", "MIN", "SUM", "AVG", "COUNT"})
FUNCTIONS = frozenset({"ROUND", "CASE", "COALESCE"})
COMMANDS = frozenset({"WHERE", "EVAL", "STATS", "SORT", "KEEP", "LIMIT"})


class EsqlError(Exception):
    pass


# ------------------------------------------------------------------------------------------ syntax

TOKEN = re.compile(
    r"""\s*(?:
      (?P<comment>//[^\n]*)
    | (?P<number>\d+\.\d+|\d+)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<op>==|!=|<=|>=|[|,()=<>+\-*/%])
    | (?P<quoted>`[^`]+`)
    | (?P<word>[A-Za-z_@][A-Za-z0-9_.@\-*]*)
    )""",
    re.X,
)


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str


def tokenize(text: str) -> list[Tok]:
    tokens: list[Tok] = []
    position = 0
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            if text[position:].strip():
                raise EsqlError(f"unexpected {text[position:position + 20]!r}")
            break
        position = match.end()
        kind = match.lastgroup
        assert kind is not None
        if kind != "comment":
            tokens.append(Tok(kind, match.group(kind)))
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
        patterns = [self.take(kind="word").text]
        while self.at(","):
            self.take(",")
            patterns.append(self.take(kind="word").text)
        commands = [Command("FROM", tuple(patterns))]
        while self.peek() is not None:
            self.take("|")
            name = self.take(kind="word").text.upper()
            if name not in COMMANDS:
                raise EsqlError(f"unsupported command {name}")
            commands.append(Command(name, getattr(self, f"_{name.lower()}")()))
        return commands

    def _where(self) -> Any:
        return self.expression()

    def _assignments(self) -> tuple[tuple[str, Any], ...]:
        items = []
        while True:
            if self.peek(1) is not None and self.peek(1).text == "=":  # type: ignore[union-attr]
                name = self.field_name()
                self.take("=")
            else:
                name = None
            expr = self.expression()
            items.append((name or _render(expr), expr))
            if not self.at(","):
                return tuple(items)
            self.take(",")

    def _eval(self) -> Any:
        return self._assignments()

    def _stats(self) -> Any:
        aggregates = self._assignments()
        groups: list[str] = []
        if self.at("BY"):
            self.take("BY")
            groups.append(self.field_name())
            while self.at(","):
                self.take(",")
                groups.append(self.field_name())
        return aggregates, tuple(groups)

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
        if tok.kind != "word" or tok.text.upper() in ("BY", "AND", "OR", "NOT", "IS", "NULL"):
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
            return Call(name, tuple(args))
        return Field(self.field_name())


def parse(text: str) -> list[Command]:
    return Parser(text).query()


def _render(node: Any) -> str:
    if isinstance(node, Field):
        return node.name
    if isinstance(node, Literal):
        return repr(node.value)
    if isinstance(node, Call):
        return f"{node.name}({', '.join(map(_render, node.args))})"
    if isinstance(node, Binary):
        return f"{_render(node.left)} {node.op} {_render(node.right)}"
    return str(node)


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
            for _, expr in aggregates:
                walk(expr)
            read.update(g for g in groups if g not in created)
            created = {name for name, _ in aggregates} | set(groups)
        elif command.name in ("SORT", "KEEP"):
            names = [n for n, _ in command.args] if command.name == "SORT" else list(command.args)
            read.update(n for n in names if n not in created)
    return read


def _children(node: Any) -> tuple[Any, ...]:
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Unary | IsNull):
        return (node.operand,)
    return ()


# ------------------------------------------------------------------------------------------ types


def check_types(commands: list[Command], mapping: Mapping[str, str]) -> dict[str, str]:
    """Infer every column's type from the index mapping; raise on a field that is not mapped, arithmetic
    or a numeric aggregation over a non-number, or a comparison between a string and a number."""
    columns = dict(mapping)

    def infer(node: Any) -> str:
        if isinstance(node, Field):
            if node.name not in columns:
                raise EsqlError(f"unknown column [{node.name}]")
            return columns[node.name]
        if isinstance(node, Literal):
            value = node.value
            return "null" if value is None else "boolean" if isinstance(value, bool) else (
                "long" if isinstance(value, int) else "double" if isinstance(value, float) else "keyword"
            )
        if isinstance(node, IsNull):
            infer(node.operand)
            return "boolean"
        if isinstance(node, Unary):
            inner = infer(node.operand)
            if node.op == "-" and inner not in NUMERIC_TYPES:
                raise EsqlError(f"- needs a number, got {inner}")
            return inner if node.op == "-" else "boolean"
        if isinstance(node, Binary):
            left, right = infer(node.left), infer(node.right)
            if node.op in ("AND", "OR"):
                return "boolean"
            if node.op in ("==", "!=", "<", "<=", ">", ">="):
                kinds = {_family(left), _family(right)} - {"null"}
                if len(kinds) > 1:
                    raise EsqlError(f"cannot compare {left} with {right} in {_render(node)}")
                return "boolean"
            if _family(left) != "number" or _family(right) != "number":
                raise EsqlError(f"arithmetic on {left} and {right} in {_render(node)}")
            return "long" if {left, right} <= {"long", "integer"} else "double"
        if isinstance(node, Call):
            types = [infer(a) for a in node.args if a != Literal("*")]
            if node.name in ("MAX", "MIN", "SUM", "AVG", "ROUND") and _family(types[0]) != "number":
                raise EsqlError(f"{node.name} needs a number, got {types[0]}")
            if node.name == "AVG":
                return "double"
            if node.name == "COUNT":
                return "long"
            if node.name == "CASE":
                values = [*types[1::2], types[-1]] if len(types) % 2 else types[1::2]
                families = {_family(t) for t in values} - {"null"}
                if len(families) > 1:
                    raise EsqlError(f"CASE mixes {values}")
                return "double" if "double" in values else values[0]
            return types[0] if node.name != "COALESCE" else next((t for t in types if t != "null"), "null")
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
            for group in groups:
                result[group] = infer(Field(group))
            columns = result
        elif command.name == "KEEP":
            columns = {n: infer(Field(n)) for n in command.args}
        elif command.name == "SORT":
            for name, _ in command.args:
                infer(Field(name))
    return columns


def _family(es_type: str) -> str:
    if es_type in NUMERIC_TYPES:
        return "number"
    if es_type in STRING_TYPES:
        return "string"
    return es_type


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
    """Documents as ES|QL sees them: flattened, each value of the type its field is mapped as."""
    rows = []
    for document in documents:
        row = {}
        for path, value in flatten(document).items():
            es_type = mapping.get(path)
            if es_type in ("double", "float", "half_float", "scaled_float") and value is not None:
                value = float(value)
            elif es_type in ("long", "integer", "short", "byte") and value is not None:
                value = int(value)
            row[path] = value
        rows.append(row)
    return rows


def evaluate(commands: list[Command], indices: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run the query over `indices` (index or data stream name → rows)."""
    patterns = commands[0].args
    rows = [dict(r) for name, rs in indices.items() if any(fnmatch.fnmatchcase(name, p) for p in patterns) for r in rs]
    for command in commands[1:]:
        if command.name == "WHERE":
            rows = [r for r in rows if _value(command.args, r) is True]
        elif command.name == "EVAL":
            for row in rows:
                for name, expr in command.args:
                    row[name] = _value(expr, row)
        elif command.name == "STATS":
            aggregates, groups = command.args
            buckets: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
            for row in rows:
                buckets.setdefault(tuple(row.get(g) for g in groups), []).append(row)
            rows = []
            for key, members in buckets.items():
                out = {name: _aggregate(expr, members) for name, expr in aggregates}
                out.update(zip(groups, key, strict=True))
                rows.append(out)
        elif command.name == "SORT":
            for name, descending in reversed(command.args):
                # Nulls sort last in either direction (ES|QL's default NULLS LAST for ASC, FIRST for DESC
                # is not needed by the rules, which filter nulls out first).
                rows.sort(key=lambda r, n=name: (r.get(n) is None, r.get(n)), reverse=descending)
        elif command.name == "KEEP":
            rows = [{n: r.get(n) for n in command.args} for r in rows]
        elif command.name == "LIMIT":
            rows = rows[: command.args]
    return rows


def _aggregate(node: Any, rows: list[dict[str, Any]]) -> Any:
    if isinstance(node, Call) and node.name in AGGREGATIONS:
        if node.name == "COUNT" and node.args == (Literal("*"),):
            return len(rows)
        values = [v for v in (_value(node.args[0], r) for r in rows) if v is not None]
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
        return _operate(node.op, _aggregate(node.left, rows), _aggregate(node.right, rows))
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Call):
        return _call(node.name, [_aggregate(a, rows) for a in node.args])
    raise EsqlError(f"{_render(node)} is neither an aggregation nor built from them")


def _value(node: Any, row: Mapping[str, Any]) -> Any:
    if isinstance(node, Field):
        return row.get(node.name)
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, IsNull):
        return (_value(node.operand, row) is None) != node.negated
    if isinstance(node, Unary):
        inner = _value(node.operand, row)
        if inner is None:
            return None
        return -inner if node.op == "-" else not inner
    if isinstance(node, Binary):
        if node.op in ("AND", "OR"):
            return _logic(node.op, _value(node.left, row), _value(node.right, row))
        return _operate(node.op, _value(node.left, row), _value(node.right, row))
    if isinstance(node, Call):
        if node.name == "CASE":
            args = node.args
            for condition, result in zip(args[0::2], args[1::2], strict=False):
                if _value(condition, row) is True:
                    return _value(result, row)
            return _value(args[-1], row) if len(args) % 2 else None
        return _call(node.name, [_value(a, row) for a in node.args])
    raise EsqlError(f"cannot evaluate {node!r}")


def _logic(op: str, left: Any, right: Any) -> Any:
    """Three-valued logic."""
    if op == "AND":
        if left is False or right is False:
            return False
        return None if left is None or right is None else True
    if left is True or right is True:
        return True
    return None if left is None or right is None else False


def _operate(op: str, left: Any, right: Any) -> Any:
    if left is None or right is None:
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


def _call(name: str, args: list[Any]) -> Any:
    if name == "COALESCE":
        return next((a for a in args if a is not None), None)
    if name == "ROUND":
        value, digits = args[0], (args[1] if len(args) > 1 else 0)
        if value is None or digits is None:
            return None
        if isinstance(value, int):
            return value
        # ES|QL rounds half away from zero.
        scale = 10.0**digits
        return math.copysign(math.floor(abs(value) * scale + 0.5) / scale, value)
    raise EsqlError(f"unsupported function {name}")
