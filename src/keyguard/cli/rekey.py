"""``keyguard vault rekey``: a new master key, with a window in which both are accepted.

The steps (docs/operations.md, "Master-key rotation"), each safe to repeat:

1. open: the key file becomes ``new, old`` (atomically); running gateways re-read it when it
   changes, so they can read what is re-wrapped and seal new versions under the new key;
2. re-wrap every version under the new key (compare-and-set, online);
3. ``--finish``: once nothing is left under an old key, the file becomes ``new`` alone, and
   the gateways drop the old key on their next look at the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..config import load_settings
from ..errors import GatewayError
from ..vault.crypto import MasterKey
from ..vault.keyring import Keyring, format_keyring, write_keyring_file
from ..vault.master import (
    MASTER_KEY_ENV,
    decode_master_key,
    encode_master_key,
    load_master_key,
    read_keyring_file,
)
from ..vault.vault import RekeyReport
from ..wiring.runtime import Runtime
from .support import CommandFailed, run_sync, run_with_runtime

__all__ = ["rekey"]

NEW_KEY_ENV = "KEYGUARD_NEW_MASTER_KEY"


def _given_key(new_file: str | None) -> MasterKey | None:
    try:
        if new_file is not None:
            return load_master_key({}, new_file)
        if os.environ.get(NEW_KEY_ENV):
            return decode_master_key(os.environ[NEW_KEY_ENV], source=NEW_KEY_ENV)
    except GatewayError as exc:
        raise CommandFailed(str(exc)) from None
    return None


def rekey(config_path: str, new_file: str | None, *, finish: bool) -> None:
    given = _given_key(new_file)
    settings = run_sync(lambda: load_settings(config_path))
    if os.environ.get(MASTER_KEY_ENV) is not None or not settings.master_key_file:
        _rekey_from_environment(config_path, given, finish)
        return
    path = Path(settings.master_key_file)
    keyring = run_sync(lambda: read_keyring_file(path))
    if finish:
        _finish(config_path, path, keyring)
        return
    new = given or (keyring.current if keyring.previous else MasterKey.generate())
    opened = keyring.opened_with(new)
    if opened is not keyring:
        run_sync(lambda: write_keyring_file(path, format_keyring(opened, encode_master_key)))
        click.echo(
            f"{path}: kek id {new.kek_id} is now current; kek id "
            f"{', '.join(k.kek_id for k in opened.previous)} still read (the window is open)",
            err=True,
        )
    report = run_with_runtime(config_path, lambda rt: _rewrap(rt, new))
    _print(report, new)
    if report.remaining:
        raise CommandFailed("some versions were written meanwhile: run the command again")
    click.echo(
        "Running gateways read the new key from the file (no restart). Once every gateway "
        "has logged no vault error for a minute, close the window: keyguard vault rekey --finish",
        err=True,
    )
    if new_file is not None:
        click.echo(f"The key is now in {path}; delete {new_file} (shred it).", err=True)


async def _rewrap(rt: Runtime, new: MasterKey) -> RekeyReport:
    if rt.vault.keyring.previous or rt.vault.keyring.current != new:
        return await rt.vault.rekey(new)
    under_new = len(await rt.store.sealed_versions(new.kek_id))  # done before: nothing to move
    return RekeyReport(rewrapped=0, under_new_key=under_new, remaining=0)


def _print(report: RekeyReport, new: MasterKey) -> None:
    click.echo(
        f"re-wrapped {report.rewrapped} secret versions under kek id {new.kek_id} "
        f"({report.under_new_key} in total, {report.remaining} left under the old key)"
    )


def _finish(config_path: str, path: Path, keyring: Keyring) -> None:
    if not keyring.previous:
        click.echo(f"{path}: one key (kek id {keyring.current.kek_id}); nothing to close")
        return

    async def left(rt: Runtime) -> int:
        return sum([len(await rt.store.sealed_versions(k.kek_id)) for k in keyring.previous])

    remaining = run_with_runtime(config_path, left)
    if remaining:
        raise CommandFailed(
            f"{remaining} secret versions are still under the old key; run 'keyguard vault "
            "rekey' again first"
        )
    closed = keyring.closed()
    run_sync(lambda: write_keyring_file(path, format_keyring(closed, encode_master_key)))
    click.echo(
        f"{path}: only kek id {closed.current.kek_id} is accepted now; gateways drop the old "
        "key on their next vault read"
    )


def _rekey_from_environment(config_path: str, new: MasterKey | None, finish: bool) -> None:
    if finish:
        raise CommandFailed(
            f"with {MASTER_KEY_ENV} there is no key file to close the window in: set "
            f"{MASTER_KEY_ENV} to the new key alone and restart the gateways one by one"
        )
    if new is None:
        raise click.UsageError(f"give --new-master-key-file or set {NEW_KEY_ENV}")
    if not os.environ.get(MASTER_KEY_ENV):
        raise CommandFailed(
            f"no master key: set 'master_key_file' in the config (or {MASTER_KEY_ENV})"
        )
    environ = dict(os.environ)
    # the old key current, the new one read too: a repeated run finds versions under either
    environ[MASTER_KEY_ENV] = f"{environ[MASTER_KEY_ENV]},{encode_master_key(new)}"
    report = run_with_runtime(config_path, lambda rt: rt.vault.rekey(new), environ=environ)
    _print(report, new)
    if report.remaining:
        raise CommandFailed("some versions were written meanwhile: run the command again")
    click.echo(
        f"Now set {MASTER_KEY_ENV} to the new key and restart the gateways one at a time "
        f"(during the restarts, {MASTER_KEY_ENV}=NEW,OLD lets each read both).",
        err=True,
    )
