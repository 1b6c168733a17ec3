"""TLS on the listeners: a server context whose certificate can change under it.

:class:`ListenerTls` holds the certificate and key files of ``listen.tls``. Its
:attr:`~ListenerTls.context` is what the sockets serve with; the certificate actually
presented is picked per handshake (the context's SNI callback, which runs for every
handshake, with or without a server name), so a new certificate is in service for the next
connection while open connections keep theirs. :meth:`~ListenerTls.watch` re-reads the files
when they change (a renewed certificate, ``cert-manager`` rewriting a Secret volume); a pair
that does not load (a half-written file, a key that does not match) is refused with an error
line and the running certificate stays. TLS 1.2 is the minimum.

With ``client_ca_file`` (the proxy port only) the handshake asks for a client certificate and
verifies one that is sent against those CAs (a connection without one still works: it must then
send a key or a token); :mod:`keyguard.identity.certificates` decides what it may do.

The private key file is checked like the master key: a regular file, readable by its owner
only (mode 0600 or 0400), else the gateway does not start.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import stat
from pathlib import Path

from ..core.tasks import PeriodicTask
from ..errors import ConfigurationError

__all__ = ["ListenerTls"]

log = logging.getLogger("keyguard.tls")


def _check_key_file(path: Path) -> None:
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigurationError(
            f"listen.tls.key_file: cannot read {str(path)!r} ({exc.strerror})"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigurationError(f"listen.tls.key_file: {str(path)!r} is not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"listen.tls.key_file: {str(path)!r} is readable by others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run 'chmod 600 {path}'"
        )


def _context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    _check_key_file(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError):
            raise ConfigurationError(
                f"listen.tls.client_ca_file: cannot load {str(client_ca)!r} as PEM CA certificates"
            ) from None
        ctx.verify_mode = ssl.CERT_OPTIONAL  # a key still works; a certificate must verify
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "invalid"
        raise ConfigurationError(
            f"listen.tls: cannot load the certificate {str(cert)!r} with its key ({reason}); "
            "check that both are PEM files and that the key belongs to the certificate"
        ) from None
    return ctx


class ListenerTls:
    def __init__(self, cert_file: str, key_file: str, client_ca_file: str | None = None) -> None:
        self._cert, self._key = Path(cert_file), Path(key_file)
        self._ca = Path(client_ca_file) if client_ca_file is not None else None
        self._current = _context(self._cert, self._key, self._ca)
        self._stamp = self._files_stamp()
        # what the sockets serve with: its callback picks the current context for each
        # handshake (the one the client certificate is verified with, too)
        self.context = _context(self._cert, self._key, self._ca)
        self.context.sni_callback = self._pick
        self._task: PeriodicTask | None = None

    def _pick(self, sock: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        sock.context = self._current

    def _files_stamp(self) -> tuple[float, float, int, int]:
        try:
            c, k = self._cert.stat(), self._key.stat()
        except OSError:
            return (0.0, 0.0, 0, 0)
        return (c.st_mtime, k.st_mtime, c.st_ino, k.st_ino)

    def reload(self) -> bool:
        """Re-read the files if they changed; true if a new certificate is in service."""
        stamp = self._files_stamp()
        if stamp == self._stamp:
            return False
        try:
            fresh = _context(self._cert, self._key, self._ca)
        except ConfigurationError as exc:
            log.error("TLS certificate not reloaded, the running one stays: %s", exc)
            return False
        self._current, self._stamp = fresh, stamp
        log.info("TLS certificate reloaded from %s", self._cert.name)
        return True

    def watch(self, interval_s: float) -> None:
        self._task = PeriodicTask("reloading the TLS certificate", self._tick, interval=interval_s)
        self._task.start()

    async def _tick(self) -> None:
        await asyncio.to_thread(self.reload)

    async def close(self) -> None:
        if self._task is not None:
            await self._task.close()
