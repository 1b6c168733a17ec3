"""An exception that escaped a command, as the one line a user reads.

:class:`~keyguard.errors.GatewayError` already says what is wrong and what to do; the rest are
the operating system's (a port in use, a file that cannot be opened) and bugs, which get a line
naming the way to see more (``keyguard --debug``).
"""

from __future__ import annotations

import errno
from typing import IO, Any

import click

from ..errors import GatewayError

__all__ = ["one_line"]

#: how to pick another address, per command
_LISTEN_HINT = {
    "serve": "change listen.proxy / listen.admin in the config",
    "demo": "pass --port and --admin-port",
    "emulator": "pass --port",
}


class CommandFailed(click.ClickException):
    """One ``error: ...`` line, exit status 1 (as :class:`.support.CommandFailed`, which this
    module does not import: ``keyguard scan`` must not load the gateway to report an error)."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {' '.join(self.message.splitlines())}", err=True, file=file)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def one_line(exc: BaseException, command: str) -> CommandFailed:
    """The :class:`CommandFailed` for ``exc`` escaping ``keyguard COMMAND``."""
    if isinstance(exc, GatewayError):
        return CommandFailed(_first_line(str(exc)))
    if isinstance(exc, OSError) and exc.errno in (
        errno.EADDRINUSE,
        errno.EACCES,
        errno.EADDRNOTAVAIL,
    ):
        hint = _LISTEN_HINT.get(command, "choose another address")
        what = _first_line(exc.strerror or str(exc))
        if exc.errno == errno.EADDRINUSE:
            return CommandFailed(f"{what}; stop what listens there or {hint}")
        if exc.errno == errno.EADDRNOTAVAIL:
            return CommandFailed(f"{what}; the address is not this machine's: {hint}")
        if exc.filename is None:
            return CommandFailed(f"{what}; ports below 1024 need privileges: {hint}")
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or type(exc).__name__
        return CommandFailed(
            f"cannot use '{exc.filename}': {reason}; check the path and its permissions"
        )
    if isinstance(exc, OSError):
        return CommandFailed(
            f"{_first_line(exc.strerror or str(exc))} (run with --debug for details)"
        )
    detail = _first_line(str(exc))
    return CommandFailed(
        f"unexpected {type(exc).__name__}{': ' + detail if detail else ''}; "
        "run 'keyguard --debug ...' for the traceback and report it"
    )
