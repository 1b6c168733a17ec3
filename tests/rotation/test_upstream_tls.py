"""An upstream behind a private CA (``keyguard emulator --tls``'s, a TLS-inspecting proxy's):
trusted through the upstream's ``ca_file`` by the data plane and by the rotation's check of a
new key; without it TLS fails closed, and a rotation says TLS failed, not that the key was
refused."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from keyguard.config import settings_from_mapping
from keyguard.emulator.server import RunningEmulator
from keyguard.errors import ConfigurationError
from keyguard.rotation.verify import CannotVerify, DataPlaneVerifier
from keyguard.upstream.tls import trust
from keyguard.wiring.runtime import Runtime
from tests.support.gateway import azure_client, new_key, running_gateway
from tests.support.logs import LogCapture
from tests.support.settings import upstream

HI = [{"role": "user", "content": "hi"}]


async def test_the_gateway_trusts_the_ca_its_upstream_names(
    tmp_path: Path, tls_emulator: RunningEmulator
) -> None:
    assert tls_emulator.url.startswith("https://") and tls_emulator.ca_file is not None
    trusted = upstream(tls_emulator.url, ca_file=str(tls_emulator.ca_file))
    async with running_gateway(
        tmp_path, upstreams=[trusted], vault={"upstream/emulator": tls_emulator.keys()[0]}
    ) as gw:
        _, key = await new_key(gw)
        async with azure_client(gw, key) as c:
            answer = await c.chat.completions.create(
                model="gpt-4o",
                messages=HI,  # type: ignore[arg-type]
                max_tokens=5,
            )
    assert answer.choices[0].message.content


async def test_without_the_ca_tls_fails_closed(
    tmp_path: Path, tls_emulator: RunningEmulator
) -> None:
    async with running_gateway(
        tmp_path,
        upstreams=[upstream(tls_emulator.url)],
        vault={"upstream/emulator": tls_emulator.keys()[0]},
    ) as gw:
        _, key = await new_key(gw)
        async with azure_client(gw, key) as c:
            with pytest.raises(openai.APIStatusError) as caught:
                await c.chat.completions.create(
                    model="gpt-4o",
                    messages=HI,  # type: ignore[arg-type]
                    max_tokens=5,
                )
    assert caught.value.status_code == 502


async def test_the_new_key_check_trusts_the_ca_and_tells_tls_from_refusal(
    tls_emulator: RunningEmulator,
) -> None:
    key = tls_emulator.keys()[0]
    untrusting = DataPlaneVerifier()
    trusting = DataPlaneVerifier(trust={tls_emulator.url: trust(str(tls_emulator.ca_file))})
    try:
        with pytest.raises(CannotVerify, match="not trusted; set the upstream's ca_file"):
            await untrusting(tls_emulator.url, key)
        assert await trusting(tls_emulator.url, key) is None
        assert await trusting(tls_emulator.url, "0" * 32) == "HTTP 401"
    finally:
        await untrusting.close()
        await trusting.close()


async def test_a_rotation_whose_check_hits_untrusted_tls_aborts_at_once_saying_so(
    rt: Runtime, logs: LogCapture
) -> None:
    from keyguard.wiring.rotation import rotation_service

    calls: list[str] = []

    async def tls_fails(endpoint: str, key: str) -> str | None:
        calls.append(endpoint)
        raise CannotVerify(f"the TLS certificate of {endpoint} is not trusted")

    service = rotation_service(rt, verifier=tls_fails)
    try:
        rotation = await service.rotate_upstream("east")
    finally:
        await service.close()
    assert rotation.state == "aborted"
    assert "could not be checked" in (rotation.error or "")
    assert len(calls) == 1
    assert not any("was refused" in line for line in logs.lines)


def test_a_relative_ca_file_resolves_against_the_config_and_a_bad_one_is_one_line(
    tmp_path: Path,
) -> None:
    settings = settings_from_mapping(
        {"upstreams": [upstream("https://x.example", ca_file="tls/ca.pem")]}, base_dir=tmp_path
    )
    assert settings.upstreams[0].ca_file == str(tmp_path / "tls" / "ca.pem")
    with pytest.raises(ConfigurationError, match="cannot load it as a PEM CA bundle"):
        trust(str(tmp_path / "tls" / "ca.pem"))
