"""Anchors: checkpoints kept outside the store, so a cut at the end of the log shows.

Someone who can write the audit tables can delete the newest records *and* the checkpoints
sealing them; what is left is a shorter log that verifies. A copy of the checkpoints somewhere
that person cannot write tells: :class:`FileAnchor` appends one JSON line per checkpoint (the
export's checkpoint line, plus the writer's id) to a file, flushed to disk, every
``checkpoint_interval_s`` and when the writer stops::

    {"type":"checkpoint","seq":812,"hash":"...","created":"...","key_id":"...","signature":"...","writer":"..."}

``keyguard audit verify --anchors FILE`` checks every line against the log; a checkpoint past
the log's end is a truncation. Any file of such lines is an anchor: an export, a SIEM's copy of
the audit sink (``monitor.audit.sink``), a syslog file (text before the first ``{`` of a line is
ignored). Put it where the store's writers cannot write: another disk, another host, an
append-only file (``chattr +a``), a write-once bucket.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson

from ..errors import ConfigurationError
from .chain import Checkpoint, canonical

__all__ = ["FileAnchor", "read_anchor", "newest_anchored"]

_TAIL_BYTES = 65_536  # the newest anchored checkpoint is looked for in the file's last 64 KiB


class FileAnchor:
    def __init__(self, path: str) -> None:
        folder = Path(path).parent
        if not folder.is_dir():
            raise ConfigurationError(
                f"monitor.audit.anchor_file: the folder {str(folder)!r} does not exist"
            )
        self.path = path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigurationError(
                f"monitor.audit.anchor_file: cannot open {path!r} for appending: {exc.strerror}"
            ) from None
        self._fd: int | None = fd

    def write(self, checkpoints: Iterable[Checkpoint], writer: str) -> None:
        """Append the checkpoints and flush them to disk (blocking: run it off the loop)."""
        lines = [canonical({**cp.to_json(), "writer": writer}) + "\n" for cp in checkpoints]
        if not lines or self._fd is None:
            return
        os.write(self._fd, "".join(lines).encode())
        os.fsync(self._fd)

    def newest(self, check: Callable[[Checkpoint], bool]) -> Checkpoint | None:
        return newest_anchored(self.path, check)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_anchor(lines: Iterable[str]) -> Iterator[tuple[int, Checkpoint]]:
    """``(line number, checkpoint)`` for every checkpoint line; other lines (records, blank,
    text that is not an audit line) are skipped."""
    for number, line in enumerate(lines, 1):
        cp = _parse(line)
        if cp is not None:
            yield number, cp


def newest_anchored(path: str, check: Callable[[Checkpoint], bool]) -> Checkpoint | None:
    """The checkpoint with the highest seq among the valid ones at the end of the file."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - _TAIL_BYTES))
            tail = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the audit anchor {path!r}: {exc.strerror}") from None
    found = [cp for _, cp in read_anchor(tail.splitlines()) if check(cp)]
    return max(found, key=lambda cp: cp.seq, default=None)


def _parse(line: str) -> Checkpoint | None:
    start = line.find("{")
    if start < 0:
        return None
    try:
        obj = orjson.loads(line[start:])
        if not isinstance(obj, dict) or obj.get("type") != "checkpoint":
            return None
        return Checkpoint.from_json(obj)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
