"""Every test runs as on a clean machine, whoever runs it.

The user's own `METRICS_POLLER_CONFIG` and `METRICS_POLLER__*` variables (an operator running
`make test` on a host where the poller is configured) are removed before any test starts, so neither
in-process configuration loading nor any subprocess a test starts can see them.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    for name in [n for n in os.environ if n.startswith("METRICS_POLLER")]:
        del os.environ[name]
