"""Loading the master key from the environment or a 0600 file; creating key files."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from keyguard.errors import ConfigurationError
from keyguard.vault.master import (
    MASTER_KEY_ENV,
    create_master_key_file,
    encode_master_key,
    load_master_key,
)

RAW = bytes(range(200, 232))  # contains bytes that encode to '-'/'_' vs '+'/'/'


def key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "master.key"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    "text",
    [
        base64.urlsafe_b64encode(RAW).decode(),
        base64.urlsafe_b64encode(RAW).decode().rstrip("="),
        base64.standard_b64encode(RAW).decode(),
        base64.standard_b64encode(RAW).decode() + "\n",
    ],
    ids=["base64url", "base64url-unpadded", "base64", "trailing-newline"],
)
def test_from_environment(text: str) -> None:
    assert load_master_key({MASTER_KEY_ENV: text}, None).key == RAW


def test_from_file(tmp_path: Path) -> None:
    path = key_file(tmp_path, base64.urlsafe_b64encode(RAW).decode() + "\n")
    assert load_master_key({}, str(path)).key == RAW


def test_environment_wins_over_file(tmp_path: Path) -> None:
    path = key_file(tmp_path, base64.urlsafe_b64encode(bytes(32)).decode())
    env = {MASTER_KEY_ENV: base64.urlsafe_b64encode(RAW).decode()}
    assert load_master_key(env, str(path)).key == RAW


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, base64.urlsafe_b64encode(RAW).decode(), mode)
    with pytest.raises(ConfigurationError) as info:
        load_master_key({}, str(path))
    message = str(info.value)
    assert str(path) in message and "chmod 600" in message


def test_empty_environment_variable_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="set but empty"):
        load_master_key({MASTER_KEY_ENV: " "}, None)


@pytest.mark.parametrize("size", [1, 16, 31, 33, 64])
def test_wrong_length_is_refused(size: int) -> None:
    text = base64.urlsafe_b64encode(os.urandom(size)).decode()
    with pytest.raises(ConfigurationError, match=f"exactly 32 bytes \\(got {size}\\)"):
        load_master_key({MASTER_KEY_ENV: text}, None)


@pytest.mark.parametrize("text", ["not base64!", "é" * 43, "AAAAA", "ab-+" * 11])
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(ConfigurationError, match=MASTER_KEY_ENV) as info:
        load_master_key({MASTER_KEY_ENV: text}, None)
    assert text not in str(info.value)


def test_bad_length_in_file_names_the_file(tmp_path: Path) -> None:
    path = key_file(tmp_path, base64.urlsafe_b64encode(bytes(16)).decode())
    with pytest.raises(ConfigurationError, match="master key file"):
        load_master_key({}, str(path))


def test_neither_source_explains_both_options() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_master_key({}, None)
    message = str(info.value)
    assert MASTER_KEY_ENV in message and "master_key_file" in message
    assert "keyguard vault init-master-key" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_master_key({}, str(tmp_path / "absent.key"))


def test_create_master_key_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    old = os.umask(0)  # even a permissive umask yields 0600
    try:
        master = create_master_key_file(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == encode_master_key(master) + "\n"
    assert load_master_key({}, str(path)) == master


def test_create_never_overwrites(tmp_path: Path) -> None:
    path = key_file(tmp_path, "precious")
    with pytest.raises(ConfigurationError, match="already exists"):
        create_master_key_file(path)
    assert path.read_text() == "precious"


def test_create_does_not_follow_symlinks(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "master.key"
    link.symlink_to(target)
    with pytest.raises(ConfigurationError):
        create_master_key_file(link)
    assert not target.exists()


def test_a_key_file_open_to_others_or_to_a_foreign_group_is_refused() -> None:
    from keyguard.vault.master import too_open

    me, pod_group = 10001, 10001
    groups = [pod_group]
    assert not too_open(0o100600, me, me, me, groups)
    assert not too_open(0o100400, 0, 0, me, groups)  # unreadable for us, but not too open
    # a Kubernetes Secret mounted with fsGroup: root:fsGroup 0440, the group is the pod's
    assert not too_open(0o100440, 0, pod_group, me, groups)
    assert too_open(0o100444, 0, pod_group, me, groups)  # others may read
    assert too_open(0o100460, 0, pod_group, me, groups)  # the group may write
    assert too_open(0o100440, 0, 4242, me, groups)  # a group this process is not in
    assert too_open(0o100440, me, pod_group, me, groups)  # owned by us: keep it 0600
    assert too_open(0o100440, 0, 0, 0, [0])  # running as root: no exception
