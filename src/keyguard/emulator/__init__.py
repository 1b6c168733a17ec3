"""A faithful, fast Azure OpenAI emulator: data plane, management plane and managed identity.

It is the upstream for Keyguard's demo, its integration tests and users' own CI. See
``docs/emulator.md`` for what it emulates and how to drive it. Public API::

    from keyguard.emulator import EmulatorConfig, DeploymentSpec, start_emulator

    emulator = await start_emulator(EmulatorConfig())
    key1, key2 = emulator.keys()
    ...
    await emulator.stop()
"""

from keyguard.emulator.config import (
    DEFAULT_DEPLOYMENTS,
    DeploymentKind,
    DeploymentSpec,
    EmulatorConfig,
    KeyFormat,
    config_from_mapping,
    load_config,
)
from keyguard.emulator.control import CONTROL_HEADER
from keyguard.emulator.identity import issue_token
from keyguard.emulator.server import RunningEmulator, run_emulator_cli, start_emulator
from keyguard.emulator.state import EmulatorState, UsageCounts
from keyguard.emulator.tokens import count_tokens

__all__ = [
    "CONTROL_HEADER",
    "DEFAULT_DEPLOYMENTS",
    "DeploymentKind",
    "DeploymentSpec",
    "EmulatorConfig",
    "EmulatorState",
    "KeyFormat",
    "RunningEmulator",
    "UsageCounts",
    "config_from_mapping",
    "count_tokens",
    "issue_token",
    "load_config",
    "run_emulator_cli",
    "start_emulator",
]
