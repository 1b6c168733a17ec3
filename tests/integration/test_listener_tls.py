"""TLS on the listeners: served with the configured certificate, TLS 1.2 at least, the key
file checked like the master key, and a renewed certificate in service without a restart."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import ssl
import warnings
from pathlib import Path

import aiohttp
import openai
import pytest

from keyguard.emulator import RunningEmulator
from keyguard.emulator.tls import ensure_certificates
from keyguard.errors import ConfigurationError
from tests.support.certs import ClientCA, name
from tests.support.emulators import API_VERSION
from tests.support.gateway import new_key, running_gateway
from tests.support.logs import LogCapture
from tests.support.servers import lacks_on_granian


def tls_section(tmp: Path, interval: float = 1.0) -> dict[str, object]:
    files = ensure_certificates(tmp / "tls")
    return {
        "proxy": "127.0.0.1:0",
        "admin": "127.0.0.1:0",
        "tls": {
            "cert_file": str(files.server_cert),
            "key_file": str(files.server_key),
            "reload_interval_s": interval,
        },
    }


async def peer_fingerprint(url: str, ca: Path) -> str:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(ca))
    _, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return hashlib.sha256(der).hexdigest()


async def test_both_ports_serve_https_to_the_sdk(tmp_path: Path, emulator: RunningEmulator) -> None:
    listen = tls_section(tmp_path)
    ca = tmp_path / "tls" / "ca.pem"
    async with running_gateway(tmp_path, emulator, listen=listen) as gw:
        assert gw.proxy_url.startswith("https://") and gw.admin_url.startswith("https://")
        _, key = await new_key(gw)
        async with openai.AsyncAzureOpenAI(
            azure_endpoint=gw.proxy_url,
            api_key=key,
            api_version=API_VERSION,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(
                verify=ssl.create_default_context(cafile=str(ca))
            ),
        ) as client:
            answer = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=3
            )
            assert answer.choices
        ctx = ssl.create_default_context(cafile=str(ca))
        async with (
            aiohttp.ClientSession() as http,
            http.get(gw.admin_url + "/livez", ssl=ctx) as resp,
        ):
            assert resp.status == 200
        # plain HTTP to a TLS port is not served
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError):
                async with http.get(gw.admin_url.replace("https", "http") + "/livez") as resp:
                    await resp.read()


async def test_tls_below_1_2_is_refused(tmp_path: Path, emulator: RunningEmulator) -> None:
    async with running_gateway(tmp_path, emulator, listen=tls_section(tmp_path)) as gw:
        host, port = gw.proxy_url.removeprefix("https://").rsplit(":", 1)
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():  # an old client is what this test is about
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                await asyncio.open_connection(host, int(port), ssl=old)
        modern = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
        modern.maximum_version = ssl.TLSVersion.TLSv1_2  # 1.2 itself is served
        _, writer = await asyncio.open_connection(host, int(port), ssl=modern)
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
        writer.close()


@pytest.mark.parametrize("mode", [0o644, 0o640])
async def test_a_private_key_readable_by_others_stops_the_start(
    tmp_path: Path, emulator: RunningEmulator, mode: int
) -> None:
    listen = tls_section(tmp_path)
    (tmp_path / "tls" / "server.key").chmod(mode)
    with pytest.raises(ConfigurationError, match=r"readable by others .*chmod 600"):
        async with running_gateway(tmp_path, emulator, listen=listen):
            pass


@lacks_on_granian(
    "Granian reads the certificate once, at start: a renewed one is served after a reload"
)
async def test_a_renewed_certificate_is_served_without_a_restart(
    tmp_path: Path, emulator: RunningEmulator, logs: LogCapture
) -> None:
    listen = tls_section(tmp_path)
    ca_old = tmp_path / "tls" / "ca.pem"
    async with running_gateway(tmp_path, emulator, listen=listen) as gw:
        before = await peer_fingerprint(gw.proxy_url, ca_old)
        # a half-written renewal: a key that does not belong to the certificate
        other = ensure_certificates(tmp_path / "other")
        shutil.copy(other.server_key, tmp_path / "tls" / "server.key")
        async with asyncio.timeout(15):
            while not any("ERROR TLS certificate not reloaded" in line for line in logs.lines):
                await asyncio.sleep(0.1)
        assert await peer_fingerprint(gw.proxy_url, ca_old) == before
        # the whole renewal: certificate and key
        shutil.copy(other.server_cert, tmp_path / "tls" / "server.pem")
        async with asyncio.timeout(15):
            while not any("TLS certificate reloaded" in line for line in logs.lines):
                await asyncio.sleep(0.1)
        after = await peer_fingerprint(gw.proxy_url, other.ca_cert)
        assert after != before


MTLS_POLICY = """
version: 1
apps:
  billing:
    client_certificates: ["subject:CN=billing-bot,O=Contoso", "dns:billing.contoso.example"]
  keyed: {}
