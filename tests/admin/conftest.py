"""Admin tests: the ``store`` fixture comes from tests/conftest.py (SQLite and PostgreSQL)."""

from __future__ import annotations

# The local OIDC issuer and the upstream emulator of the identity tests.
from tests.identity.conftest import issuer, upstream  # noqa: E402,F401
