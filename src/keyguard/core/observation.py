"""One finished request as the monitor sees it: values only, no secret, no prompt.

An :class:`Observation` is built off the hot path from the proxy's
:class:`~keyguard.core.request.RequestContext` (:func:`observe_context`), and is also the
``request`` record of the audit log (:meth:`Observation.to_record`). The same records read back
from an audit export feed ``keyguard replay`` (:meth:`Observation.from_record`), so detection
can be re-run on real traffic with other settings.

Request-shape features the key-probe rule needs (``max_tokens``, an empty prompt, a short
prompt's length, ``temperature``, ``seed``) are taken from the parsed body; the prompt itself is
never kept.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from .operations import DEPLOYMENT_NAME

if TYPE_CHECKING:
    from .request import RequestContext

__all__ = [
    "Observation",
    "empty_prompt",
    "observe_context",
    "network_of",
    "normalised",
    "payload_features",
    "prompt_text",
]

_MAX_TEXT = 200  # user agents and client fingerprints are cut to this length
_networks: dict[tuple[str, int, int], str | None] = {}


def network_of(address: str | None, v4: int = 24, v6: int = 48) -> str | None:
    """The address prefix a client address belongs to (``203.0.113.0/24``); cached."""
    if not address:
        return None
    key = (address, v4, v6)
    cached = _networks.get(key, "")
    if cached != "":
        return cached
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        net: str | None = None
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        bits = v4 if ip.version == 4 else v6
        net = str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))
    if len(_networks) > 65_536:
        _networks.clear()
    _networks[key] = net
    return net


def _is_empty(content: Any) -> bool:
    if content is None:
        return True
    if isinstance(content, str):
        return not content.strip()
    if isinstance(content, list):
        return all(_is_empty_part(part) for part in content)
    return False


def _is_empty_part(part: Any) -> bool:
    """A text part, or a message (the Responses API's input), with blank text; a part holding
    something else (an image, audio, a tool call or its output) is not empty."""
    if not isinstance(part, dict):
        return _is_empty(part)
    if "text" in part or part.get("type") == "text":
        return _is_empty(part.get("text"))
    return "content" in part and _is_message_empty(part)


def _is_message_empty(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and not message.get("tool_calls")
        and _is_empty(message.get("content"))
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def payload_features(payload: dict[str, Any] | None) -> dict[str, Any]:
    """``max_tokens``, ``empty_prompt``, ``prompt_chars``, ``temperature``, ``seed`` of a
    JSON request body."""
    if payload is None:
        return {}
    max_tokens = payload.get("max_tokens")
    if max_tokens is None:
        max_tokens = payload.get("max_completion_tokens", payload.get("max_output_tokens"))
    chars = None
    messages, prompt = _prompt_of(payload)
    if messages is not None:
        if len(messages) <= 2:
            chars = _short_turns(messages)
    elif prompt is not _NO_PROMPT:
        chars = _short(prompt)
    limit, limit_wild = _whole(max_tokens)
    seed, seed_wild = _whole(payload.get("seed"))
    return {
        "max_tokens": limit,
        "empty_prompt": _empty_prompt(messages, prompt),
        "prompt_chars": chars,
        "temperature": _number(payload.get("temperature")),
        "seed": seed,
        "out_of_range": limit_wild or seed_wild,
    }


_NO_PROMPT = object()


def _prompt_of(payload: dict[str, Any]) -> tuple[list[Any] | None, Any]:
    """What a body holds as its prompt: ``(messages, None)`` for a list of ``messages``,
    else ``(None, prompt)``, else (with no ``messages`` at all) ``(None, input)``;
    ``(None, _NO_PROMPT)`` when none."""
    messages = payload.get("messages")
    if isinstance(messages, list):
        return messages, None
    if "prompt" in payload:
        return None, payload["prompt"]
    if "input" in payload and "messages" not in payload:
        return None, payload["input"]
    return None, _NO_PROMPT


def _empty_prompt(messages: list[Any] | None, prompt: Any) -> bool:
    if messages is not None:
        return len(messages) <= 2 and all(_is_message_empty(m) for m in messages)
    return prompt is not _NO_PROMPT and _is_empty(prompt)


def empty_prompt(payload: dict[str, Any] | None) -> bool:
    """Whether a JSON request body's prompt is empty (``payload_features``'s
    ``empty_prompt`` alone: what a key checker's probe sends)."""
    return payload is not None and _empty_prompt(*_prompt_of(payload))


SHORT_PROMPT = 64  # characters: a longer prompt's length is not recorded
_FRAMING = ("system", "developer")  # an app's instructions, ahead of the turns


def _short(content: Any) -> int | None:
    """The length of ``content``'s text, stripped, when it is at most ``SHORT_PROMPT``
    characters (``None``: longer, or not text)."""
    if content is None:
        return 0
    if isinstance(content, str):
        if len(content) > 4 * SHORT_PROMPT:
            return None
        length = len(content.strip())
        return length if length <= SHORT_PROMPT else None
    if isinstance(content, list) and len(content) <= 4:
        total = 0
        for part in content:
            if isinstance(part, dict):  # a text part, or a message (the Responses API's input)
                part = part["text"] if "text" in part else part.get("content")
            n = _short(part)
            if n is None:
                return None
            total += n
        return total if total <= SHORT_PROMPT else None
    return None


def _short_turns(messages: list[Any]) -> int | None:
    """The length of the text of the turns of a short conversation (at most two messages;
    a system or developer message does not count), when short."""
    total = 0
    for m in messages:
        if not isinstance(m, dict):
            return None
        if m.get("role") in _FRAMING:
            continue
        n = _short(m.get("content"))
        if n is None:
            return None
        total += n
    return total if total <= SHORT_PROMPT else None


_INT64 = (1 << 63) - 1


def _whole(value: Any) -> tuple[int | None, bool]:
    """A number kept as a 64-bit integer; beyond that range it is clamped, and flagged (a
    caller may send any number: a record must still be written, and say it was clamped)."""
    number = _number(value)
    if number is None:
        return None, False
    if -_INT64 <= number <= _INT64:
        return int(number), False
    return (_INT64 if number > 0 else -_INT64), True


def _text(value: str) -> str:
    """Client text cut to ``_MAX_TEXT`` characters and made valid UTF-8 (a header may carry
    bytes that decode to lone surrogates, which no JSON encoder writes)."""
    value = value[:_MAX_TEXT]
    if value.isascii():
        return value
    return value.encode("utf-8", "replace").decode("utf-8")


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 3x, once per request
class Observation:
    at: float  # epoch seconds when the answer was finished
    request_id: str = ""
    key_id: str | None = None  # the authenticated key
    app: str | None = None
    presented_key_id: str | None = None  # the key id a credential carried, valid or not
    refused: str | None = None  # a refused credential's keyed digest (see RequestContext)
    source: str | None = None  # client address as the gateway saw it
    network: str | None = None  # its prefix
    user_agent: str | None = None
    client: str | None = None  # X-Stainless-* platform fingerprint
    operation: str | None = None
    deployment: str | None = None  # only a configured deployment
    requested: str | None = None  # short digest of an unknown requested deployment
    api_version: str | None = None
    status: int = 0
    reason: str = "ok"
    upstream_status: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: float | None = None
    latency_ms: float = 0.0
    upstream_ms: float = 0.0
    stream: bool = False
    max_tokens: int | None = None
    empty_prompt: bool = False
    # the length of a short prompt's text (at most SHORT_PROMPT characters, in at most two
    # messages, a system message not counted); None: longer, or not counted
    prompt_chars: int | None = None
    temperature: float | None = None
    seed: int | None = None
    out_of_range: bool = False  # a number in the request was beyond 64 bits and was clamped
    prompt_digest: str | None = None  # keyed digest of the normalised prompt, never the text
    # the guardrails' decisions: category, detector, action, where, role, a keyed fingerprint
    guardrails: tuple[dict[str, str], ...] = ()

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def auth_failed(self) -> bool:
        return self.status == 401

    @property
    def client_id(self) -> str | None:
        if self.user_agent is None and self.client is None:
            return None
        return f"{self.user_agent or ''}|{self.client or ''}"

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready record (the audit log's ``request`` record body). Fields equal to
        their default (no usage, no cost, ...) are left out; :meth:`from_record` restores them."""
        out = {}
        for name, default in _DEFAULTS:
            value = getattr(self, name)
            if name in _ALWAYS or value != default or type(value) is not type(default):
                out[name] = value
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Observation:
        """Read a record written by :meth:`to_record` (unknown fields are ignored)."""
        values = {name: record[name] for name in _FIELDS if name in record}
        values["at"] = float(record["at"])
        hits = values.get("guardrails")
        values["guardrails"] = tuple(
            h for h in (hits if isinstance(hits, list | tuple) else ()) if isinstance(h, dict)
        )
        return cls(**values)


_FIELDS = tuple(f.name for f in fields(Observation))
_DEFAULTS = tuple((f.name, f.default) for f in fields(Observation))
_ALWAYS = frozenset(("at", "request_id", "key_id", "app", "source", "status", "reason"))


def _requested_digest(ctx: RequestContext) -> str | None:
    if ctx.deployment is not None or ctx.reason not in ("unknown_deployment",):
        return None
    name = ctx.route.deployment if ctx.route is not None else None
    if name is None and ctx.payload is not None:
        model = ctx.payload.get("model")
        name = model if isinstance(model, str) else None
    if name is None or not DEPLOYMENT_NAME.fullmatch(name):
        return None
    return hashlib.sha256(name.encode()).hexdigest()[:12]


def _same(text: str) -> str:
    return text


def observe_context(
    ctx: RequestContext,
    at: float,
    latency_ms: float,
    *,
    v4: int = 24,
    v6: int = 48,
    clean: Callable[[str], str] = _same,
    digest: Callable[[bytes], str] | None = None,
    min_chars: int = 40,
) -> Observation:
    """The observation of a finished request (``at``: wall clock when it was recorded).

    ``clean`` is applied to client-supplied text (user agent, client fingerprint), e.g. to
    redact a secret pasted into a header.
    """
    route = ctx.route
    principal = ctx.principal
    usage = ctx.usage
    features = payload_features(ctx.payload)
    ua = ctx.user_agent
    return Observation(
        at=at,
        request_id=ctx.request_id,
        key_id=principal.key_id if principal else None,
        app=principal.app if principal else None,
        presented_key_id=ctx.presented_key_id,
        refused=ctx.refused_credential,
        source=ctx.remote,
        network=network_of(ctx.remote, v4, v6),
        user_agent=clean(_text(ua)) if ua else None,
        client=clean(_text(ctx.client)) if ctx.client else None,
        operation=route.operation.name if route else None,
        deployment=ctx.deployment,
        requested=_requested_digest(ctx),
        api_version=route.api_version if route else None,
        status=ctx.status,
        reason=ctx.reason,
        upstream_status=ctx.upstream_status,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        cached_tokens=usage.cached_tokens if usage else 0,
        cost=ctx.cost,
        latency_ms=round(latency_ms, 3),
        upstream_ms=round(ctx.upstream_ms, 3),
        stream=ctx.streamed,
        max_tokens=features.get("max_tokens"),
        empty_prompt=bool(features.get("empty_prompt")),
        prompt_chars=features.get("prompt_chars"),
        temperature=features.get("temperature"),
        seed=features.get("seed"),
        out_of_range=bool(features.get("out_of_range")),
        prompt_digest=_prompt_digest(ctx.payload, digest, min_chars) if digest else None,
        guardrails=tuple(ctx.guardrails),
    )


_PROMPT_FIELDS = ("messages", "input", "prompt")
_MAX_PROMPT = 65_536  # characters normalised and digested


def prompt_text(payload: dict[str, Any] | None) -> str:
    """The prompt's text (message contents, text parts, ``input``, ``prompt``), joined. The
    leading system (or developer) messages of a conversation are left out when a turn follows:
    they are the app's instructions, and a farm varying them still sends the same turns."""
    if not payload:
        return ""
    parts: list[str] = []
    size = 0
    stack = [_turns(payload.get(name)) for name in reversed(_PROMPT_FIELDS)]
    while stack and size < _MAX_PROMPT:
        node = stack.pop()
        if isinstance(node, str):
            parts.append(node)
            size += len(node)
        elif isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, dict):
            for name in ("text", "content", "input"):
                if name in node:
                    stack.append(node[name])
    return " ".join(parts)[:_MAX_PROMPT]


def _turns(node: Any) -> Any:
    """A list of messages without its leading system and developer messages, when a message
    follows them; anything else as it is."""
    if not isinstance(node, list):
        return node
    lead = 0
    for m in node:
        if not isinstance(m, dict) or m.get("role") not in _FRAMING:
            break
        lead += 1
    return node[lead:] if 0 < lead < len(node) else node


def normalised(text: str) -> bytes:
    """Near-identical prompts alike, as bytes to digest: case folded, the ASCII words holding
    a digit removed (numbers, ids, nonces: :func:`_unnumbered`), ASCII whitespace and
    punctuation removed (one C pass each: a split-and-join or a
    ``str.translate`` cost the hot path ~10 µs a KB). Text that is not all ASCII also loses
    invisible characters and Unicode spaces and, while it is mostly ASCII (other characters
    add less than one byte in two), has the Cyrillic, Greek and full-width letters that look
    Latin read as Latin (:data:`_PLAIN`): a farm sprinkling zero-width characters or
    look-alike letters into its prompt sends the same prompt, and a text in another script
    keeps its letters (and is scanned only when its UTF-8 holds an invisible one's first
    byte)."""
    folded = text.casefold()
    data = folded.encode("utf-8", "replace")
    if len(data) != len(folded):  # not all ASCII
        if 2 * (len(data) - len(folded)) >= len(folded) and any(
            lead in data for lead in _INVISIBLE_LEADS
        ):  # another script, or padded with invisible characters
            folded, gone = _INVISIBLE.subn("", folded)
            if gone:
                data = folded.encode("utf-8", "replace")
        if 2 * (len(data) - len(folded)) < len(folded):
            plain, replaced = _LOOK_ALIKE.subn(_plain, folded)
            if replaced:
                data = plain.encode("utf-8", "replace")
    return _unnumbered(data.translate(_DIGITS)).translate(None, _DROPPED)


_DIGITS = bytes.maketrans(b"123456789", b"000000000")
# whitespace and ASCII punctuation: a farm varying either sends the same prompt
_DROPPED = b" \t\n\r\x0b\x0c" + string.punctuation.encode()
# a word's bytes (ASCII letters, case folded, and digits as 0) as "w", any other byte as " "
_WORD_MASK = bytes(
    ord("w") if chr(b) in string.ascii_lowercase + "0" else ord(" ") for b in range(256)
)
_NUMBERED = re.compile(rb"(?<![a-z0])[a-z]*+0[a-z0]*+")  # a word holding a digit
_WORDS_ONE_BY_ONE = 16  # words with digits cut one by one; then the rest at once (regex)


def _unnumbered(data: bytes) -> bytes:
    """``data`` (case folded, digits as 0) without its ASCII words that hold a digit: numbers,
    and the ids and nonces that mix letters and digits (``req-0fk0pq0x``, the groups of a
    UUID). A farm adding a random id to each copy of its prompt sends the same prompt.

    Text without digits costs one ``find``; the first words with digits are found with
    ``find`` and bounded with ``rfind``/``find`` on a mask of word bytes (a regex over the
    whole text costs ~13 µs a KB), and a text with many more has the rest cut by one regex
    (linear: it starts only at a word's first character)."""
    i = data.find(b"0")
    if i < 0:
        return data
    mask = data.translate(_WORD_MASK)
    kept, start, words = [], 0, 0
    while i >= 0 and words < _WORDS_ONE_BY_ONE:
        kept.append(data[start : mask.rfind(b" ", start, i) + 1 or start])
        start = mask.find(b" ", i)
        if start < 0:
            return b"".join(kept)
        i = data.find(b"0", start)
        words += 1
    kept.append(data[start:] if i < 0 else _NUMBERED.sub(b"", data[start:]))
    return b"".join(kept)


def _plain_table() -> dict[str, str]:
    """What :func:`normalised` replaces in non-ASCII text (after case folding): invisible and
    format characters and Unicode spaces go (""); full-width ASCII and the Cyrillic and Greek
    letters that look Latin become that letter. Typographic quotes and dashes stay: common in
    text (French, German), each would cost a replacement."""
    gone = [0x00A0, 0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x180E, 0x3000, 0x3164, 0xFEFF]
    gone += [*range(0x2000, 0x2010), *range(0x2028, 0x2030), *range(0x205F, 0x2070)]
    gone += [*range(0xFE00, 0xFE10), *range(0x180B, 0x180E), *range(0x17B4, 0x17B6)]
    table = dict.fromkeys(map(chr, gone), "")
    table.update({chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)})  # full-width ASCII
    latin = {
        "a": "\u0430\u03b1",  # Cyrillic а, Greek α
        "b": "\u0432\u044c",  # в (capital В), ь
        "c": "\u0441\u03f2",
        "d": "\u0501",
        "e": "\u0435\u0451\u0454",
        "h": "\u043d\u04bb",  # н (capital Н), һ
        "i": "\u0456\u0457\u03b9\u0131",
        "j": "\u0458\u03f3",
        "k": "\u043a\u03ba",
        "l": "\u04cf",
        "m": "\u043c",  # capital М
        "n": "\u03b7",
        "o": "\u043e\u03bf\u03c3",
        "p": "\u0440\u03c1",
        "q": "\u051b",
        "s": "\u0455",
        "t": "\u0442\u03c4",  # capital Т
        "u": "\u03c5",
        "v": "\u03bd",
        "w": "\u051d",
        "x": "\u0445\u03c7",
        "y": "\u0443\u04af",
    }
    for letter, others in latin.items():
        table.update(dict.fromkeys(others, letter))
    return table


_PLAIN = _plain_table()
_LOOK_ALIKE = re.compile("[" + re.escape("".join(_PLAIN)) + "]")
_INVISIBLE = re.compile("[" + re.escape("".join(c for c, p in _PLAIN.items() if not p)) + "]")
_INVISIBLE_LEADS = tuple(sorted({c.encode()[:1] for c, p in _PLAIN.items() if not p}))


def _plain(match: re.Match[str]) -> str:
    return _PLAIN[match.group()]


def _prompt_digest(
    payload: dict[str, Any] | None, digest: Callable[[bytes], str], min_chars: int
) -> str | None:
    text = normalised(prompt_text(payload))
    return digest(text) if len(text) >= min_chars else None
