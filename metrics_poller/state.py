"""Cursor stores: where each (account, dataset, request group) cursor lives between cycles and restarts.

A cursor is the end of the last window whose documents Elasticsearch acknowledged. The file store
writes atomically (temporary file + fsync + rename), so a crash leaves either the old or the new state.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import orjson

CursorKey = tuple[str, str, str]  # (account key, dataset name, group name)
# Before datasets existed every cursor belonged to the Azure OpenAI metrics; stores written then
# (file version 1, cursor documents without `dataset`) are read as this dataset's.
LEGACY_DATASET = "azure.open_ai"
FILE_VERSION = 2


class CursorStore(Protocol):
    async def load(self) -> dict[CursorKey, datetime]: ...

    async def save(self, changes: Mapping[CursorKey, datetime]) -> None: ...


class StateError(Exception):
    """The cursor store cannot be read or written (one line, for the user)."""


def encode_cursor(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decode_cursor(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class FileCursorStore:
    """All cursors in one JSON file: `{"version": 2, "cursors": {"<account>|<dataset>|<group>": "<time>"}}`.

    A version 1 file (`"<account>|<group>"`, written before datasets) is read as `azure.open_ai`
    cursors and rewritten as version 2 on the next save.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._cursors: dict[CursorKey, datetime] = {}

    async def load(self) -> dict[CursorKey, datetime]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read cursor file {self.path}: {exc}") from None
        try:
            version = raw.get("version", 1)
            entries = raw.get("cursors", {}).items()
            if version == 1:
                cursors = {_legacy_key(key): decode_cursor(value) for key, value in entries}
            elif version == FILE_VERSION:
                cursors = {tuple(key.rsplit("|", 2)): decode_cursor(value) for key, value in entries}
            else:
                raise ValueError(f"version {version!r} is not 1 or {FILE_VERSION}")
        except (AttributeError, ValueError) as exc:
            raise StateError(f"cursor file {self.path} is not in the expected format: {exc}") from None
        # Every entry splits into new strings, but an account has one entry per metric group and the
        # maps live as long as the process: keep one string per distinct account key, dataset and group.
        strings: dict[str, str] = {}
        self._cursors = {
            (strings.setdefault(k[0], k[0]), strings.setdefault(k[1], k[1]), strings.setdefault(k[2], k[2])): v
            for k, v in cursors.items()
            if len(k) == 3
        }
        return dict(self._cursors)

    async def save(self, changes: Mapping[CursorKey, datetime]) -> None:
        if not changes:
            return
        self._cursors.update(changes)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".cursors-", dir=self.path.parent)
            with os.fdopen(fd, "wb") as handle:
                for chunk in _encoded(self._cursors):
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StateError(f"cannot write cursor file {self.path}: {exc.strerror or exc}") from None


def _encoded(cursors: Mapping[CursorKey, datetime], per_chunk: int = 10_000) -> Iterator[bytes]:
    """The version 2 file in chunks: a whole estate's map is hundreds of thousands of entries, and one
    encoded copy of it at once was the cycle's peak memory. Each distinct time is formatted once."""
    texts: dict[datetime, bytes] = {}
    yield b'{"version":%d,"cursors":{' % FILE_VERSION
    entries = iter(cursors.items())
    separator = b""
    while chunk := list(itertools.islice(entries, per_chunk)):
        parts = []
        for (account, dataset, group), moment in chunk:
            text = texts.get(moment)
            if text is None:
                text = texts[moment] = orjson.dumps(encode_cursor(moment))
            parts.append(orjson.dumps(f"{account}|{dataset}|{group}") + b":" + text)
        yield separator + b",".join(parts)
        separator = b","
    yield b"}}"


def _legacy_key(key: str) -> tuple[str, ...]:
    """A version 1 key `<account>|<group>` as (account, azure.open_ai, group)."""
    parts = key.rsplit("|", 1)
    return (parts[0], LEGACY_DATASET, parts[1]) if len(parts) == 2 else ()
