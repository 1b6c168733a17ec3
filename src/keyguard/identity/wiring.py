"""Wiring of access control from the settings: identity, policy and the admin API.

``await start_access(runtime, keys)`` builds, from ``settings.access``:

* the proxy's authenticator (Keyguard keys; Entra tokens when ``access.entra`` is set, with a
  JWKS cache fetched over HTTPS; refusal of raw Azure keys, matched against the fingerprints of
  the vault's upstream keys), the client-address function (trusted proxies) and, when a policy
  is configured, the policy authorizer and its background reload;
* the admin API (tokens, Entra admin groups, the service functions, the OpenAPI description).

:class:`Access` owns what it started; ``await access.close()`` stops it. The CLI uses
:func:`open_admin_service` for the same service functions without the proxy parts.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from ..admin.api import AdminApi
from ..admin.app import create_admin_app
from ..admin.auth import AdminAuthenticator
from ..admin.service import Actor, AdminService
from ..admin.tokens import ADMIN_PEPPER, AdminTokenService, AdminTokenStore
from ..core.netaddr import ClientAddress
from ..errors import ConfigurationError
from ..policy.authorizer import PolicyAuthorizer
from ..policy.source import PolicySource
from ..policy.store import PolicyStore
from ..runtime import Runtime
from .authenticator import Authenticator
from .entra import EntraAuthenticator
from .jwks import JwksCache, ssl_context
from .keys import KeyAuthenticator
from .managed_keys import ManagedKeyIndex
from .tokens import TokenValidator

__all__ = ["Access", "cli_actor", "open_admin_service", "start_access"]

log = logging.getLogger("keyguard.identity")


def cli_actor() -> Actor:
    """The actor of CLI commands: whoever can open the store and the vault is an admin."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no user name in the environment
        user = "unknown"
    return Actor(f"cli:{user}", "admin")


@dataclass
class Access:
    identity: Authenticator
    client_address: ClientAddress
    authorizer: PolicyAuthorizer | None
    policy: PolicySource | None
    api: AdminApi
    allowed_hosts: tuple[str, ...]
    managed_keys: ManagedKeyIndex | None = None
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def admin_app(self, runtime: Runtime) -> web.Application:
        return create_admin_app(runtime.store, api=self.api, allowed_hosts=self.allowed_hosts)

    async def require_viewer(self, request: web.Request) -> None:
        """For admin routes added by other parts (``/admin/alerts``)."""
        await self.api.auth.require(request, "viewer")

    async def close(self) -> None:
        for close in reversed(self._closers):
            await close()
        self._closers.clear()


async def _admin_tokens(runtime: Runtime) -> AdminTokenService:
    engine = getattr(runtime.store, "engine", None)
    if engine is None:  # pragma: no cover - every store backend is SQL today
        raise ConfigurationError("the admin API needs a SQL store")
    pepper = await runtime.vault.get_or_create_random(ADMIN_PEPPER)
    return AdminTokenService(AdminTokenStore(engine), pepper)


async def _policy_source(runtime: Runtime) -> PolicySource | None:
    settings = runtime.settings.access.policy
    if not settings.configured:
        return None
    engine = getattr(runtime.store, "engine", None)
    source = PolicySource(settings, PolicyStore(engine) if engine is not None else None)
    await source.load()
    return source


def _deployments(runtime: Runtime) -> list[str]:
    return [name for up in runtime.settings.upstreams for name in up.deployments]


async def open_admin_service(runtime: Runtime) -> AdminService:
    """The admin service functions for the CLI (policy loaded once, no background tasks)."""
    return AdminService(
        keys=runtime.keys,
        tokens=await _admin_tokens(runtime),
        events=runtime.events,
        policy=await _policy_source(runtime),
        deployments=_deployments(runtime),
    )


def _authorizer(policy: PolicySource | None) -> PolicyAuthorizer | None:
    if policy is None:
        return None
    return PolicyAuthorizer(lambda: policy.current)


async def start_access(runtime: Runtime, keys: KeyAuthenticator) -> Access:
    settings = runtime.settings.access
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        policy = await _policy_source(runtime)
        if policy is None:
            log.warning(
                "access: no policy configured (access.policy); every valid Keyguard key may "
                "use every configured deployment"
            )
        else:
            policy.start()
            closers.append(policy.close)
        entra = settings.entra
        jwks: JwksCache | None = None
        tokens: EntraAuthenticator | None = None
        admin_validator: TokenValidator | None = None
        if entra is not None:
            jwks = JwksCache(
                entra.jwks_uri,
                algorithms=entra.algorithms,
                ssl=ssl_context(entra.ca_file),
                timeout=entra.jwks_timeout_s,
                min_refresh_interval=entra.jwks_refresh_min_interval_s,
                max_age=entra.jwks_max_age_s,
            )
            closers.append(jwks.close)
            await jwks.start()
            assert policy is not None  # the settings require a policy with Entra
            source = policy
            tokens = EntraAuthenticator(
                TokenValidator(entra, jwks.get),
                directory=lambda: source.current.directory,
                generation=lambda: source.generation,
                skew=entra.clock_skew_s,
                max_entries=entra.verified_cache_size,
            )
            if settings.admin.uses_entra:
                audiences = settings.admin.entra_audiences or entra.audiences
                admin_validator = TokenValidator(
                    entra.model_copy(update={"audiences": audiences}), jwks.get
                )
        engine = getattr(runtime.store, "engine", None)
        managed_keys = None
        if engine is not None:
            managed_keys = ManagedKeyIndex(engine, runtime.vault.fingerprint)
            await managed_keys.start()
            closers.append(managed_keys.close)
        identity = Authenticator(
            keys,
            events=runtime.events,
            entra=tokens,
            managed_keys=managed_keys,
            allowed_hosts=settings.allowed_hosts,
        )
        admin_tokens = await _admin_tokens(runtime)
        service = AdminService(
            keys=runtime.keys,
            tokens=admin_tokens,
            events=runtime.events,
            policy=policy,
            deployments=_deployments(runtime),
            on_key_change=keys.invalidate,
        )
        auth = AdminAuthenticator(
            admin_tokens,
            events=runtime.events,
            entra=admin_validator,
            groups=settings.admin.entra_groups,
            app_roles=settings.admin.entra_app_roles,
        )
        return Access(
            identity=identity,
            client_address=ClientAddress(settings.trusted_proxies),
            authorizer=_authorizer(policy),
            policy=policy,
            api=AdminApi(service, auth),
            allowed_hosts=tuple(settings.allowed_hosts),
            managed_keys=managed_keys,
            _closers=closers,
        )
    except BaseException:
        for close in reversed(closers):
            await close()
        raise
