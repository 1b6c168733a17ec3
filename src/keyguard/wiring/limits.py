"""The ``limits:`` settings to a started admission hook.

:func:`build_admission` turns the ``limits:`` settings into the pipeline's admission hook
(``None`` when no rule or budget is configured: the gateway then behaves as without limits).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import Settings
from ..errors import ConfigurationError
from ..events import EventBus
from ..limits.admission import LimitAdmission
from ..limits.backend import MemoryBackend
from ..limits.estimator import Estimator
from ..limits.factory import backend_from_url
from ..limits.keeper import KeptRedisBackend
from ..limits.persist import PersistentMemoryBackend
from ..limits.prices import UnitPrice, price_for
from ..limits.redis_backend import RedisBackend
from ..limits.rules import Rules
from ..limits.tokenizer import Tokenizer
from ..metrics import GatewayMetrics

__all__ = ["build_admission", "deployment_models", "limits_gauges"]


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
    to the store and survive a restart (:mod:`.persist`); with Redis, every counter is saved
    there too and restored when Redis comes back empty (:mod:`.keeper`)."""
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
            else KeptRedisBackend(cfg, engine, password=password)
            if engine is not None
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


def limits_gauges(metrics: GatewayMetrics, admission: LimitAdmission | None) -> None:
    """The shared counters' health on ``/metrics``: whether Redis answers, and how often its
    counters had to be restored (a Redis restart without persistence)."""
    backend = admission._backend if admission is not None else None
    if not isinstance(backend, RedisBackend):
        return
    metrics.gauge("keyguard_limits_backend_up",
                  "1 while the shared limits backend (Redis) answers, else 0.",
                  lambda: float(backend.healthy))  # fmt: skip
    metrics.gauge("keyguard_limits_restores",
                  "Times the shared counters were found empty and restored from the store "
                  "(the first start included).",
                  lambda: float(backend.restores))  # fmt: skip
