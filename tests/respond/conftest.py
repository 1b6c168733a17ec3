from tests.integration.conftest import emulator, emulator_config  # noqa: F401
