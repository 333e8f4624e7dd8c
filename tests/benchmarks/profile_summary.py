"""Summarise a py-spy `--format raw` profile (collapsed stacks): top functions by self and total time.

`python -m tests.benchmarks.profile_summary PROFILE.txt [N]`
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "metrics_poller/", "lib/python3.11/"):
        if marker in path:
            path = (marker if marker == "metrics_poller/" else "") + path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


def summarise(text: str, top: int = 25) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread (")]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    lines = [f"samples: {samples}", "", "self %   function"]
    lines += [f"{100 * n / samples:6.1f}   {name}" for name, n in own.most_common(top)]
    lines += ["", "total %  function"]
    lines += [f"{100 * n / samples:6.1f}   {name}" for name, n in total.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    print(summarise(Path(sys.argv[1]).read_text(), top))


if __name__ == "__main__":
    main()
