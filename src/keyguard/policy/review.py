"""Reviewing a policy: warnings beyond validity (``policy check``) and explanations
(``policy explain``), shared by the CLI and the admin API.

Requests to explain are written as JSON or as ``OPERATION [DEPLOYMENT] [key=value ...]``::

    chat gpt-4o max_tokens=500 stream=true source=10.1.2.3 prompt_chars=1200
    {"operation": "embeddings", "deployment": "text-embedding-3-small"}
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import orjson

from ..core.operations import OPERATIONS
from ..core.principal import Principal
from ..errors import BadRequest, shown
from .compiled import Policy, Role
from .document import parse_subject
from .evaluate import Explanation, RequestFacts
from .facts import parse_address

__all__ = ["explanation_json", "lint", "parse_principal", "parse_request"]

_GUIDISH = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _matches_any(role: Role, deployments: Collection[str]) -> bool:
    return any(role.grants_deployment(d) for d in deployments)


def lint(policy: Policy, *, deployments: Collection[str] | None, now: datetime) -> list[str]:
    """Warnings about a valid policy: things that are allowed but probably not meant."""
    warnings: list[str] = []
    doc = policy.document
    used_roles = {b.role.name for b in policy.bindings}
    for name in policy.roles:
        if name not in used_roles:
            warnings.append(f"roles.{name}: no binding uses this role")
    bound = set(policy.by_subject)
    for name in doc.apps:
        if f"app:{name}" not in bound:
            warnings.append(f"apps.{name}: no binding names app:{name}")
    for name in doc.agents:
        if f"agent:{name}" not in bound:
            warnings.append(f"agents.{name}: no binding names agent:{name}")
    for binding in policy.bindings:
        where = f"binding {binding.name}"
        role = binding.role
        ends = [t for t in (binding.not_after, role.not_after) if t is not None]
        if ends and min(ends) <= now:
            warnings.append(f"{where}: already expired (its {binding.role.name} window ended)")
        if deployments is not None and not _matches_any(role, deployments):
            warnings.append(
                f"{where}: role {role.name} grants no deployment this gateway serves "
                f"({', '.join(role.patterns)})"
            )
        for subject in binding.subjects:
            kind, value = subject.split(":", 1)
            if kind == "app" and value in policy.directory.apps:
                warnings.append(
                    f"{where}: {subject} is the client id of app "
                    f"{policy.directory.apps[value]}; tokens from it are app:"
                    f"{policy.directory.apps[value]}, so name that instead"
                )
            if kind == "agent" and value in policy.directory.agents:
                agent = policy.directory.agents[value][0]
                warnings.append(
                    f"{where}: {subject} is agent {agent}'s client id; name agent:{agent} instead"
                )
    warnings.extend(_agents_wider_than_parent(policy))
    return warnings


def _agents_wider_than_parent(policy: Policy) -> list[str]:
    out = []
    for name, agent in policy.document.agents.items():
        if agent.parent is None:
            continue
        mine = [b.role for b in policy.by_subject.get(f"agent:{name}", ())]
        theirs = [b.role for b in policy.by_subject.get(f"app:{agent.parent}", ())]
        ops = set().union(*(r.operations for r in theirs)) if theirs else set()
        patterns = {p for r in theirs for p in r.patterns}
        for role in mine:
            if not role.operations <= ops or not set(role.patterns) <= patterns:
                out.append(
                    f"agents.{name}: role {role.name} grants operations or deployments its "
                    f"parent app {agent.parent} does not have; agents should be narrower"
                )
    return out


def parse_principal(
    spec: str,
    policy: Policy,
    *,
    key_app: str | None = None,
    groups: Collection[str] = (),
    app_roles: Collection[str] = (),
) -> Principal:
    """A principal from ``key:ID`` (with its app), ``app:NAME``, ``agent:NAME``, ``user:OID``."""
    try:
        kind, value = parse_subject(spec)
    except ValueError as exc:
        raise BadRequest(str(exc), reason="invalid_principal") from None
    if kind == "key":
        if key_app is None:
            raise BadRequest(f"no key with id {value}", reason="unknown_key")
        return Principal("key", f"key:{value}", key_app, value)
    if kind not in ("app", "agent", "user"):
        raise BadRequest(
            "the principal must be key:ID, app:NAME, agent:NAME or user:OID (pass groups and "
            "app roles separately)",
            reason="invalid_principal",
        )
    app = value
    parent = None
    if kind == "agent":
        parents = [p for n, p in policy.directory.agents.values() if n == value]
        parent_app = parents[0] if parents else None
        app = parent_app or value
        parent = f"app:{parent_app}" if parent_app else None
    return Principal(
        kind,
        f"{kind}:{value}",
        app,
        groups=tuple(g.lower() for g in groups),
        roles=tuple(app_roles),
        parent=parent,
    )


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadRequest(f"{name} must be an integer", reason="invalid_request_spec")
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{name} must be an integer", reason="invalid_request_spec") from None


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "yes", "1"):
        return True
    if str(value).lower() in ("false", "no", "0"):
        return False
    raise BadRequest(f"{name} must be true or false", reason="invalid_request_spec")


def parse_request(spec: str | Mapping[str, Any]) -> RequestFacts:
    """Request facts from JSON (a string or a mapping) or ``OP [DEPLOYMENT] [k=v ...]``."""
    data: Mapping[str, Any]
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        try:
            loaded = orjson.loads(spec)
        except orjson.JSONDecodeError:
            raise BadRequest(
                "the request is not valid JSON", reason="invalid_request_spec"
            ) from None
        if not isinstance(loaded, dict):
            raise BadRequest("the request must be a JSON object", reason="invalid_request_spec")
        data = loaded
    elif isinstance(spec, str):
        words = spec.split()
        if not words:
            raise BadRequest("the request is empty", reason="invalid_request_spec")
        fields: dict[str, Any] = {"operation": words[0]}
        for word in words[1:]:
            key, sep, value = word.partition("=")
            if sep:
                fields[key] = value
            elif "deployment" not in fields:
                fields["deployment"] = word
            else:
                raise BadRequest(f"unexpected {shown(word)}", reason="invalid_request_spec")
        data = fields
    else:
        data = spec
    known = {"operation", "deployment", "max_tokens", "stream", "prompt_chars", "source"}
    unknown = set(data) - known
    if unknown:
        raise BadRequest(
            f"unknown request fields {sorted(unknown)}; use {sorted(known)}",
            reason="invalid_request_spec",
        )
    operation = str(data.get("operation", ""))
    if operation not in OPERATIONS:
        raise BadRequest(
            f"operation must be one of {', '.join(OPERATIONS)}", reason="invalid_request_spec"
        )
    source = data.get("source")
    address = parse_address(str(source)) if source is not None else None
    if source is not None and address is None:
        raise BadRequest("source must be an IP address", reason="invalid_request_spec")
    deployment = data.get("deployment")
    return RequestFacts(
        operation=operation,
        deployment=str(deployment) if deployment is not None else None,
        stream=_bool("stream", data["stream"]) if "stream" in data else False,
        max_output_tokens=_int("max_tokens", data["max_tokens"]) if "max_tokens" in data else None,
        prompt_chars=_int("prompt_chars", data.get("prompt_chars", 0)),
        source=address,
    )


def explanation_json(explanation: Explanation) -> dict[str, Any]:
    decision = explanation.decision
    denial = decision.denial
    return {
        "principal": explanation.principal,
        "subjects": list(explanation.subjects),
        "allowed": decision.allowed,
        "binding": decision.binding if decision.allowed else (denial.binding if denial else None),
        "role": decision.role if decision.allowed else (denial.role if denial else None),
        "code": None if denial is None else denial.code,
        "reason": None if denial is None else denial.reason,
        "message": None if denial is None else denial.message,
        "bindings": [
            {
                "binding": t.binding,
                "role": t.role,
                "via": t.subject,
                "allows": t.denial is None,
                "code": None if t.denial is None else t.denial.code,
                "detail": None if t.denial is None else t.denial.detail,
            }
            for t in explanation.traces
        ],
    }
