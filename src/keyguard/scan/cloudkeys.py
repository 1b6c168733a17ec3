"""Credentials of other clouds and common SaaS: private keys, AWS, Google, GitHub, Slack,
Stripe, GitLab, npm, PyPI, Hugging Face, Anthropic, SendGrid and a few more AI and SaaS
tokens, passwords in database URLs and connection strings, HTTP Basic credentials.

Each detector is anchored on a literal its format always carries (``PRIVATE KEY-----``,
``AKIA``, ``ghp_``, ``xox``, ``sk_live_``, ``://``), then matched by a bounded pattern and
checked for placeholders (``AKIAIOSFODNN7EXAMPLE``, ``ghp_xxxx...``, ``user:password@``).
A private key's body must be long enough to be one (a ``MIIE...`` ellipsis is not).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from functools import lru_cache

from keyguard.scan.findings import Hit
from keyguard.scan.masks import to_bytes
from keyguard.scan.placeholders import entropy, is_placeholder

__all__ = ["CLOUD_DETECTORS", "TOKEN_RULES"]

_PEM_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ ){0,3})PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY = re.compile(r"(?:[A-Za-z0-9+/=]|\\[nr]|\s|[A-Za-z-]{1,20}: [^\n\\]{0,200})*")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_B64_CHARS = re.compile(r"[A-Za-z0-9+/]")
_ESCAPES = re.compile(r"\\[nr]")
_PEM_MAX = 16384  # characters of body read after BEGIN (an 8192-bit RSA key is ~6,400)
_GCP_HINT = re.compile(r'"private_key_id"|gserviceaccount\.com|"type":\s*"service_account"')


def _pem(text: str) -> Iterator[Hit]:
    pos = text.find("PRIVATE KEY")
    while pos != -1:
        start = text.rfind("-----BEGIN ", max(0, pos - 60), pos)
        m = _PEM_BEGIN.match(text, start) if start != -1 else None
        if m is None or m.end() < pos:
            pos = text.find("PRIVATE KEY", pos + 11)
            continue
        body = _PEM_BODY.match(text, m.end(), min(len(text), m.end() + _PEM_MAX))
        end = body.end() if body else m.end()
        tail = _PEM_END.match(text, end)
        stop = tail.end() if tail else end
        payload = _ESCAPES.sub("", text[m.end() : end])
        random_part = "".join(_B64_CHARS.findall(payload))
        if len(random_part) >= 64 and not is_placeholder(random_part[20:], random_part):
            around = text[max(0, start - 400) : stop + 400]
            kind = "gcp_service_account_key" if _GCP_HINT.search(around) else "private_key"
            label = (m.group(1) or "PKCS#8 ").strip() or "PKCS#8"
            yield Hit(kind, start, stop, text[start:stop], "high", f"{label} private key")
        pos = text.find("PRIVATE KEY", max(stop, pos + 11))


# (kind, anchor, pattern matched at the anchor's start minus ``back``, back, detail).
# Patterns carry their own boundaries; ``group`` 1, when present, is the secret.
_Rule = tuple[str, str, "re.Pattern[str]", int, str]
_B = r"(?<![A-Za-z0-9_-])"
_E = r"(?![A-Za-z0-9_-])"
TOKEN_RULES: tuple[_Rule, ...] = (
    ("aws_access_key", "AKIA", re.compile(r"(?<![A-Z0-9])AKIA[A-Z2-7]{16}(?![A-Za-z0-9])"), 0,
     "AWS access key id"),
    ("aws_access_key", "ASIA", re.compile(r"(?<![A-Z0-9])ASIA[A-Z2-7]{16}(?![A-Za-z0-9])"), 0,
     "AWS temporary access key id"),
    ("google_api_key", "AIza", re.compile(_B + r"AIza[0-9A-Za-z_-]{35}" + _E), 0,
     "Google API key"),
    *(("github_token", f"gh{c}_", re.compile(_B + f"gh{c}_" + r"[A-Za-z0-9]{36,251}" + _E), 0,
       "GitHub token") for c in "pousr"),
    ("github_token", "github_pat_", re.compile(_B + r"github_pat_[A-Za-z0-9_]{40,255}" + _E), 0,
     "GitHub fine-grained token"),
    ("gitlab_token", "glpat-", re.compile(_B + r"glpat-[A-Za-z0-9_-]{20,64}" + _E), 0,
     "GitLab personal access token"),
    ("slack_token", "xox", re.compile(_B + r"xox[abeoprs]-[0-9]{6,13}-[A-Za-z0-9-]{10,250}" + _E),
     0, "Slack token"),
    ("slack_token", "xapp-", re.compile(_B + r"xapp-[0-9]-[A-Z0-9]{6,14}-[0-9]{6,14}-"
                                        r"[A-Za-z0-9]{20,80}" + _E), 0, "Slack app token"),
    ("slack_webhook", "hooks.slack.com/", re.compile(
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(T[A-Z0-9]{6,12}/[A-Za-z0-9/]{20,120})"
    ), 0, "Slack webhook URL"),
    *(("stripe_key", f"{c}k_live_", re.compile(_B + f"{c}k_live_" + r"[A-Za-z0-9]{16,247}" + _E),
       0, "Stripe live secret key") for c in "sr"),
    *(("stripe_key", f"{c}k_test_", re.compile(_B + f"{c}k_test_" + r"[A-Za-z0-9]{16,247}" + _E),
       0, "Stripe test secret key") for c in "sr"),
    ("npm_token", "npm_", re.compile(_B + r"npm_[A-Za-z0-9]{36}" + _E), 0, "npm access token"),
    ("pypi_token", "pypi-AgEIcHlwaS5vcmc", re.compile(
        _B + r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,300}" + _E), 0, "PyPI API token"),
    ("huggingface_token", "hf_", re.compile(_B + r"hf_[A-Za-z0-9]{34,40}" + _E), 0,
     "Hugging Face token"),
    ("anthropic_key", "sk-ant-", re.compile(
        _B + r"sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{80,120}" + _E), 0, "Anthropic API key"),
    ("sendgrid_key", "SG.", re.compile(
        _B + r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}" + _E), 0, "SendGrid API key"),
    ("google_oauth_secret", "GOCSPX-", re.compile(_B + r"GOCSPX-[A-Za-z0-9_-]{28}" + _E), 0,
     "Google OAuth client secret"),
    ("shopify_token", "shp", re.compile(_B + r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}" + _E), 0,
     "Shopify access token"),
    ("databricks_token", "dapi", re.compile(_B + r"dapi[a-f0-9]{32}(?:-\d)?" + _E), 0,
     "Databricks token"),
    *(("digitalocean_token", f"do{c}_v1_", re.compile(_B + f"do{c}_v1_" + r"[a-f0-9]{64}" + _E),
       0, "DigitalOcean token") for c in "opr"),
    ("groq_key", "gsk_", re.compile(_B + r"gsk_[A-Za-z0-9]{52}" + _E), 0, "Groq API key"),
    ("xai_key", "xai-", re.compile(_B + r"xai-[A-Za-z0-9]{80}" + _E), 0, "xAI API key"),
    ("perplexity_key", "pplx-", re.compile(_B + r"pplx-[A-Za-z0-9]{48}" + _E), 0,
     "Perplexity API key"),
    ("replicate_token", "r8_", re.compile(_B + r"r8_[A-Za-z0-9]{37}" + _E), 0,
     "Replicate API token"),
    ("telegram_bot_token", ":AA", re.compile(
        r"(?<![0-9])[0-9]{8,10}:AA[A-Za-z0-9_-]{33}" + _E), 11, "Telegram bot token"),
    ("atlassian_token", "ATATT3", re.compile(_B + r"ATATT3[A-Za-z0-9_=-]{150,250}" + _E), 0,
     "Atlassian API token"),
)  # fmt: skip
_PREFIX_LEN = re.compile(r"^(?:[a-z]+_pat_|[a-z]+[-_]|AKIA|ASIA|AIza|SG\.|pypi-AgEIcHlwaS5vcmc)")


def _random_part(value: str) -> str:
    if value.startswith(("xox", "xapp-")):
        return value.rsplit("-", 1)[-1]
    m = _PREFIX_LEN.match(value)
    return value[m.end() :] if m else value


# Rules found from their anchor anywhere (it is not where a token run starts); the others
# are looked up only at the start of runs of 20+ token characters (``_token_runs``).
_FIND_ANCHORS = frozenset({"hooks.slack.com/", "SG.", ":AA", "ATATT3"})
_RUN_RULES = tuple(r for r in TOKEN_RULES if r[1] not in _FIND_ANCHORS)
_FIND_RULES = tuple(r for r in TOKEN_RULES if r[1] in _FIND_ANCHORS)
_RUN_PREFIXES = tuple(r[1] for r in _RUN_RULES)
_TOKEN_TABLE = bytes(
    ord("t") if chr(c).isascii() and (chr(c).isalnum() or chr(c) in "_-") else ord(" ")
    for c in range(256)
)
_TOKEN_RUN = b"t" * 20
_TOKEN_TAIL = re.compile(rb"t*")


def _token_runs(text: str) -> Iterator[int]:
    """Start offsets of runs of 20+ ``[A-Za-z0-9_-]`` characters (a mask searched with
    ``bytes.find``: C speed, whatever the number of token formats)."""
    mask = to_bytes(text).translate(_TOKEN_TABLE)
    pos = mask.find(_TOKEN_RUN)
    while pos != -1:
        yield pos
        tail = _TOKEN_TAIL.match(mask, pos + 20)
        pos = mask.find(_TOKEN_RUN, tail.end() if tail else pos + 20)


def _least(rand: str) -> float:
    """The least entropy of a token's random part: 3.0 bits, 2.5 for 16 characters or fewer
    (an AWS key id's 16 base32 characters fall below 3.0 one time in ~300 by chance)."""
    return 2.5 if len(rand) <= 16 else 3.0


def _token_hit(text: str, rule: _Rule, m: re.Match[str]) -> Hit | None:
    kind, _, _, _, detail = rule
    start, end = m.span(m.lastindex or 0)
    value = text[start:end]
    rand = _random_part(value)
    if is_placeholder(rand, value) or value.endswith("EXAMPLE") or entropy(rand) < _least(rand):
        return None
    return Hit(kind, start, end, value, "high", detail)


def _tokens(text: str) -> Iterator[Hit]:
    for start in _token_runs(text):
        if not text.startswith(_RUN_PREFIXES, start):
            continue
        for rule in _RUN_RULES:
            if text.startswith(rule[1], start):
                m = rule[2].match(text, start)
                hit = _token_hit(text, rule, m) if m is not None else None
                if hit is not None:
                    yield hit
                    break
    for rule in _FIND_RULES:
        anchor, pattern, back = rule[1], rule[2], rule[3]
        pos = text.find(anchor)
        while pos != -1:
            m = pattern.search(text, max(0, pos - back), min(len(text), pos + 300))
            if m is not None and m.start() <= pos:
                hit = _token_hit(text, rule, m)
                if hit is not None:
                    yield hit
                pos = text.find(anchor, max(m.end(), pos + 1))
            else:
                pos = text.find(anchor, pos + 1)


_AWS_SECRET = re.compile(
    r"(?i)(?:aws_?secret_?access_?key|aws_?secret_?key|secret_?access_?key)[\"']?"
    r"(?:\s*[:=]\s*|[ \t]+)"  # `aws configure set aws_secret_access_key <value>` too
    r"[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)


def _aws_secret(text: str) -> Iterator[Hit]:
    lowered = _lower(text)
    for anchor in ("secret_access_key", "secretaccesskey", "secret_key"):
        pos = lowered.find(anchor)
        while pos != -1:
            lo = text.rfind("\n", max(0, pos - 40), pos) + 1 or max(0, pos - 40)
            m = _AWS_SECRET.search(text, lo, min(len(text), pos + 80))
            if m is not None and m.start() <= pos:
                value = m.group(1)
                if not is_placeholder(value) and "EXAMPLE" not in value and entropy(value) > 3.5:
                    yield Hit("aws_secret_key", m.start(1), m.end(1), value, "high", "AWS secret")
            pos = lowered.find(anchor, pos + 1)


_DB_URL = re.compile(
    r"(?i)(?<![A-Za-z0-9+.-])(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|"
    r"mssql|sqlserver|oracle|jdbc:[a-z]+|clickhouse|cockroachdb)(?:\+[a-z0-9]+)?://"
    r"[^\s:/@\"'<>]{0,128}:([^\s/@\"'<>]{4,256})@[A-Za-z0-9.\[\]-]"  # redis://:pw@ too
)
_PASSWORD_PLACEHOLDERS = re.compile(
    r"(?i)^(?:pass(?:word|wd)?\d*|pwd|secret|changeme|admin|root|test|postgres|guest|user|"
    r"x+|\*+|\.+|…+|<[^>]*>|\$\{[^}]*\}|\$\([^)]*\)|\$[A-Za-z_]+|%[A-Za-z_]+%|\{+[^}]*\}+|"
    r"\[[^\]]*\]|%\(?\w*\)?s|\?|:\w+|"
    r"example|sample|dummy|mypassword|yourpassword|my_password|your_password)$"
)


def _placeholder_password(value: str) -> bool:
    """A template, an ellipsis or a word standing for a password, not one."""
    if not any(c.isascii() and c.isalnum() for c in value):
        return True  # "…", "***", "`)" : no letter or digit at all
    return bool(_PASSWORD_PLACEHOLDERS.match(value)) or is_placeholder(value)


_ASCII_LOWER = {c: c + 32 for c in range(65, 91)}


@lru_cache(maxsize=4)
def _lower(text: str) -> str:
    """``text`` in lower case, offsets unchanged (``"İ".lower()`` is two characters);
    remembered for the few texts being scanned (three detectors need it)."""
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else text.translate(_ASCII_LOWER)


_DB_SCHEMES = (
    "postgres", "postgresql", "mysql", "mariadb", "mongodb", "mongodb+srv", "redis", "rediss",
    "amqp", "amqps", "mssql", "sqlserver", "oracle", "clickhouse", "cockroachdb",
)  # fmt: skip


def _db_scheme_before(text: str, pos: int) -> bool:
    head = text[max(0, pos - 24) : pos].lower()
    return head.endswith(_DB_SCHEMES) or "+" in head or "jdbc:" in head


def _db_urls(text: str) -> Iterator[Hit]:
    pos = text.find("://")
    while pos != -1:
        if not _db_scheme_before(text, pos):
            pos = text.find("://", pos + 3)
            continue
        lo = max(0, pos - 24)
        m = _DB_URL.search(text, lo, min(len(text), pos + 400))
        if m is not None and m.start() <= pos < m.start() + 30:
            value = m.group(1)
            host = text[m.end(1) + 1 : m.end(1) + 200].split("/", 1)[0]
            if ".cosmos.azure.com" in host or ".documents.azure.com" in host:
                pass  # a Cosmos DB account key (keyguard.scan.servicekeys)
            elif not _placeholder_password(value):
                yield Hit(
                    "connection_string_password", m.start(1), m.end(1), value, "medium",
                    "password in a database URL",
                )  # fmt: skip
        pos = text.find("://", pos + 3)


_CS_PASSWORD = re.compile(
    r"(?i)(?<![A-Za-z])(?:password|pwd)\s*=\s*"
    r"(\"[^\"\n]{4,128}\"|'[^'\n]{4,128}'|\{[^{}\s]{4,126}\}|[^;\"'\s,]{4,128})"
)
# An ODBC value in braces (``Pwd={p@ss;w0rd}``), told from a template (``{password}``,
# ``{{ pw }}``, ``{0}``) by holding something other than a name.
_ODBC_BRACED = re.compile(r"\{(?!\{)(?![A-Za-z_][\w.]*\}$)(?!\d+\}$)[^{}\s]{4,126}\}$")
_CS_ANCHOR = re.compile("password|pwd")  # over the lower-cased text
_CS_CONTEXT = re.compile(
    r"(?i)(?:server|data source|host|address|addr|user id|uid|username)\s*=|"
    r"\.redis\.cache\.windows\.net|\.database\.windows\.net|:\d{2,5},"
)
# A JDBC URL's own marks, looked for in the lower-cased text (a find, not one more alternative
# of the search above, which runs up to 400 characters for each password= in a line)
_CS_WORDS = ("jdbc:", "databasename=")


def _cs_passwords(text: str) -> Iterator[Hit]:
    """``Password=`` in an ADO.NET / ODBC / JDBC connection string or an Azure Cache for Redis
    connection string (``host:6380,password=...``). An anchor inside a value already read
    (``Password=pwd=...``) is part of it: a line dense with anchors has each read once, not
    each anchor's value and the 400 characters before it."""
    lowered = _lower(text)
    read_to = 0  # the end of the last value read
    for anchor in _CS_ANCHOR.finditer(lowered):
        pos = anchor.start()
        if pos < read_to:
            continue
        after = lowered[anchor.end() : anchor.end() + 4].lstrip()
        if after.startswith("="):
            m = _CS_PASSWORD.search(text, max(0, pos - 2), min(len(text), pos + 140))
            if m is not None and m.start() <= pos:
                read_to = m.end(1)
                line_start = text.rfind("\n", max(0, pos - 400), pos) + 1
                value = m.group(1).strip("\"'")
                start = m.start(1) + (1 if m.group(1)[0] in "\"'" else 0)
                if _ODBC_BRACED.match(value):  # Pwd={a;b!c}: ODBC's quoting, not a template
                    value, start = value[1:-1], start + 1
                lo = line_start or max(0, pos - 400)
                if (
                    (
                        _CS_CONTEXT.search(text, lo, pos)
                        or any(lowered.find(w, lo, pos) != -1 for w in _CS_WORDS)
                    )
                    and not _placeholder_password(value)
                    and not value.startswith(("$", "{", "<", "%"))
                ):
                    yield Hit(
                        "connection_string_password", start, start + len(value), value,
                        "medium", "password in a connection string",
                    )  # fmt: skip


def _known_inside(decoded: str) -> bool:
    """True when a more specific detector finds a credential in the decoded pair (an API key
    sent as the Basic password is reported as that key, from the decoded view)."""
    from keyguard.scan.detectors import DetectContext, detect  # detectors imports this module

    return bool(detect(decoded, DetectContext(decoded)))


_BASIC = re.compile(r"(?i)authorization[\"']?\s*[:=]\s*[\"']?basic\s+([A-Za-z0-9+/]{8,200}={0,2})")


def _basic_auth(text: str) -> Iterator[Hit]:
    lowered = _lower(text)
    pos = lowered.find("basic ")
    while pos != -1:
        if "authorization" not in lowered[max(0, pos - 40) : pos]:
            pos = lowered.find("basic ", pos + 1)
            continue
        m = _BASIC.search(text, max(0, pos - 40), min(len(text), pos + 220))
        if m is not None and m.start(1) > pos:
            try:
                decoded = base64.b64decode(m.group(1), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            user, sep, password = decoded.partition(":")
            if sep and len(password) >= 4 and not _PASSWORD_PLACEHOLDERS.match(password):
                if not is_placeholder(password) and not _known_inside(decoded):
                    yield Hit(
                        "basic_auth", m.start(1), m.end(1), m.group(1), "high",
                        "HTTP Basic credentials",
                    )  # fmt: skip
        pos = lowered.find("basic ", pos + 1)


CLOUD_DETECTORS: tuple[Callable[[str], Iterator[Hit]], ...] = (
    _pem, _tokens, _aws_secret, _db_urls, _cs_passwords, _basic_auth,
)  # fmt: skip
