"""What every test package shares, imported as ``tests.support.<module>``.

``settings``   the one builder of Keyguard settings: a config mapping, ``Settings`` or a YAML file
``gateway``    the one way to start a gateway (``running_gateway``) and to call it
``emulators``  the Azure emulator served over TLS and plain HTTP for the Azure SDKs
``issuer``     a local OIDC issuer minting Entra-shaped tokens
``clock``      a fake clock tests move instead of sleeping
``logs``       a log handler keeping every line, for canary checks
``fixtures``   the shared fixtures over those (a pytest plugin, loaded by tests/conftest.py)

The slow soak and multi-process tests are marked ``slow``: ``pytest`` leaves them out,
``pytest -m slow`` runs them, and scripts/test runs both under coverage.
"""
