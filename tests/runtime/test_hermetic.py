"""The suite passes whatever the outer environment holds (issue 11, seen 10)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOSTILE = {
    "METRICS_POLLER_CONFIG": "/nonexistent/poller.yaml",
    "METRICS_POLLER__PERIOD": "301",
    "METRICS_POLLER__AZURE__TOP": "lots",
    "METRICS_POLLER__OUTPUT": "elasticsearch",
}


def test_tests_ignore_the_users_metrics_poller_variables() -> None:
    """Configuration tests, in process and through the command, with an operator's variables set outside."""
    selection = [
        "tests/runtime/test_hermetic.py::test_no_metrics_poller_variable_reaches_a_test",
        "tests/runtime/test_config.py",
        "tests/runtime/test_cli.py::test_no_azure_targets_is_a_configuration_error",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *selection],
        cwd=REPO,
        env={**os.environ, **HOSTILE},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_no_metrics_poller_variable_reaches_a_test() -> None:
    """tests/conftest.py removes them before the first test, for in-process loading and subprocesses alike."""
    assert not [name for name in os.environ if name.startswith("METRICS_POLLER")]
