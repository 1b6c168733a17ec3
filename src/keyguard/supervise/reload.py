"""What a reload changes: a pure comparison of the running and the new configuration.

Everything a worker builds at its start can change live, because a reload starts new workers
with the new configuration and retires the old ones (:mod:`.supervisor`): policy, upstreams
and their credentials, limits rules, budgets and prices, monitoring, guardrails, proxy
settings, TLS certificates. What the supervisor itself holds cannot: the listening sockets
(``listen.proxy``, ``listen.admin``), and what every process must agree on for its whole life
(``store``, ``master_key_file``, ``workers``). Those keep their running values until a
restart, and the reload's answer says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Settings

__all__ = ["RESTART_REQUIRED", "ReloadPlan", "plan_reload"]

#: settings a reload leaves as they are (the new value is used at the next restart)
RESTART_REQUIRED = ("listen.proxy", "listen.admin", "store", "master_key_file", "workers")


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    settings: Settings  # what the new workers run: the new file, restart-only keys kept
    changed: tuple[str, ...]  # sections that change live
    restart_required: tuple[str, ...]  # keys whose new value waits for a restart
    upstream_endpoints: dict[str, str]  # upstreams added or pointed elsewhere -> endpoint

    def answer(self, status: str) -> dict[str, Any]:
        return {
            "status": status,
            "changed": list(self.changed),
            "restart_required": list(self.restart_required),
            "upstream_endpoints": dict(self.upstream_endpoints),
        }


def _get(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None  # type: ignore[assignment]
    return data


def plan_reload(running: Settings, new: Settings) -> ReloadPlan:
    old_d = running.model_dump(mode="json")
    new_d = new.model_dump(mode="json")
    restart = tuple(k for k in RESTART_REQUIRED if _get(old_d, k) != _get(new_d, k))
    listen = new.listen.model_copy(
        update={"proxy": running.listen.proxy, "admin": running.listen.admin}
    )
    kept = new.model_copy(
        update={
            "listen": listen,
            "store": running.store,
            "master_key_file": running.master_key_file,
            "workers": running.workers,
        }
    )
    kept_d = kept.model_dump(mode="json")
    changed: list[str] = []
    for section, value in kept_d.items():
        if section == "listen":
            changed += [f"listen.{k}" for k, v in value.items() if v != old_d["listen"].get(k)]
        elif value != old_d.get(section):
            changed.append(section)
    before = {u.name: u.endpoint for u in running.upstreams}
    endpoints = {u.name: u.endpoint for u in new.upstreams if before.get(u.name) != u.endpoint}
    return ReloadPlan(kept, tuple(sorted(changed)), restart, endpoints)
