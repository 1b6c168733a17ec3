"""The admin service's functions over the policy: read it, replace the managed document or
change one role or binding in it (optimistic versions; names the policy file defines refused),
check a candidate document, and explain a decision."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from ..errors import NotFound, shown
from ..keys.service import KeyService
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
from .recording import Actor, Recorded

__all__ = ["PolicyActions"]

M = TypeVar("M", RoleSpec, BindingSpec)


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


class PolicyActions(Recorded):
    _keys: KeyService
    _policy: PolicySource | None
    _deployments: tuple[str, ...]
    _on_policy_change: Callable[[int], None] | None

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
