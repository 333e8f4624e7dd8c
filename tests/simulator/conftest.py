"""Fixtures for the simulator tests (helpers live in simulator_support.py)."""

import sys
from pathlib import Path

# The helpers module sits next to this file; pyproject's `pythonpath` does not list this directory.
sys.path.insert(0, str(Path(__file__).parent))

from simulator_support import (
    _clean,
    arm_token,
    credential,
    metrics_token,
    monitor,
    resources,
    sim,
)

__all__ = ["_clean", "arm_token", "credential", "metrics_token", "monitor", "resources", "sim"]
