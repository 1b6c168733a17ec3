"""Configuration: read once, validated at startup, frozen afterwards.

A YAML file (``keyguard serve --config keyguard.yaml``) plus an injectable ``environ`` mapping.
Anything missing, miscast or unsafe fails at startup with a :class:`ConfigurationError` that
names the setting. Secrets never live in the file: upstream credentials are references (a vault
secret name, or an environment variable with an explicit ``insecure`` flag), and the master key
comes from ``KEYGUARD_MASTER_KEY`` or a 0600 key file. A value in the file that looks like a key
is refused.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .admin.settings import AdminAccessSettings
from .config_source import Lines, describe_error, line_of, read_yaml
from .core.settings import Frozen
from .core.transport import MAX_ANSWER_BYTES
from .errors import ConfigurationError
from .guard.settings import GuardSettings
from .identity.settings import EntraSettings
from .limits.settings import LimitSettings
from .monitor.settings import MonitorSettings
from .policy.settings import PolicySettings
from .rotation.settings import RotationSettings
from .upstream.settings import UpstreamSettings

__all__ = [
    "Settings",
    "AccessSettings",
    "ProxySettings",
    "load_settings",
    "settings_from_mapping",
]

# Values that must never appear in a config file: Azure keys in either format, Keyguard keys.
_KEY_LIKE = re.compile(
    r"[A-Za-z0-9]{52}JQQJ9[9DH][A-Za-z0-9]{26}"  # 84-char identifiable Azure key
    r"|(?<![0-9a-fA-F])(?<!dcr-)[0-9a-fA-F]{32}(?![0-9a-fA-F])"  # legacy 32-hex Azure key
    # (not a data collection rule's immutable id: dcr- and 32 hex digits, not a secret)
    r"|kgk_[0-9A-Za-z]{50}"  # Keyguard key
    r"|sk-[A-Za-z0-9_-]{20,}"  # OpenAI key
)
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+")
IN_PROCESS_WORKERS = (
    "workers: {n} workers would each count the limits on their own (in-process counters); "
    "configure a shared limits backend (limits.backend: redis://HOST:PORT/DB) or set workers: 1"
)
_SECRET_FIELD = re.compile(r"(?i)(api[_-]?key|secret|password|token)$")


class AccessSettings(Frozen):
    """The ``access`` section: who may call, from where, under which policy.

    ::

        access:
          entra:                                   # accept Entra ID access tokens (optional)
            tenants: [00000000-0000-0000-0000-000000000000]
            audiences: ["api://keyguard"]          # the Keyguard app registration (recommended)
          policy:
            file: policy.yaml                      # roles and bindings, reviewed in git
            managed: true                          # also editable through the admin API
          trusted_proxies: [10.0.0.0/8]            # X-Forwarded-For is believed only from these
          allowed_hosts: [gateway.contoso.com]     # Host headers served (empty: any)
          admin:
            entra_groups: {11111111-...: admin}    # Entra groups that may use the admin API

    Every default keeps a gateway without this section working as before: Keyguard keys only, no
    policy (every valid key may use every configured deployment), the peer address as the client
    address. Nothing here is secret.
    """

    entra: EntraSettings | None = None
    policy: PolicySettings = PolicySettings()
    trusted_proxies: list[str] = []
    allowed_hosts: list[str] = []
    admin: AdminAccessSettings = AdminAccessSettings()

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for cidr in v:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"trusted proxy {cidr[:60]!r}: {exc}") from None
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        for host in v:
            if not _HOST.fullmatch(host):
                raise ValueError(f"allowed host {host[:80]!r} is not a host name or address")
        return [h.lower() for h in v]

    @model_validator(mode="after")
    def _consistent(self) -> AccessSettings:
        if self.entra is not None and not self.policy.configured:
            raise ValueError(
                "entra: Entra ID tokens need a policy (set access.policy.file or "
                "access.policy.managed): without one, any identity of the tenant could call"
            )
        if self.admin.uses_entra and self.entra is None:
            raise ValueError("admin: Entra admin groups or app roles need access.entra")
        if self.admin.console_client_id is not None and not self.admin.uses_entra:
            raise ValueError(
                "admin.console_client_id: the console's Entra sign-in needs admin.entra_groups "
                "or admin.entra_app_roles (who may sign in, with which role)"
            )
        if self.admin.console_public_url is not None and not self.trusted_proxies:
            raise ValueError(
                "admin.console_public_url: set access.trusted_proxies to the address of the "
                "proxy in front of the console (without it every client has the proxy's "
                "address, and one client's failed sign-ins lock every admin out)"
            )
        return self

    def with_base_dir(self, base_dir: Path) -> AccessSettings:
        """Relative file paths resolved against the config file's directory."""
        policy, entra = self.policy, self.entra
        if policy.file is not None and not Path(policy.file).is_absolute():
            policy = policy.model_copy(update={"file": str((base_dir / policy.file).resolve())})
        if entra is not None and entra.ca_file and not Path(entra.ca_file).is_absolute():
            entra = entra.model_copy(update={"ca_file": str((base_dir / entra.ca_file).resolve())})
        if policy is self.policy and entra is self.entra:
            return self
        return self.model_copy(update={"policy": policy, "entra": entra})


