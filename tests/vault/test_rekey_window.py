"""``keyguard vault rekey``: a window in which the old and the new master key are both read,
running processes following the key file without a restart, a repeated run that is harmless,
and a closed window after which the old key opens nothing."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from openai.types.chat import ChatCompletionMessageParam

from keyguard.cli.main import cli
from keyguard.config import load_settings
from keyguard.emulator.server import RunningEmulator
from keyguard.errors import VaultError
from keyguard.store.base import SealedSecret
from keyguard.vault.crypto import MasterKey, seal
from keyguard.vault.keyring import Keyring, format_keyring, write_keyring_file
from keyguard.vault.master import (
    MASTER_KEY_ENV,
    encode_master_key,
    load_keyring,
    read_keyring_file,
)
from keyguard.wiring.runtime import Runtime, open_runtime
from tests.support.gateway import azure_client, new_key, running_gateway
from tests.support.logs import LogCapture
from tests.support.settings import keyguard_config, write_config

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]

ENV = {MASTER_KEY_ENV: None, "KEYGUARD_NEW_MASTER_KEY": None, "KEYGUARD_CONFIG": None}


def keyguard(
    *args: str, env: dict[str, str | None] | None = None, input_: str | None = None
) -> Result:
    return CliRunner().invoke(cli, list(args), env={**ENV, **(env or {})}, input=input_)


async def in_thread(
    *args: str, env: dict[str, str | None] | None = None, input_: str | None = None
) -> Result:
    """A command run beside this test's event loop, as another process would be."""
    return await asyncio.to_thread(keyguard, *args, env=env, input_=input_)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, keyguard_config(tmp_path))


@pytest.fixture
async def running(config: Path) -> AsyncIterator[Runtime]:
    """A gateway's runtime, opened before the rekey and never restarted."""
    rt = await open_runtime(load_settings(config), {})
    await rt.vault.put("upstream/east", "east-key-v1")
    try:
        yield rt
    finally:
        await rt.close()


def key_file(config: Path) -> Path:
    return config.parent / "master.key"


def forged_under(key: MasterKey, version: int) -> SealedSecret:
    return seal(
        key,
        name="upstream/east",
        version=version,
        plaintext=b"attacker-chosen",
        fingerprint="",
        created_at=datetime.now(UTC),
    )


async def test_a_rekey_needs_no_restart_repeats_harmlessly_and_closes(
    config: Path, running: Runtime
) -> None:
    old = running.vault.keyring.current
    result = await in_thread("vault", "rekey", "-c", str(config))
    assert result.exit_code == 0, result.stderr
    ring = read_keyring_file(key_file(config))
    new = ring.current
    assert new != old and ring.previous == (old,)
    assert f"under kek id {new.kek_id}" in result.stdout

    # the running process reads what was re-wrapped and seals new versions under the new key
    assert await running.vault.get("upstream/east") == "east-key-v1"
    assert running.vault.keyring.current == new
    info = await running.vault.put("upstream/east", "east-key-v2")
    assert info.kek_id == new.kek_id

    again = await in_thread("vault", "rekey", "-c", str(config))  # idempotent
    assert again.exit_code == 0, again.stderr
    assert "re-wrapped 0 secret versions" in again.stdout
    assert read_keyring_file(key_file(config)) == ring  # no third key

    done = await in_thread("vault", "rekey", "--finish", "-c", str(config))
    assert done.exit_code == 0, done.stderr
    assert read_keyring_file(key_file(config)) == Keyring(new)
    assert sorted(p.name for p in key_file(config).parent.glob("*master*")) == ["master.key"]
    assert stat.S_IMODE(key_file(config).stat().st_mode) == 0o600
    assert old.key not in key_file(config).read_bytes()
    assert encode_master_key(old).encode() not in key_file(config).read_bytes()

    # attacker: a version sealed under the old key (a store writer who kept it) opens nowhere
    await running.store.put_secret(forged_under(old, 3))
    with pytest.raises(VaultError, match="wrong master key"):
        await running.vault.get("upstream/east")
    fresh = await open_runtime(load_settings(config), {})
    try:
        with pytest.raises(VaultError, match="wrong master key"):
            await fresh.vault.get("upstream/east")
        assert await fresh.vault.get("upstream/east", 2) == "east-key-v2"
    finally:
        await fresh.close()
    assert keyguard("vault", "rekey", "--finish", "-c", str(config)).exit_code == 0


