"""``keyguard demo``: the emulator and the gateway on embedded defaults, on one machine.

It starts the built-in Azure OpenAI emulator, stores the emulator's key in a fresh local vault
(a new master key file, mode 0600), creates a demo app key, and starts the gateway (SQLite
store, in-process counters) in front of the emulator. It then prints the environment an
``openai`` program needs and serves until Ctrl-C; with ``check=True`` it runs a tour with the
official ``openai`` SDK instead (non-streaming, streaming, v1 client, embeddings, denied
requests) and reports whether everything behaved.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from .config import Settings, settings_from_mapping
from .demo_check import API_VERSION, CHAT_DEPLOYMENT, EMBEDDINGS_DEPLOYMENT, run_checks
from .emulator.config import EmulatorConfig
from .emulator.server import RunningEmulator, start_emulator
from .server import Gateway
from .vault.master import create_master_key_file

__all__ = ["run_demo", "DemoEnv", "API_VERSION", "CHAT_DEPLOYMENT", "EMBEDDINGS_DEPLOYMENT"]

UPSTREAM_SECRET = "upstream/emulator"


@dataclass(frozen=True)
class DemoEnv:
    endpoint: str
    api_key: str
    revoked_key: str
    emulator: RunningEmulator
    gateway: Gateway


def demo_settings(state_dir: Path, emulator_url: str, proxy: str, admin: str) -> Settings:
    return settings_from_mapping(
        {
            "listen": {"proxy": proxy, "admin": admin},
            "store": f"sqlite:///{state_dir / 'keyguard.db'}",
            "master_key_file": str(state_dir / "master.key"),
            "upstreams": [
                {
                    "name": "emulator",
                    "endpoint": emulator_url,
                    "credential": {"vault": UPSTREAM_SECRET},
                    "deployments": [CHAT_DEPLOYMENT, "gpt-4o-mini", EMBEDDINGS_DEPLOYMENT],
                }
            ],
        }
    )


async def start_demo(state_dir: Path, *, port: int, admin_port: int) -> DemoEnv:
    emulator = await start_emulator(EmulatorConfig())
    try:
        create_master_key_file(state_dir / "master.key")
        settings = demo_settings(
            state_dir, emulator.url, f"127.0.0.1:{port}", f"127.0.0.1:{admin_port}"
        )
        environ = {k: v for k, v in os.environ.items() if k != "KEYGUARD_MASTER_KEY"}
        gateway = Gateway(settings, environ)
        # Store the emulator's key before the gateway's credential provider first reads it.
        from .wiring.runtime import open_runtime

        runtime = await open_runtime(settings, environ)
        try:
            key1, _ = emulator.keys()
            await runtime.vault.put(UPSTREAM_SECRET, key1)
            now = datetime.now(UTC)
            _, api_key = await runtime.keys.create(
                "demo-app", now=now, expires_in=timedelta(days=1), description="keyguard demo"
            )
            revoked, revoked_key = await runtime.keys.create("demo-app", now=now)
            await runtime.keys.revoke(revoked.key_id, now=now)
        finally:
            await runtime.close()
        await gateway.start()
    except BaseException:
        await emulator.stop()
        raise
    return DemoEnv(gateway.proxy_url, api_key, revoked_key, emulator, gateway)


def print_environment(env: DemoEnv) -> None:
    click.echo("Keyguard demo: the gateway runs in front of the built-in Azure OpenAI emulator.")
    click.echo(f"  emulator (upstream): {env.emulator.url}")
    click.echo(f"  gateway (proxy):     {env.endpoint}")
    click.echo(f"  gateway (admin):     {env.gateway.admin_url}")
    click.echo("")
    click.echo("Export these and run any openai program unchanged:")
    click.echo("")
    click.echo(f"AZURE_OPENAI_ENDPOINT={env.endpoint}")
    click.echo(f"AZURE_OPENAI_API_KEY={env.api_key}")
    click.echo(f"OPENAI_API_VERSION={API_VERSION}")
    click.echo(f"AZURE_OPENAI_DEPLOYMENT={CHAT_DEPLOYMENT}")
    click.echo("")
    click.echo("For example:")
    click.echo("")
    click.echo("    import os")
    click.echo("    from openai import AzureOpenAI")
    click.echo("    client = AzureOpenAI()  # reads the three variables above")
    click.echo("    reply = client.chat.completions.create(")
    click.echo('        model=os.environ["AZURE_OPENAI_DEPLOYMENT"],')
    click.echo('        messages=[{"role": "user", "content": "Hello!"}],')
    click.echo("    )")
    click.echo("    print(reply.choices[0].message.content)")
    click.echo("")
    click.echo(f"The embeddings deployment '{EMBEDDINGS_DEPLOYMENT}' is served too.")
    click.echo("The key above is a Keyguard key: the app never sees the Azure key.")


async def _serve_until_interrupted(env: DemoEnv) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    click.echo("")
    click.echo("Serving; press Ctrl-C to stop.")
    await stop.wait()


async def run_demo(*, check: bool, port: int, admin_port: int) -> int:
    """Run the demo; returns the process exit status."""

    with tempfile.TemporaryDirectory(prefix="keyguard-demo-") as tmp:
        env = await start_demo(Path(tmp), port=port, admin_port=admin_port)
        try:
            print_environment(env)
            if check:
                return await run_checks(env, _report)
            await _serve_until_interrupted(env)
            return 0
        finally:
            await env.gateway.stop()
            with contextlib.suppress(Exception):
                await env.emulator.stop()


def _report(name: str, step: Callable[[], Awaitable[str]]) -> Awaitable[bool]:
    async def run() -> bool:
        try:
            detail = await step()
        except Exception as exc:  # the tour reports every failure and goes on
            click.echo(f"  FAIL  {name}: {type(exc).__name__}: {exc}")
            return False
        click.echo(f"  ok    {name}: {detail}")
        return True

    return run()
