"""``keyguard serve`` as a real process tree (a supervisor and its workers), for the tests of
workers, reloads and drains.

::

    async with serving(tmp_path, emulator, workers=2) as kg:
        await kg.wait_for(r"reloaded \\(generation 2\\)")
        kg.signal(signal.SIGHUP)
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from keyguard.emulator import RunningEmulator
from tests.support.gateway import store_secrets
from tests.support.settings import keyguard_config, keyguard_settings, upstream, write_config

__all__ = ["Serve", "serving", "serve_config"]

_LISTENING = re.compile(
    r"keyguard proxy on (https?://[\w.:\[\]-]+), admin on (https?://[\w.:\[\]-]+)"
)


class Serve:
    """A ``keyguard serve`` process: its log lines, its URLs, its signals."""

    def __init__(self, config: Path, args: tuple[str, ...] = ()) -> None:
        self.config = config
        self.args = args
        self.lines: list[str] = []
        self.proxy_url = ""
        self.admin_url = ""
        self._changed = asyncio.Condition()
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *, wait: bool = True) -> None:
        exe = Path(sys.executable).with_name("keyguard")
        self.proc = await asyncio.create_subprocess_exec(
            str(exe),
            "serve",
            "--config",
            str(self.config),
            *self.args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("KEYGUARD_")},
        )
        self._reader = asyncio.create_task(self._read())
        if wait:
            await self.wait_for(r"workers serving", timeout=180)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            async with self._changed:
                self.lines.append(line)
                found = _LISTENING.search(line)
                if found and not self.proxy_url:
                    self.proxy_url, self.admin_url = found.group(1), found.group(2)
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    def count(self, pattern: str) -> int:
        return sum(1 for line in self.lines if re.search(pattern, line))

    async def wait_for(self, pattern: str, *, times: int = 1, timeout: float = 60) -> None:
        """Until ``pattern`` has appeared ``times`` times in the log (or the process ended:
        then fails with its log)."""
        async with asyncio.timeout(timeout), self._changed:
            while self.count(pattern) < times:
                if self._reader.done():
                    raise AssertionError(f"ended before {pattern!r}:\n" + self.log_tail())
                await self._changed.wait()

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def workers(self) -> list[int]:
        """The supervisor's live children (its workers)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    async def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            await self._reader
        return code

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await self.wait(60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.proc is not None:
            await self._reader


async def serve_config(
    tmp: Path, emulator: RunningEmulator, **sections: Any
) -> tuple[Path, dict[str, Any]]:
    """A config file whose one upstream is ``emulator`` (its key in the vault)."""
    sections.setdefault("upstreams", [upstream(emulator.url)])
    config = keyguard_config(tmp, **sections)
    settings = keyguard_settings(tmp, **sections)
    await store_secrets(settings, {"upstream/emulator": emulator.keys()[0]})
    return write_config(tmp, config), config


@asynccontextmanager
async def serving(
    tmp: Path, emulator: RunningEmulator, *args: str, **sections: Any
) -> AsyncIterator[Serve]:
    path, _ = await serve_config(tmp, emulator, **sections)
    kg = Serve(path, args)
    await kg.start()
    try:
        yield kg
    finally:
        await kg.stop()
