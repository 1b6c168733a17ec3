"""The emulator's configuration: one frozen dataclass, read once, validated at construction.

``EmulatorConfig()`` is a ready-to-use Azure OpenAI resource with six deployments (two chat
models, one embeddings model, one image model, one transcription model, one speech model),
unlimited rate limits, fresh random secrets and Azure's default region. A YAML or JSON file
with the same field names builds one with :func:`load_config`::

    region: West Europe
    default_completion_tokens: 16
    deployments:
      gpt-4o: {kind: chat, model: gpt-4o-2024-11-20, tpm: 30000}
      text-embedding-3-small: {kind: embeddings, model: text-embedding-3-small}
"""

from __future__ import annotations

import difflib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import orjson
import yaml

from keyguard.errors import ConfigurationError

__all__ = [
    "DeploymentKind",
    "KeyFormat",
    "DeploymentSpec",
    "EmulatorConfig",
    "EmulatorUser",
    "DEFAULT_DEPLOYMENTS",
    "config_from_mapping",
    "load_config",
]

DeploymentKind = Literal["chat", "embeddings", "images", "audio", "speech"]
KeyFormat = Literal["identifiable", "legacy"]

_KINDS: frozenset[str] = frozenset({"chat", "embeddings", "images", "audio", "speech"})
_KEY_FORMATS: frozenset[str] = frozenset({"identifiable", "legacy"})


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """One deployment: what it serves and how fast.

    ``tpm`` is tokens per minute, ``rpm`` requests per minute; 0 means unlimited. When ``rpm``
    is ``None`` it is derived from ``tpm`` as Azure does for chat models (6 RPM per 1,000 TPM).
    """

    kind: DeploymentKind
    model: str
    tpm: int = 0
    rpm: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigurationError(f"deployment kind must be one of {sorted(_KINDS)}")
        if self.tpm < 0 or (self.rpm is not None and self.rpm < 0):
            raise ConfigurationError("deployment tpm/rpm must be >= 0")

    @property
    def effective_rpm(self) -> int:
        """Requests per minute actually enforced (0 = unlimited)."""
        if self.rpm is not None:
            return self.rpm
        return self.tpm * 6 // 1000


@dataclass(frozen=True, slots=True)
class EmulatorUser:
    """A user the sign-in endpoints sign in when a ``login_hint`` names it."""

    groups: tuple[str, ...] = ()  # group object ids (the tokens' ``groups``)
    roles: tuple[str, ...] = ()  # app role values (the access token's ``roles``)


DEFAULT_DEPLOYMENTS: Mapping[str, DeploymentSpec] = MappingProxyType(
    {
        "gpt-4o": DeploymentSpec("chat", "gpt-4o-2024-11-20"),
        "gpt-4o-mini": DeploymentSpec("chat", "gpt-4o-mini-2024-07-18"),
        "text-embedding-3-small": DeploymentSpec("embeddings", "text-embedding-3-small"),
        "dall-e-3": DeploymentSpec("images", "dall-e-3"),
        "whisper": DeploymentSpec("audio", "whisper"),
        "tts": DeploymentSpec("speech", "tts"),
    }
)


