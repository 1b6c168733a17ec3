"""The proxy's authentication step: a classified credential becomes a principal, or a 401.

The request is first checked for what no credential can make right: a ``Host`` that is not
served (``access.allowed_hosts``) and a credential header sent twice (``api-key`` or
``Authorization``: which one would be believed?). Then, by credential kind
(:func:`keyguard.identity.credentials.extract_credential`):

* ``keyguard``  -- the key authenticator (cache, HMAC, state);
* ``jwt``       -- the Entra authenticator when ``access.entra`` is configured, else a 401;
  only from ``Authorization: Bearer``: a JWT in ``api-key`` is refused (Azure OpenAI refuses
  it too, and ``api-key`` is the header tools treat as a static key -- logged, copied,
  pasted -- where a bearer token must not travel);
* ``azure_key`` -- always refused. An 84-character identifiable Azure key, or a 32-hex key
  whose fingerprint is one of Keyguard's own upstream keys, means somebody holds a raw Azure
  key: a high-severity :class:`~keyguard.events.SecurityEvent` is emitted (the key never is).
  Another 32-hex string is refused as an unrecognised credential.

Messages to a caller that has not authenticated say what to fix in its own request, never
anything about the policy.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from ..azure_keys import validate_identifiable_key
from ..core.netaddr import host_allowed
from ..core.principal import Principal
from ..core.transport import Incoming
from ..errors import AuthenticationFailed, BadRequest
from ..events import EventBus, SecurityEvent
from .certificates import CertificateAuthenticator
from .credentials import Credential
from .entra import EntraAuthenticator
from .keys import KeyAuthenticator
from .managed_keys import ManagedKeyIndex

__all__ = ["Authenticator"]

security_log = logging.getLogger("keyguard.security")

_IDENTIFIABLE_LENGTH = 84


class Authenticator:
    def __init__(
        self,
        keys: KeyAuthenticator,
        *,
        events: EventBus,
        entra: EntraAuthenticator | None = None,
        managed_keys: ManagedKeyIndex | None = None,
        upstreams_by_secret: Mapping[str, Sequence[str]] | None = None,
        allowed_hosts: Collection[str] = (),
        certificates: CertificateAuthenticator | None = None,
    ) -> None:
        self._keys = keys
        # vault secret -> the upstreams whose key it is (to name them in the event)
        self._upstreams = {k: tuple(v) for k, v in (upstreams_by_secret or {}).items()}
        self._events = events
        self._entra = entra
        self._managed = managed_keys
        self._hosts = frozenset(h.lower() for h in allowed_hosts)
        self._certificates = certificates

    @property
    def accepts_certificates(self) -> bool:
        return self._certificates is not None

    def authenticate_certificate(self, der: bytes, request: Incoming) -> Principal:
        """A request with no credential header over a connection with a verified client
        certificate (:mod:`.certificates`)."""
        assert self._certificates is not None
        if not host_allowed(request.headers.getall("Host", ()), self._hosts):
            raise BadRequest(
                "This gateway does not serve the host named in the request's Host header. "
                "Call it by its configured name.",
                code="HostNotAllowed",
                reason="host_not_allowed",
            )
        return self._certificates.authenticate(der)

    async def authenticate(
        self, credential: Credential, request: Incoming, *, remote: str | None, now: datetime
    ) -> Principal:
        headers = request.headers
        if not host_allowed(headers.getall("Host", ()), self._hosts):
            raise BadRequest(
                "This gateway does not serve the host named in the request's Host header. "
                "Call it by its configured name.",
                code="HostNotAllowed",
                reason="host_not_allowed",
            )
        if len(headers.getall("api-key", ())) > 1 or len(headers.getall("Authorization", ())) > 1:
            raise AuthenticationFailed(
                "The request carries the credential header more than once. Send one "
                "'api-key' or one 'Authorization' header.",
                reason="duplicate_credential_header",
            )
        if credential.kind == "keyguard":
            assert credential.key is not None
            return await self._keys.authenticate(credential.key, now)
        if credential.kind == "jwt":
            if "api-key" in headers:
                raise AuthenticationFailed(
                    "Access denied: an Entra ID token goes in the 'Authorization: Bearer "
                    "<token>' header, never in 'api-key'. With the openai SDK, pass "
                    "azure_ad_token_provider (or azure_ad_token) instead of api_key.",
                    reason="jwt_in_api_key",
                )
            if self._entra is None:
                raise AuthenticationFailed(
                    "Access denied: Entra ID tokens are not accepted by this gateway's "
                    "configuration. Use a Keyguard key.",
                    reason="jwt_not_enabled",
                )
            return await self._entra.authenticate(credential.value)
        return self._refuse_azure_key(credential.value, request, remote, now)

    def _refuse_azure_key(
        self, value: str, request: Incoming, remote: str | None, now: datetime
    ) -> Principal:
        managed = self._managed.match(value) if self._managed is not None else None
        identifiable = len(value) == _IDENTIFIABLE_LENGTH
        if not identifiable and managed is None:
            raise AuthenticationFailed(
                "Access denied: the credential is not a Keyguard key. Use the key from "
                "'keyguard keys create' (it starts with 'kgk_').",
                reason="azure_key_like",
            )
        evidence: dict[str, object] = {
            "user_agent": (request.headers.get("user-agent") or "")[:200],
            "format": "identifiable" if identifiable else "legacy-32-hex",
            "checksum_valid": identifiable and validate_identifiable_key(value) is not None,
            "path": request.path[:200],
        }
        upstreams: tuple[str, ...] = ()
        if managed is not None:
            upstreams = self._upstreams.get(managed.secret, ())
            evidence["vault_secret"] = managed.secret
            evidence["vault_version"] = managed.version
            evidence["upstreams"] = list(upstreams)
        self._events.emit(
            SecurityEvent(
                created=now,
                kind="raw_azure_key_presented",
                severity="high",
                summary=(
                    "A request carried one of Keyguard's own upstream Azure keys; rotate it."
                    if managed is not None
                    else "A request carried a raw Azure OpenAI key; somebody holds one."
                ),
                upstream=upstreams[0] if upstreams else None,
                source=remote,
                evidence=evidence,
            )
        )
        security_log.warning(
            "security_event kind=raw_azure_key_presented severity=high remote=%s managed=%s",
            remote,
            managed.secret if managed is not None else "-",
        )
        raise AuthenticationFailed(
            "Access denied: this is an Azure OpenAI key. Apps must not hold Azure keys; "
            "use a Keyguard key (kgk_...) or an Entra ID token, and ask your operator to "
            "rotate the Azure key.",
            reason="azure_key_presented",
        )
