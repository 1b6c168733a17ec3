"""Property tests: no generated request is allowed unless a binding explicitly grants it.

Policies, principals and requests are generated over small universes (so that they collide
often). The evaluator's answer is compared with an oracle written independently, straight from
the documented rules and over the *document* (not the compiled policy): ``fnmatch`` for
deployments, ``ipaddress`` for networks, a plain loop over bindings.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyguard.core.operations import OPERATIONS
from keyguard.core.principal import Principal
from keyguard.policy.compiled import compile_policy
from keyguard.policy.document import BindingSpec, PolicyDocument, RoleSpec
from keyguard.policy.evaluate import RequestFacts, evaluate

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DEPLOYMENTS = ["gpt-4o", "gpt-4o-mini", "emb-small", "dall-e-3", "whisper"]
PATTERNS = [*DEPLOYMENTS, "gpt-*", "*", "emb-?mall", "[dw]*"]
OPS = sorted(OPERATIONS)
NETWORKS = ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"]
ADDRESSES = ["10.1.2.3", "192.0.2.9", "198.51.100.7", "2001:db8::5", "2001:db9::1"]
GROUPS = ["11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"]
APP_ROLES = ["Chat", "Embed"]
SUBJECTS = [
    "key:AAAAAAAAAAAA",
    "key:BBBBBBBBBBBB",
    "app:billing",
    "app:support",
    "agent:triage",
    f"user:{GROUPS[0]}",
    *(f"group:{g}" for g in GROUPS),
    *(f"approle:{r}" for r in APP_ROLES),
]
EDGES = [NOW - timedelta(days=1), NOW, NOW + timedelta(days=1)]

windows = st.one_of(
    st.none(), st.none(), st.sampled_from(EDGES)
)  # mostly open, sometimes at the edges

roles = st.builds(
    RoleSpec,
    operations=st.lists(st.sampled_from([*OPS, "audio"]), min_size=1, max_size=3),
    deployments=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3),
    max_output_tokens=st.one_of(st.none(), st.integers(1, 100)),
    max_prompt_chars=st.one_of(st.none(), st.integers(1, 100)),
    streaming=st.booleans(),
    source_networks=st.lists(st.sampled_from(NETWORKS), max_size=2),
    not_before=windows,
    not_after=windows,
)


@st.composite
def documents(draw: st.DrawFn, min_bindings: int = 0) -> PolicyDocument:
    role_specs = draw(
        st.dictionaries(
            st.sampled_from(["r1", "r2", "r3"]), roles, min_size=min(min_bindings, 1), max_size=3
        )
    )
    names = sorted(role_specs)
    bindings = []
    if names:
        for i in range(draw(st.integers(min_bindings, 4))):
            bindings.append(
                BindingSpec(
                    name=f"b{i}",
                    role=draw(st.sampled_from(names)),
                    subjects=draw(st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=3)),
                    not_before=draw(windows),
                    not_after=draw(windows),
                )
            )
    return PolicyDocument(roles=role_specs, bindings=bindings)


principals = st.one_of(
    st.builds(
        lambda kid, app: Principal("key", f"key:{kid}", app, kid),
        st.sampled_from(["AAAAAAAAAAAA", "BBBBBBBBBBBB", "CCCCCCCCCCCC"]),
        st.sampled_from(["billing", "support", "other"]),
    ),
    st.builds(
        lambda kind, name, groups, app_roles: Principal(
            kind, f"{kind}:{name}", "billing", groups=tuple(groups), roles=tuple(app_roles)
        ),
        st.sampled_from(["app", "agent", "user"]),
        st.sampled_from(["billing", "support", "triage", GROUPS[0]]),
        st.lists(st.sampled_from(GROUPS), max_size=2),
        st.lists(st.sampled_from(APP_ROLES), max_size=2),
    ),
)

requests = st.builds(
    RequestFacts,
    operation=st.sampled_from(OPS),
    deployment=st.one_of(st.none(), st.sampled_from([*DEPLOYMENTS, "gpt-5", "x"])),
    stream=st.booleans(),
    max_output_tokens=st.one_of(st.none(), st.integers(1, 150)),
    prompt_chars=st.one_of(st.none(), st.integers(0, 150)),
    source=st.one_of(st.none(), st.sampled_from(ADDRESSES).map(ipaddress.ip_address)),
)


def _principal_for(subject: str) -> Principal:
    kind, value = subject.split(":", 1)
    if kind == "key":
        return Principal("key", subject, "billing", value)
    if kind == "group":
        return Principal("user", f"user:{GROUPS[1]}", "web", groups=(value,))
    if kind == "approle":
        return Principal("app", "app:support", "support", roles=(value,))
    return Principal(kind, subject, value)


@st.composite
def near_misses(draw: st.DrawFn) -> tuple[PolicyDocument, Principal, RequestFacts]:
    """A request fitted to a binding of the policy, then (often) changed in one respect: the
    cases where a wrong evaluator would go wrong."""
    doc = draw(documents(min_bindings=1))
    index = draw(st.integers(0, len(doc.bindings) - 1))
    binding = doc.bindings[index]
    role = doc.roles[binding.role]
    # Open the chosen binding's windows (or close one exactly at its edge, a near miss too).
    closes = draw(st.sampled_from([None] * 8 + ["role", "binding"]))
    open_window = {"not_before": draw(st.sampled_from([None, NOW])), "not_after": None}
    role = role.model_copy(update=open_window)
    binding = binding.model_copy(update=open_window)
    if closes == "role":
        role = role.model_copy(update={"not_after": NOW})
    elif closes == "binding":
        binding = binding.model_copy(update={"not_before": NOW + timedelta(seconds=1)})
    bindings = [*doc.bindings[:index], binding, *doc.bindings[index + 1 :]]
    doc = PolicyDocument(roles={**doc.roles, binding.role: role}, bindings=bindings)
    principal = _principal_for(draw(st.sampled_from(binding.subjects)))
    generative = [o for o in role.operations if o in ("chat", "completions", "responses")]
    op = draw(st.sampled_from(generative or role.operations))
    op = draw(st.sampled_from(["transcriptions", "speech"])) if op == "audio" else op
    op = draw(st.sampled_from(OPS)) if op == "*" else op
    fitting = [d for d in DEPLOYMENTS if any(fnmatch.fnmatchcase(d, p) for p in role.deployments)]
    fitted: dict[str, Any] = {
        "operation": op,
        "deployment": draw(st.sampled_from(fitting)) if fitting else None,
        "stream": role.streaming and draw(st.booleans()),
        "max_output_tokens": draw(st.integers(1, role.max_output_tokens or 150)),
        "prompt_chars": draw(st.integers(0, role.max_prompt_chars or 150)),
        "source": None,
    }
    inside = [
        a
        for a in ADDRESSES
        if any(ipaddress.ip_address(a) in ipaddress.ip_network(n) for n in role.source_networks)
    ]
    if role.source_networks and inside:
        fitted["source"] = ipaddress.ip_address(draw(st.sampled_from(inside)))
    change = draw(st.sampled_from([None, *fitted, *fitted]))
    if change is not None:
        outside = [a for a in ADDRESSES if a not in inside]
        just_over: dict[str, Any] = {
            "operation": next((o for o in OPS if o not in role.operations), op),
            "deployment": next((d for d in [*DEPLOYMENTS, "x"] if d not in fitting), "x"),
            "stream": True,
            "max_output_tokens": (role.max_output_tokens or 150) + 1,
            "prompt_chars": (role.max_prompt_chars or 150) + 1,
            "source": ipaddress.ip_address(draw(st.sampled_from(outside))),
        }
        other = draw(requests)
        fitted[change] = draw(st.sampled_from([getattr(other, change), *[just_over[change]] * 3]))
    return doc, principal, RequestFacts(**fitted)


scenarios = st.one_of(near_misses(), near_misses(), st.tuples(documents(), principals, requests))


# -- the oracle: the documented rules, written plainly ------------------------------------


def oracle_subjects(p: Principal) -> set[str]:
    subjects = {p.id}
    if p.kind == "key":
        subjects.add("app:" + p.app)
    else:
        subjects |= {"group:" + g for g in p.groups} | {"approle:" + r for r in p.roles}
    return subjects


def in_window(start: datetime | None, end: datetime | None) -> bool:
    return (start is None or start <= NOW) and (end is None or NOW < end)


def role_grants(role: RoleSpec, f: RequestFacts) -> bool:
    ops = set()
    for op in role.operations:
        ops |= {"transcriptions", "translations", "speech"} if op == "audio" else {op}
    if f.operation not in ops or not in_window(role.not_before, role.not_after):
        return False
    if f.deployment is not None and not any(
        fnmatch.fnmatchcase(f.deployment, pat) for pat in role.deployments
    ):
        return False
    if role.source_networks and not (
        f.source is not None
        and any(f.source in ipaddress.ip_network(n) for n in role.source_networks)
    ):
        return False
    if f.stream and not role.streaming:
        return False
    if role.max_output_tokens is not None and f.operation in ("chat", "completions", "responses"):
        if f.max_output_tokens is None or f.max_output_tokens > role.max_output_tokens:
            return False
    if role.max_prompt_chars is not None:
        if f.prompt_chars is None or f.prompt_chars > role.max_prompt_chars:
            return False
    return True


def granting_bindings(doc: PolicyDocument, p: Principal, f: RequestFacts) -> list[str]:
    mine = oracle_subjects(p)
    return [
        b.name
        for b in doc.bindings
        if mine & set(b.subjects)
        and in_window(b.not_before, b.not_after)
        and role_grants(doc.roles[b.role], f)
    ]


thorough = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
common = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@thorough
@given(scenarios)
def test_allowed_only_when_a_binding_explicitly_grants(
    scenario: tuple[PolicyDocument, Principal, RequestFacts],
) -> None:
    doc, principal, facts = scenario
    decision = evaluate(compile_policy(doc), principal, facts, NOW)
    granting = granting_bindings(doc, principal, facts)
    assert decision.allowed == bool(granting)
    if decision.allowed:
        assert decision.binding == granting[0]  # the first granting binding is named
    else:
        assert decision.denial is not None and decision.denial.code


@common
@given(principals, requests)
def test_no_bindings_no_access(principal: Principal, facts: RequestFacts) -> None:
    doc = PolicyDocument(roles={"all": RoleSpec(operations=["*"], deployments=["*"])})
    assert not evaluate(compile_policy(doc), principal, facts, NOW).allowed


@common
@given(scenarios, st.sampled_from(SUBJECTS), roles)
def test_bindings_for_others_change_nothing(
    scenario: tuple[PolicyDocument, Principal, RequestFacts], subject: str, role: RoleSpec
) -> None:
    doc, principal, facts = scenario
    if subject in oracle_subjects(principal):
        subject = "app:nobody-at-all"
    before = evaluate(compile_policy(doc), principal, facts, NOW).allowed
    wider: dict[str, Any] = {**doc.roles, "extra": role}
    bindings = [*doc.bindings, BindingSpec(name="zz", role="extra", subjects=[subject])]
    after = compile_policy(PolicyDocument(roles=wider, bindings=bindings))
    assert evaluate(after, principal, facts, NOW).allowed == before


@common
@given(scenarios)
def test_tightening_a_role_never_allows_more(
    scenario: tuple[PolicyDocument, Principal, RequestFacts],
) -> None:
    doc, principal, facts = scenario
    tight = {
        name: role.model_copy(
            update={
                "streaming": False,
                "max_output_tokens": 1,
                "max_prompt_chars": 1,
                # a narrower source: a role open to any address gets one network; a role with
                # networks keeps them (another network instead would not be a tightening)
                "source_networks": role.source_networks or ["192.0.2.0/24"],
            }
        )
        for name, role in doc.roles.items()
    }
    tightened = compile_policy(PolicyDocument(roles=tight, bindings=doc.bindings))
    if evaluate(tightened, principal, facts, NOW).allowed:
        assert evaluate(compile_policy(doc), principal, facts, NOW).allowed
