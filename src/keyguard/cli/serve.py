"""``keyguard serve``: run the gateway; ``keyguard reload``: reload a running one."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping

import click

from ..config import Settings
from .support import (
    CommandFailed,
    config_option,
    event_loop_runner,
    run,
    run_sync,
    setup_logging,
)

__all__ = ["reload_command", "serve", "worker_count"]


def worker_count(settings: Settings, flag: int | None) -> int:
    """``--workers``, else ``workers:``, else one per available CPU with a shared (Redis)
    limits backend and 1 without."""
    from ..config import IN_PROCESS_WORKERS

    n = flag or settings.workers
    if n is None:
        return len(os.sched_getaffinity(0)) if settings.limits.backend != "memory" else 1
    if n > 1 and not settings.shared_limits:
        raise CommandFailed(IN_PROCESS_WORKERS.format(n=n))
    return n


@click.command()
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    help="Worker processes (default: 'workers:' in the config, else one per CPU with a "
    "Redis limits backend, else 1).",
)
@config_option
def serve(config_path: str, workers: int | None) -> None:
    """Run the gateway (proxy port and admin port) until Ctrl-C or SIGTERM (which drain).
    SIGHUP reloads the config file without dropping a request.

    \b
    Examples:
      keyguard serve --config /etc/keyguard/keyguard.yaml
      keyguard serve --workers 4 -c keyguard.yaml     # needs a Redis limits backend
      kill -HUP <pid>                                  # reload
    """
    from ..config import load_settings
    from ..supervise.record import audit_in_child
    from ..supervise.supervisor import Supervisor

    settings = run_sync(lambda: load_settings(config_path))
    count = worker_count(settings, workers)
    if count > 1:
        # several workers share the gateway's modules copy-on-write when the supervisor
        # imports them before forking; one worker imports them itself (see main)
        from ..supervise import worker as _shared  # noqa: F401
    setup_logging(settings.log_level, settings.log_format)
    environ = dict(os.environ)
    supervisor_pid = os.getpid()
    runner = event_loop_runner()

    def main(
        s: Settings, sockets: Mapping[str, socket.socket], generation: int, notify: int
    ) -> int:
        # with one worker the gateway's modules are imported here, after the fork: the
        # supervisor holds only what it needs to read the config and keep the sockets, so it
        # adds a few tens of MB to the tree, not a second copy of the gateway
        from ..supervise.worker import run_worker

        setup_logging(s.log_level, s.log_format)
        return run_worker(
            s,
            environ,
            sockets,
            generation,
            notify,
            config_path=config_path,
            supervisor=supervisor_pid,
            loop_runner=runner,
        )

    supervisor = Supervisor(
        config_path, settings, count, main, record=audit_in_child(environ, runner)
    )
    code = run_sync(supervisor.run)
    if code:
        sys.exit(code)


@click.command("reload")
@click.option(
    "--token-env",
    default="KEYGUARD_ADMIN_TOKEN",
    show_default=True,
    help="The environment variable holding an admin token (role admin).",
)
@click.option("--url", default=None, help="The admin port's URL (default: from listen.admin).")
@config_option
def reload_command(config_path: str, token_env: str, url: str | None) -> None:
    """Reload a running gateway's config file through its admin API (POST /admin/reload):
    policy, upstreams, limits and TLS certificates change with no request dropped; an invalid
    file is refused and changes nothing.

    \b
    Example:
      KEYGUARD_ADMIN_TOKEN=kga_... keyguard reload -c /etc/keyguard/keyguard.yaml
    """
    import json

    import aiohttp

    from ..config import load_settings

    token = os.environ.get(token_env, "")
    if not token:
        raise CommandFailed(
            f"set {token_env} to an admin token with role admin "
            "(keyguard admin tokens create --role admin --name ops)"
        )
    if url is None:
        listen = run_sync(lambda: load_settings(config_path)).listen
        url = f"{'https' if listen.tls is not None else 'http'}://{listen.admin}"

    async def call() -> tuple[int, dict[str, object]]:
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(
                url.rstrip("/") + "/admin/reload", headers={"Authorization": f"Bearer {token}"}
            ) as resp,
        ):
            return resp.status, await resp.json(content_type=None)

    try:
        status, body = run(call)
    except aiohttp.ClientError as exc:
        raise CommandFailed(f"cannot reach the admin port at {url}: {exc}") from None
    if status >= 300:
        error = body.get("error", {})
        message = error.get("message", body) if isinstance(error, dict) else body
        raise CommandFailed(f"reload refused ({status}): {message}")
    click.echo(json.dumps(body, indent=2))
