"""The store suite runs once per backend: SQLite (a temporary file) and PostgreSQL
(the ``store_url`` and ``store`` fixtures of tests/conftest.py)."""
