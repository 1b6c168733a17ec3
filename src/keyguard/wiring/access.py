"""Wiring of access control from the settings: identity, policy and the admin API.

``await start_access(stack, runtime, keys)`` builds, from ``settings.access``:

* the proxy's authenticator (Keyguard keys; Entra tokens when ``access.entra`` is set, with a
  JWKS cache fetched over HTTPS; refusal of raw Azure keys, matched against the fingerprints of
  the vault's upstream keys), the client-address function (trusted proxies) and, when a policy
  is configured, the policy authorizer and its background reload;
* the admin API (tokens, Entra admin groups, the service functions, the OpenAPI description).

What it starts, ``stack`` (the gateway's exit stack) stops, in reverse order. The CLI uses
:func:`open_admin_service` for the same service functions without the proxy parts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from ..admin.activity import AuditView
from ..admin.api import AdminApi
from ..admin.app import HealthProbe, create_admin_app
from ..admin.auth import AdminAuthenticator
from ..admin.service import AdminService
from ..admin.tokens import ADMIN_PEPPER, AdminTokenService, AdminTokenStore
from ..admin.usage import UsageReport
from ..audit.background import BackgroundVerification, ChainStatus, store_walk
from ..audit.signing import load_public_keys, load_signer, signature_checker
from ..audit.store import AuditStore
from ..bus import Bus
from ..config import AccessSettings
from ..console import Console, SqlSessions
from ..console.entra import EntraSignIn
from ..console.oidc import OidcClient
from ..core.netaddr import ClientAddress
from ..errors import ConfigurationError
from ..events import SecurityEvent
from ..identity.authenticator import Authenticator
from ..identity.certificates import CertificateAuthenticator
from ..identity.entra import EntraAuthenticator
from ..identity.jwks import JwksCache, ssl_context
from ..identity.key_index import IdIndex
from ..identity.keys import KeyAuthenticator
from ..identity.managed_keys import ManagedKeyIndex
from ..identity.tokens import KeyLookup, TokenValidator
from ..limits.admission import LimitAdmission
from ..monitor.store import MonitorStore
from ..policy.authorizer import PolicyAuthorizer
from ..policy.source import PolicySource
from ..policy.store import PolicyStore
from .bus import Announcer, admin_tokens_from_bus, policy_from_bus
from .rotation import key_rotation_service
from .runtime import Runtime

__all__ = ["Access", "admin_service", "open_admin_service", "start_access"]

log = logging.getLogger("keyguard.identity")


@dataclass
class Access:
    identity: Authenticator
    client_address: ClientAddress
    authorizer: PolicyAuthorizer | None
    policy: PolicySource | None
    api: AdminApi
    allowed_hosts: tuple[str, ...]
    managed_keys: ManagedKeyIndex | None = None
    console: Console | None = None

    def admin_app(self, runtime: Runtime, health: HealthProbe | None = None) -> web.Application:
        app = create_admin_app(
            runtime.store, api=self.api, allowed_hosts=self.allowed_hosts, health=health
        )
        if self.console is not None:
            self.console.add_routes(app)
        return app


def _admin_token_store(runtime: Runtime) -> AdminTokenStore:
    engine = runtime.engine
    if engine is None:  # pragma: no cover - every store backend is SQL today
        raise ConfigurationError("the admin API needs a SQL store")
    return AdminTokenStore(engine)


def _announced(bus: Bus | None) -> Callable[[str], None] | None:
    """Tell the replicas that an admin token was revoked (they drop its cached record)."""
    if bus is None:
        return None
    announce = bus
    return lambda token_id: announce.publish("admin-token", {"id": token_id})


async def _admin_tokens(runtime: Runtime) -> AdminTokenService:
    """The CLI's: no cache; a revocation is announced on the bus when the command opened it."""
    pepper = await runtime.vault.get_or_create_random(ADMIN_PEPPER)
    return AdminTokenService(
        _admin_token_store(runtime), pepper, on_revoke=_announced(runtime.announce)
    )


async def _gateway_admin_tokens(
    stack: AsyncExitStack, runtime: Runtime, bus: Bus | None
) -> AdminTokenService:
    """The admin port's: records cached as Keyguard keys' are, made-up ids kept off the store
    by an index of the token ids and the unknown-id lookup budget; revocations over the bus."""
    store = _admin_token_store(runtime)
    proxy = runtime.settings.proxy
    index = IdIndex(
        store.ids_changed,
        what="admin token",
        refresh_s=max(proxy.key_cache_ttl_s, 1.0),
        lookups_per_s=proxy.unknown_key_lookups_per_s,
    )
    await index.start()
    stack.push_async_callback(index.close)
    pepper = await runtime.vault.get_or_create_random(ADMIN_PEPPER)
    tokens = AdminTokenService(
        store,
        pepper,
        ttl=proxy.key_cache_ttl_s,
        index=index,
        on_revoke=_announced(bus),
    )
    if bus is not None:
        admin_tokens_from_bus(tokens, bus)
    return tokens


