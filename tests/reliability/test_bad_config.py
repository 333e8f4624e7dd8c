"""Bad configuration, fuzzed: never a traceback, one line per problem naming the key and what is
expected, exit code 2 from the command line."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from metrics_poller import cli, config

SECRET = "s3cr3t-VALUE-never-printed"
LINE = re.compile(r"^config: (?P<key>[^:\n]+?): (?P<what>\S.*)$")


def _keys(model: type[BaseModel], prefix: str = "") -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        path = (*(prefix.split(".") if prefix else ()), name)
        out.append(tuple(path))
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += _keys(annotation, ".".join(path))
    return out


KNOWN = _keys(config.Config)
NAMES = [*sorted({part for path in KNOWN for part in path}), "bogus", "Period", "azure ", "", "0", "élan", "a.b"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "-1", "300", "PT1M", "https://x", "http://x", "{region}", "true", "[a, b]"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(NAMES), inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A nested mapping of plausible and implausible keys, values of every JSON/YAML kind."""
    data: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 6))):
        path = (
            draw(st.sampled_from(KNOWN))
            if draw(st.booleans())
            else tuple(draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)))
        )
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = draw(values)
    return data


environments = st.dictionaries(
    st.lists(st.sampled_from([p.upper() for p in NAMES if p.strip()] + ["X"]), min_size=1, max_size=3).map(
        lambda parts: config.ENV_PREFIX + "__".join(parts)
    ),
    st.one_of(st.text(max_size=12), st.sampled_from(["[1, 2]", "{a: 1}", "!!python/object:os.system", "0x10"])),
    max_size=3,
)


def check_lines(lines: list[str]) -> None:
    assert lines, "a ConfigError without a message"
    for line in lines:
        match = LINE.match(line)
        assert match, f"not one 'config: <key>: <what>' line: {line!r}"
        assert SECRET not in line, line


SECRET_KEYS = [
    k for k in KNOWN if any(s in k[-1] for s in ("secret", "password", "api_key", "token")) and "file" not in k[-1]
]
secret_values = st.one_of(
    st.just(SECRET), st.just([SECRET]), st.just({"nested": SECRET}), st.just(SECRET + "\n" + SECRET)
)


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(SECRET_KEYS), value=secret_values, data=documents())
def test_secret_values_are_never_echoed(key: tuple[str, ...], value: Any, data: dict[str, Any]) -> None:
    node = data
    for part in key[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[key[-1]] = value
    data["unknown_key_for_sure"] = 1
    try:
        config.parse(data, environ={config.ENV_PREFIX + "__".join(p.upper() for p in key): SECRET})
    except config.ConfigError as exc:
        check_lines(exc.lines)
    else:
        raise AssertionError("an unknown key was accepted")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=documents(), environ=environments)
def test_parse_never_raises_anything_but_one_line_per_problem(data: dict[str, Any], environ: dict[str, str]) -> None:
    try:
        config.parse(data, environ=environ)
    except config.ConfigError as exc:
        check_lines(exc.lines)


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(KNOWN), value=values)
def test_a_bad_value_is_reported_under_its_own_key(key: tuple[str, ...], value: Any) -> None:
    data: dict[str, Any] = {}
    node = data
    for part in key[:-1]:
        node = node.setdefault(part, {})
    node[key[-1]] = value
    try:
        config.parse(data, environ={})
    except config.ConfigError as exc:
        check_lines(exc.lines)
        # Some line names this key, a parent of it, or a sibling it is validated together with.
        named = {LINE.match(line).group("key") for line in exc.lines}  # type: ignore[union-attr]
        assert any(n.split(".")[0] == key[0] or n == "(top level)" for n in named), (key, exc.lines)


# -------------------------------------------------------------------------------- command line


def run_main(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(args)
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=documents(), bad=st.sampled_from(KNOWN))
def test_once_with_a_bad_config_file_exits_2_with_config_lines(
    tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any], bad: tuple[str, ...]
) -> None:
    # Always at least one problem: an unknown key next to a real one, so no run ever starts.
    node = data
    for part in bad[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node["no_such_key_" + bad[-1]] = 1
    path = tmp_path_factory.mktemp("cfg") / "poller.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_POLLER")}
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        code, out, err = run_main(["once", "--config", str(path)])
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert code == 2
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    check_lines(lines)


BAD_FILES = {
    "not_yaml.yaml": "azure: [unclosed\n  period: : :\n",
    "top_list.yaml": "- period\n- 300\n",
    "tabs.yaml": "period:\t300\n\tazure: {}\n",
    "wrong_types.yaml": "period: five\nazure:\n  concurrency: [1]\n  credential:\n    type: client_secret\n"
    f"    client_secret: {{nested: {SECRET}}}\nelasticsearch:\n  hosts: 42\n  password: {SECRET}\n",
    "binary.yaml": "\x00\x01\x02 period: 300",
    "python_tag.yaml": "period: !!python/object/apply:os.system ['true']\n",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_cli_subprocess_bad_yaml_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(BAD_FILES[name])
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_POLLER")}
    result = subprocess.run(
        [sys.executable, "-m", "metrics_poller", "once", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("config:") for line in lines), result.stderr
    if name == "wrong_types.yaml":
        keys = {LINE.match(line).group("key") for line in lines if LINE.match(line)}  # type: ignore[union-attr]
        assert {"period", "azure.concurrency", "elasticsearch.hosts"} <= keys, lines
