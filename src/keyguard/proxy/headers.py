"""Which headers cross the gateway, in each direction.

Toward Azure an allow-list: content negotiation, Azure's own request-tracing and preview
headers, and the SDK's telemetry headers. Never a client credential (``api-key``,
``Authorization``, cookies, anything named like a key or token), never a hop-by-hop header,
never ``Host`` or ``X-Forwarded-*``. Toward the client everything Azure sent except hop-by-hop
and framing headers (Keyguard re-frames the body) and cookies.
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict

__all__ = ["request_headers", "response_headers", "REQUEST_ID_HEADER"]

REQUEST_ID_HEADER = "x-keyguard-request-id"

_FORWARD_EXACT = frozenset(
    {
        "content-type",
        "accept",
        "user-agent",
        "idempotency-key",
        "x-ms-client-request-id",
        "x-ms-useragent",
        "openai-beta",
    }
)
_FORWARD_PREFIXES = ("x-stainless-", "aoai-", "x-ms-")
_NEVER = ("key", "auth", "token", "secret", "cookie", "password", "signature")

_RESPONSE_DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "server",
        "date",
        "set-cookie",
        "location",
        "alt-svc",
        "strict-transport-security",
    }
)


def _forwardable(lname: str) -> bool:
    if lname in _FORWARD_EXACT:
        return True
    if lname.startswith(_FORWARD_PREFIXES):
        return not any(word in lname for word in _NEVER)
    return False


#: Every answer names the product, not the HTTP stack and its version (aiohttp's default).
SERVER_HEADER = {"Server": "keyguard"}


def request_headers(items: Iterable[tuple[str, str]], auth: dict[str, str]) -> CIMultiDict[str]:
    """Headers for the upstream request: the allowed client headers plus Keyguard's own auth."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in items:
        if _forwardable(name.lower()):
            out.add(name, value)
    out["Accept-Encoding"] = "identity"
    out.update(auth)
    return out


def response_headers(items: Iterable[tuple[str, str]], request_id: str) -> CIMultiDict[str]:
    """Headers for the client: Azure's, minus framing, hop-by-hop and cookies, plus our id
    and a ``Server`` header that names no software version."""
    out: CIMultiDict[str] = CIMultiDict(SERVER_HEADER)
    for name, value in items:
        if name.lower() not in _RESPONSE_DROP:
            out.add(name, value)
    out[REQUEST_ID_HEADER] = request_id
    return out
