"""A policy document compiled for the hot path: sets, one regex per role, bindings by subject.

Compiling happens once per policy change (startup, file edit, admin API), never per request:
:func:`compile_policy` turns a validated :class:`~.document.PolicyDocument` into a frozen
:class:`Policy` whose evaluation (:mod:`.evaluate`) is set membership, one regex match and a few
comparisons.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from .document import OPERATION_ALIASES, PolicyDocument, RoleSpec
from .guardrails import DEFAULTS, Effective, GuardActions

__all__ = ["Binding", "Directory", "Network", "Policy", "Role", "compile_policy", "EMPTY"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    operations: frozenset[str]
    deployment_names: frozenset[str]
    deployment_glob: re.Pattern[str] | None
    patterns: tuple[str, ...]  # as written, for explanations
    max_output_tokens: int | None
    max_prompt_chars: int | None
    streaming: bool
    networks: tuple[Network, ...]
    not_before: datetime | None
    not_after: datetime | None
    guardrails: GuardActions

    def grants_deployment(self, deployment: str) -> bool:
        if deployment in self.deployment_names:
            return True
        glob = self.deployment_glob
        return glob is not None and glob.fullmatch(deployment) is not None


@dataclass(frozen=True, slots=True)
class Binding:
    index: int  # declaration order: the first binding that allows a request is reported
    name: str
    role: Role
    subjects: tuple[str, ...]
    not_before: datetime | None
    not_after: datetime | None


@dataclass(frozen=True, slots=True)
class Directory:
    """Names for Entra identities: client id -> app name, and -> (agent name, parent app)."""

    apps: Mapping[str, str] = field(default_factory=dict)
    agents: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Policy:
    bindings: tuple[Binding, ...]
    by_subject: Mapping[str, tuple[Binding, ...]]
    roles: Mapping[str, Role]
    directory: Directory
    needs_prompt_size: bool  # some role caps the prompt: measure it
    needs_source: bool  # some role limits source networks: parse the client address
    document: PolicyDocument
    # the guardrails in force per combination of granting roles (see :meth:`guardrails`)
    _effective: dict[tuple[str, ...], Effective] = field(default_factory=dict)

    def guardrails(self, roles: tuple[str, ...]) -> Effective:
        """The guardrails in force for a request the ``roles`` allow: the strictest of theirs
        (:class:`~.guardrails.Effective`). A role no longer in this policy (the policy was
        reloaded since the request was authorised) counts with the default guardrails; no
        role at all means the defaults."""
        found = self._effective.get(roles)
        if found is None:
            found = Effective(
                [self.roles[r].guardrails if r in self.roles else DEFAULTS.roles[0] for r in roles]
            )
            if len(self._effective) < 1024:  # combinations of roles: few in any real policy
                self._effective[roles] = found
        return found


def _compile_role(name: str, spec: RoleSpec) -> Role:
    operations: set[str] = set()
    for op in spec.operations:
        operations |= OPERATION_ALIASES.get(op, frozenset({op}))
    names = frozenset(p for p in spec.deployments if not _GLOB_CHARS & set(p))
    globs = [fnmatch.translate(p) for p in spec.deployments if _GLOB_CHARS & set(p)]
    return Role(
        name=name,
        operations=frozenset(operations),
        deployment_names=names,
        deployment_glob=re.compile("|".join(globs)) if globs else None,
        patterns=tuple(spec.deployments),
        max_output_tokens=spec.max_output_tokens,
        max_prompt_chars=spec.max_prompt_chars,
        streaming=spec.streaming,
        networks=tuple(ipaddress.ip_network(c) for c in spec.source_networks),
        not_before=spec.not_before,
        not_after=spec.not_after,
        guardrails=spec.guardrails,
    )


def compile_policy(doc: PolicyDocument) -> Policy:
    """Compile a validated document (bindings must name defined roles)."""
    roles = {name: _compile_role(name, spec) for name, spec in doc.roles.items()}
    bindings = tuple(
        Binding(
            index=i,
            name=spec.name,
            role=roles[spec.role],
            subjects=tuple(dict.fromkeys(spec.subjects)),
            not_before=spec.not_before,
            not_after=spec.not_after,
        )
        for i, spec in enumerate(doc.bindings)
    )
    index: dict[str, list[Binding]] = {}
    for binding in bindings:
        for subject in binding.subjects:
            index.setdefault(subject, []).append(binding)
    directory = Directory(
        apps=MappingProxyType(
            {cid: name for name, app in doc.apps.items() for cid in app.entra_client_ids}
        ),
        agents=MappingProxyType(
            {
                cid: (name, agent.parent)
                for name, agent in doc.agents.items()
                for cid in agent.entra_client_ids
            }
        ),
    )
    used = [b.role for b in bindings]
    return Policy(
        bindings=bindings,
        by_subject=MappingProxyType({k: tuple(v) for k, v in index.items()}),
        roles=MappingProxyType(roles),
        directory=directory,
        needs_prompt_size=any(r.max_prompt_chars is not None for r in used),
        needs_source=any(r.networks for r in used),
        document=doc,
    )


EMPTY = compile_policy(PolicyDocument())
