"""Loading and creating the master key (the vault's key-encryption key).

The master key is 32 random bytes, written as base64url (base64 is accepted too). It comes from
the ``KEYGUARD_MASTER_KEY`` environment variable or from a key file (``master_key_file`` in the
config) that only its owner may read (``chmod 600``). It is never stored next to the data it
protects, never logged, and only its public ``kek_id`` is ever shown.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigurationError
from .crypto import MASTER_KEY_BYTES, MasterKey
from .keyring import Keyring, KeyringFile, parse_keyring

__all__ = [
    "MASTER_KEY_ENV",
    "MasterKey",
    "load_master_key",
    "load_keyring",
    "read_keyring_file",
    "decode_master_key",
    "encode_master_key",
    "create_master_key_file",
]

MASTER_KEY_ENV = "KEYGUARD_MASTER_KEY"
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")

_HOW = (
    f"set {MASTER_KEY_ENV} to a base64url-encoded 32-byte key, or set 'master_key_file' in the "
    "config to a file only you can read; create one with 'keyguard vault init-master-key PATH'"
)


def encode_master_key(master: MasterKey) -> str:
    """The text form of a master key: unpadded base64url of its 32 bytes."""
    return base64.urlsafe_b64encode(master.key).rstrip(b"=").decode("ascii")


def decode_master_key(text: str, *, source: str) -> MasterKey:
    """Parse base64url or base64 of exactly 32 bytes; ``source`` names where it came from."""
    cleaned = "".join(text.split()).rstrip("=")
    if any(c in cleaned for c in "-_") and any(c in cleaned for c in "+/"):
        raise ConfigurationError(f"{source}: the master key mixes base64 and base64url")
    standard = cleaned.translate(_URLSAFE_TO_STANDARD)
    try:
        raw = binascii.a2b_base64(standard + "=" * (-len(standard) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{source}: the master key is not valid base64") from None
    if len(raw) != MASTER_KEY_BYTES:
        raise ConfigurationError(
            f"{source}: the master key must be exactly {MASTER_KEY_BYTES} bytes "
            f"(got {len(raw)}); {_HOW}"
        )
    return MasterKey(raw)


def too_open(mode: int, uid: int, gid: int, euid: int, groups: list[int]) -> bool:
    """Whether a key file with this mode and owner is readable by anybody but this process.

    Refused: any access by others, and any group access, with one exception: a file owned by
    root, readable (only) by a group this process (not root) belongs to. That is how
    Kubernetes mounts a Secret for a non-root pod with ``fsGroup`` (root:fsGroup, mode 0440,
    whatever ``defaultMode`` says): the group is the pod's own.
    """
    if mode & stat.S_IRWXO:
        return True
    group = mode & stat.S_IRWXG
    if not group:
        return False
    return not (group == stat.S_IRGRP and uid == 0 and euid != 0 and gid in groups)


def _decode(text: str, source: str) -> MasterKey:
    return decode_master_key(text, source=source)


def read_keyring_file(path: Path) -> Keyring:
    """The keys of a master key file (see :mod:`.keyring`), checked as :func:`load_master_key`
    checks one."""
    return parse_keyring(_key_file_text(path), source=f"master key file '{path}'", decode=_decode)


def _key_file_text(path: Path) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigurationError(
            f"master key file {str(path)!r} does not exist; create it with "
            f"'keyguard vault init-master-key {path}'"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"master key file {str(path)!r} cannot be read: {exc.strerror}"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigurationError(f"master key file {str(path)!r} is not a regular file")
    if too_open(st.st_mode, st.st_uid, st.st_gid, os.geteuid(), os.getgroups() + [os.getegid()]):
        raise ConfigurationError(
            f"master key file {str(path)!r} is accessible by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run 'chmod 600 {path}'"
        )
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        raise ConfigurationError(
            f"master key file {str(path)!r} cannot be read as base64 text"
        ) from None


def load_master_key(environ: Mapping[str, str], key_file: str | None) -> MasterKey:
    """The (current) master key from ``KEYGUARD_MASTER_KEY``, else from ``key_file``.

    Raises :class:`ConfigurationError` when neither is set, the value is malformed, or the key
    file is readable by group or others.
    """
    return load_keyring(environ, key_file)[0].current


def load_keyring(
    environ: Mapping[str, str], key_file: str | None
) -> tuple[Keyring, KeyringFile | None]:
    """The master keys from ``KEYGUARD_MASTER_KEY`` (read once), else from ``key_file`` (and
    that file, for a running process to re-read when a rekey changes it)."""
    value = environ.get(MASTER_KEY_ENV)
    if value is not None:
        if not value.strip():
            raise ConfigurationError(f"{MASTER_KEY_ENV} is set but empty; {_HOW}")
        if "," not in value and "\n" not in value.strip():
            return Keyring(decode_master_key(value, source=MASTER_KEY_ENV)), None
        return parse_keyring(value, source=MASTER_KEY_ENV, decode=_decode), None
    if key_file:
        path = Path(key_file)
        return read_keyring_file(path), KeyringFile(path, read_keyring_file)
    raise ConfigurationError(f"no master key: {_HOW}")


def create_master_key_file(path: str | os.PathLike[str]) -> MasterKey:
    """Write a new random master key to ``path`` with mode 0600; never overwrites a file.

    The file is created with ``O_EXCL`` (so an existing file, or a racing writer, makes this fail)
    and filled in one write; a failed write removes it again.
    """
    p = Path(path)
    if not p.parent.exists():  # a fresh machine has no /etc/keyguard: make it, for its owner only
        try:
            p.parent.mkdir(mode=0o700, parents=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the folder '{p.parent}': {exc.strerror}; create it (mode 0700) "
                "or run as a user who may"
            ) from None
    master = MasterKey.generate()
    data = (encode_master_key(master) + "\n").encode("ascii")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(p, flags, 0o600)
    except FileExistsError:
        raise ConfigurationError(
            f"{str(p)!r} already exists; refusing to overwrite a master key file"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create '{p}': {exc.strerror}; check the folder's permissions"
        ) from None
    try:
        os.fchmod(fd, 0o600)  # the umask cannot widen it, but be explicit
        written = os.write(fd, data)
        if written != len(data):
            raise OSError("short write")
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        p.unlink(missing_ok=True)
        raise ConfigurationError(f"cannot write {str(p)!r}: {exc}") from None
    os.close(fd)
    return master