def _random_secret() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything the emulator needs; immutable once built."""

    deployments: Mapping[str, DeploymentSpec] = field(default_factory=lambda: DEFAULT_DEPLOYMENTS)
    key_format: KeyFormat = "identifiable"
    region: str = "East US"
    #: Completion length when the request sets no lower max_tokens / max_output_tokens.
    default_completion_tokens: int = 20
    #: Tokens the TPM limiter charges for the completion when the request sets no max_tokens.
    default_max_tokens_charge: int = 1024
    #: Seconds between two streamed chunks (0 = as fast as possible).
    stream_delay: float = 0.0
    #: Lifetime in seconds of the access tokens the identity endpoints issue.
    token_lifetime: int = 3600
    #: Secret for the ``/_emulator`` endpoints (header ``x-emulator-token``).
    control_token: str = field(default_factory=_random_secret)
    #: Secret the App Service identity endpoint expects in ``X-IDENTITY-HEADER``.
    identity_header: str = field(default_factory=_random_secret)
    subscription_id: str = "00000000-0000-4000-8000-000000000001"
    resource_group: str = "keyguard-rg"
    account_name: str = "keyguard-aoai"
    tenant_id: str = "00000000-0000-4000-8000-0000000000aa"
    #: Client id of the system-assigned managed identity (tokens' ``appid``).
    client_id: str = "00000000-0000-4000-8000-0000000000c1"
    #: Keys get 403 AuthenticationTypeDisabled; only Entra tokens work (disableLocalAuth).
    disable_local_auth: bool = False
    #: Largest accepted request body in bytes (413 above).
    max_body_bytes: int = 26_214_400
    #: Users the sign-in endpoints know, by ``login_hint`` (none by default).
    users: Mapping[str, EmulatorUser] = field(default_factory=lambda: MappingProxyType({}))
    #: The user signed in when an authorize request has no ``login_hint`` (a browser test's
    #: person picking their account); ``None``: a ``login_hint`` is required.
    default_user: str | None = None
    #: Confidential clients: client id -> the client secret its token requests must carry.
    client_secrets: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Accepted legacy api-versions; ``None`` accepts any well-formed ``YYYY-MM-DD[-preview]``.
    api_versions: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.key_format not in _KEY_FORMATS:
            raise ConfigurationError(f"key_format must be one of {sorted(_KEY_FORMATS)}")
        if not self.deployments:
            raise ConfigurationError("deployments must name at least one deployment")
        for name, spec in self.deployments.items():
            if not name or "/" in name or not isinstance(spec, DeploymentSpec):
                raise ConfigurationError(f"deployments: bad entry {name!r}")
        if self.default_completion_tokens < 1:
            raise ConfigurationError("default_completion_tokens must be >= 1")
        if self.default_max_tokens_charge < 0:
            raise ConfigurationError("default_max_tokens_charge must be >= 0")
        if self.stream_delay < 0:
            raise ConfigurationError("stream_delay must be >= 0")
        if self.token_lifetime < 1:
            raise ConfigurationError("token_lifetime must be >= 1 second")
        if not self.control_token or not self.identity_header:
            raise ConfigurationError("control_token and identity_header must not be empty")
        if self.default_user is not None and self.default_user not in self.users:
            raise ConfigurationError("default_user must name one of the users")
        if self.max_body_bytes < 1024:
            raise ConfigurationError("max_body_bytes must be >= 1024")


_SIMPLE_TYPES: dict[str, type | tuple[type, ...]] = {
    "key_format": str,
    "region": str,
    "default_completion_tokens": int,
    "default_max_tokens_charge": int,
    "stream_delay": (int, float),
    "token_lifetime": int,
    "control_token": str,
    "identity_header": str,
    "subscription_id": str,
    "resource_group": str,
    "account_name": str,
    "tenant_id": str,
    "client_id": str,
    "disable_local_auth": bool,
    "max_body_bytes": int,
    "default_user": str,
}


def _unknown(unknown: set[Any], known: set[str]) -> str:
    """``unknown key 'kinds'; did you mean 'kind'? (fix the key or remove it)``"""
    word = str(sorted(unknown, key=str)[0])
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(sorted(known))})."
    return f"unknown key '{word}'{hint} Fix the key or remove it."


def _deployment(name: str, raw: object) -> DeploymentSpec:
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"deployments.{name} must be a mapping")
    unknown = set(raw) - {"kind", "model", "tpm", "rpm"}
    if unknown:
        raise ConfigurationError(
            f"deployments.{name}: {_unknown(unknown, {'kind', 'model', 'tpm', 'rpm'})}"
        )
    kind, model = raw.get("kind"), raw.get("model", name)
    tpm, rpm = raw.get("tpm", 0), raw.get("rpm")
    if not isinstance(kind, str) or not isinstance(model, str):
        raise ConfigurationError(f"deployments.{name}: kind and model must be strings")
    if not isinstance(tpm, int) or (rpm is not None and not isinstance(rpm, int)):
        raise ConfigurationError(f"deployments.{name}: tpm and rpm must be integers")
    return DeploymentSpec(kind, model, tpm, rpm)  # type: ignore[arg-type]


def _user(name: str, raw: object) -> EmulatorUser:
    if not isinstance(raw, Mapping) or set(raw) - {"groups", "roles"}:
        raise ConfigurationError(f"users.{name}: a mapping with 'groups' and 'roles' lists")
    groups, roles = raw.get("groups", []), raw.get("roles", [])
    if not all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in (groups, roles)):
        raise ConfigurationError(f"users.{name}: groups and roles must be lists of strings")
    return EmulatorUser(tuple(groups), tuple(roles))


def config_from_mapping(raw: Mapping[str, Any], **overrides: Any) -> EmulatorConfig:
    """Build a config from parsed YAML/JSON; ``overrides`` (already typed) win over ``raw``."""
    known = {f.name for f in fields(EmulatorConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigurationError(_unknown(unknown, known))
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "deployments":
            if not isinstance(value, Mapping):
                raise ConfigurationError("deployments must be a mapping")
            values[key] = MappingProxyType({n: _deployment(n, d) for n, d in value.items()})
        elif key == "users":
            if not isinstance(value, Mapping):
                raise ConfigurationError("users must be a mapping of name -> {groups, roles}")
            values[key] = MappingProxyType({str(n): _user(str(n), u) for n, u in value.items()})
        elif key == "client_secrets":
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ConfigurationError("client_secrets must map client ids to secrets")
            values[key] = MappingProxyType(dict(value))
        elif key == "api_versions":
            if value is not None and not isinstance(value, list):
                raise ConfigurationError("api_versions must be a list of strings or null")
            values[key] = None if value is None else frozenset(str(v) for v in value)
        else:
            expected = _SIMPLE_TYPES[key]
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigurationError(f"emulator config: {key} has the wrong type")
            values[key] = value
    values.update(overrides)
    return EmulatorConfig(**values)


def load_config(path: str | Path, **overrides: Any) -> EmulatorConfig:
    """Read a YAML (``.yaml``/``.yml``) or JSON file; a bad file raises ConfigurationError."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"emulator config: cannot read {p}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text) if p.suffix in {".yaml", ".yml"} else orjson.loads(text)
    except (yaml.YAMLError, orjson.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise ConfigurationError(f"emulator config {where}: not valid ({first})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"emulator config: {p} must hold a mapping")
    try:
        return config_from_mapping(raw, **overrides)
    except ConfigurationError as exc:
        raise ConfigurationError(f"emulator config {p}: {exc}") from None