GRANIAN_MAX_HEADER_TIMEOUT_S = 60.0  # Granian's longest header read timeout


class ListenTlsSettings(Frozen):
    """``listen.tls``: HTTPS on both ports (TLS 1.2 at least). The key file must be readable
    by its owner only (0600), like the master key."""

    cert_file: str  # PEM: the certificate, then its intermediates
    key_file: str  # PEM: its private key, mode 0600
    #: how often the files are checked for a new certificate (also re-read on every reload)
    reload_interval_s: float = Field(default=10.0, ge=1, le=3600)
    #: PEM CA certificates: the proxy port asks for a client certificate issued by one of
    #: them, which authenticates as the app the policy binds it to (docs/operations.md)
    client_ca_file: str | None = None


class ListenSettings(Frozen):
    proxy: str = "127.0.0.1:8080"
    admin: str = "127.0.0.1:8081"
    #: on SIGTERM, readiness turns false and connections are still accepted this long (for a
    #: load balancer to notice), then refused
    drain_grace_s: float = Field(default=0.0, ge=0, le=300)
    #: then requests and streams in flight finish, for at most this long
    drain_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    tls: ListenTlsSettings | None = None

    @field_validator("proxy", "admin")
    @classmethod
    def _hostport(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"listen address must be HOST:PORT, got {v!r}")
        return v


class ProxySettings(Frozen):
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    #: an upstream answer read whole (not streamed), and one event of a stream, at most: the
    #: gateway holds these in memory (a batch of embeddings as floats is the largest answer)
    max_answer_bytes: int = Field(default=MAX_ANSWER_BYTES, ge=64 * 1024)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    upstream_timeout_s: float = Field(default=300.0, gt=0)
    key_cache_ttl_s: float = Field(default=2.0, gt=0, le=60)
    max_upstream_connections: int = Field(default=256, gt=0, le=100_000)
    #: the HTTP client toward the upstreams (proxy/aiohttp_client.py, proxy/pyreqwest_client.py)
    upstream_client: Literal["aiohttp", "pyreqwest"] = "aiohttp"
    #: the proxy port's HTTP server: aiohttp's, or Granian's (Rust; ASGI, embedded in the
    #: worker's event loop). The admin port is always aiohttp's (docs/performance.md, "Keyguard
    #: on Granian": what the proxy port keeps and loses on it)
    http_server: Literal["aiohttp", "granian"] = "aiohttp"
    #: store lookups per second for key ids not known to exist (a flood of made-up ids)
    unknown_key_lookups_per_s: float = Field(default=50.0, gt=0, le=100_000)
    access_log: bool = True
    # Fair share of the upstream pool: requests in flight per caller (a key or an Entra
    # identity) and per app, as fractions of max_upstream_connections; beyond them, 429.
    upstream_share_per_caller: float = Field(default=0.25, gt=0, le=1)
    upstream_share_per_app: float = Field(default=0.5, gt=0, le=1)
    # Connection hygiene, on both ports (docs/security.md, "Connections").
    #: a request's line and headers must be complete this long after its first byte
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    #: a kept-alive connection that starts no request for this long is closed
    idle_timeout_s: float = Field(default=75.0, gt=0, le=3600)
    #: the body may start this late; then it must keep min_body_rate_bytes_s ...
    body_grace_s: float = Field(default=10.0, gt=0, le=3600)
    min_body_rate_bytes_s: int = Field(default=16384, gt=0, le=1 << 30)
    #: ... and be complete within this long after the headers
    body_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    #: open connections on the proxy port; unset: what the file descriptor limit leaves
    max_connections: int | None = Field(default=None, gt=0, le=1_000_000)
    #: from one client address; unset: a quarter of max_connections, at most 1,024
    max_connections_per_address: int | None = Field(default=None, gt=0, le=1_000_000)
    admin_max_connections: int = Field(default=128, gt=0, le=100_000)
    admin_max_connections_per_address: int = Field(default=32, gt=0, le=100_000)

    @model_validator(mode="after")
    def _bounds(self) -> ProxySettings:
        if self.body_grace_s > self.body_timeout_s:
            raise ValueError("body_grace_s must not be above body_timeout_s")
        if (
            self.max_connections is not None
            and self.max_connections_per_address is not None
            and self.max_connections_per_address > self.max_connections
        ):
            raise ValueError("max_connections_per_address must not be above max_connections")
        if self.admin_max_connections_per_address > self.admin_max_connections:
            raise ValueError(
                "admin_max_connections_per_address must not be above admin_max_connections"
            )
        return self