async def test_the_window_does_not_close_while_versions_are_under_the_old_key(
    config: Path, running: Runtime
) -> None:
    old = running.vault.keyring.current
    assert (await in_thread("vault", "rekey", "-c", str(config))).exit_code == 0
    # a process that never looked at the file writes under the old key
    await running.store.put_secret(
        seal(
            old,
            name="upstream/west",
            version=1,
            plaintext=b"west",
            fingerprint="",
            created_at=datetime.now(UTC),
        )
    )
    refused = await in_thread("vault", "rekey", "--finish", "-c", str(config))
    assert refused.exit_code == 1
    assert refused.stderr.strip().count("\n") == 0
    assert "still under the old key; run 'keyguard vault rekey' again" in refused.stderr
    assert (await in_thread("vault", "rekey", "-c", str(config))).exit_code == 0
    assert (await in_thread("vault", "rekey", "--finish", "-c", str(config))).exit_code == 0
    assert await running.vault.get("upstream/west") == "west"


async def test_a_rekey_with_the_key_in_the_environment_can_be_repeated(
    tmp_path: Path, config: Path, running: Runtime
) -> None:
    old = encode_master_key(running.vault.keyring.current)
    new = MasterKey.generate()
    new_file = tmp_path / "master-2.key"
    write_keyring_file(new_file, format_keyring(Keyring(new), encode_master_key))
    env: dict[str, str | None] = {MASTER_KEY_ENV: old}
    for _ in range(2):
        result = await in_thread(
            "vault", "rekey", "--new-master-key-file", str(new_file), "-c", str(config), env=env
        )
        assert result.exit_code == 0, result.stderr
    both = await open_runtime(load_settings(config), {MASTER_KEY_ENV: encode_master_key(new)})
    try:
        assert await both.vault.get("upstream/east") == "east-key-v1"
    finally:
        await both.close()


def test_a_key_file_of_several_keys_and_the_environment_list(tmp_path: Path) -> None:
    a, b = MasterKey.generate(), MasterKey.generate()
    path = tmp_path / "k"
    write_keyring_file(path, format_keyring(Keyring(a, (b,)), encode_master_key))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring, source = load_keyring({}, str(path))
    assert ring == Keyring(a, (b,)) and source is not None
    listed = f"{encode_master_key(a)},{encode_master_key(b)}"
    assert load_keyring({MASTER_KEY_ENV: listed}, None) == (Keyring(a, (b,)), None)
    assert os.listdir(tmp_path) == ["k"]  # the temporary file was renamed, nothing left over


async def test_a_serving_gateway_follows_a_rekey_without_a_restart(
    tmp_path: Path, emulator: RunningEmulator, logs: LogCapture
) -> None:
    async with running_gateway(tmp_path, emulator, rotation={"credential_refresh_s": 0.1}) as gw:
        assert gw.runtime is not None
        config = write_config(tmp_path, gw.runtime.settings, name="serving.yaml")
        _, key = await new_key(gw)
        async with azure_client(gw, key) as c:
            await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=3)
            assert (await in_thread("vault", "rekey", "-c", str(config))).exit_code == 0
            new = read_keyring_file(key_file(config)).current
            # the upstream key re-read under the new master key, then the window closed
            assert (await in_thread("vault", "rekey", "--finish", "-c", str(config))).exit_code == 0
            await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=3)
            put = await in_thread(
                "vault", "put", "upstream/emulator", "-c", str(config), input_=emulator.keys()[1]
            )
            assert put.exit_code == 0, put.stderr
            async with asyncio.timeout(30):  # the gateway serves the new upstream key version
                while gw.runtime.vault.keyring != Keyring(new):
                    await asyncio.sleep(0.05)
            await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=3)
    assert not [line for line in logs.lines if "could not refresh" in line or "decrypt" in line]
