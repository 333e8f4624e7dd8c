"""Cursor stores: where each (account, request group) cursor lives between cycles and restarts.

A cursor is the end of the last window whose documents Elasticsearch acknowledged. The file store
writes atomically (temporary file + fsync + rename), so a crash leaves either the old or the new state.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

CursorKey = tuple[str, str]


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
    """All cursors in one JSON file: `{"version": 1, "cursors": {"<account>|<group>": "<time>"}}`."""

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
            cursors = {tuple(key.rsplit("|", 1)): decode_cursor(value) for key, value in raw.get("cursors", {}).items()}
        except (AttributeError, ValueError) as exc:
            raise StateError(f"cursor file {self.path} is not in the expected format: {exc}") from None
        # Every entry splits into new strings, but an account has one entry per metric group and the
        # maps live as long as the process: keep one string per distinct account key and group name.
        strings: dict[str, str] = {}
        self._cursors = {
            (strings.setdefault(k[0], k[0]), strings.setdefault(k[1], k[1])): v
            for k, v in cursors.items()
            if len(k) == 2
        }
        return dict(self._cursors)

    async def save(self, changes: Mapping[CursorKey, datetime]) -> None:
        if not changes:
            return
        self._cursors.update(changes)
        payload = {
            "version": 1,
            "cursors": {f"{a}|{g}": encode_cursor(t) for (a, g), t in sorted(self._cursors.items())},
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".cursors-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StateError(f"cannot write cursor file {self.path}: {exc.strerror or exc}") from None
