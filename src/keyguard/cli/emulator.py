"""``keyguard emulator``: the built-in Azure OpenAI emulator as a standalone server."""

from __future__ import annotations

import click

__all__ = ["emulator"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8090, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="YAML file with deployments, limits, region (see docs/emulator.md).",
)
@click.option("--legacy-keys", is_flag=True, help="Issue 32-hex keys instead of 84-char ones.")
@click.option(
    "--tls",
    "tls_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Serve HTTPS with a self-signed certificate kept in this directory.",
)
def emulator(
    host: str, port: int, config_path: str | None, legacy_keys: bool, tls_dir: str | None
) -> None:
    """Serve a faithful Azure OpenAI stand-in for demos, tests and CI.

    \b
    Examples:
      keyguard emulator                     # http://127.0.0.1:8090, prints key1/key2
      keyguard emulator --tls .emulator-tls # HTTPS, for azure-mgmt / Key Vault SDKs
    """
    from ..emulator.server import run_emulator_cli

    raise SystemExit(
        run_emulator_cli(
            port=port,
            host=host,
            config=config_path,
            legacy_keys=legacy_keys,
            tls=tls_dir,
            echo=click.echo,
        )
    )
