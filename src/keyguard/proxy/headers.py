"""Which headers cross the gateway, in each direction.

Toward Azure an exact allow-list (:data:`FORWARDED_REQUEST_HEADERS`): content negotiation,
Azure's request id and preview opt-ins, and the SDKs' telemetry headers, each by its full name.
Never a client credential (``api-key``, ``Authorization``, cookies), never a hop-by-hop header,
never ``Host`` or ``X-Forwarded-*``, never a header matched by prefix. Toward the client
everything Azure sent except hop-by-hop and framing headers (Keyguard re-frames the body) and
cookies.
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict

__all__ = [
    "FORWARDED_REQUEST_HEADERS",
    "REQUEST_ID_HEADER",
    "request_headers",
    "response_headers",
]

REQUEST_ID_HEADER = "x-keyguard-request-id"

#: The request headers forwarded to Azure, exactly these (docs/security.md): content
#: negotiation, the SDKs' retry and telemetry headers, Azure's request id and preview opt-ins.
#: Nothing by prefix: an ``x-ms-*`` header a caller invents (``x-ms-client-principal-name``,
#: ``x-ms-credential``) could mean something to a service behind Azure's front door.
FORWARDED_REQUEST_HEADERS = frozenset(
    {
        "content-type",
        "accept",
        "user-agent",
        "idempotency-key",
        "openai-beta",
        "x-ms-client-request-id",
        "x-ms-useragent",
        "x-stainless-lang",
        "x-stainless-package-version",
        "x-stainless-os",
        "x-stainless-arch",
        "x-stainless-runtime",
        "x-stainless-runtime-version",
        "x-stainless-async",
        "x-stainless-retry-count",
        "x-stainless-read-timeout",
        "x-stainless-timeout",
        "x-stainless-helper-method",
        "aoai-evals",
        "aoai-copy-ft-checkpoints",
    }
)

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


#: Every answer names the product, not the HTTP stack and its version (aiohttp's default).
SERVER_HEADER = {"Server": "keyguard"}


def request_headers(items: Iterable[tuple[str, str]], auth: dict[str, str]) -> CIMultiDict[str]:
    """Headers for the upstream request: the allowed client headers plus Keyguard's own auth."""
    out: CIMultiDict[str] = CIMultiDict()
    allowed = FORWARDED_REQUEST_HEADERS
    for name, value in items:
        if name.lower() in allowed:
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
