"""Context rules for legacy 32-hex keys, which have no checksum and no structure.

A 32-hex string is reported only when its context says "key": the name it is assigned to, the
header or parameter it is sent in, or an Azure AI endpoint in the same file. The nearest name
decides; names of hashes, ids, etags, revisions and the like veto::

    AZURE_OPENAI_API_KEY=<hex>                 strong name              -> reported
    headers = {"api-key": "<hex>"}             strong name              -> reported
    key = "<hex>"  + *.openai.azure.com        weak name + endpoint     -> reported
    etag: "<hex>" / md5 = "<hex>"              negative name            -> not reported
    "<hex>"  (no name, no endpoint)                                      -> not reported
    "the Azure OpenAI key we used was <hex>"   prose naming the key     -> reported
    https://kv.vault.azure.net/secrets/openai-key/<hex>   a secret version -> not reported

Prose: when no name decides, a sentence that names an Azure AI / Azure OpenAI key (and holds
no word of the negative list: id, hash, version, example, ...) makes the value a key. Key Vault
object URLs end in a 32-hex *version id*, whatever the secret is called: never a key. Lock
files and checksum manifests are never searched for 32-hex keys.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from keyguard.scan.lines import line_start

__all__ = [
    "ENDPOINT_RE",
    "HexVerdict",
    "classify_name",
    "is_hex_exempt_file",
    "is_vault_version",
    "judge_hex",
    "nearest_names",
    "azure_section_name",
    "prefix_for",
    "section_name",
    "sentence_around",
]

ENDPOINT_RE = re.compile(
    r"(?i)openai\.azure\.com|cognitiveservices\.azure\.com|services\.ai\.azure\.com|"
    r"api\.cognitive\.microsoft\.com|microsofttranslator\.com|azure-api\.net"
)
_TOKEN_RE = re.compile(r"[A-Za-z_$@][\w$.@-]*")
_HEXISH = re.compile(r"[0-9a-fA-F_$.@-]+")
_WORD_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")

_NEG_WORDS = frozenset(
    {
        "etag", "etags", "hash", "hashed", "hashes", "md5", "sha", "sha1", "sha256", "sha512",
        "shasum", "checksum", "checksums", "digest", "integrity", "commit", "revision", "rev",
        "nonce", "uuid", "guid", "fingerprint", "thumbprint", "version", "salt", "csrf", "xsrf",
        "cursor", "color", "colour", "hex", "id", "ids", "kid", "crc", "session", "trace",
        "correlation", "build", "cache", "idempotency", "partition", "row", "sort", "object",
        "foreign", "public", "request", "span", "tx", "txn", "block", "oid", "sum",
    }
)  # fmt: skip
_STRONG_RE = re.compile(
    r"apikey|subscriptionkey|keycredential|accountkey|resourcekey|servicekey|"
    r"(?:openai|cognitive(?:services?)?|speech|translator|vision|language|azureai|aiservices?|"
    r"foundry|luis|face|textanalytics)(?:api)?(?:key|secret)|^key[12]$|^azure\w*(?:key|secret)$"
)
_WEAK_RE = re.compile(r"key|secret|token|passw|pwd|credential|auth")
_AZURE_WORD_RE = re.compile(r"azure|openai|cognitive|speech|translator|aoai")

# Neutral words that may stand between a name and its value (types, keywords, accessors).
_SKIPPABLE = frozenset(
    {
        "string", "str", "const", "let", "var", "val", "final", "readonly", "static", "private",
        "public", "internal", "protected", "param", "export", "env", "arg", "set", "setx",
        "default", "defaultvalue", "value", "values", "getenv", "get", "getordefault", "environ",
        "getenvironmentvariable", "setenvironmentvariable", "new", "define", "add", "put",
        "setdefault", "or", "unwrap_or", "setitem", "header", "headers", "h", "data", "basic",
        "sensitive", "secure", "type", "text", "bearer", "token", "char", "sealed", "auto", "as",
        "dim",
    }
)  # fmt: skip

_PROSE_AZURE = re.compile(
    r"(?i)\b(?:azure[ _-]?(?:open[ _-]?ai|ai(?:[ _-]?services?|[ _-]?foundry)?|cognitive|speech|"
    r"translator|language|vision)|aoai|open[ _-]?ai|cognitive[ _-]?services?|"
    r"speech|translator)"  # the Speech and Translator services' 32-hex keys, named alone
)
_PROSE_KEY = re.compile(r"(?i)\b(?:(?:api|subscription|access|resource)[ _-]?key|keys?[12]?)\b")
_PROSE_NEG = frozenset(
    {"example", "examples", "sample", "dummy", "fake", "placeholder", "format", "looks", "like"}
)
_VAULT_VERSION = re.compile(
    r"(?i)(?:vault\.azure\.(?:net|cn)|vault\.usgovcloudapi\.net|vault\.microsoftazure\.de|"
    r"managedhsm\.azure\.net)(?::\d+)?/(?:deleted)?(?:secrets|keys|certificates|storage)/"
    r"[^/\s\"'?#]{1,127}/$"
)
_PROSE_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n[ \t]*\n")

_EXEMPT_NAMES = frozenset(
    {
        "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock",
        "pipfile.lock", "uv.lock", "cargo.lock", "gemfile.lock", "composer.lock", "go.sum",
        "packages.lock.json", "pubspec.lock", "mix.lock", "flake.lock", "podfile.lock",
    }
)  # fmt: skip
_EXEMPT_SUFFIXES = (".lock", ".sum", ".md5", ".sha1", ".sha256", ".sha512", ".sri")


def is_hex_exempt_file(path: str) -> bool:
    """Lock files and checksum manifests: full of digests, never of keys."""
    name = path.rsplit("/", 1)[-1].lower()
    return name in _EXEMPT_NAMES or name.endswith(_EXEMPT_SUFFIXES) or name.startswith("sha")


def classify_name(name: str) -> str:
    """``"negative"``, ``"strong"``, ``"weak"`` or ``"neutral"`` for one identifier."""
    if _HEXISH.fullmatch(name):  # hex digits alone (a value, often beside other values):
        return "neutral"  # every name word above has a letter beyond ``a``-``f``
    words = [w.lower() for w in _WORD_RE.findall(name)]
    if not words:
        return "neutral"
    norm = "".join(words)
    if norm in _NEG_WORDS or any(w in _NEG_WORDS for w in words):
        return "negative"
    if _STRONG_RE.search(norm):
        return "strong"
    if _WEAK_RE.search(norm):
        return "weak"
    return "neutral"


@dataclass(frozen=True, slots=True)
class HexVerdict:
    confidence: str
    reason: str


def _line_start_past_indent(text: str, at: int) -> tuple[int, bool]:
    """:func:`~.lines.line_start`, followed back over spaces and tabs beyond the reach: a value
    indented farther still has its line (what introduces it is above). Each step reads the
    next ``LINE_REACH`` characters of the indent, so a text costs its indents once."""
    begin, whole = line_start(text, at)
    end = at
    while not whole and not text[begin:end].strip(" \t"):
        end = begin
        begin, whole = line_start(text, end)
    return begin, whole


def prefix_for(text: str, start: int, outer_prefix: str) -> tuple[str, str]:
    """The text before a candidate (its line, or with the line above when the line names
    nothing or only ``value``) and its surroundings on the same line (80 characters before, 72
    after). A line is read back at most :data:`~.lines.LINE_REACH` characters (nothing but the last
    120 characters of the prefix names a value: :func:`nearest_names`)."""
    ls, whole = line_start(text, start)
    le = text.find("\n", start, start + 72)
    le = min(len(text), start + 72) if le == -1 else le
    near = text[max(ls, start - 80) : le]
    prefix = text[ls:start]
    bare = prefix.strip(" \t\"'`:=([{,\\")
    if (not bare or (len(bare) <= 8 and bare.lstrip("- ").lower() == "value")) and ls > 0 and whole:
        # the line above names the value: a Kubernetes `- name: X` / `value: <v>` pair, a
        # Postman `{"key": "X", "value": <v>}` header, or a value alone on its line
        prev, _ = line_start(text, ls - 1)
        prefix = text[prev:start]
    return outer_prefix + prefix, near


def sentence_around(text: str, start: int, end: int) -> str:
    """The sentence a candidate stands in: back to the previous sentence end or blank line
    (at most 240 characters), forward to the next (at most 160). A value alone on its line
    (a code block, a list item) belongs to the line that introduces it with a colon, up to
    three lines above."""
    lo = max(0, start - 240)
    before = text[lo:start]
    cut = 0
    for m in _SENTENCE_END.finditer(before):
        cut = m.end()
    after = text[end : end + 160]
    stop = _SENTENCE_END.search(after)
    sentence = before[cut:] + text[start:end] + (after[: stop.start()] if stop else after)
    begin, whole = _line_start_past_indent(text, start)
    if whole and not _PROSE_WORD_RE.search(text, begin, start):
        lines = text[max(0, begin - 400) : begin].splitlines()[-4:]
        for line in reversed(lines):
            if line.lstrip().startswith("```"):
                continue
            bare = line.strip(" \t`*>-")
            if bare.endswith(":"):
                return bare + " " + sentence
            if bare:
                break
    return sentence


def is_vault_version(text: str, start: int) -> bool:
    """True when the candidate is the version segment of a Key Vault object URL."""
    # the pattern ends with "/" (its "$" also matches before a last line break: a URL wrapped
    # at its version)
    if start == 0 or not (text.startswith("/", start - 1) or text.startswith("/\n", start - 2)):
        return False
    return _VAULT_VERSION.search(text[max(0, start - 300) : start]) is not None


def nearest_names(prefix: str) -> list[str]:
    """The names before a value, nearest first: the last four identifiers, neutral words
    (types, keywords, accessors) skipped."""
    names = []
    for token in reversed(_TOKEN_RE.findall(prefix[-120:])[-4:]):
        if (
            classify_name(token) == "neutral"
            and token.rsplit(".", 1)[-1].lower().lstrip("$") in _SKIPPABLE
        ):
            continue
        names.append(token)
    return names


def _prose_names_key(sentence: str) -> bool:
    """True for a sentence of prose (not code) that names an Azure AI key and nothing else."""
    words = _PROSE_WORD_RE.findall(sentence)
    code = sum(sentence.count(c) for c in "{}();=<>[]\\")
    if len(words) < 3 or code > max(2, len(words) // 6):
        return False
    lowered = {w.lower() for w in words}
    if lowered & _NEG_WORDS or lowered & _PROSE_NEG:
        return False
    return bool(_PROSE_AZURE.search(sentence) and _PROSE_KEY.search(sentence))


_NAME_CHARS = string.ascii_letters + string.digits + "_$.-"
_SECTION_YAML = re.compile(r"([A-Za-z_$][\w$.-]{0,63})[ \t]*:[ \t]*\Z")
_SECTION_BACK = 400
_AZURE_WORDS = ("azure", "openai", "cognitive", "speech", "translator", "aoai")  # _AZURE_WORD_RE


def section_name(text: str, start: int) -> str:
    """The name of the section a value at ``start`` stands in: the key of the JSON object
    around it (``"Speech": {"Region": ..., "Key": <value>``) or the less indented YAML key
    above its line (``speech:`` / ``  key: <value>``); ``""`` when none is found."""
    lo = max(0, start - _SECTION_BACK)
    brace = text.rfind("{", lo, start)
    if brace != -1 and text.find("}", brace, start) == -1:
        head = text[max(lo, brace - 80) : brace].rstrip(" \t")
        if not head.endswith((":", "=")):
            return ""
        head = head[:-1].rstrip(" \t").rstrip("\"'")
        name = head[len(head.rstrip(_NAME_CHARS)) :]  # C-speed strips, no search
        return name if 0 < len(name) <= 64 and not name[0].isdigit() else ""
    begin, whole = line_start(text, start, start - lo)
    line = text[begin:start]
    indent = len(line) - len(line.lstrip(" "))
    if indent == 0 or not whole:
        return ""
    end = begin - 1
    for _ in range(8):  # the lines above, nearest first
        if end <= lo:
            break
        begin = text.rfind("\n", lo, end) + 1
        above = text[begin:end]
        bare = above.lstrip(" ")
        if bare and len(above) - len(bare) < indent:
            m = _SECTION_YAML.match(bare)
            return m.group(1) if m is not None else ""
        end = begin - 1
    return ""


def azure_section_name(text: str, start: int) -> str:
    """:func:`section_name` when an Azure word is within reach before ``start``, else ``""``
    (one search: text without one pays no more)."""
    before = text[max(0, start - _SECTION_BACK) : start].lower()
    if not any(word in before for word in _AZURE_WORDS):
        return ""
    return section_name(text, start)


def judge_hex(
    prefix: str,
    file_has_endpoint: bool,
    near: str,
    sentence: Callable[[], str] | None = None,
    section: Callable[[], str] | None = None,
) -> HexVerdict | None:
    """Decide on a 32-hex candidate from the text before it (same line, or the line above).

    ``near`` is the text around the candidate (an endpoint there counts as very near);
    ``sentence`` gives the sentence it stands in (prose that names an Azure AI key), asked
    for only when no name decided; ``section`` the name of the section around it (a weak
    name such as ``Key`` inside a ``Speech`` or ``AzureOpenAI`` object), asked for only when
    a weak name has nothing else to go with.
    """
    for token in nearest_names(prefix):
        verdict = classify_name(token)
        if verdict == "negative":
            return None
        if verdict == "neutral":
            break
        azure_named = bool(_AZURE_WORD_RE.search(token.lower()))
        if verdict == "strong":
            if file_has_endpoint or azure_named:
                return HexVerdict("high", f"key name {token!r}")
            return HexVerdict("medium", f"key name {token!r}")
        if file_has_endpoint or azure_named:
            return HexVerdict("medium", f"name {token!r} and an Azure AI endpoint")
        if section is not None and _AZURE_WORD_RE.search(name := section().lower()):
            return HexVerdict("medium", f"name {token!r} in the section {name!r}")
        break
    if ENDPOINT_RE.search(near):
        return HexVerdict("medium", "Azure AI endpoint next to it")
    if sentence is not None and _prose_names_key(sentence()):
        return HexVerdict("medium", "the text names an Azure AI key")
    return None
