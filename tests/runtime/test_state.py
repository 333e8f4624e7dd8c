"""File cursor store: round trip, atomic replace, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from metrics_poller.state import FileCursorStore, StateError


async def test_round_trip_and_merge(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "cursors.json"
    store = FileCursorStore(path)
    assert await store.load() == {}
    t1 = datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    t2 = datetime(2026, 1, 1, 10, 10, tzinfo=UTC)
    await store.save({("acc|with|bars", "requests"): t1})
    await store.save({("other", "tokens"): t2})
    again = FileCursorStore(path)
    assert await again.load() == {("acc|with|bars", "requests"): t1, ("other", "tokens"): t2}
    assert [p.name for p in path.parent.iterdir()] == ["cursors.json"]  # no temporary files left


async def test_unreadable_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    path.write_text("{not json")
    with pytest.raises(StateError, match="cannot read cursor file"):
        await FileCursorStore(path).load()


async def test_unwritable_location_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a path below a regular file cannot be created, even by root
    with pytest.raises(StateError, match="cannot write cursor file"):
        await FileCursorStore(blocker / "c.json").save({("a", "g"): datetime(2026, 1, 1, tzinfo=UTC)})
