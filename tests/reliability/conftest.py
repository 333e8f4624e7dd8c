"""Fixtures for the reliability tests (helpers live in reliability_support.py)."""

import sys
from pathlib import Path

# The helpers module sits next to this file; pyproject's `pythonpath` does not list this directory.
sys.path.insert(0, str(Path(__file__).parent))

from reliability_support import es

__all__ = ["es"]
