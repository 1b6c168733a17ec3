"""What every test package shares, imported as ``tests.support.<module>``.

``settings``   the one builder of Keyguard settings: a config mapping, ``Settings`` or a YAML file
``gateway``    the one way to start a gateway (``running_gateway``) and to call it
``emulators``  the Azure emulator served over TLS and plain HTTP for the Azure SDKs
``issuer``     a local OIDC issuer minting Entra-shaped tokens
``fixtures``   the shared fixtures over those (a pytest plugin, loaded by tests/conftest.py)
"""
