"""Ingest pipelines for the Elasticsearch test server: the processors integration pipelines use.

Modelled on Elasticsearch's ingest service: a bulk request's `pipeline` parameter replaces the
index's `index.default_pipeline`, and `_none` runs none (IngestService#resolvePipelines,
`IngestService.NOOP_PIPELINE_NAME`); a missing pipeline fails the item ("pipeline with id [x] does not
exist"). Processors: `rename` (RenameProcessor: `field`, `target_field`, `ignore_missing`; a missing
field without it fails), `set`, and `script` limited to the Painless forms Elastic's Azure packages
use, `ctx.<path> = ctx.<path> / <number or params.x>` guarded by `ctx.<path> != null`, with Java's
arithmetic (integer ÷ integer truncates). A pipeline using anything else is refused when it is PUT,
so a test can never pass on a processor the server does not really run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]
NONE_PIPELINE = "_none"

_PATH = r"ctx((?:\??\.\w+)+)"
_ASSIGN_DIVIDE = re.compile(rf"^\s*{_PATH}\s*=\s*{_PATH}\s*/\s*(?:(\d+(?:\.\d+)?)|params\.(\w+))\s*;?\s*$")
_NOT_NULL = re.compile(rf"^\s*{_PATH}\s*!=\s*null\s*$")


class PipelineError(Exception):
    """An ingest failure: `status`, Elasticsearch's error `kind` and its reason."""

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.kind = kind
        self.reason = reason


def _path(text: str) -> list[str]:
    return [part for part in text.replace("?", "").split(".") if part]


def _get(source: Mapping[str, Any], path: list[str]) -> Any:
    node: Any = source
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _set(source: Json, path: list[str], value: Any) -> None:
    node = source
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _remove(source: Json, path: list[str]) -> Any:
    node: Any = source
    for part in path[:-1]:
        node = node[part]
    return node.pop(path[-1])


@dataclass(frozen=True)
class Pipeline:
    name: str
    processors: tuple[Json, ...]
    on_failure: tuple[Json, ...]

    @classmethod
    def parse(cls, name: str, body: Mapping[str, Any]) -> Pipeline:
        processors = tuple(body.get("processors") or ())
        on_failure = tuple(body.get("on_failure") or ())
        for processor in (*processors, *on_failure):
            _check(processor)
        return cls(name, processors, on_failure)

    def run(self, source: Json) -> Json:
        """The document after the pipeline; raises `PipelineError` when it fails without `on_failure`."""
        try:
            for processor in self.processors:
                _apply(processor, source)
        except PipelineError as exc:
            if not self.on_failure:
                raise
            for processor in self.on_failure:
                _apply(processor, source, failure=exc.reason)
        return source


def _check(processor: Mapping[str, Any]) -> None:
    if len(processor) != 1:
        raise PipelineError(400, "parse_exception", "a processor must have exactly one type")
    kind, spec = next(iter(processor.items()))
    if kind == "rename" and "field" in spec and "target_field" in spec:
        return
    if kind == "set" and "field" in spec and "value" in spec:
        return
    if kind == "script":
        if spec.get("lang", "painless") != "painless" or not _ASSIGN_DIVIDE.match(str(spec.get("source", ""))):
            raise PipelineError(400, "parse_exception", f"the test server cannot run script {spec.get('source')!r}")
        if "if" in spec and not _NOT_NULL.match(str(spec["if"])):
            raise PipelineError(400, "parse_exception", f"the test server cannot evaluate if {spec['if']!r}")
        return
    raise PipelineError(400, "parse_exception", f"the test server does not support processor [{kind}]")


def _apply(processor: Mapping[str, Any], source: Json, failure: str | None = None) -> None:
    kind, spec = next(iter(processor.items()))
    condition = spec.get("if")
    if condition is not None:
        match = _NOT_NULL.match(condition)
        assert match is not None
        if _get(source, _path(match.group(1))) is None:
            return
    try:
        if kind == "rename":
            field = _path(spec["field"])
            if _get(source, field) is None:
                if spec.get("ignore_missing"):
                    return
                raise PipelineError(400, "illegal_argument_exception", f"field [{spec['field']}] doesn't exist")
            _set(source, _path(spec["target_field"]), _remove(source, field))
        elif kind == "set":
            value = spec["value"]
            if failure is not None and value == "{{ _ingest.on_failure_message }}":
                value = failure
            _set(source, _path(spec["field"]), value)
        else:
            _script(spec, source)
    except PipelineError:
        if not spec.get("ignore_failure"):
            raise


def _script(spec: Mapping[str, Any], source: Json) -> None:
    match = _ASSIGN_DIVIDE.match(str(spec["source"]))
    assert match is not None
    target, operand, literal, param = match.groups()
    divisor: Any = spec.get("params", {}).get(param) if param else (float(literal) if "." in literal else int(literal))
    value = _get(source, _path(operand))
    if not isinstance(value, int | float) or isinstance(value, bool) or not isinstance(divisor, int | float):
        raise PipelineError(400, "script_exception", "runtime error")
    quotient: int | float
    if isinstance(value, int) and isinstance(divisor, int):  # Java: integer ÷ integer truncates to zero
        if not divisor:
            raise PipelineError(400, "script_exception", "/ by zero")
        magnitude = abs(value) // abs(divisor)
        quotient = magnitude if (value >= 0) == (divisor > 0) else -magnitude
    else:
        quotient = value / divisor
    _set(source, _path(target), quotient)


def resolve(requested: str | None, default: str | None) -> str | None:
    """The pipeline a bulk item runs: the request's, else the index default; `_none` runs none."""
    name = requested if requested is not None else default
    return None if name in (None, "", NONE_PIPELINE) else name