async def _policy_source(runtime: Runtime) -> PolicySource | None:
    settings = runtime.settings.access.policy
    if not settings.configured:
        return None
    engine = runtime.engine
    source = PolicySource(settings, PolicyStore(engine) if engine is not None else None)
    await source.load()
    return source


def _upstreams_by_secret(runtime: Runtime) -> dict[str, list[str]]:
    """Local vault secret -> the upstreams whose key it is."""
    found: dict[str, list[str]] = {}
    for up in runtime.settings.upstreams:
        if up.credential.vault is not None:
            found.setdefault(up.credential.vault, []).append(up.name)
    return found


def _deployments(runtime: Runtime) -> list[str]:
    return [name for up in runtime.settings.upstreams for name in up.deployments]


def usage_report(runtime: Runtime, admission: LimitAdmission | None) -> UsageReport:
    """The usage read-out over the limits this process enforces (none when no limit is
    configured, or on the command line) and the audit log's request records."""
    limits = runtime.settings.limits
    return UsageReport(
        keys=runtime.keys,
        reader=admission.reader() if admission is not None else None,
        audit=runtime.audit_engine,
        teams=limits.teams,
        deployments=_deployments(runtime),
        currency=limits.currency,
    )


async def admin_service(
    runtime: Runtime,
    *,
    policy: PolicySource | None,
    tokens: AdminTokenService,
    admission: LimitAdmission | None = None,
    on_key_change: Callable[[str], None] | None = None,
    on_policy_change: Callable[[int], None] | None = None,
    on_blocks_lifted: Callable[[list[str]], None] | None = None,
    on_incident_change: Callable[[str], None] | None = None,
    verification: BackgroundVerification | None = None,
) -> AdminService:
    return AdminService(
        keys=runtime.keys,
        tokens=tokens,
        events=runtime.events,
        policy=policy,
        deployments=_deployments(runtime),
        key_rotation=await key_rotation_service(
            runtime, accept_delay_s=runtime.settings.proxy.key_cache_ttl_s
        ),
        key_grace=runtime.settings.rotation.key_grace,
        incidents=MonitorStore(runtime.engine) if runtime.engine is not None else None,
        usage=usage_report(runtime, admission),
        on_key_change=on_key_change,
        on_policy_change=on_policy_change,
        on_blocks_lifted=on_blocks_lifted,
        on_incident_change=on_incident_change,
        verification=verification,
    )


async def _verification(stack: AsyncExitStack, runtime: Runtime) -> BackgroundVerification | None:
    """The whole audit chain's verification in the background, as ``keyguard audit verify``
    makes it (the vault's signing key, the configured anchor file); a broken chain is an
    ``audit_tampered`` security event, so an incident."""
    if runtime.engine is None:
        return None
    signer = await load_signer(runtime.vault)
    check = signature_checker(load_public_keys([signer.public_pem().encode()]))
    events = runtime.events

    def broken(status: ChainStatus) -> None:
        where = ""
        if status.first_bad is not None:
            where = f"seq {status.first_bad} of writer {status.first_bad_chain or '(shared)'}"
        events.emit(
            SecurityEvent(
                status.finished,
                "audit_tampered",
                "critical",
                f"The audit log does not verify: {status.problems[0]}",
                evidence={"first_bad": where, "problems": list(status.problems)},
            )
        )

    verification = BackgroundVerification(
        store_walk(AuditStore(runtime.engine), check, runtime.settings.monitor.audit.anchor_file),
        on_broken=broken,
    )
    stack.push_async_callback(verification.close)
    return verification


async def open_admin_service(runtime: Runtime) -> AdminService:
    """The admin service functions for the CLI (policy loaded once, no background tasks);
    changes are announced on ``runtime.announce`` when the command opened the bus."""
    announce = Announcer.over(runtime.announce) if runtime.announce is not None else None
    return await admin_service(
        runtime,
        policy=await _policy_source(runtime),
        tokens=await _admin_tokens(runtime),
        on_key_change=announce.key_changed if announce else None,
        on_policy_change=announce.policy_changed if announce else None,
        on_blocks_lifted=announce.blocks_lifted if announce else None,
        on_incident_change=announce.incident_changed if announce else None,
    )


def _certificates(runtime: Runtime, policy: PolicySource | None) -> CertificateAuthenticator | None:
    """Client certificates on the proxy port, bound to apps by the policy."""
    tls = runtime.settings.listen.tls
    if tls is None or tls.client_ca_file is None:
        return None
    if policy is None:
        raise ConfigurationError(
            "listen.tls.client_ca_file: client certificates are bound to apps in the policy; "
            "configure access.policy (and list each app's client_certificates)"
        )
    source = policy
    return CertificateAuthenticator(lambda: source.current)


CONSOLE_SIGN_IN_KEY = "keyguard/console-sign-in"
CONSOLE_SESSION_KEY = "keyguard/console-session"  # what console session ids are MACed with


