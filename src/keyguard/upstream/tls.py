"""Which certificates an upstream's TLS is checked against.

TLS to an upstream is always verified. ``ca_file`` (per upstream) adds a CA bundle to the
system trust store: a private PKI, a TLS-inspecting proxy, or ``keyguard emulator --tls DIR``'s
``DIR/ca.pem``. The data plane, the rotation's check of a new key and the CLI use the same
context, built once per file.
"""

from __future__ import annotations

import ssl
from functools import lru_cache

from ..errors import ConfigurationError

__all__ = ["trust", "is_certificate_error"]


@lru_cache(maxsize=32)
def _context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ConfigurationError(
            f"ca_file '{ca_file}': cannot load it as a PEM CA bundle ({reason}); point ca_file "
            "at the CA certificate (keyguard emulator --tls DIR writes DIR/ca.pem)"
        ) from None
    return context


def trust(ca_file: str | None) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl=``: the system store (``True``), plus ``ca_file`` when given."""
    return True if ca_file is None else _context(ca_file)


def is_certificate_error(exc: BaseException) -> bool:
    """Whether a client error is a TLS verification failure (not a network one)."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        if type(seen).__name__ in ("ClientConnectorCertificateError", "ClientSSLError"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
