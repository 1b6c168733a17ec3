"""A hostile store writer: someone with write access to the audit tables and no signing key.

:class:`AuditedGateway` runs a real gateway on a store (SQLite or PostgreSQL) to write a log,
and changes its tables the way such a person would: edit, delete, truncate (with or without
the checkpoints), reorder, insert, append a correctly linked record, recompute the whole chain
and sign it with a key of their own, copy records into another writer's chain, forge a head
set. ``verify`` runs ``keyguard audit verify``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.audit.chain import Checkpoint, Record, canonical, link
from keyguard.audit.rows import iso, parse_iso
from keyguard.audit.signing import Signer
from keyguard.audit.store import AuditStore
from keyguard.cli.main import cli
from keyguard.config import Settings, settings_from_mapping
from keyguard.emulator.server import RunningEmulator
from keyguard.events import AdminAction
from keyguard.server import Gateway
from keyguard.store import open_store
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.runtime import open_runtime
from tests.support.settings import keyguard_settings, upstream, write_config

ATTACKER = Signer(Ed25519PrivateKey.generate())


@dataclass
class AuditedGateway:
    tmp: Path
    emulator: RunningEmulator
    store_url: str
    anchor: Path | None = None

    @property
    def settings(self) -> Settings:
        base = keyguard_settings(self.tmp, upstreams=[upstream(self.emulator.url)]).model_dump(
            mode="json", exclude_defaults=True
        )
        base["store"] = self.store_url
        if self.anchor is not None:
            base["monitor"] = {"audit": {"anchor_file": str(self.anchor)}}
        return settings_from_mapping(base)

    async def prepare(self) -> None:
        if not (self.tmp / "master.key").exists():
            create_master_key_file(self.tmp / "master.key")
        rt = await open_runtime(self.settings, {})
        try:
            await rt.vault.put("upstream/emulator", self.emulator.keys()[0])
        finally:
            await rt.close()
        self.config = write_config(self.tmp, self.settings)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        gw = Gateway(self.settings, {})
        await gw.start()
        try:
            yield gw
        finally:
            await gw.stop()

    async def write(self, gw: Gateway, n: int = 3, tag: str = "a") -> None:
        """``n`` admin actions through the event bus, written now."""
        assert gw.runtime is not None and gw.monitoring is not None
        for i in range(n):
            gw.runtime.events.emit(
                AdminAction(datetime.now(UTC), "cli:tester", "keys.revoke", f"key:{tag}{i}")
            )
        await gw.monitoring.recorder.drain()

    async def run(self, n: int = 3, tag: str = "a") -> None:
        """Start the gateway, write ``n`` actions, stop it cleanly."""
        async with self.running() as gw:
            await self.write(gw, n, tag)

    # -- the store, as its hostile writer sees it ---------------------------------------------

    @asynccontextmanager
    async def engine(self) -> AsyncIterator[AsyncEngine]:
        store = await open_store(self.store_url)
        try:
            yield store.engine  # type: ignore[attr-defined]
        finally:
            await store.close()

    async def sql(self, statement: str, **params: Any) -> None:
        async with self.engine() as engine, engine.begin() as conn:
            await conn.execute(text(statement), params)

    async def chains(self) -> list[str]:
        """The writers' chains, oldest first."""
        return list(dict.fromkeys(r.chain for r in await self.records()))

    async def records(self, chain: str | None = None) -> list[Record]:
        """The records of ``chain`` (default: of every chain, by time) in order."""
        async with self.engine() as engine:
            store = AuditStore(engine)
            if chain is not None:
                return [r async for r in store.records(chain=chain)]
            return [r async for r in store.records_by_time()]

    async def checkpoints(self, chain: str | None = None) -> list[Checkpoint]:
        async with self.engine() as engine:
            store = AuditStore(engine)
            if chain is not None:
                return [cp async for cp in store.checkpoints(chain=chain)]
            return [cp async for cp in store.checkpoints_by_time()]

    async def put(self, rec: Record) -> None:
        await self.sql(
            "INSERT INTO audit_records (chain, seq, created_at, kind, data, prev_hash, hash) "
            "VALUES (:chain, :seq, :at, :kind, :data, :prev, :hash)",
            **self._row(rec),
        )

    async def rewrite(self, rec: Record) -> None:
        await self.sql(
            "UPDATE audit_records SET created_at = :at, kind = :kind, data = :data, "
            "prev_hash = :prev, hash = :hash WHERE chain = :chain AND seq = :seq",
            **self._row(rec),
        )

    def _row(self, rec: Record) -> dict[str, Any]:
        at = _stored(parse_iso(rec.created), self.store_url)
        return {"chain": rec.chain, "seq": rec.seq, "at": at, "kind": rec.kind,
                "data": rec.data, "prev": rec.prev_hash, "hash": rec.hash}  # fmt: skip

    async def add_checkpoint(self, cp: Checkpoint) -> None:
        await self.sql(
            "INSERT INTO audit_checkpoints (chain, seq, hash, created_at, key_id, signature) "
            "VALUES (:chain, :seq, :hash, :at, :key_id, :signature)",
            chain=cp.chain,
            seq=cp.seq,
            hash=cp.hash,
            at=_stored(parse_iso(cp.created), self.store_url),
            key_id=cp.key_id,
            signature=cp.signature,
        )

    async def verify(self, *args: str) -> Result:
        return await asyncio.to_thread(
            CliRunner().invoke,
            cli,
            ["audit", "verify", "-c", str(self.config), *args],
            catch_exceptions=False,
        )

    async def security_events(self, kind: str) -> list[dict[str, Any]]:
        return [
            data
            for rec in await self.records()
            if rec.kind == "security" and (data := orjson.loads(rec.data))["kind"] == kind
        ]


def forged_after(prev: Record, seq: int | None = None) -> Record:
    """A record that links correctly after ``prev`` in its chain: what anyone can compute."""
    seq = prev.seq + 1 if seq is None else seq
    data = canonical({"action": "keys.create", "actor": "cli:root", "target": "key:evil"})
    created = iso(datetime.now(UTC))
    digest = link(seq, created, "admin", prev.hash, data, prev.chain)
    return Record(seq, created, "admin", data, prev.hash, digest, prev.chain)


def _stored(at: datetime, url: str) -> Any:
    """A time as the table column takes it (SQLite: naive UTC text; PostgreSQL: aware)."""
    if url.startswith("sqlite"):
        return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return at
