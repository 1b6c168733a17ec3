"""A Keyguard config in a temporary directory: SQLite store, 0600 master key file."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyguard.vault.master import create_master_key_file


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    create_master_key_file(tmp_path / "master.key")
    path = tmp_path / "keyguard.yaml"
    path.write_text("store: sqlite:///state/keyguard.db\nmaster_key_file: master.key\n")
    return path
