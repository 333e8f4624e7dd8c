"""Every test runs as on a clean machine, whoever runs it.

The user's own `METRICS_POLLER_CONFIG` and `METRICS_POLLER__*` variables (an operator running
`make test` on a host where the poller is configured) are removed before any test starts, so neither
in-process configuration loading nor any subprocess a test starts can see them.
Hypothesis runs without its per-example deadline.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# Speed goals live in the benchmarks, never in tests: Hypothesis's per-example deadline (200 ms) is a
# timer, and on a loaded 2-core machine it failed property tests whose properties held.
settings.register_profile("metrics-poller", deadline=None, print_blob=True)
settings.load_profile("metrics-poller")


def pytest_configure(config: pytest.Config) -> None:
    for name in [n for n in os.environ if n.startswith("METRICS_POLLER")]:
        del os.environ[name]
