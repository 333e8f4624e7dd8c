"""Fixtures for runtime tests (helpers live in runtime_support.py)."""

from runtime_support import sim

__all__ = ["sim"]
