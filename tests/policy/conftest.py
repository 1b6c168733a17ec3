"""The policy tests use the ``store`` fixture of tests/conftest.py (SQLite and PostgreSQL)."""