class ClusterSettings(Frozen):
    """How replicas tell each other at once about blocks, key changes and refused credentials
    (:mod:`keyguard.bus`). ``bus``: a ``redis://`` URL, or a ``postgresql://`` one (the store's:
    LISTEN/NOTIFY); by default the limits backend's when that is Redis, else none (one
    replica, or replicas that converge by their periodic reloads only)."""

    bus: str | None = None
    #: the pub/sub channel (several gateways may share one Redis: give each its own)
    channel: str = Field(default="keyguard:bus", pattern=r"^[A-Za-z0-9:._-]{1,128}$")

    @field_validator("bus")
    @classmethod
    def _bus(cls, v: str | None) -> str | None:
        if (
            v is not None
            and v != "memory"
            and urlsplit(v).scheme not in ("redis", "rediss", "unix", "postgresql", "postgres")
        ):
            raise ValueError(
                "cluster.bus must be a redis://, rediss:// or unix:// URL, or a postgresql:// "
                "URL (LISTEN/NOTIFY, for replicas without Redis)"
            )
        return v


class Settings(Frozen):
    listen: ListenSettings = ListenSettings()
    store: str = "sqlite:///keyguard.db"
    master_key_file: str | None = None
    proxy: ProxySettings = ProxySettings()
    upstreams: list[UpstreamSettings] = []
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: one record per line on stderr (docs/logs.md); auto: text on a terminal, else JSON
    log_format: Literal["json", "text", "auto"] = "auto"
    rotation: RotationSettings = RotationSettings()
    limits: LimitSettings = LimitSettings()
    monitor: MonitorSettings = MonitorSettings()
    access: AccessSettings = AccessSettings()
    cluster: ClusterSettings = ClusterSettings()
    guardrails: GuardSettings = GuardSettings()
    #: worker processes sharing the listeners; unset: one per available CPU with a shared
    #: limits backend, else 1 (docs/operations.md, "Workers")
    workers: int | None = Field(default=None, ge=1, le=256)

    @property
    def bus_url(self) -> str | None:
        """The replica bus: ``cluster.bus``, else a Redis limits backend's URL."""
        if self.cluster.bus is not None:
            return self.cluster.bus
        backend = self.limits.backend
        return backend if urlsplit(backend).scheme in ("redis", "rediss", "unix") else None

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
        if self.workers is not None and self.workers > 1 and not self.shared_limits:
            raise ValueError(IN_PROCESS_WORKERS.format(n=self.workers))
        if self.proxy.http_server == "granian":
            if self.listen.tls is not None and self.listen.tls.client_ca_file is not None:
                raise ValueError(
                    "listen.tls.client_ca_file: client certificates need proxy.http_server "
                    "aiohttp (Granian does not hand the verified certificate to the gateway)"
                )
            if self.proxy.header_timeout_s > GRANIAN_MAX_HEADER_TIMEOUT_S:
                raise ValueError(
                    "proxy.header_timeout_s: at most 60 with proxy.http_server granian (its "
                    "longest header read timeout)"
                )
        return self

    @property
    def shared_limits(self) -> bool:
        """No limit counters, or counters every process shares (a Redis limits backend)."""
        return not self.limits.enabled or self.limits.backend != "memory"


