"""The policy document: roles, bindings, and the names of Entra apps and agents (YAML or JSON).

::

    version: 1
    apps:                                  # names for Entra applications (by client id)
      support-web: {entra_client_ids: [22222222-2222-2222-2222-222222222222]}
    agents:                                # Entra Agent ID identities, by their client id
      triage-agent:
        entra_client_ids: [44444444-4444-4444-4444-444444444444]
        parent: support-web
    roles:
      chat-small:
        operations: [chat]
        deployments: [gpt-4o-mini]
        max_output_tokens: 512
        max_prompt_chars: 8000
        streaming: false
        source_networks: [10.20.0.0/16]
        not_after: 2027-01-01T00:00:00Z
        guardrails: {personal: redact, restore: true}   # see keyguard.policy.guardrails
    bindings:
      - name: triage-chat
        role: chat-small
        subjects: [agent:triage-agent]

Parsing validates everything a reviewer could get wrong and reports the problems together
(:class:`PolicyInvalid`), each prefixed with where it is: first every malformed field, then,
once the fields are well-formed, every broken reference (an undefined role, a duplicate name).
The file and the document managed through the admin API are merged by :func:`merge` (the file
wins on a name used by both).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from cryptography import x509
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..core.operations import OPERATIONS
from ..errors import ConfigurationError
from .guardrails import GuardActions

__all__ = [
    "AgentSpec",
    "AppSpec",
    "BindingSpec",
    "OPERATION_ALIASES",
    "PolicyDocument",
    "PolicyInvalid",
    "RoleSpec",
    "SUBJECT_KINDS",
    "certificate_binding",
    "load_document",
    "merge",
    "parse_document",
    "parse_subject",
]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SUBJECT_VALUES: dict[str, re.Pattern[str]] = {
    "key": re.compile(r"[0-9A-Za-z]{12}"),  # a Keyguard key id
    "app": NAME,  # an app: Keyguard keys' app name, or a named (or raw client id) Entra app
    "agent": NAME,  # an Entra agent identity (named here, or its raw client id)
    "user": _GUID,  # an Entra user object id (delegated tokens)
    "group": _GUID,  # an Entra group object id (tokens' "groups" claim)
    "approle": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}"),  # tokens' "roles" claim
}
SUBJECT_KINDS = tuple(_SUBJECT_VALUES)
_PATTERN = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,128}")
MAX_DOCUMENT_BYTES = 1024 * 1024

# Names a role may use for operations, besides the route names (chat, embeddings, ...).
OPERATION_ALIASES: dict[str, frozenset[str]] = {
    "audio": frozenset({"transcriptions", "translations", "speech"}),
    "*": frozenset(OPERATIONS),
}


class PolicyInvalid(ConfigurationError):
    """A policy document with problems; ``problems`` lists each, with where it is."""

    def __init__(self, problems: list[str], source: str = "policy") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(problems))


def certificate_binding(text: str) -> str:
    """A client certificate binding in its one canonical form: ``subject:`` + the subject as
    RFC 4514 writes it (so ``CN=a\\2Cb`` and ``CN=a\\,b`` are one binding, and an escaped
    comma stays inside its value), or ``dns:``/``uri:`` + a SAN value; ``ValueError``."""
    kind, sep, value = text.partition(":")
    if not sep or not value or len(text) > 1024 or kind not in ("subject", "dns", "uri"):
        raise ValueError(
            f"client certificate {text[:80]!r} must be subject:<RFC 4514 name>, dns:<name> "
            "or uri:<URI>"
        )
    if kind == "subject":
        try:
            value = x509.Name.from_rfc4514_string(value).rfc4514_string()
        except ValueError:
            raise ValueError(f"client certificate {text[:80]!r}: not an RFC 4514 name") from None
    elif kind == "dns":
        value = value.lower()
    return f"{kind}:{value}"


def parse_subject(subject: str) -> tuple[str, str]:
    """``"app:billing"`` -> ``("app", "billing")``; ``ValueError`` when malformed."""
    kind, sep, value = subject.partition(":")
    pattern = _SUBJECT_VALUES.get(kind)
    if not sep or pattern is None:
        raise ValueError(
            f"subject {subject[:80]!r} must be KIND:VALUE with KIND one of "
            + ", ".join(SUBJECT_KINDS)
        )
    if not pattern.fullmatch(value):
        raise ValueError(f"subject {subject[:80]!r}: {value[:60]!r} is not a valid {kind}")
    if kind in ("user", "group"):
        value = value.lower()
    return kind, value


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AppSpec(_Doc):
    description: str = ""
    entra_client_ids: list[str] = []
    #: client certificates (mutual TLS on the proxy port) that authenticate as this app, like
    #: a key: ``subject:<the whole subject, RFC 4514>``, ``dns:<SAN name>``, ``uri:<SAN URI>``
    client_certificates: list[str] = []

    @field_validator("client_certificates")
    @classmethod
    def _certificates(cls, v: list[str]) -> list[str]:
        return [certificate_binding(c) for c in v]

    @field_validator("entra_client_ids")
    @classmethod
    def _guids(cls, v: list[str]) -> list[str]:
        for client_id in v:
            if not _GUID.fullmatch(client_id):
                raise ValueError(f"{client_id[:60]!r} is not a client id (a GUID)")
        return [c.lower() for c in v]


class AgentSpec(AppSpec):
    entra_client_ids: list[str] = Field(min_length=1)
    parent: str | None = None  # the app (a name in ``apps``) the agent acts for


class RoleSpec(_Doc):
    description: str = ""
    operations: list[str] = Field(min_length=1)
    deployments: list[str] = Field(min_length=1)  # names or glob patterns (*, ?, [abc])
    max_output_tokens: int | None = Field(default=None, gt=0)
    max_prompt_chars: int | None = Field(default=None, gt=0)
    streaming: bool = True
    source_networks: list[str] = []  # CIDRs; empty: any source
    not_before: AwareDatetime | None = None
    not_after: AwareDatetime | None = None
    guardrails: GuardActions = GuardActions()  # what the guardrails do for this role

    @field_validator("operations")
    @classmethod
    def _operations(cls, v: list[str]) -> list[str]:
        known = set(OPERATIONS) | set(OPERATION_ALIASES)
        for op in v:
            if op not in known:
                raise ValueError(f"unknown operation {op[:40]!r}; use " + ", ".join(sorted(known)))
        return v

    @field_validator("deployments")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for pattern in v:
            if not _PATTERN.fullmatch(pattern) or ".." in pattern:
                raise ValueError(f"{pattern[:80]!r} is not a deployment name or glob pattern")
        return v

    @field_validator("source_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for cidr in v:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"source network {cidr[:60]!r}: {exc}") from None
        return v


class BindingSpec(_Doc):
    name: str
    role: str
    subjects: list[str] = Field(min_length=1)
    description: str = ""
    not_before: AwareDatetime | None = None
    not_after: AwareDatetime | None = None

    @field_validator("name", "role")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.fullmatch(v):
            raise ValueError(f"{v[:80]!r} is not a valid name (letters, digits, '.', '_', '-')")
        return v

    @field_validator("subjects")
    @classmethod
    def _subjects(cls, v: list[str]) -> list[str]:
        return [":".join(parse_subject(s)) for s in v]


class PolicyDocument(_Doc):
    version: Literal[1] = 1
    apps: dict[str, AppSpec] = {}
    agents: dict[str, AgentSpec] = {}
    roles: dict[str, RoleSpec] = {}
    bindings: list[BindingSpec] = []

    @field_validator("apps", "agents", "roles")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not NAME.fullmatch(name):
                raise ValueError(f"{name[:80]!r} is not a valid name")
        return v

    def to_json(self) -> dict[str, Any]:
        """The document as plain JSON values (defaults left out)."""
        return self.model_dump(mode="json", exclude_defaults=True)


def _cross_references(doc: PolicyDocument) -> list[str]:
    problems: list[str] = []
    owners: dict[str, str] = {}
    for kind, entries in (("apps", doc.apps), ("agents", doc.agents)):
        for name, spec in entries.items():
            for client_id in spec.entra_client_ids:
                where = f"{kind}.{name}"
                if client_id in owners:
                    problems.append(
                        f"{where}: client id {client_id} is also in {owners[client_id]}"
                    )
                owners[client_id] = where
    bound: dict[str, str] = {}
    for name, app in doc.apps.items():
        for cert in app.client_certificates:
            if cert in bound:
                problems.append(
                    f"apps.{name}: client certificate {cert[:80]!r} is also in apps.{bound[cert]}"
                )
            bound[cert] = name
    for name, agent in doc.agents.items():
        if agent.client_certificates:
            problems.append(f"agents.{name}: client certificates bind apps only")
        if agent.parent is not None and agent.parent not in doc.apps:
            problems.append(f"agents.{name}.parent: {agent.parent!r} is not an app in 'apps'")
    for name, role in doc.roles.items():
        if role.not_before and role.not_after and role.not_after <= role.not_before:
            problems.append(f"roles.{name}: not_after must be later than not_before")
    seen: set[str] = set()
    for i, binding in enumerate(doc.bindings):
        where = f"bindings[{i}] ({binding.name})"
        if binding.name in seen:
            problems.append(f"{where}: the name {binding.name!r} is used twice")
        seen.add(binding.name)
        if binding.role not in doc.roles:
            problems.append(f"{where}: role {binding.role!r} is not defined in 'roles'")
        if binding.not_before and binding.not_after and binding.not_after <= binding.not_before:
            problems.append(f"{where}: not_after must be later than not_before")
    return problems


def parse_document(data: Any, source: str = "policy") -> PolicyDocument:
    """Validate a parsed document; raise :class:`PolicyInvalid` listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise PolicyInvalid(
            ["the document must be a mapping (version, roles, bindings, ...)"], source
        )
    try:
        doc = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "document"
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise PolicyInvalid(problems, source) from None
    problems = _cross_references(doc)
    if problems:
        raise PolicyInvalid(problems, source)
    return doc


