"""File cursor store: round trip, atomic replace, clear errors."""

from __future__ import annotations

import json
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
    await store.save({("acc|with|bars", "azure.open_ai", "requests"): t1})
    await store.save({("other", "azure.ai_foundry", "tokens"): t2})
    again = FileCursorStore(path)
    assert await again.load() == {
        ("acc|with|bars", "azure.open_ai", "requests"): t1,
        ("other", "azure.ai_foundry", "tokens"): t2,
    }
    assert [p.name for p in path.parent.iterdir()] == ["cursors.json"]  # no temporary files left


async def test_a_file_written_before_datasets_is_read_as_azure_open_ai_and_upgraded(tmp_path: Path) -> None:
    """Version 1 files (`<account>|<group>`) keep working: their cursors are the Azure OpenAI ones."""
    path = tmp_path / "cursors.json"
    old = {"acc|with|bars|requests": "2026-01-01T10:05:00Z", "/subscriptions/s/x|tokens": "2026-01-01T10:10:00Z"}
    path.write_text(json.dumps({"version": 1, "cursors": old}))
    t1 = datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    t2 = datetime(2026, 1, 1, 10, 10, tzinfo=UTC)
    migrated = {
        ("acc|with|bars", "azure.open_ai", "requests"): t1,
        ("/subscriptions/s/x", "azure.open_ai", "tokens"): t2,
    }
    store = FileCursorStore(path)
    assert await store.load() == migrated
    await store.save({("/subscriptions/s/x", "azure.ai_foundry", "models_tokens"): t2})
    written = json.loads(path.read_text())
    assert written["version"] == 2
    assert written["cursors"]["acc|with|bars|azure.open_ai|requests"] == "2026-01-01T10:05:00Z"
    assert await FileCursorStore(path).load() == {
        **migrated,
        ("/subscriptions/s/x", "azure.ai_foundry", "models_tokens"): t2,
    }


async def test_a_file_of_an_unknown_version_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    path.write_text(json.dumps({"version": 7, "cursors": {}}))
    with pytest.raises(StateError, match="not in the expected format: version 7"):
        await FileCursorStore(path).load()


async def test_unreadable_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    path.write_text("{not json")
    with pytest.raises(StateError, match="cannot read cursor file"):
        await FileCursorStore(path).load()


async def test_unwritable_location_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a path below a regular file cannot be created, even by root
    with pytest.raises(StateError, match="cannot write cursor file"):
        await FileCursorStore(blocker / "c.json").save({("a", "d", "g"): datetime(2026, 1, 1, tzinfo=UTC)})
