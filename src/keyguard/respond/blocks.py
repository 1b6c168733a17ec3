"""Temporary blocks (the ``throttle`` response) and the hot-path check that enforces them.

:class:`BlockList` is a small in-memory map ``("key" | "app" | "source", name) -> until`` that
the proxy consults in O(1); the monitor adds to it at once on this replica and writes the block
to the store, and every replica reloads the store's active blocks every ``blocks_poll_s``.

:class:`BlockGuard` wraps the policy's :class:`~keyguard.core.hooks.Authorizer`: a blocked key,
app or source network gets a 429 with ``Retry-After``; a decoy key gets the same 401 as an
unknown key (its holder learns nothing), and only then does the wrapped authorizer run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime

from ..core.hooks import Authorizer
from ..core.observation import empty_prompt, network_of, payload_features
from ..core.request import RequestContext
from ..detect.request_rules import PROBED_OPERATIONS, probe_signature
from ..detect.settings import KeyProbeRule
from ..errors import AuthenticationFailed, TooManyRequests

__all__ = ["BlockList", "BlockGuard", "subject_key"]

_GRACE_S = 10.0  # a local block newer than this may not be visible in the store yet


def subject_key(subject: str) -> tuple[str, str] | None:
    """``"key:abc"`` -> ``("key", "abc")``; ``None`` for a subject that cannot be blocked."""
    kind, sep, name = subject.partition(":")
    if not sep or kind not in ("key", "app", "source", "address") or not name:
        return None
    return kind, name


class BlockList:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.active: dict[tuple[str, str], float] = {}
        self._added: dict[tuple[str, str], float] = {}  # local additions: when
        self._clock = clock

    def add(self, kind: str, name: str, until: float) -> None:
        self.active[(kind, name)] = max(until, self.active.get((kind, name), 0.0))
        self._added[(kind, name)] = self._clock()

    def remove(self, kind: str, name: str) -> None:
        self.active.pop((kind, name), None)
        self._added.pop((kind, name), None)

    def replace_all(self, blocks: dict[tuple[str, str], float], read_at: float) -> None:
        """Take the store's view (every replica's blocks, read at ``read_at``) as the truth,
        keeping local blocks added too recently to be in it; a lifted block disappears."""
        recent = read_at - _GRACE_S
        merged = dict(blocks)
        for k, added in list(self._added.items()):
            if added >= recent and k in self.active:
                merged[k] = max(self.active[k], merged.get(k, 0.0))
            elif added < recent:
                del self._added[k]
        self.active = merged

    def until(self, kind: str, name: str) -> float | None:
        until = self.active.get((kind, name))
        if until is None:
            return None
        if until <= self._clock():
            del self.active[(kind, name)]
            return None
        return until

    def __len__(self) -> int:
        return len(self.active)


class BlockGuard:
    """An :class:`Authorizer` that refuses blocked subjects and decoy keys, then delegates."""

    def __init__(
        self,
        inner: Authorizer,
        blocks: BlockList,
        *,
        decoy_key_ids: frozenset[str] = frozenset(),
        decoy_apps: frozenset[str] = frozenset(),
        probes: KeyProbeRule | None = None,
        v4: int = 24,
        v6: int = 48,
    ) -> None:
        self._probes = probes
        self._inner = inner
        self._blocks = blocks
        self._decoy_keys = decoy_key_ids
        self._decoy_apps = decoy_apps
        self._v4, self._v6 = v4, v6

    def authorize(self, ctx: RequestContext, now: datetime) -> None:
        p = ctx.principal
        if p is not None and (p.key_id in self._decoy_keys or p.app in self._decoy_apps):
            raise AuthenticationFailed(
                "Access denied: this Keyguard key is not valid. Check that you copied the whole "
                "key and that it was created on this gateway.",
                reason="decoy_key",
            )
        if self._blocks.active:
            self._check_blocks(ctx)
        if self._probes is not None and ctx.payload is not None:
            self._check_probe(ctx, self._probes)
        self._inner.authorize(ctx, now)

    def _check_probe(self, ctx: RequestContext, rule: KeyProbeRule) -> None:
        """A key checker's request is refused before it is served, with the answer an
        invalid key gets: the checker learns nothing, and the key_probe rule still fires."""
        route = ctx.route
        if route is None or route.operation.name not in PROBED_OPERATIONS:
            return
        if not empty_prompt(ctx.payload):  # every probe's prompt is empty: the rest is read
            return  # only then
        f = payload_features(ctx.payload)
        if probe_signature(f["empty_prompt"], f["max_tokens"], f["temperature"], f["seed"], rule):
            raise AuthenticationFailed(
                "Access denied: this Keyguard key is not valid. Check that you copied the whole "
                "key and that it was created on this gateway.",
                reason="key_probe",
            )

    def screen(self, ctx: RequestContext) -> None:
        """A blocked address or network is refused before its credential is looked at."""
        blocks = self._blocks
        if not blocks.active or ctx.remote is None:
            return
        until = blocks.until("address", ctx.remote)
        if until is None:
            net = network_of(ctx.remote, self._v4, self._v6)
            until = blocks.until("source", net) if net is not None else None
        if until is not None:
            raise self._refusal(until)

    def _check_blocks(self, ctx: RequestContext) -> None:
        p, blocks = ctx.principal, self._blocks
        if p is not None:
            until = blocks.until("key", p.key_id or "") or blocks.until("app", p.app)
            if until is not None:
                raise self._refusal(until)

    def _refusal(self, until: float) -> TooManyRequests:
        blocks = self._blocks
        wait = max(1, math.ceil(until - blocks._clock()))
        return TooManyRequests(
            "Requests with this key are temporarily refused by Keyguard's abuse protection. "
            f"Retry after {wait} seconds, or contact the gateway's operators.",
            reason="abuse_block",
            headers={"Retry-After": str(wait)},
        )
