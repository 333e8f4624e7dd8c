"""Bad settings fuzzed into a working configuration and run through the installed command (`once` and
`validate`, each a new process as cron or an operator starts it): never a traceback, exit 0, 2 or 3,
a few lines on stderr. test_bad_config.py fuzzes the parser; this drives what comes after it
(preflight, Elasticsearch connection, Azure), where issue 11 found the tracebacks."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_poller.simulator import SimSpec, Simulator

INSTALLED = Path(sys.executable).with_name("metrics-poller")
SECRET = "fuzz-SECRET-value-0123"

# Values that pass or fail the parser, the preflight or the first connection; placeholders are filled
# with paths of this test ({blocker}: a regular file, {tmp}: a directory). Hosts are all on loopback,
# so nothing waits for a resolver or a black hole.
BAD: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("output",): st.sampled_from(["ndjson", "elasticsearch", "kafka", None]),
    ("period",): st.sampled_from([300, 600, 301, -1, "x", [1]]),
    ("ndjson", "path"): st.sampled_from(["", "{blocker}/out.ndjson", "{tmp}", "{tmp}/new/out.ndjson", "-", 7]),
    ("state", "path"): st.sampled_from(["{blocker}/c.json", "{tmp}", "{blocker}", "{tmp}/s/c.json", ""]),
    ("state", "backend"): st.sampled_from(["file", "elasticsearch", "redis"]),
    ("http", "listen"): st.sampled_from(["127.0.0.1:0", "localhost", ":", "[::1]:99999", None]),
    ("elasticsearch", "hosts"): st.lists(
        st.sampled_from(["127.0.0.1:9", "http://127.0.0.1", "ftp://x", "", "https://", "localhost:abc", "http://[::1"]),
        max_size=2,
    ),
    ("elasticsearch", "cloud_id"): st.one_of(
        st.text(max_size=20), st.just("x:" + base64.b64encode(b"$es").decode()), st.just("x:%%%")
    ),
    ("elasticsearch", "ca_certs"): st.sampled_from(["{tmp}/none.pem", "{blocker}", "{tmp}"]),
    ("elasticsearch", "api_key"): st.sampled_from([SECRET, "", "id:" + SECRET]),
    ("elasticsearch", "dead_letter_path"): st.sampled_from(["{blocker}/d.ndjson", "{tmp}"]),
    ("elasticsearch", "request_timeout"): st.sampled_from([2, 0, -1, "soon"]),
    ("azure", "concurrency"): st.sampled_from([1, 0, "many"]),
}


@pytest.fixture(scope="module")
def small_sim() -> Iterator[Simulator]:
    with Simulator(SimSpec(seed=5, subscriptions=1, regions=("eastus",), accounts_per_region=2)) as sim:
        yield sim


def _fill(value: Any, tmp: Path, blocker: Path) -> Any:
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp)).replace("{blocker}", str(blocker))
    if isinstance(value, list):
        return [_fill(v, tmp, blocker) for v in value]
    return value


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(["once", "validate"]),
    changes=st.lists(st.sampled_from(sorted(BAD)), min_size=1, max_size=3, unique=True).flatmap(
        lambda keys: st.tuples(*(st.tuples(st.just(k), BAD[k]) for k in keys))
    ),
)
def test_the_command_survives_fuzzed_settings(
    small_sim: Simulator, tmp_path_factory: pytest.TempPathFactory, command: str, changes: tuple[Any, ...]
) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    blocker = tmp / "a-file"
    blocker.write_text("not a directory\n")
    retry = {"attempts": 1, "backoff_initial": 0.01, "backoff_max": 0.01}
    data: dict[str, Any] = {
        "azure": small_sim.azure_config(retry=retry, request_timeout=5, metric_groups=["requests"]),
        "output": "ndjson",
        "ndjson": {"path": str(tmp / "out.ndjson")},
        "state": {"path": str(tmp / "cursors.json")},
        "http": {"listen": None},
        "elasticsearch": {"hosts": ["127.0.0.1:9"], "request_timeout": 3, "retry_attempts": 1},
    }
    for path, value in changes:
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _fill(value, tmp, blocker)
    config = tmp / "poller.yaml"
    config.write_text(yaml.safe_dump(data))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_POLLER")}
    result = subprocess.run(
        [str(INSTALLED), command, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environ, "METRICS_POLLER__LOGGING__FORMAT": "text", "METRICS_POLLER__LOGGING__LEVEL": "WARNING"},
    )
    shown = f"{changes}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert result.returncode in (0, 2, 3), shown
    assert len(result.stderr.splitlines()) <= 5, shown
    assert SECRET not in result.stdout + result.stderr, shown
