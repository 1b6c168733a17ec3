"""Admin tokens: the format, and the service over both store backends (digests only at rest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from keyguard.admin.tokens import AdminTokenService, AdminTokenStore, role_allows
from keyguard.errors import BadRequest, NotFound
from keyguard.keys.admin_tokens import TOKEN_PREFIX, generate_token, parse_token
from keyguard.keys.format import generate_key, parse_key
from keyguard.store import Store
from keyguard.store.schema import admin_tokens

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_format() -> None:
    token_id, token = generate_token()
    assert token.startswith(TOKEN_PREFIX) and len(token) == 54
    assert parse_token(token) == token_id
    flipped = token[:-1] + ("0" if token[-1] != "0" else "1")
    for bad in (
        flipped,
        token[:-1],
        token + "x",
        "kgk_" + token[4:],
        token[:20] + "!" + token[21:],
    ):
        assert parse_token(bad) is None
    # The two credential kinds can never stand in for each other.
    assert parse_key(token) is None
    assert parse_token(generate_key().full) is None


def test_roles_are_ordered() -> None:
    assert role_allows("admin", "operator") and role_allows("operator", "viewer")
    assert role_allows("viewer", "viewer")
    assert not role_allows("viewer", "operator") and not role_allows("operator", "admin")


def service(store: Store) -> AdminTokenService:
    return AdminTokenService(AdminTokenStore(store.engine), b"p" * 32)  # type: ignore[attr-defined]


async def test_lifecycle_and_digests_at_rest(store: Store) -> None:
    tokens = service(store)
    record, token = await tokens.create(
        name="alice", role="operator", created_by="cli:root", now=NOW, expires_in=timedelta(days=1)
    )
    assert (await tokens.verify(token, NOW)) == record
    assert await tokens.verify(token, NOW + timedelta(days=1)) is None  # expired
    assert await tokens.verify(token[:-6] + "000000", NOW) is None
    _, unknown = generate_token()
    assert await tokens.verify(unknown, NOW) is None
    async with store.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = (await conn.execute(select(admin_tokens))).all()
    assert len(rows) == 1 and token not in repr(rows) and rows[0].digest == tokens.digest(token)
    revoked = await tokens.revoke(record.token_id, now=NOW)
    assert revoked.revoked_at == NOW and revoked.state(NOW) == "revoked"
    assert await tokens.verify(token, NOW) is None
    assert (await tokens.revoke(record.token_id, now=NOW + timedelta(hours=1))).revoked_at == NOW
    assert [t.token_id for t in await tokens.list()] == [record.token_id]
    with pytest.raises(NotFound):
        await tokens.revoke("nope", now=NOW)
    with pytest.raises(NotFound):
        await tokens.revoke("AAAAAAAAAAAA", now=NOW)


@pytest.mark.parametrize(
    ("name", "role", "expires"),
    [
        ("", "admin", None),
        ("ok", "root", None),
        ("a b", "viewer", None),
        ("ok", "viewer", timedelta(0)),
    ],
)
async def test_bad_requests(store: Store, name: str, role: str, expires: timedelta | None) -> None:
    with pytest.raises(BadRequest):
        await service(store).create(
            name=name, role=role, created_by="x", now=NOW, expires_in=expires
        )


def test_short_pepper_is_refused() -> None:
    with pytest.raises(ValueError):
        AdminTokenService(None, b"short")  # type: ignore[arg-type]
