"""Azurite, Microsoft's Azure Storage emulator, for the archive tests.

It is pinned in ``tests/support/azurite/package-lock.json`` and installed by
``scripts/setup --dev`` (``npm ci``); nothing is fetched when the tests run. :func:`start_azurite`
starts its blob service on a free loopback port (Azurite binds port 0 and prints the port),
over TLS with a certificate of the emulator's local CA (the SDKs send bearer tokens over TLS
only), with OAuth on (``--oauth basic``: it checks a token's issuer, audience and lifetime, as
Azure does, but not its signature), in memory, with one account whose key is random for the
run (so the key is a canary too).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import selectors
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from keyguard.emulator.tls import ensure_certificates

__all__ = ["Azurite", "azurite_missing", "start_azurite", "ACCOUNT"]

HERE = Path(__file__).parent / "azurite"
BIN = HERE / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "keyguardarchive"
_LISTENING = re.compile(r"successfully listens on (https?://\S+)")


@dataclass
class Azurite:
    process: subprocess.Popen[str]
    url: str  # https://127.0.0.1:PORT
    account_key: str
    ca_file: str
    reader: threading.Thread

    def container_url(self, container: str) -> str:
        return f"{self.url}/{ACCOUNT}/{container}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def azurite_missing() -> str | None:
    """Why Azurite cannot run here, or ``None``."""
    if shutil.which("node") is None:
        return "Node.js is not installed: the Azure Blob archive tests need it (Azurite)"
    if not BIN.exists():
        return "Azurite is not installed: run scripts/setup --dev (npm ci in tests/support/azurite)"
    return None


def start_azurite(workdir: Path, timeout: float = 60.0) -> Azurite:
    tls = ensure_certificates(workdir / "tls", ["127.0.0.1"])
    key = base64.b64encode(secrets.token_bytes(64)).decode()
    env = {**os.environ, "AZURITE_ACCOUNTS": f"{ACCOUNT}:{key}"}
    command = [
        str(BIN), "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
        "--disableTelemetry", "--silent", "--skipApiVersionCheck", "--oauth", "basic",
        "--cert", str(tls.server_cert), "--key", str(tls.server_key),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    seen: list[str] = []
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line.rstrip())
            found = _LISTENING.search(line)
            if found:
                reader = _drain(process)
                return Azurite(process, found.group(1), key, str(tls.ca_cert), reader)
    process.kill()
    process.wait(timeout=10)
    process.stdout.close()
    raise RuntimeError("Azurite did not start: " + " | ".join(seen[-5:]))


def _drain(process: subprocess.Popen[str]) -> threading.Thread:
    """Keep reading Azurite's output so that a full pipe never blocks it."""

    def read() -> None:
        assert process.stdout is not None
        for _ in process.stdout:
            pass

    thread = threading.Thread(target=read, name="azurite output", daemon=True)
    thread.start()
    return thread