def _refuse_plaintext_secrets(
    node: Any, where: tuple[str | int, ...] = (), src: tuple[str, Lines] = ("", {})
) -> None:
    """Refuse any value that looks like a key, and any secret-named field holding a literal."""

    def at(loc: tuple[str | int, ...]) -> str:
        line = line_of(loc, src[1])
        dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        return (f"{src[0]}:{line}: " if src[0] and line else "") + dotted.lstrip(".")

    if isinstance(node, Mapping):
        for k, v in node.items():
            sub = (*where, str(k))
            if isinstance(v, str) and _SECRET_FIELD.search(str(k)):
                raise ConfigurationError(
                    f"{at(sub)}: plaintext secrets are not allowed in the config file; store the "
                    "value with 'keyguard vault put NAME' and refer to it as 'vault: NAME'"
                )
            _refuse_plaintext_secrets(v, sub, src)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _refuse_plaintext_secrets(v, (*where, i), src)
    elif isinstance(node, str) and _KEY_LIKE.search(node):
        raise ConfigurationError(
            f"{at(where)}: this value looks like an API key; keys are not allowed in the config "
            "file. Store it with 'keyguard vault put NAME' and refer to it as 'vault: NAME'"
        )


def settings_from_mapping(
    data: Mapping[str, Any],
    *,
    base_dir: Path | None = None,
    source: str = "config",
    lines: Lines | None = None,
) -> Settings:
    """Validate a parsed config mapping; relative paths resolve against ``base_dir``; errors
    name ``source`` and the line (from ``lines``) of the first problem."""
    _refuse_plaintext_secrets(data, src=(source, lines or {}))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        errors = sorted(  # unknown keys first: a misspelt key often explains the rest
            exc.errors(),
            key=lambda e: (e["type"] != "extra_forbidden", line_of(e["loc"], lines or {}) or 0),
        )
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigurationError(
            describe_error(errors[0], Settings, lines or {}, source) + more
        ) from None
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
    if any(u.ca_file and not Path(u.ca_file).is_absolute() for u in settings.upstreams):
        updates["upstreams"] = [
            u.model_copy(update={"ca_file": str((base_dir / u.ca_file).resolve())})
            if u.ca_file and not Path(u.ca_file).is_absolute()
            else u
            for u in settings.upstreams
        ]
    tls = settings.listen.tls
    if tls is not None:
        files = {
            name: str((base_dir / value).resolve())
            for name, value in (
                ("cert_file", tls.cert_file),
                ("key_file", tls.key_file),
                ("client_ca_file", tls.client_ca_file),
            )
            if value is not None and not Path(value).is_absolute()
        }
        if files:
            updates["listen"] = settings.listen.model_copy(
                update={"tls": tls.model_copy(update=files)}
            )
    if settings.access.with_base_dir(base_dir) is not settings.access:
        updates["access"] = settings.access.with_base_dir(base_dir)
    return settings.model_copy(update=updates) if updates else settings


def load_settings(path: str | Path) -> Settings:
    """Read and validate a YAML config file."""
    p = Path(path)
    raw, lines = read_yaml(
        p, hint="; pass --config PATH or set KEYGUARD_CONFIG (docs/quickstart.md has one)"
    )
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"config file '{p}' must contain a mapping at the top")
    return settings_from_mapping(raw, base_dir=p.parent, source=str(p), lines=lines)
