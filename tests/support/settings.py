"""The one builder of Keyguard settings for tests.

:func:`keyguard_config` is the mapping a ``keyguard.yaml`` would hold: a SQLite store and a
0600 master key file in the test's directory (the key file is created on first use), both
listeners on free loopback ports (the proxy's HTTP server named by ``KEYGUARD_TEST_HTTP_SERVER``
when set), the upstreams given, and any other section as given
(``limits=``, ``monitor=``, ``rotation=``, ``access=`` ...; a section given replaces the
default, ``store=`` included). ``policy=`` writes that YAML to ``policy.yaml`` beside it and
points ``access.policy.file`` at it. :func:`keyguard_settings` validates the same mapping as
the gateway does; :func:`write_config` puts one in a file for the CLI and for ``keyguard
serve`` in a subprocess. ``KEYGUARD_TEST_UPSTREAM_CLIENT`` (``aiohttp`` or ``pyreqwest``)
sets ``proxy.upstream_client`` in every config made here that does not set it.

::

    keyguard_settings(tmp_path, upstreams=[upstream(emulator.url)], limits={"rules": [...]})
    write_config(tmp_path, keyguard_config(tmp_path, store="sqlite:///state/keyguard.db"))
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from keyguard.config import Settings, settings_from_mapping
from keyguard.vault.master import create_master_key_file

if TYPE_CHECKING:
    from tests.support.emulators import AzureEmulator

#: ``KEYGUARD_TEST_UPSTREAM_CLIENT=pyreqwest pytest ...`` runs every test gateway on that
#: ``proxy.upstream_client`` (a test that sets one keeps its own)
UPSTREAM_CLIENT_VARIABLE = "KEYGUARD_TEST_UPSTREAM_CLIENT"
#: the proxy port's HTTP server every gateway the tests start uses, unless a test names one:
#: ``KEYGUARD_TEST_HTTP_SERVER=granian pytest tests/integration`` runs them on Granian
HTTP_SERVER_ENV = "KEYGUARD_TEST_HTTP_SERVER"

DEPLOYMENTS = ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "dall-e-3", "whisper", "tts")
CHAT_DEPLOYMENTS = ("gpt-4o", "gpt-4o-mini")


def master_key(directory: Path) -> Path:
    """``directory/master.key``, created (0600) if it is not there yet."""
    path = directory / "master.key"
    if not path.exists():
        create_master_key_file(path)
    return path


def upstream(
    endpoint: str,
    *,
    name: str = "emulator",
    credential: Mapping[str, Any] | None = None,
    deployments: Iterable[str] | Mapping[str, Mapping[str, Any]] = DEPLOYMENTS,
    **fields: Any,
) -> dict[str, Any]:
    """An ``upstreams`` entry; its key is the vault secret ``upstream/<name>`` by default."""
    return {
        "name": name,
        "endpoint": endpoint,
        "credential": dict(credential or {"vault": f"upstream/{name}"}),
        "deployments": (
            {d: dict(v) for d, v in deployments.items()}
            if isinstance(deployments, Mapping)
            else list(deployments)
        ),
        **fields,
    }


def managed_upstream(
    emulator: AzureEmulator,
    credential: Mapping[str, Any] | None = None,
    *,
    name: str = "emulator",
    **management: Any,
) -> dict[str, Any]:
    """An upstream at the emulator's plain-HTTP data plane whose keys Keyguard can regenerate
    through the emulator's ARM endpoints (over TLS, with its CA)."""
    account = emulator.state.config
    return upstream(
        emulator.http_url,
        name=name,
        credential=credential,
        deployments=CHAT_DEPLOYMENTS,
        management={
            "subscription_id": account.subscription_id,
            "resource_group": account.resource_group,
            "account_name": account.account_name,
            "arm_endpoint": emulator.url,
            "identity": {"ca_file": emulator.ca_file},
            **management,
        },
    )


def keyguard_config(
    tmp: Path,
    *,
    upstreams: Sequence[Mapping[str, Any]] = (),
    policy: str | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A config mapping whose state lives in ``tmp`` (see the module docstring)."""
    mapping: dict[str, Any] = {
        "listen": {"proxy": "127.0.0.1:0", "admin": "127.0.0.1:0"},
        "store": f"sqlite:///{tmp / 'keyguard.db'}",
        "master_key_file": str(master_key(tmp)),
        "workers": 1,  # one process per gateway on a shared 2-core machine (more: say so)
    }
    if upstreams:
        mapping["upstreams"] = [dict(u) for u in upstreams]
    if policy is not None:
        (tmp / "policy.yaml").write_text(policy)
        access = dict(sections.get("access", {}))
        access["policy"] = {"file": "policy.yaml", **access.get("policy", {})}
        sections["access"] = access
    mapping.update(sections)
    client = os.environ.get(UPSTREAM_CLIENT_VARIABLE)
    if client:  # the whole suite on another upstream client, unless a test chooses one
        mapping["proxy"] = {"upstream_client": client, **(mapping.get("proxy") or {})}
    server = os.environ.get(HTTP_SERVER_ENV)
    if server:  # the whole suite on another HTTP server, unless a test chooses one
        mapping["proxy"] = {"http_server": server, **(mapping.get("proxy") or {})}
    return mapping


def keyguard_settings(tmp: Path, **options: Any) -> Settings:
    """:func:`keyguard_config` validated, relative paths resolved against ``tmp``."""
    return settings_from_mapping(keyguard_config(tmp, **options), base_dir=tmp)


def write_config(
    tmp: Path, config: Mapping[str, Any] | Settings, name: str = "keyguard.yaml"
) -> Path:
    """A config mapping, or a gateway's settings, as the YAML file ``tmp/name`` (relative
    paths in it resolve against ``tmp``)."""
    if isinstance(config, Settings):
        config = config.model_dump(mode="json", exclude_defaults=True)
    path = tmp / name
    path.write_text(yaml.safe_dump(dict(config)))
    return path


def free_port() -> int:
    """A loopback TCP port free right now (for a server a test must reach by a known port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
