"""Entra tokens become principals, through a verified-token cache keyed by digest."""

from __future__ import annotations

import time

import pytest

from keyguard.errors import AuthenticationFailed
from keyguard.identity.entra import EntraAuthenticator, principal_for
from keyguard.identity.tokens import VerifiedToken
from keyguard.policy.compiled import Directory, compile_policy
from keyguard.policy.document import parse_document

APP = "11111111-1111-1111-1111-111111111111"
AGENT = "44444444-4444-4444-4444-444444444444"
PARENT = "55555555-5555-5555-5555-555555555555"
DIRECTORY = compile_policy(
    parse_document(
        {
            "apps": {
                "web": {"entra_client_ids": [APP]},
                "blueprint": {"entra_client_ids": [PARENT]},
            },
            "agents": {"triage": {"entra_client_ids": [AGENT], "parent": "web"}},
        }
    )
).directory


def token(kind: str = "app", client: str = APP, **kw: object) -> VerifiedToken:
    values: dict[str, object] = {
        "tenant": "t",
        "client_id": client,
        "object_id": "99999999-9999-9999-9999-999999999999",
        "kind": kind,
        "expires": time.time() + 3600,
        "roles": ("Chat",),
        "groups": ("g",),
    }
    values.update(kw)
    return VerifiedToken(**values)  # type: ignore[arg-type]


def test_apps_agents_and_users() -> None:
    app = principal_for(token(), DIRECTORY)
    assert (app.kind, app.id, app.app, app.tenant) == ("app", "app:web", "web", "t")
    assert app.roles == ("Chat",) and app.groups == ("g",)
    unnamed = principal_for(token(client="66666666-6666-6666-6666-666666666666"), Directory())
    assert unnamed.id == "app:66666666-6666-6666-6666-666666666666"
    declared = principal_for(token(client=AGENT), DIRECTORY)  # declared: an agent, even as "app"
    assert (declared.kind, declared.id, declared.app, declared.parent) == (
        "agent",
        "agent:triage",
        "web",
        "app:web",
    )
    claimed = principal_for(
        token("agent", client="77777777-7777-7777-7777-777777777777", parent_client_id=PARENT),
        DIRECTORY,
    )
    assert claimed.id == "agent:77777777-7777-7777-7777-777777777777"
    assert claimed.app == "blueprint" and claimed.parent == "app:blueprint"
    orphan = principal_for(
        token("agent", client="88888888-8888-8888-8888-888888888888"), Directory()
    )
    assert orphan.parent is None and orphan.app == "88888888-8888-8888-8888-888888888888"
    user = principal_for(token("user"), DIRECTORY)
    assert (user.kind, user.id, user.app) == (
        "user",
        "user:99999999-9999-9999-9999-999999999999",
        "web",
    )


def test_odd_client_ids_are_refused() -> None:
    with pytest.raises(AuthenticationFailed):
        principal_for(token(client="../../etc"), Directory())


class FakeValidator:
    def __init__(self) -> None:
        self.calls = 0
        self.expires = 2000.0

    async def validate(self, value: str, now: float) -> VerifiedToken:
        self.calls += 1
        if value == "bad":
            raise AuthenticationFailed("no", reason="token_signature")
        return token(expires=self.expires)


def authenticator(
    validator: FakeValidator, clock: list[float], generation: list[int], **kw: int
) -> EntraAuthenticator:
    return EntraAuthenticator(
        validator,  # type: ignore[arg-type]
        directory=lambda: DIRECTORY if generation[0] % 2 else Directory(),
        generation=lambda: generation[0],
        skew=10,
        clock=lambda: clock[0],
        **kw,
    )


async def test_verified_tokens_are_cached_until_they_expire() -> None:
    validator, clock, generation = FakeValidator(), [1000.0], [1]
    auth = authenticator(validator, clock, generation)
    first = await auth.authenticate("tok")
    assert (await auth.authenticate("tok")) is first and validator.calls == 1
    generation[0] = 2  # the policy changed: same token, renamed principal, no re-validation
    renamed = await auth.authenticate("tok")
    assert renamed.id == f"app:{APP}" and validator.calls == 1
    clock[0] = 2009.0
    await auth.authenticate("tok")
    assert validator.calls == 1  # within the skew
    clock[0] = 2010.0
    await auth.authenticate("tok")
    assert validator.calls == 2  # expired: validated again (and refused, by a real validator)
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate("bad")
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate("bad")
    assert validator.calls == 4  # failures are not cached


async def test_the_cache_is_bounded() -> None:
    validator, clock, generation = FakeValidator(), [1000.0], [1]
    auth = authenticator(validator, clock, generation, max_entries=3)
    for i in range(10):
        await auth.authenticate(f"t{i}")
    assert len(auth) == 3
    validator.expires = 500.0  # already expired when cached: purged on the next insert
    clock[0] = 1500.0
    await auth.authenticate("old")
    no_cache = authenticator(validator, clock, generation, max_entries=0)
    await no_cache.authenticate("x")
    assert len(no_cache) == 0
