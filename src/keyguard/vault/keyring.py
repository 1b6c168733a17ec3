"""The master keys a process accepts: the current one, and during a rekey the previous ones.

A master key file holds one key per line (``#`` comments allowed): the **first** is the
current key (new versions are sealed under it), any further ones are *previous* keys, accepted
only to read versions not yet re-wrapped. ``keyguard vault rekey`` writes the new key in front
of the old one (the window opens), re-wraps every version, and ``keyguard vault rekey --finish``
rewrites the file with the new key alone (the window closes). Running gateways re-read the
file when it changes (checked at most once a second, on a vault read), so neither step needs a
restart, and once the window is closed the old key opens nothing anywhere.

The file is replaced atomically: written in full to a new 0600 file beside it (``O_EXCL``,
never following a link), synced, then renamed over it; a failed write removes the new file, so
no partial or stray copy of a key is left behind. ``KEYGUARD_MASTER_KEY`` may hold the same
list (comma or newline separated); a process reads it once.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError
from .crypto import MasterKey

__all__ = ["Keyring", "KeyringFile", "parse_keyring", "format_keyring", "write_keyring_file"]

#: a key file is stat'ed for changes at most this often (seconds)
RECHECK_S = 1.0
_MAX_KEYS = 8


@dataclass(frozen=True)
class Keyring:
    current: MasterKey
    previous: tuple[MasterKey, ...] = ()

    def for_kek(self, kek_id: str) -> MasterKey | None:
        """The key with this public id, if this keyring holds it."""
        for key in (self.current, *self.previous):
            if key.kek_id == kek_id:
                return key
        return None

    def opened_with(self, new: MasterKey) -> Keyring:
        """``new`` current, every key held so far kept as previous (the window opens)."""
        if new.kek_id == self.current.kek_id:
            return self
        kept = [k for k in (self.current, *self.previous) if k.kek_id != new.kek_id]
        return Keyring(new, tuple(kept))

    def closed(self) -> Keyring:
        return Keyring(self.current)


def parse_keyring(text: str, *, source: str, decode: Callable[[str, str], MasterKey]) -> Keyring:
    """Keys, one a line (or comma separated), the first the current one."""
    pieces = [
        piece.strip()
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
        for piece in line.split(",")
        if piece.strip()
    ]
    if not pieces:
        raise ConfigurationError(f"{source}: no master key in it")
    if len(pieces) > _MAX_KEYS:
        raise ConfigurationError(
            f"{source}: {len(pieces)} master keys; finish the rekey ('keyguard vault rekey "
            "--finish') to keep only the current one"
        )
    keys = [decode(piece, f"{source} (key {i + 1})") for i, piece in enumerate(pieces)]
    return Keyring(keys[0], tuple(keys[1:]))


def format_keyring(keyring: Keyring, encode: Callable[[MasterKey], str]) -> str:
    lines = [encode(keyring.current)]
    if keyring.previous:
        lines.insert(0, "# keyguard master keys: the first is current; the others are read")
        lines.insert(1, "# only until 'keyguard vault rekey --finish'")
        lines += [encode(k) for k in keyring.previous]
    return "\n".join(lines) + "\n"


def write_keyring_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, mode 0600, leaving no stray copy."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.new")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write beside the master key file '{path}': {exc.strerror}"
        ) from None
    try:
        try:
            os.fchmod(fd, 0o600)
            data = text.encode("ascii")
            if os.write(fd, data) != len(data):
                raise OSError(0, "short write")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigurationError(
            f"cannot replace the master key file '{path}': {exc.strerror or exc}"
        ) from None
    try:  # the rename itself made durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - a directory that cannot be opened for reading
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class KeyringFile:
    """A key file a running process re-reads when it changes."""

    def __init__(
        self,
        path: Path,
        read: Callable[[Path], Keyring],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._read = read
        self._clock = clock
        self._checked = clock()
        self._signature = self._stat()

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def changed(self, *, force: bool = False) -> Keyring | None:
        """The file's keys if it changed since the last look (``None`` otherwise, or when it
        cannot be read now: the keys in hand stay in use)."""
        now = self._clock()
        if not force and now - self._checked < RECHECK_S:
            return None
        self._checked = now
        signature = self._stat()
        if signature is None or signature == self._signature:
            return None
        try:
            keyring = self._read(self.path)
        except ConfigurationError:
            return None  # a half-edited or unsafe file: keep the keys in hand, look again later
        self._signature = signature
        return keyring
