"""The proxy's request pipeline, as data: its stages in the order they run.

:class:`~keyguard.proxy.app.ProxyHandler` runs them; each stage's line there carries a
``# stage: NAME`` marker, and a test checks that the markers follow :data:`STAGES` and that
``docs/architecture.md`` shows :func:`render` of them, so code, this list and the
documentation cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STAGES", "Stage", "render"]


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    module: str  # where its logic lives
    pure: bool  # a function of values only: no I/O, no clock
    does: str


STAGES: tuple[Stage, ...] = (
    Stage("classify", "proxy/routes.py", True, "family, operation, deployment"),
    Stage("screen", "respond/blocks.py", True, "a blocked address or network ► 429"),
    Stage("credential", "identity/credentials.py", True, "api-key / Bearer, agree, checksum"),
    Stage("authenticate", "identity/", False, "key cache ► store, HMAC; Entra tokens"),
    Stage("read_body", "proxy/app.py", False, "size, content type, JSON, v1 model"),
    Stage("resolve", "upstream/pool.py", False, "deployment ► configured backends"),
    Stage("authorize", "policy/, respond/blocks.py", True, "roles × request, blocks ► decision"),
    Stage("guard", "proxy/guardrails.py, guard/", False, "texts ► block, redact, alert, log"),
    Stage("admit", "limits/", False, "estimate, reserve every limit at once"),
    Stage("safety", "proxy/content_safety.py", False, "Azure AI Content Safety ► 400/503"),
    Stage("forward", "proxy/relay.py", False, "allow-listed headers, SSE relayed, usage read"),
    Stage("settle", "limits/", False, "real usage (or streamed text) ► counters"),
    Stage(
        "record", "proxy/access_log.py, monitor/", False, "after the answer: log, metrics, audit"
    ),
)


def render() -> str:
    """The stages as the table ``docs/architecture.md`` shows."""
    width = max(len(s.module) for s in STAGES)
    lines = []
    for number, stage in enumerate(STAGES, 1):
        pure = "(pure)" if stage.pure else "      "
        lines.append(f"{number:>2} {stage.name:<13}{stage.module:<{width}}  {pure}  {stage.does}")
    return "\n".join(lines)
