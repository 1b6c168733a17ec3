"""Alembic migrations for Keyguard's store, shipped as package data (see ``env.py``)."""