def load_document(path: str | Path) -> PolicyDocument:
    """Read and validate a YAML policy file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise PolicyInvalid(["the file does not exist"], str(p)) from None
    except OSError as exc:
        raise PolicyInvalid([f"cannot read it ({exc.strerror})"], str(p)) from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise PolicyInvalid([f"larger than {MAX_DOCUMENT_BYTES} bytes"], str(p))
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise PolicyInvalid([f"not valid YAML: {exc}"], str(p)) from None
    return parse_document(data, str(p))


def merge(file: PolicyDocument, managed: PolicyDocument) -> tuple[PolicyDocument, list[str]]:
    """The effective policy: the file's entries, plus the managed entries whose names the file
    does not use. Returns it with a note for each managed entry the file shadows."""
    shadowed: list[str] = []

    def keep(kind: str, names: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(names)
        for name, spec in own.items():
            if name in names:
                shadowed.append(f"managed {kind}.{name} is shadowed by the policy file")
            else:
                out[name] = spec
        return out

    file_bindings = {b.name for b in file.bindings}
    bindings = list(file.bindings)
    for binding in managed.bindings:
        if binding.name in file_bindings:
            shadowed.append(f"managed binding {binding.name} is shadowed by the policy file")
        else:
            bindings.append(binding)
    merged = PolicyDocument.model_construct(
        version=1,
        apps=keep("apps", file.apps, managed.apps),
        agents=keep("agents", file.agents, managed.agents),
        roles=keep("roles", file.roles, managed.roles),
        bindings=bindings,
    )
    problems = _cross_references(merged)
    if problems:
        raise PolicyInvalid(problems, "effective policy (file + managed)")
    return merged, shadowed
