"""Configuration: read once, validated at startup, frozen afterwards.

A YAML file (``keyguard serve --config keyguard.yaml``) plus an injectable ``environ`` mapping.
Anything missing, miscast or unsafe fails at startup with a :class:`ConfigurationError` that
names the setting. Secrets never live in the file: upstream credentials are references (a vault
secret name, or an environment variable with an explicit ``insecure`` flag), and the master key
comes from ``KEYGUARD_MASTER_KEY`` or a 0600 key file. A value in the file that looks like a key
is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigurationError
from .identity.settings import AccessSettings
from .limits.settings import LimitSettings
from .monitor.settings import MonitorSettings
from .rotation.settings import KeyVaultRef, ManagedIdentityRef, ManagementSettings, RotationSettings

__all__ = [
    "Settings",
    "ProxySettings",
    "UpstreamSettings",
    "DeploymentSettings",
    "CredentialRef",
    "load_settings",
    "settings_from_mapping",
    "DEPLOYMENT_NAME",
]

# Azure deployment names: letters, digits, '-', '_', '.'; no leading dot; at most 64 chars.
DEPLOYMENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")

# Values that must never appear in a config file: Azure keys in either format, Keyguard keys.
_KEY_LIKE = re.compile(
    r"[A-Za-z0-9]{52}JQQJ9[9DH][A-Za-z0-9]{26}"  # 84-char identifiable Azure key
    r"|(?<![0-9a-fA-F])[0-9a-fA-F]{32}(?![0-9a-fA-F])"  # legacy 32-hex Azure key
    r"|kgk_[0-9A-Za-z]{50}"  # Keyguard key
    r"|sk-[A-Za-z0-9_-]{20,}"  # OpenAI key
)
_SECRET_FIELD = re.compile(r"(?i)(api[_-]?key|secret|password|token)$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CredentialRef(_Frozen):
    """How Keyguard authenticates to an upstream. Exactly one source: ``managed_identity``
    (Entra tokens, no key), ``key_vault`` (Azure Key Vault), ``vault``/``local_vault`` (the
    local encrypted vault) or ``env`` (with ``insecure: true``)."""

    vault: str | None = Field(default=None, validation_alias=AliasChoices("vault", "local_vault"))
    env: str | None = None
    insecure: bool = False
    managed_identity: ManagedIdentityRef | None = None
    key_vault: KeyVaultRef | None = None

    @property
    def kind(self) -> Literal["managed_identity", "key_vault", "local_vault", "env"]:
        if self.managed_identity is not None:
            return "managed_identity"
        if self.key_vault is not None:
            return "key_vault"
        return "local_vault" if self.vault is not None else "env"

    @model_validator(mode="after")
    def _one_source(self) -> CredentialRef:
        sources = (self.vault, self.env, self.managed_identity, self.key_vault)
        if sum(s is not None for s in sources) != 1:
            raise ValueError(
                "give exactly one of 'managed_identity', 'key_vault', 'vault' (a local vault "
                "secret name) or 'env'"
            )
        if self.env is not None and not self.insecure:
            raise ValueError(
                "an upstream key from an environment variable needs 'insecure: true'; "
                "prefer 'vault: upstream/NAME' (keyguard vault put upstream/NAME)"
            )
        return self


class DeploymentSettings(_Frozen):
    """A deployment the gateway serves; ``upstream_deployment`` defaults to the same name.

    A deployment may be served by several upstreams (regions, resources): the lowest
    ``priority`` is tried first, ``weight`` spreads requests among equal priorities, and a
    backend that answers 429 or cannot be reached is skipped while it recovers. ``model``
    (default: the deployment's name) picks the tokenizer and the price for limits.
    """

    upstream_deployment: str | None = None
    model: str | None = None
    priority: int = Field(default=0, ge=0)
    weight: int = Field(default=1, gt=0)

    @field_validator("upstream_deployment")
    @classmethod
    def _valid_name(cls, v: str | None) -> str | None:
        if v is not None and not DEPLOYMENT_NAME.fullmatch(v):
            raise ValueError(f"invalid deployment name {v!r}")
        return v


class UpstreamSettings(_Frozen):
    name: str
    endpoint: str
    credential: CredentialRef
    deployments: dict[str, DeploymentSettings]
    region: str | None = None
    management: ManagementSettings | None = None  # the Azure resource, for key rotation

    @field_validator("deployments", mode="before")
    @classmethod
    def _list_or_map(cls, v: Any) -> Any:
        if isinstance(v, list):
            return {str(name): {} for name in v}
        if isinstance(v, dict):
            return {k: ({} if val is None else val) for k, val in v.items()}
        return v

    @field_validator("deployments")
    @classmethod
    def _names(cls, v: dict[str, DeploymentSettings]) -> dict[str, DeploymentSettings]:
        for name in v:
            if not DEPLOYMENT_NAME.fullmatch(name) or ".." in name:
                raise ValueError(f"invalid deployment name {name!r}")
        if not v:
            raise ValueError("an upstream needs at least one deployment")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(
                "endpoint must be an http(s) URL such as https://NAME.openai.azure.com"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("endpoint must not carry a query, fragment or user info")
        return v.rstrip("/")

    @field_validator("name")
    @classmethod
    def _upstream_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v):
            raise ValueError(f"invalid upstream name {v!r}")
        return v


class ListenSettings(_Frozen):
    proxy: str = "127.0.0.1:8080"
    admin: str = "127.0.0.1:8081"

    @field_validator("proxy", "admin")
    @classmethod
    def _hostport(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"listen address must be HOST:PORT, got {v!r}")
        return v


class ProxySettings(_Frozen):
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    upstream_timeout_s: float = Field(default=300.0, gt=0)
    key_cache_ttl_s: float = Field(default=2.0, gt=0, le=60)
    max_upstream_connections: int = Field(default=256, gt=0)
    access_log: bool = True


class Settings(_Frozen):
    listen: ListenSettings = ListenSettings()
    store: str = "sqlite:///keyguard.db"
    master_key_file: str | None = None
    proxy: ProxySettings = ProxySettings()
    upstreams: list[UpstreamSettings] = []
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    rotation: RotationSettings = RotationSettings()
    limits: LimitSettings = LimitSettings()
    monitor: MonitorSettings = MonitorSettings()
    access: AccessSettings = AccessSettings()

    @field_validator("store")
    @classmethod
    def _store(cls, v: str) -> str:
        scheme = urlsplit(v).scheme
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("store must be a sqlite:///PATH or postgresql://... URL")
        return v

    @model_validator(mode="after")
    def _unique(self) -> Settings:
        seen: dict[str, str] = {}
        names = set()
        for up in self.upstreams:
            if up.name in names:
                raise ValueError(f"upstream name {up.name!r} is used twice")
            names.add(up.name)
            for dep, dep_cfg in up.deployments.items():
                model = dep_cfg.model or dep
                if seen.setdefault(dep, model) != model:
                    raise ValueError(
                        f"deployment {dep!r}: its upstreams disagree on its model "
                        f"({seen[dep]!r}, {model!r})"
                    )
        return self


def _refuse_plaintext_secrets(node: Any, path: str = "") -> None:
    """Refuse any value that looks like a key, and any secret-named field holding a literal."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(v, str) and _SECRET_FIELD.search(str(k)):
                raise ConfigurationError(
                    f"{sub}: plaintext secrets are not allowed in the config file; store the "
                    "value with 'keyguard vault put NAME' and refer to it as 'vault: NAME'"
                )
            _refuse_plaintext_secrets(v, sub)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _refuse_plaintext_secrets(v, f"{path}[{i}]")
    elif isinstance(node, str) and _KEY_LIKE.search(node):
        raise ConfigurationError(
            f"{path}: this value looks like an API key; keys are not allowed in the config file. "
            "Store it with 'keyguard vault put NAME' and refer to it as 'vault: NAME'"
        )


def settings_from_mapping(data: Mapping[str, Any], *, base_dir: Path | None = None) -> Settings:
    """Validate a parsed config mapping; relative paths resolve against ``base_dir``."""
    _refuse_plaintext_secrets(data)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigurationError(f"{where}: {first['msg']}") from None
    if base_dir is not None:
        settings = _resolve_paths(settings, base_dir)
    return settings


def _resolve_paths(settings: Settings, base_dir: Path) -> Settings:
    updates: dict[str, Any] = {}
    if settings.store.startswith("sqlite:///"):
        db = settings.store[len("sqlite:///") :]
        if db and not db.startswith("/") and db != ":memory:":
            updates["store"] = "sqlite:///" + str((base_dir / db).resolve())
    if settings.master_key_file and not Path(settings.master_key_file).is_absolute():
        updates["master_key_file"] = str((base_dir / settings.master_key_file).resolve())
    if settings.access.with_base_dir(base_dir) is not settings.access:
        updates["access"] = settings.access.with_base_dir(base_dir)
    return settings.model_copy(update=updates) if updates else settings


def load_settings(path: str | Path) -> Settings:
    """Read and validate a YAML config file."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"config file {str(p)!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"config file {str(p)!r} must contain a mapping at the top")
    return settings_from_mapping(raw, base_dir=p.parent)