async def _entra_sign_in(
    stack: AsyncExitStack,
    runtime: Runtime,
    settings: AccessSettings,
    audience: str,
    keys: KeyLookup,
) -> EntraSignIn:
    """The console's Entra ID sign-in: the OIDC client of ``admin.console_*`` and the key the
    pre-auth cookie is sealed with (a random secret in the vault, shared by every process)."""
    entra, admin = settings.entra, settings.admin
    assert entra is not None and admin.console_client_id is not None
    secret = None
    if admin.console_client_secret_vault is not None:
        secret = await runtime.vault.get(admin.console_client_secret_vault)
    authority = admin.console_authority or (
        f"https://login.microsoftonline.com/{entra.tenants[0]}/v2.0"
    )
    oidc = OidcClient(
        authority=authority,
        client_id=admin.console_client_id,
        scope=f"openid profile {audience.rstrip('/')}/.default",
        keys=keys,
        issuers=entra.accepted_issuers(),
        tenants=entra.tenants,
        algorithms=entra.algorithms,
        skew=entra.clock_skew_s,
        ssl_context=ssl_context(entra.ca_file),
        client_secret=secret,
    )
    stack.push_async_callback(oidc.close)
    key = await runtime.vault.get_or_create_random(CONSOLE_SIGN_IN_KEY, 32)
    return EntraSignIn(oidc, key, admin.console_redirect_path)


def _authorizer(policy: PolicySource | None) -> PolicyAuthorizer | None:
    if policy is None:
        return None
    return PolicyAuthorizer(lambda: policy.current)


async def start_access(
    stack: AsyncExitStack,
    runtime: Runtime,
    keys: KeyAuthenticator,
    *,
    invalidate: Callable[[str], None] | None = None,
    bus: Bus | None = None,
    lift: Callable[[list[str]], None] | None = None,
    incident_changed: Callable[[str], None] | None = None,
    admission: LimitAdmission | None = None,
) -> Access:
    """Start what ``settings.access`` asks for; ``stack`` stops it. With a ``bus``, managed
    policy writes reach the other replicas at once; ``lift`` lifts blocks here and there;
    ``incident_changed`` tells the responders here and there of an operator's status."""
    settings = runtime.settings.access
    policy = await _policy_source(runtime)
    if policy is None:
        log.warning(
            "access: no policy configured (access.policy); every valid Keyguard key may "
            "use every configured deployment"
        )
    else:
        policy.start()
        stack.push_async_callback(policy.close)
    entra = settings.entra
    tokens: EntraAuthenticator | None = None
    admin_validator: TokenValidator | None = None
    sign_in: EntraSignIn | None = None
    if entra is not None:
        jwks = JwksCache(
            entra.jwks_uri,
            algorithms=entra.algorithms,
            ssl=ssl_context(entra.ca_file),
            timeout=entra.jwks_timeout_s,
            min_refresh_interval=entra.jwks_refresh_min_interval_s,
            max_age=entra.jwks_max_age_s,
        )
        stack.push_async_callback(jwks.close)
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
            if settings.admin.console_client_id is not None:
                sign_in = await _entra_sign_in(stack, runtime, settings, audiences[0], jwks.get)
    managed_keys = None
    if runtime.engine is not None:
        managed_keys = ManagedKeyIndex(runtime.engine, runtime.vault.fingerprint)
        await managed_keys.start()
        stack.push_async_callback(managed_keys.close)
    identity = Authenticator(
        keys,
        events=runtime.events,
        entra=tokens,
        managed_keys=managed_keys,
        upstreams_by_secret=_upstreams_by_secret(runtime),
        allowed_hosts=settings.allowed_hosts,
        certificates=_certificates(runtime, policy),
    )
    admin_tokens = await _gateway_admin_tokens(stack, runtime, bus)
    service = await admin_service(
        runtime,
        policy=policy,
        tokens=admin_tokens,
        admission=admission,
        on_key_change=invalidate or keys.invalidate,
        on_policy_change=policy_from_bus(policy, bus) if bus is not None else None,
        on_blocks_lifted=lift,
        on_incident_change=incident_changed,
        verification=await _verification(stack, runtime),
    )
    auth = AdminAuthenticator(
        admin_tokens,
        events=runtime.events,
        entra=admin_validator,
        groups=settings.admin.entra_groups,
        app_roles=settings.admin.entra_app_roles,
    )
    audit = AuditStore(runtime.engine) if runtime.engine is not None else None
    return Access(
        identity=identity,
        client_address=ClientAddress(settings.trusted_proxies),
        authorizer=_authorizer(policy),
        policy=policy,
        api=AdminApi(service, auth),
        allowed_hosts=tuple(settings.allowed_hosts),
        managed_keys=managed_keys,
        console=Console(
            service,
            auth,
            AuditView(audit, events=runtime.events),
            sessions=(
                SqlSessions(
                    runtime.engine,
                    key=await runtime.vault.get_or_create_random(CONSOLE_SESSION_KEY, 32),
                )
                if runtime.engine is not None
                else None
            ),
            events=runtime.events,
            entra=sign_in,
            public_url=settings.admin.console_public_url,
            client_address=ClientAddress(settings.trusted_proxies),
            entra_recheck=timedelta(seconds=settings.admin.console_entra_recheck_s),
        ),
    )
