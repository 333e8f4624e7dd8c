"""NDJSON sink: one document source per line, to stdout (`-`) or appended to a file."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from metrics_poller.model import Document, Outcome


class NdjsonSink:
    """Writes each `document.body` as a line; every document counts as created."""

    last_problem: str | None = None  # a failed write raises instead

    def __init__(self, path: str) -> None:
        self._path = path
        self._owned = path != "-"
        self._stream: BinaryIO | None = self._open(path)
        self._lock = asyncio.Lock()  # keeps concurrent batches whole and in order

    @staticmethod
    def _open(path: str) -> BinaryIO:
        if path == "-":
            return sys.stdout.buffer
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.open("ab")

    async def write(self, documents: Sequence[Document]) -> list[Outcome]:
        if self._stream is None:
            raise RuntimeError(f"NDJSON sink {self._path} is closed")
        if not documents:
            return []
        data = b"\n".join([document.body for document in documents]) + b"\n"
        async with self._lock:
            # File writes block; a thread keeps the event loop (and its deadlines) responsive.
            await asyncio.to_thread(self._write_bytes, self._stream, data)
        return [Outcome.CREATED] * len(documents)

    @staticmethod
    def _write_bytes(stream: BinaryIO, data: bytes) -> None:
        stream.write(data)
        stream.flush()

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        async with self._lock:
            if self._owned:
                await asyncio.to_thread(stream.close)
            else:
                await asyncio.to_thread(stream.flush)
