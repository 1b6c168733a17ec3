"""The admin service functions: what the admin API and the CLI both call.

Every function takes the :class:`Actor` doing it and leaves an
:class:`~keyguard.events.AdminAction` on the event bus (reads too: who looked at what is part
of the record), naming the actor, the action, the target and, for changes, what changed --
never a secret: a created key or token is returned once to the caller and appears in no event.

Actors: ``admin-token:<id>`` and ``entra:<oid>`` on the admin API, ``cli:<os user>`` on the
command line (which needs access to the store and the master key, and is therefore trusted as
an admin).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError

from ..core.times import utc_seconds
from ..errors import BadRequest, ConfigurationError, NotFound, RequestError, shown
from ..events import AdminAction, EventBus
from ..keys.service import KeyService, key_state
from ..policy.compiled import Policy, compile_policy
from ..policy.document import (
    BindingSpec,
    PolicyDocument,
    PolicyInvalid,
    RoleSpec,
    merge,
    parse_document,
)
from ..policy.evaluate import explain
from ..policy.review import explanation_json, lint, parse_principal, parse_request
from ..policy.source import PolicySource
from ..policy.store import PolicyConflict, PolicyRevision
from ..respond.incidents import Incident
from ..rotation.keys import ExpiringKey, KeyRotationService, RotationResult
from ..store.base import KeyRecord
from .settings import ADMIN_ROLES, AdminRole
from .tokens import AdminTokenRecord, AdminTokenService, role_allows
from .usage import UsageQuery, UsageReport

__all__ = ["Actor", "AdminService", "key_json", "token_json"]


@dataclass(frozen=True, slots=True)
class Actor:
    id: str  # "admin-token:<id>", "entra:<oid>", "cli:<user>"
    role: AdminRole


def key_json(record: KeyRecord, now: datetime) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "app": record.app,
        "state": key_state(record, now),
        "created_at": utc_seconds(record.created_at),
        "expires_at": utc_seconds(record.expires_at),
        "revoked_at": utc_seconds(record.revoked_at),
        "suspended_at": utc_seconds(record.suspended_at),
        "description": record.description,
    }


def token_json(record: AdminTokenRecord, now: datetime) -> dict[str, Any]:
    return {
        "token_id": record.token_id,
        "name": record.name,
        "role": record.role,
        "state": record.state(now),
        "created_at": utc_seconds(record.created_at),
        "created_by": record.created_by,
        "expires_at": utc_seconds(record.expires_at),
        "revoked_at": utc_seconds(record.revoked_at),
    }


M = TypeVar("M", RoleSpec, BindingSpec)

_ID = re.compile(r"[0-9A-Za-z]{12}")  # a key id, an admin token id
_INCIDENT_ID = re.compile(r"[0-9a-f]{16}")


def _key_target(key_id: str) -> str:
    """The audit target for a key id from a path: never something else a caller pasted there
    (a whole key, a token)."""
    return f"key:{key_id}" if _ID.fullmatch(key_id) else "key:?"


def _validated(model: type[M], spec: Any, where: str) -> M:
    if isinstance(spec, model):
        return spec
    try:
        return model.model_validate(spec)
    except ValidationError as exc:
        problems = [
            f"{where}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}".rstrip(".: ")
            for e in exc.errors()
        ]
        raise PolicyInvalid(problems, where) from None


def _not_managed() -> PolicyConflict:
    return PolicyConflict(
        "The policy is not managed through the admin API on this gateway "
        "(access.policy.managed is false); change the policy file instead.",
        reason="policy_not_managed",
    )


class Incidents(Protocol):
    """The incidents every replica records (:class:`keyguard.monitor.store.MonitorStore`)."""

    async def incidents(
        self, *, since: datetime | None = None, status: str | None = None, limit: int = 200
    ) -> list[Incident]: ...

    async def set_status(self, incident_id: str, status: str, now: datetime) -> Incident | None: ...

    async def remove_blocks(
        self, *, subject: str | None = None, incident_id: str | None = None
    ) -> list[str]: ...


Reloader = Callable[[], Awaitable[dict[str, Any]]]


class ReloadUnavailable(RequestError):
    status = 409
    code = "ReloadUnavailable"


class AdminService:
    def __init__(
        self,
        *,
        keys: KeyService,
        tokens: AdminTokenService,
        events: EventBus,
        policy: PolicySource | None = None,
        deployments: Collection[str] = (),
        key_rotation: KeyRotationService | None = None,
        key_grace: timedelta = timedelta(hours=24),
        incidents: Incidents | None = None,
        usage: UsageReport | None = None,
        on_key_change: Callable[[str], None] | None = None,
        on_policy_change: Callable[[int], None] | None = None,
        on_blocks_lifted: Callable[[list[str]], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._keys = keys
        self._tokens = tokens
        self._events = events
        self._policy = policy
        self._deployments = tuple(deployments)
        self._key_rotation = key_rotation
        self._key_grace = key_grace
        self._incidents = incidents
        self._usage = usage
        self._on_key_change = on_key_change
        self._on_policy_change = on_policy_change
        self._on_blocks_lifted = on_blocks_lifted
        self._clock = clock
        self._reloader: Reloader | None = None

    def now(self) -> datetime:
        return self._clock()

    @property
    def tokens(self) -> AdminTokenService:
        return self._tokens

    def set_reloader(self, reloader: Reloader) -> None:
        """What ``reload`` runs: validate the configuration file and hand it to the
        supervisor (set by the process that runs under ``keyguard serve``)."""
        self._reloader = reloader

    # -- the process -------------------------------------------------------------------------

    async def reload(self, actor: Actor) -> dict[str, Any]:
        """Reload the configuration file: every change that can be made live, atomically; an
        invalid file changes nothing (raises :class:`ConfigurationError`, audited too)."""
        reloader = self._reloader
        if reloader is None:
            raise ReloadUnavailable(
                "This gateway does not run under 'keyguard serve'; restart it to change its "
                "configuration."
            )
        try:
            answer = await reloader()
        except ConfigurationError as exc:
            self._record(actor, "config.reload", "config", after={"rejected": str(exc)[:300]})
            raise
        self._record(actor, "config.reload", "config", after=answer)
        return answer

    def _record(
        self,
        actor: Actor,
        action: str,
        target: str,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> datetime:
        now = self._clock()
        self._events.emit(AdminAction(now, actor.id, action, target, before, after))
        return now

    # -- who -------------------------------------------------------------------------------

    async def whoami(self, actor: Actor) -> dict[str, Any]:
        self._record(actor, "whoami", actor.id)
        return {"actor": actor.id, "role": actor.role}

    # -- Keyguard keys ---------------------------------------------------------------------

    async def create_key(
        self,
        actor: Actor,
        app: str,
        *,
        expires_in: timedelta | None = None,
        description: str = "",
    ) -> tuple[KeyRecord, str]:
        now = self._clock()
        record, key = await self._keys.create(
            app, now=now, expires_in=expires_in, description=description
        )
        if self._on_key_change is not None:  # other replicas learn the new id at once
            self._on_key_change(record.key_id)
        self._record(actor, "keys.create", f"key:{record.key_id}", after=key_json(record, now))
        return record, key

    async def list_keys(
        self, actor: Actor, *, app: str | None = None, include_revoked: bool = False
    ) -> list[KeyRecord]:
        now = self._record(actor, "keys.list", f"app:{app}" if app else "keys")
        return await self._keys.list(app=app, include_revoked=include_revoked, now=now)

    async def get_key(self, actor: Actor, key_id: str) -> KeyRecord:
        self._record(actor, "keys.get", _key_target(key_id))
        return await self._keys.get(key_id)

    async def change_key(self, actor: Actor, key_id: str, change: str) -> KeyRecord:
        """``change`` is ``revoke``, ``suspend`` or ``resume``."""
        now = self._clock()
        before = await self._keys.get(key_id)
        if change == "revoke":
            record = await self._keys.revoke(key_id, now=now)
        elif change == "suspend":
            record = await self._keys.suspend(key_id, now=now)
        elif change == "resume":
            record = await self._keys.resume(key_id, now=now)
        else:
            raise BadRequest(f"unknown key change {change[:20]!r}", reason="invalid_change")
        if self._on_key_change is not None:
            self._on_key_change(key_id)
        self._record(
            actor,
            f"keys.{change}",
            _key_target(key_id),
            before={"state": key_state(before, now)},
            after={"state": key_state(record, now)},
        )
        return record

    async def rotate_key(
        self,
        actor: Actor,
        key_id: str,
        *,
        grace: timedelta | None = None,
        token: str | None = None,
    ) -> RotationResult:
        """A new secret for ``key_id``; the old one works for ``grace`` (default
        ``rotation.key_grace``). The rotation service records the action."""
        rotation = self._rotation()
        result = await rotation.rotate(
            key_id,
            now=self._clock(),
            grace=self._key_grace if grace is None else grace,
            token=token,
            actor=actor.id,
        )
        if self._on_key_change is not None:
            self._on_key_change(key_id)
        return result

    async def expiring_keys(self, actor: Actor, within: timedelta) -> list[ExpiringKey]:
        """Active keys that stop working within ``within`` (expiry or maximum age)."""
        now = self._record(actor, "keys.list", "keys:expiring")
        return await self._rotation().expiring(within, now=now)

    def _rotation(self) -> KeyRotationService:
        if self._key_rotation is None:  # pragma: no cover - every wiring passes one
            raise BadRequest("key rotation is not available here", reason="no_key_rotation")
        return self._key_rotation

    # -- usage -----------------------------------------------------------------------------

    async def usage(self, actor: Actor, query: UsageQuery) -> dict[str, Any]:
        """Each limit and budget that applies, its use and what remains; spend over a period
        (:mod:`.usage`). Reading changes no counter."""
        scope, name = query[0], query[1]
        target = "usage" if name is None else f"{scope}:{name}"
        if scope == "key" or (name is not None and shown(name) != repr(name)):
            target = _key_target(name or "") if scope == "key" else f"{scope}:?"
        self._record(actor, "usage.read", target)
        if self._usage is None:
            raise BadRequest("the usage read-out is not available here", reason="no_usage")
        return await self._usage.report(query, self._clock())

    # -- incidents -------------------------------------------------------------------------

    async def list_incidents(
        self,
        actor: Actor,
        *,
        since: datetime | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[Incident]:
        """Every incident (detector findings, raw keys, leaks, budget thresholds, ...),
        newest first."""
        if status not in (None, "open", "resolved"):
            raise BadRequest("'status' must be open or resolved", reason="invalid_status")
        self._record(actor, "alerts.list", "alerts")
        if self._incidents is None:
            return []
        return await self._incidents.incidents(
            since=since, status=status, limit=max(1, min(limit, 10_000))
        )

    async def resolve_incident(self, actor: Actor, incident_id: str) -> tuple[Incident, int]:
        """Mark an incident resolved and lift the throttles it put in place (a suspended key
        stays suspended); the incident and how many throttles were lifted."""
        if self._incidents is None or not _INCIDENT_ID.fullmatch(incident_id):
            raise NotFound(f"no incident with id {shown(incident_id)}", reason="unknown_incident")
        now = self._clock()
        incident = await self._incidents.set_status(incident_id, "resolved", now)
        if incident is None:
            raise NotFound(f"no incident with id {shown(incident_id)}", reason="unknown_incident")
        subjects = await self._incidents.remove_blocks(incident_id=incident_id)
        if subjects and self._on_blocks_lifted is not None:
            self._on_blocks_lifted(subjects)
        lifted = len(subjects)
        self._record(
            actor,
            "alerts.resolve",
            f"incident:{incident_id}",
            after={"status": "resolved", "throttles_lifted": lifted},
        )
        return incident, lifted

    # -- admin tokens ----------------------------------------------------------------------

    async def create_admin_token(
        self, actor: Actor, *, name: str, role: str, expires_in: timedelta | None = None
    ) -> tuple[AdminTokenRecord, str]:
        if role in ADMIN_ROLES and not role_allows(actor.role, role):
            raise BadRequest("a token cannot carry a role above its creator's", reason="role")
        now = self._clock()
        record, token = await self._tokens.create(
            name=name, role=role, created_by=actor.id, now=now, expires_in=expires_in
        )
        self._record(
            actor,
            "admin_tokens.create",
            f"admin-token:{record.token_id}",
            after=token_json(record, now),
        )
        return record, token

    async def list_admin_tokens(self, actor: Actor) -> list[AdminTokenRecord]:
        self._record(actor, "admin_tokens.list", "admin-tokens")
        return await self._tokens.list()

    async def revoke_admin_token(self, actor: Actor, token_id: str) -> AdminTokenRecord:
        now = self._clock()
        record = await self._tokens.revoke(token_id, now=now)
        self._record(
            actor,
            "admin_tokens.revoke",
            f"admin-token:{token_id if _ID.fullmatch(token_id) else '?'}",
            after={"state": record.state(now)},
        )
        return record

    # -- policy ----------------------------------------------------------------------------

    def _source(self) -> PolicySource:
        if self._policy is None or not self._policy.configured:
            raise PolicyConflict(
                "No policy is configured on this gateway (set access.policy.file or "
                "access.policy.managed).",
                reason="no_policy",
            )
        return self._policy

    async def get_policy(self, actor: Actor) -> dict[str, Any]:
        self._record(actor, "policy.get", "policy")
        source = self._source()
        snap = source.snapshot
        return {
            "managed": source.store is not None,
            "managed_version": snap.managed_version,
            "file": snap.file.to_json(),
            "managed_document": snap.managed.to_json(),
            "effective": source.current.document.to_json(),
            "shadowed": list(snap.shadowed),
        }

    async def replace_managed_policy(
        self, actor: Actor, document: Any, *, expected_version: int
    ) -> PolicyRevision:
        new = parse_document(document, "managed policy")
        return await self._write(
            actor, lambda _: new, "policy.replace", "policy:managed", expected_version
        )

    async def put_role(self, actor: Actor, name: str, spec: Any) -> PolicyRevision:
        role = _validated(RoleSpec, spec, f"roles.{name}")

        def change(doc: PolicyDocument) -> PolicyDocument:
            return doc.model_copy(update={"roles": {**doc.roles, name: role}})

        return await self._write(actor, change, "policy.role.put", f"role:{name}")

    async def delete_role(self, actor: Actor, name: str) -> PolicyRevision:
        def change(doc: PolicyDocument) -> PolicyDocument:
            if name not in doc.roles:
                raise NotFound(f"no managed role {shown(name)}", reason="unknown_role")
            return doc.model_copy(
                update={"roles": {k: v for k, v in doc.roles.items() if k != name}}
            )

        return await self._write(actor, change, "policy.role.delete", f"role:{name}")

    async def put_binding(self, actor: Actor, spec: Any) -> PolicyRevision:
        binding = _validated(BindingSpec, spec, "binding")

        def change(doc: PolicyDocument) -> PolicyDocument:
            others = [b for b in doc.bindings if b.name != binding.name]
            return doc.model_copy(update={"bindings": [*others, binding]})

        return await self._write(actor, change, "policy.binding.put", f"binding:{binding.name}")

    async def delete_binding(self, actor: Actor, name: str) -> PolicyRevision:
        def change(doc: PolicyDocument) -> PolicyDocument:
            kept = [b for b in doc.bindings if b.name != name]
            if len(kept) == len(doc.bindings):
                raise NotFound(f"no managed binding {shown(name)}", reason="unknown_binding")
            return doc.model_copy(update={"bindings": kept})

        return await self._write(actor, change, "policy.binding.delete", f"binding:{name}")

    async def _write(
        self,
        actor: Actor,
        change: Callable[[PolicyDocument], PolicyDocument],
        action: str,
        target: str,
        expected_version: int | None = None,
    ) -> PolicyRevision:
        source = self._source()
        store = source.store
        if store is None:
            raise _not_managed()
        latest = await store.latest()
        version = latest.version if latest is not None else 0
        if expected_version is not None and expected_version != version:
            raise PolicyConflict(
                f"The managed policy is at version {version}, not {expected_version}; read it "
                "again and retry.",
                reason="policy_version_conflict",
            )
        current = parse_document(latest.document) if latest is not None else PolicyDocument()
        new = parse_document(change(current).to_json(), "managed policy")
        _, shadowed = merge(source.snapshot.file, new)
        if shadowed:
            raise PolicyConflict(
                "Names already defined by the policy file cannot be managed through the admin "
                "API: " + "; ".join(shadowed),
                reason="policy_name_in_file",
            )
        revision = await store.append(
            new.to_json(), expected_version=version, actor=actor.id, now=self._clock()
        )
        await source.refresh()
        if self._on_policy_change is not None:
            self._on_policy_change(revision.version)
        self._record(
            actor, action, target, before={"version": version}, after={"version": revision.version}
        )
        return revision

    async def check_policy(self, actor: Actor, document: Any) -> dict[str, Any]:
        """Validate ``document`` alone; ``problems`` empty means valid."""
        self._record(actor, "policy.check", "policy:candidate")
        try:
            doc = parse_document(document, "policy")
        except PolicyInvalid as exc:
            return {"valid": False, "problems": exc.problems, "warnings": []}
        warnings = lint(
            compile_policy(doc), deployments=self._deployments or None, now=self._clock()
        )
        return {"valid": True, "problems": [], "warnings": warnings}

    async def explain(
        self,
        actor: Actor,
        principal: str,
        request: str | Mapping[str, Any],
        *,
        groups: Collection[str] = (),
        app_roles: Collection[str] = (),
        at: datetime | None = None,
        policy: Policy | None = None,
    ) -> dict[str, Any]:
        """Which binding allows ``request`` for ``principal``, or why it is denied."""
        self._record(actor, "policy.explain", principal[:80])
        if policy is None:
            policy = self._source().current
        key_app = None
        if principal.startswith("key:"):
            try:
                key_app = (await self._keys.get(principal[4:])).app
            except NotFound:
                key_app = None
        who = parse_principal(
            principal, policy, key_app=key_app, groups=groups, app_roles=app_roles
        )
        facts = parse_request(request)
        return explanation_json(explain(policy, who, facts, at or self._clock()))
