"""Wiring: the ``limits:`` settings to a started admission hook.

:func:`build_admission` turns the ``limits:`` settings into the pipeline's admission hook
(``None`` when no rule or budget is configured: the gateway then behaves as without limits).
The backend is picked by URL through one explicit table: ``memory`` (in-process, default) or
``redis://`` / ``rediss://`` / ``unix://`` (shared by every replica). See ``docs/limits.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import Settings
from ..errors import ConfigurationError
from ..events import EventBus
from .admission import LimitAdmission
from .backend import Backend, MemoryBackend
from .estimator import Estimator
from .persist import PersistentMemoryBackend
from .prices import UnitPrice, price_for
from .redis_backend import RedisBackend
from .rules import Rules
from .settings import LimitSettings
from .tokenizer import Tokenizer

__all__ = ["build_admission", "backend_from_url", "deployment_models", "BACKENDS"]


def _memory(settings: LimitSettings, password: str | None) -> Backend:
    return MemoryBackend(journal_max_len=settings.journal_max_len)


def _redis(settings: LimitSettings, password: str | None) -> Backend:
    return RedisBackend(
        settings.backend,
        prefix=settings.redis_key_prefix,
        timeout_s=settings.redis_timeout_s,
        lease_s=settings.concurrency_lease_s,
        journal_max_len=settings.journal_max_len,
        password=password,
    )


BACKENDS: dict[str, Callable[[LimitSettings, str | None], Backend]] = {
    "memory": _memory,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
}


def backend_from_url(settings: LimitSettings, password: str | None = None) -> Backend:
    scheme = "memory" if settings.backend == "memory" else urlsplit(settings.backend).scheme
    factory = BACKENDS.get(scheme)
    if factory is None:
        raise ConfigurationError(f"limits.backend: unknown backend {settings.backend!r}")
    return factory(settings, password)


def deployment_models(settings: Settings) -> dict[str, str]:
    """The model behind each served deployment (``model:``, else the deployment's name)."""
    models: dict[str, str] = {}
    for upstream in settings.upstreams:
        for name, dep in upstream.deployments.items():
            models.setdefault(name, dep.model or name)
    return models


async def build_admission(
    settings: Settings,
    *,
    events: EventBus,
    password: str | None = None,
    executor: ThreadPoolExecutor | None = None,
    engine: AsyncEngine | None = None,
) -> LimitAdmission | None:
    """The admission hook for ``settings.limits``, started; ``None`` when nothing is limited
    or priced. With prices alone the hook only prices requests: it changes none (no default
    ``max_tokens`` is written) and refuses none.

    With the in-process backend and the store's ``engine``, hour/day/month counters are saved
    to the store and survive a restart (:mod:`.persist`)."""
    cfg = settings.limits
    if not cfg.enabled:
        return None
    models = deployment_models(settings)
    prices: dict[str, UnitPrice] = {}
    for deployment, model in models.items():
        price = price_for(model, cfg.prices)
        if price is not None:
            prices[deployment] = price
        elif cfg.budgets:
            raise ConfigurationError(
                f"limits.prices: budgets are configured but model {model!r} (deployment "
                f"{deployment!r}) has no price; add it to limits.prices (0 if it is free)"
            )
    tokenizer = Tokenizer()
    await asyncio.get_running_loop().run_in_executor(executor, tokenizer.load, models.values())
    admission = LimitAdmission(
        rules=Rules(cfg),
        estimator=Estimator(
            tokenizer,
            default_max_tokens=cfg.default_max_tokens,
            inject_max_tokens=cfg.inject_max_tokens and bool(cfg.rules or cfg.budgets),
            large_prompt_chars=cfg.large_prompt_chars,
            executor=executor,
        ),
        backend=(
            PersistentMemoryBackend(
                engine, interval_s=cfg.persist_interval_s, journal_max_len=cfg.journal_max_len
            )
            if engine is not None and cfg.backend == "memory"
            else backend_from_url(cfg, password)
        ),
        fallback=(
            MemoryBackend(journal_max_len=cfg.journal_max_len)
            if cfg.on_backend_failure == "local" and cfg.backend != "memory"
            else None
        ),
        fallback_fraction=cfg.local_fallback_fraction,
        models=models,
        prices=prices,
        currency=cfg.currency,
        events=events,
    )
    await admission.start()
    return admission
