"""Shared helpers for the deployment-artefact tests (Dockerfile, systemd, Helm, cron, Kubernetes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def check_config() -> Callable[..., Any]:
    """Validate a poller.yaml mapping plus environment overrides with the application's own loader.

    Environment names that do not map to a configuration key are rejected there (the model forbids
    unknown keys), so this catches a misspelt METRICS_POLLER__ variable in any deployment file.
    """
    from metrics_poller import config

    def check(environ: Mapping[str, str], data: Any = None) -> Any:
        poller_env = {k: v for k, v in environ.items() if k.startswith(config.ENV_PREFIX)}
        try:
            return config.parse(data or {}, poller_env)
        except config.ConfigError as exc:  # pragma: no cover - the failure message is the point
            pytest.fail("configuration rejected:\n" + "\n".join(exc.lines))

    return check
