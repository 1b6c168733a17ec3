"""The emulator's mutable state: keys, usage totals, limiter windows and pending faults.

One :class:`EmulatorState` per running emulator, owned by the event loop (no locks needed:
every method is synchronous and runs between two awaits). The clock is injected so tests can
move time without sleeping; all decisions are delegated to the pure functions of
:mod:`~keyguard.emulator.ratelimit`, :mod:`~keyguard.emulator.faults` and
:mod:`~keyguard.emulator.auth`.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from keyguard.azure_keys import generate_identifiable_key, generate_legacy_key
from keyguard.emulator.config import DeploymentSpec, EmulatorConfig
from keyguard.emulator.content_safety_state import ContentSafetyState
from keyguard.emulator.faults import Fault, parse_fault, take_fault
from keyguard.emulator.ratelimit import Decision, Limits, Windows, decide
from keyguard.emulator.signing import TokenSigner

__all__ = ["Clock", "UsageCounts", "EmulatorState", "KeyName"]

Clock = Callable[[], float]
KeyName = Literal["key1", "key2"]


@dataclass(slots=True)
class UsageCounts:
    """Totals for one deployment or one credential slot."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    #: Requests refused or broken after authentication (429, injected faults, dropped streams).
    failed: int = 0

    def add(self, prompt: int, completion: int) -> None:
        self.requests += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.total_tokens += prompt + completion


class EmulatorState:
    """Everything that changes while the emulator runs."""

    def __init__(self, config: EmulatorConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self.signer = TokenSigner(config.tenant_id)
        self.local_auth_disabled = config.disable_local_auth
        self._keys: list[str] = [self._new_key(), self._new_key()]
        self._limits = {
            name: Limits(spec.tpm, spec.effective_rpm) for name, spec in config.deployments.items()
        }
        self._windows: dict[str, Windows] = {}
        self._faults: tuple[Fault, ...] = ()
        self._fault_ids = itertools.count(1)
        self._by_deployment: dict[str, UsageCounts] = {}
        self._by_credential: dict[str, UsageCounts] = {}
        #: the last JSON bodies the data plane received (tests assert on what arrived)
        self.received: deque[Any] = deque(maxlen=64)
        self._answers: deque[tuple[str, ...]] = deque(maxlen=64)
        #: Azure AI Content Safety: blocklists, calls received, faults
        self.content_safety = ContentSafetyState()
        #: user sign-in: outstanding authorization codes (:mod:`.signin`), oldest first
        self.auth_codes: OrderedDict[str, Any] = OrderedDict()

    # -- scripted answers -----------------------------------------------------------------

    def script_answer(self, *pieces: str) -> None:
        """The next chat answer carries exactly ``pieces`` (one stream chunk each) instead of
        generated text: tests of what an answer may carry, split as they choose."""
        self._answers.append(tuple(pieces))

    def take_answer(self) -> tuple[str, ...] | None:
        return self._answers.popleft() if self._answers else None

    # -- keys -----------------------------------------------------------------------------

    def _new_key(self) -> str:
        if self.config.key_format == "legacy":
            return generate_legacy_key()
        return generate_identifiable_key("openai")

    def keys(self) -> tuple[str, str]:
        """The current key1 and key2."""
        return self._keys[0], self._keys[1]

    def regenerate(self, name: KeyName) -> tuple[str, str]:
        """Replace one key; the old value stops working at once. Returns (key1, key2)."""
        self._keys[0 if name == "key1" else 1] = self._new_key()
        return self.keys()

    # -- deployments and limits -------------------------------------------------------------

    def deployment(self, name: str) -> DeploymentSpec | None:
        return self.config.deployments.get(name)

    def admit(self, deployment: str, cost: int) -> Decision:
        """Charge ``cost`` estimated tokens and one request, or refuse (nothing charged)."""
        windows = self._windows.get(deployment, Windows())
        decision = decide(windows, self._limits[deployment], self.clock(), cost)
        self._windows[deployment] = decision.windows
        return decision

    # -- faults -------------------------------------------------------------------------------

    def add_fault(self, raw: Mapping[str, Any]) -> Fault:
        """Validate and queue a fault (``ValueError`` when invalid)."""
        fault = parse_fault(raw, f"fault-{next(self._fault_ids)}", self.clock())
        self._faults = (*self._faults, fault)
        return fault

    def take_fault(self, deployment: str) -> Fault | None:
        fault, self._faults = take_fault(self._faults, deployment, self.clock())
        return fault

    def faults(self) -> tuple[Fault, ...]:
        now = self.clock()
        _, live = take_fault(self._faults, "\x00no-deployment", now)
        self._faults = live
        return live

    def clear_faults(self) -> None:
        self._faults = ()

    # -- usage ----------------------------------------------------------------------------

    def _usage(self, table: dict[str, UsageCounts], key: str) -> UsageCounts:
        usage = table.get(key)
        if usage is None:
            usage = table[key] = UsageCounts()
        return usage

    def record_success(self, deployment: str, slot: str, prompt: int, completion: int) -> None:
        self._usage(self._by_deployment, deployment).add(prompt, completion)
        self._usage(self._by_credential, slot).add(prompt, completion)

    def record_failure(self, deployment: str, slot: str) -> None:
        self._usage(self._by_deployment, deployment).failed += 1
        self._usage(self._by_credential, slot).failed += 1

    def usage_view(self) -> dict[str, Any]:
        """Totals per deployment, per credential slot and overall (``GET /_emulator/usage``)."""
        total = UsageCounts()
        for usage in self._by_deployment.values():
            total.requests += usage.requests
            total.prompt_tokens += usage.prompt_tokens
            total.completion_tokens += usage.completion_tokens
            total.total_tokens += usage.total_tokens
            total.failed += usage.failed
        return {
            "deployments": {k: asdict(v) for k, v in sorted(self._by_deployment.items())},
            "credentials": {k: asdict(v) for k, v in sorted(self._by_credential.items())},
            "total": asdict(total),
        }

    def reset(self) -> None:
        """Forget usage, limiter windows and faults (keys and settings stay)."""
        self._by_deployment.clear()
        self._by_credential.clear()
        self._windows.clear()
        self._faults = ()
        self.received.clear()
        self._answers.clear()
        self.content_safety.reset()
