"""NDJSON sink: one document source per line, to stdout (`-`) or appended to a file."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from metrics_poller.model import Document, Outcome


class NdjsonSink:
    """Writes each `document.body` as a line; every document counts as created once written.

    File writes block, so they run in a thread. One thread hop costs a unit of work more time than its
    write (the hop waits for the event loop and the interpreter lock), and one batch at a time made the
    sink the cycle's bottleneck: batches that arrive while a write is under way are written together in
    the next one (group commit), each whole and in arrival order, and each caller is answered when its
    own lines are written."""

    last_problem: str | None = None  # a failed write raises instead

    def __init__(self, path: str) -> None:
        self._path = path
        self._owned = path != "-"
        self._stream: BinaryIO | None = self._open(path)
        self._waiting: list[tuple[bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

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
        written = asyncio.get_running_loop().create_future()
        self._waiting.append((data, written))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(self._stream))
        await written
        return [Outcome.CREATED] * len(documents)

    async def _drain(self, stream: BinaryIO) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                await asyncio.to_thread(self._write_lines, stream, [data for data, _ in group])
            except Exception as exc:  # every caller of this group learns that its lines may be lost
                for _, written in group:
                    if not written.done():
                        written.set_exception(exc)
            else:
                for _, written in group:
                    if not written.done():
                        written.set_result(None)

    @staticmethod
    def _write_lines(stream: BinaryIO, chunks: list[bytes]) -> None:
        stream.writelines(chunks)
        stream.flush()

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if self._writer is not None:
            await asyncio.shield(self._writer)  # lines already accepted are written before the close
        if self._owned:
            await asyncio.to_thread(stream.close)
        else:
            await asyncio.to_thread(stream.flush)
