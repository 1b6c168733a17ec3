"""The fixtures every test package may use (a pytest plugin: tests/conftest.py loads it).

Servers on loopback, each stopped after its test:

``emulator_config``  the emulators' configuration, ``EmulatorConfig()``; a test changes it with
                     ``@pytest.mark.parametrize("emulator_config", [EmulatorConfig(...)])``
``emulator``         the Azure OpenAI emulator over plain HTTP (a gateway's usual upstream)
``tls_emulator``     the same over HTTPS (``ca_file``), e.g. as a managed-identity endpoint
``azure_emulator``   one emulator state over TLS and plain HTTP, with the environment of
                     azure-identity pointing at it (:class:`~tests.support.emulators.AzureEmulator`)
``issuer``           a local OIDC issuer minting Entra-shaped tokens, its JWKS over HTTPS
``azurite``          Azure Storage's emulator (blob service, TLS, OAuth), one for the session
                     (:mod:`tests.support.azurite`); ``blob_container`` a new container in it

And ``clock`` (a :class:`~tests.support.clock.FakeClock`), ``logs`` (every log record of the
test, formatted, to look for secrets in) and ``config_path`` (a ``keyguard.yaml`` for CLI
commands, with relative paths).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.config import settings_from_mapping
from keyguard.emulator import EmulatorConfig, RunningEmulator, start_emulator
from keyguard.store import open_store
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.runtime import Runtime, open_runtime
from tests.support.azurite import Azurite, azurite_missing, start_azurite
from tests.support.clock import FakeClock
from tests.support.emulators import AzureEmulator, azure_emulator_serving
from tests.support.issuer import LocalIssuer, start_issuer
from tests.support.logs import LogCapture
from tests.support.settings import keyguard_config, write_config


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig()


@pytest.fixture
async def emulator(emulator_config: EmulatorConfig) -> AsyncIterator[RunningEmulator]:
    async with await start_emulator(emulator_config) as running:
        yield running


@pytest.fixture
async def tls_emulator(
    emulator_config: EmulatorConfig, tmp_path: Path
) -> AsyncIterator[RunningEmulator]:
    async with await start_emulator(emulator_config, tls_dir=tmp_path / "emulator-tls") as running:
        yield running


@pytest.fixture
async def azure_emulator(
    emulator_config: EmulatorConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AzureEmulator]:
    async with azure_emulator_serving(emulator_config, tmp_path / "azure-tls") as running:
        for name in ("MSI_ENDPOINT", "IMDS_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST"):
            monkeypatch.delenv(name, raising=False)
        for name, value in running.identity_env().items():
            monkeypatch.setenv(name, value)
        yield running


@pytest.fixture
async def issuer(tmp_path: Path) -> AsyncIterator[LocalIssuer]:
    running = await start_issuer(tmp_path / "issuer-tls")
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def sqlite_runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    """A runtime over a SQLite store and a local vault of the test's own, nothing else."""
    create_master_key_file(tmp_path / "master.key")
    settings = settings_from_mapping(
        {"store": f"sqlite:///{tmp_path / 'k.db'}", "master_key_file": str(tmp_path / "master.key")}
    )
    runtime = await open_runtime(settings, {})
    try:
        yield runtime
    finally:
        await runtime.close()


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """The engine of a fresh SQLite store of the test's own (migrated), for the stores built
    directly on it."""
    store = await open_store(f"sqlite:///{tmp_path / 'k.db'}")
    try:
        yield store.engine  # type: ignore[attr-defined]
    finally:
        await store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    handler = LogCapture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """``tmp_path/keyguard.yaml``: its store (``state/keyguard.db``) and master key file
    (``master.key``, created) given relative to it, as an operator would write them."""
    return write_config(
        tmp_path,
        keyguard_config(
            tmp_path, store="sqlite:///state/keyguard.db", master_key_file="master.key"
        ),
    )


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite's blob service on a free loopback port, for the whole session (skipped with the
    reason when Node.js or Azurite is missing; CI=true makes a skip fail the run)."""
    missing = azurite_missing()
    if missing is not None:
        pytest.skip(missing)
    running = start_azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def blob_container(azurite: Azurite) -> str:
    """The URL of a new, empty container in :func:`azurite` (created with the account key)."""
    import uuid

    from azure.core.credentials import AzureNamedKeyCredential
    from azure.storage.blob.aio import ContainerClient

    from tests.support.azurite import ACCOUNT

    url = azurite.container_url(f"audit-{uuid.uuid4().hex[:12]}")
    credential = AzureNamedKeyCredential(ACCOUNT, azurite.account_key)
    async with ContainerClient.from_container_url(
        url, credential=credential, connection_verify=azurite.ca_file
    ) as client:
        await client.create_container()
    return url