roles:
  chat: {operations: [chat], deployments: [gpt-4o]}
bindings:
  - {name: billing-chat, role: chat, subjects: ["app:billing"]}
  - {name: keyed-chat, role: chat, subjects: ["app:keyed"]}
"""


@lacks_on_granian(
    "no client certificates: Granian's ASGI scope does not carry the verified certificate "
    "(listen.tls.client_ca_file is refused)"
)
async def test_client_certificates_authenticate_as_the_app_the_policy_binds(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    ca, stranger = ClientCA(), ClientCA("Another CA")
    listen = tls_section(tmp_path)
    listen["tls"]["client_ca_file"] = str(ca.write(tmp_path / "clients-ca.pem"))  # type: ignore[index]
    server_ca = tmp_path / "tls" / "ca.pem"

    def context(cert: tuple[Path, Path] | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(server_ca))
        if cert is not None:
            ctx.load_cert_chain(*cert)
        return ctx

    bound = ca.files(tmp_path / "c", name(("O", "Contoso"), ("CN", "billing-bot")))
    by_san = ca.files(tmp_path / "c", name(("CN", "whoever")), dns=("billing.contoso.example",))
    spoofed = ca.files(tmp_path / "c", name(("O", "Contoso"), ("OU", "CN=billing-bot")))
    foreign = stranger.files(tmp_path / "c", name(("O", "Contoso"), ("CN", "billing-bot")))
    async with running_gateway(tmp_path, emulator, listen=listen, policy=MTLS_POLICY) as gw:
        _, key = await new_key(gw, "keyed")
        url = f"{gw.proxy_url}/openai/deployments/gpt-4o/chat/completions"
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

        async def call(cert: tuple[Path, Path] | None, headers: dict[str, str]) -> int:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    url,
                    params={"api-version": API_VERSION},
                    json=body,
                    headers=headers,
                    ssl=context(cert),
                ) as resp,
            ):
                await resp.read()
                return resp.status

        assert await call(bound, {}) == 200  # the subject, bound to billing
        assert await call(by_san, {}) == 200  # a SAN, bound to billing
        assert await call(spoofed, {}) == 401  # CN=billing-bot written inside an OU
        assert await call(None, {}) == 401  # no certificate, no key
        assert await call(None, {"api-key": key}) == 200  # keys still work
        assert await call(spoofed, {"api-key": key}) == 200  # the header credential decides
        with pytest.raises(aiohttp.ClientError):  # another issuer: no handshake at all
            await call(foreign, {})
        # the admin port asks for no client certificate
        async with (
            aiohttp.ClientSession() as http,
            http.get(gw.admin_url + "/livez", ssl=context(None)) as resp,
        ):
            assert resp.status == 200


@lacks_on_granian("no client certificates: listen.tls.client_ca_file is refused with granian first")
async def test_client_certificates_without_a_policy_stop_the_start(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    listen = tls_section(tmp_path)
    listen["tls"]["client_ca_file"] = str(ClientCA().write(tmp_path / "ca.pem"))  # type: ignore[index]
    with pytest.raises(ConfigurationError, match="client certificates are bound to apps"):
        async with running_gateway(tmp_path, emulator, listen=listen):
            pass
