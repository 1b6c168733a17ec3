"""Wiring of the model-based guardrail: ``guardrails.content_safety`` → the proxy's stage.

``await start_content_safety(stack, runtime, environ)`` starts the credential (Keyguard's
managed identity, or a key from the local vault or Azure Key Vault, exactly as an upstream's),
opens the service's own HTTP session and returns the :class:`~keyguard.proxy.content_safety.
SafetyStage`; ``None`` without the section. ``stack`` closes what it started, in reverse.

What a flag does is the guardrails of the roles that allow the request (``attack`` and
``harm`` in the policy's ``guardrails:``), the section's ``on_attack``/``on_harm`` for a role
that names none.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack

from ..guard.content_safety import ContentSafetyGuard, new_session
from ..policy.source import PolicySource
from ..proxy.content_safety import SafetyStage
from ..proxy.guardrails import guardrails_of
from ..upstream.credentials import provider_for
from .runtime import Runtime

__all__ = ["start_content_safety"]


async def start_content_safety(
    stack: AsyncExitStack,
    runtime: Runtime,
    environ: Mapping[str, str],
    policy: PolicySource | None = None,
) -> SafetyStage | None:
    settings = runtime.settings.guardrails.content_safety
    if settings is None:
        return None
    provider = provider_for(
        settings.credential,
        vault=runtime.vault,
        environ=environ,
        refresh_s=runtime.settings.rotation.credential_refresh_s,
    )
    stack.push_async_callback(provider.close)
    await provider.start()
    session = new_session(settings)
    stack.push_async_callback(session.close)
    guard = ContentSafetyGuard(settings, session, provider.auth_headers)
    current = (lambda: policy.current) if policy is not None else None
    return SafetyStage(
        guard, settings, runtime.events, actions_of=lambda ctx: guardrails_of(ctx, current)
    )
