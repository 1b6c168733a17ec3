"""Client certificates as credentials: mutual TLS on the proxy port.

The TLS handshake has already verified the certificate against ``listen.tls.client_ca_file``
(a certificate from any other issuer never completes a handshake). What it is *allowed* is the
policy's: an app lists the certificates that authenticate as it (``apps.NAME.
client_certificates``), like the keys made for it. A certificate authenticates as an app when
exactly one app lists one of its names:

* ``subject:<the whole subject>``, compared as RFC 4514 writes it, never a part of it: a
  crafted subject gains nothing (a comma inside a value stays escaped inside that value, a
  ``CN=`` written into an ``OU`` is that OU's text, a second ``CN`` makes another subject);
* ``dns:<name>`` / ``uri:<URI>``: one of its subject alternative names, exactly.

No binding, or bindings to two apps: denied (401), with nothing in the answer about the
policy. The principal is ``cert:<the first 16 hex digits of the certificate's SHA-256>``, of
kind ``cert``, and the bindings that name its app apply to it, as to the app's keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography import x509

from ..core.principal import Principal
from ..errors import AuthenticationFailed
from ..policy.compiled import Policy

__all__ = ["CertificateAuthenticator", "certificate_names"]

_MAX_NAMES = 64  # SAN entries looked at (a certificate may carry thousands)


def certificate_names(der: bytes) -> tuple[str, ...]:
    """Every name a binding may give for the certificate ``der``; ``ValueError`` if it does
    not parse."""
    cert = x509.load_der_x509_certificate(der)
    names = [f"subject:{cert.subject.rfc4514_string()}"]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return tuple(names)
    names += [f"dns:{d.lower()}" for d in san.get_values_for_type(x509.DNSName)]
    names += [f"uri:{u}" for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
    return tuple(names[: _MAX_NAMES + 1])


def _denied(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(
        "Access denied: this client certificate is not allowed to call this gateway. Ask "
        "your operator to bind it to your app, or send a Keyguard key.",
        reason=reason,
    )


class CertificateAuthenticator:
    def __init__(self, policy: Callable[[], Policy]) -> None:
        self._policy = policy
        self._for: Policy | None = None
        self._apps: dict[str, str] = {}  # binding -> app, for the policy in _for

    def _table(self) -> dict[str, str]:
        policy = self._policy()
        if policy is not self._for:
            self._apps = {
                binding: app
                for app, spec in policy.document.apps.items()
                for binding in spec.client_certificates
            }
            self._for = policy
        return self._apps

    def authenticate(self, der: bytes) -> Principal:
        try:
            names = certificate_names(der)
        except ValueError:
            raise _denied("client_certificate_malformed") from None
        table = self._table()
        apps = {table[name] for name in names if name in table}
        if len(apps) != 1:
            raise _denied(
                "client_certificate_unbound" if not apps else "client_certificate_ambiguous"
            )
        fingerprint = hashlib.sha256(der).hexdigest()[:16]
        return Principal(kind="cert", id=f"cert:{fingerprint}", app=apps.pop())
