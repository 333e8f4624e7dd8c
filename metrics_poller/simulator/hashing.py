"""Cheap deterministic hashing: the simulator's only source of randomness.

Python's `hash()` is salted per process, so every value the simulator invents comes from these
functions instead, which makes a world and its data reproducible from the seed alone.
"""

from __future__ import annotations

import hashlib
import uuid

MASK64 = 0xFFFF_FFFF_FFFF_FFFF
GOLDEN = 0x9E37_79B9_7F4A_7C15


def mix64(x: int) -> int:
    """splitmix64 finaliser: a fast, well-distributed 64-bit integer hash."""
    x = (x + GOLDEN) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58_476D_1CE4_E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D0_49BB_1331_11EB) & MASK64
    return x ^ (x >> 31)


def key64(*parts: object) -> int:
    """A 64-bit key for a tuple of parts (used once per series or account, so blake2b is affordable)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def pick(key: int, salt: int, options: tuple[str, ...]) -> str:
    """A deterministic choice among `options`."""
    return options[mix64(key ^ salt) % len(options)]


def uniform(key: int, salt: int) -> float:
    """A deterministic float in [0, 1)."""
    return (mix64(key ^ salt) >> 11) / float(1 << 53)


def guid(*parts: object) -> str:
    """A deterministic GUID in Azure's lower-case 8-4-4-4-12 form."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return str(uuid.UUID(bytes=hashlib.blake2b(text, digest_size=16).digest(), version=4))
