"""Where documents go: Elasticsearch, or NDJSON for demos and debugging."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from metrics_poller.model import Document, Outcome


class RefusedByConfiguration(Exception):
    """The destination refuses writes for a reason only an operator can fix (a missing pipeline, an
    unsupported version, every document refused alike): one line, exit 2, nothing more is written."""


class Sink(Protocol):
    """Stores documents and says, per document and in order, what became of each."""

    # Why the last write left documents unstored (one line, no secrets), for the cycle summary.
    last_problem: str | None

    async def write(self, documents: Sequence[Document]) -> list[Outcome]:
        """One outcome per document, in the same order."""
        ...

    async def close(self) -> None:
        """Flush and release resources; no write may follow."""
        ...
