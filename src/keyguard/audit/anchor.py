"""Anchors: checkpoints and head sets kept outside the store, so a cut at the end shows.

Someone who can write the audit tables can delete the newest records *and* the checkpoints
and head sets naming them; what is left is a shorter log that verifies. A copy somewhere that
person cannot write tells: :class:`FileAnchor` appends, every ``checkpoint_interval_s`` and
when the writer stops, the writer's newest checkpoint and the head set it signed (the export's
lines; :mod:`.heads`), one JSON line each, flushed to disk::

    {"type":"checkpoint","chain":"...","seq":812,"hash":"...","created":"...","key_id":"...","signature":"...","writer":"..."}
    {"type":"heads","created":"...","writer":"...","key_id":"...","heads":{"<chain>":[812,"..."]},"signature":"..."}

``keyguard audit verify --anchors FILE`` checks every line against the log; a checkpoint or a
head past its chain's end is a truncation. Any file of such lines is an anchor: an export, a
SIEM's copy of the audit sink (``monitor.audit.sink``), a syslog file (text before the first
``{`` of a line is ignored). Put it where the store's writers cannot write: another disk,
another host, an append-only file (``chattr +a``), a write-once bucket.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigurationError
from .chain import Checkpoint, canonical
from .heads import Heads

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

    def write_lines(self, objects: Iterable[dict[str, Any]]) -> None:
        """Append checkpoint and head set lines and flush them to disk (blocking: run it off
        the loop)."""
        lines = [canonical(obj) + "\n" for obj in objects]
        if not lines or self._fd is None:
            return
        os.write(self._fd, "".join(lines).encode())
        os.fsync(self._fd)

    def newest_heads(self, check: Callable[[Heads], bool]) -> Heads | None:
        return newest_anchored(self.path, check)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_anchor(lines: Iterable[str]) -> Iterator[tuple[int, Checkpoint | Heads]]:
    """``(line number, checkpoint or head set)`` for every such line; other lines (records,
    blank, text that is not an audit line) are skipped."""
    for number, line in enumerate(lines, 1):
        cp = _parse(line)
        if cp is not None:
            yield number, cp


def newest_anchored(path: str, check: Callable[[Heads], bool]) -> Heads | None:
    """The newest valid head set at the end of the file."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - _TAIL_BYTES))
            tail = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the audit anchor {path!r}: {exc.strerror}") from None
    found = [h for _, h in read_anchor(tail.splitlines()) if isinstance(h, Heads) and check(h)]
    return max(found, key=lambda h: h.created, default=None)


def _parse(line: str) -> Checkpoint | Heads | None:
    start = line.find("{")
    if start < 0:
        return None
    try:
        obj = orjson.loads(line[start:])
        if not isinstance(obj, dict):
            return None
        if obj.get("type") == "heads":
            return Heads.from_json(obj)
        if obj.get("type") != "checkpoint":
            return None
        return Checkpoint.from_json(obj)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
