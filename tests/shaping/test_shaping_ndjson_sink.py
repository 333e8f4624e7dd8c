"""The NDJSON sink: one `body` line per document, appended, every document CREATED."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import orjson
import pytest

from metrics_poller.model import Document, Outcome
from metrics_poller.sinks import Sink
from metrics_poller.sinks.ndjson import NdjsonSink


def document(n: int) -> Document:
    body = orjson.dumps({"n": n, "x": float(n) + 0.5})
    return Document(id=f"id{n}", body=body, account_key="a", groups=frozenset({"g"}))


async def test_appends_lines_creating_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.ndjson"
    sink = NdjsonSink(str(target))
    assert await sink.write([document(1), document(2)]) == [Outcome.CREATED, Outcome.CREATED]
    assert await sink.write([]) == []
    await sink.close()
    again = NdjsonSink(str(target))
    await again.write([document(3)])
    await again.close()
    assert target.read_bytes() == b'{"n":1,"x":1.5}\n{"n":2,"x":2.5}\n{"n":3,"x":3.5}\n'


async def test_concurrent_batches_stay_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.ndjson"
    sink = NdjsonSink(str(target))
    batches = [[document(b * 100 + i) for i in range(50)] for b in range(8)]
    await asyncio.gather(*(sink.write(batch) for batch in batches))
    await sink.close()
    lines = target.read_bytes().splitlines()
    assert len(lines) == 400
    firsts = [int(lines[i].split(b",")[0][5:]) for i in range(0, 400, 50)]
    for start in range(0, 400, 50):
        base = firsts[start // 50]
        assert [int(line.split(b",")[0][5:]) for line in lines[start : start + 50]] == list(
            range(base, base + 50)
        )


async def test_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    sink = NdjsonSink("-")
    await sink.write([document(7)])
    await sink.close()
    await sink.close()  # closing twice is harmless
    assert capsysbinary.readouterr().out == b'{"n":7,"x":7.5}\n'


async def test_write_after_close_fails(tmp_path: Path) -> None:
    sink = NdjsonSink(str(tmp_path / "x.ndjson"))
    await sink.close()
    with pytest.raises(RuntimeError, match="closed"):
        await sink.write([document(1)])


async def test_is_a_sink(tmp_path: Path) -> None:
    sink: Sink = NdjsonSink(str(tmp_path / "x.ndjson"))  # mypy checks the Protocol here
    await sink.close()


async def test_a_failed_write_fails_every_batch_written_with_it() -> None:
    """/dev/full refuses every write (ENOSPC): each caller whose lines were in the failed write is told,
    none is answered as if its lines were stored."""
    sink = NdjsonSink("/dev/full")
    batches = [[document(b * 10 + i) for i in range(10)] for b in range(5)]
    results = await asyncio.gather(*(sink.write(batch) for batch in batches), return_exceptions=True)
    assert len(results) == 5 and all(isinstance(r, OSError) for r in results), results
    with contextlib.suppress(OSError):  # closing flushes what the device still refuses
        await sink.close()
