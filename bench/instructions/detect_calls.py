"""The detector's ``observe`` called N times (the body of ``bench/instructions/detect``, which
runs this under callgrind twice and divides the difference by the difference of N).

    python detect_calls.py PART N       # PART: mature, learning

Traffic shaped like bench/run's: one app key, four client networks, the SDK's user agent and
fingerprint, a 200 on gpt-4o with usage and cost, a distinct prompt digest each request, one
request a second (no rule fires). ``mature``: the app's older key, with its own baseline (a
burst of 300 requests a day for four days first, outside the count); ``learning``: a key the
detector has never seen (judged by its app's history and its peers).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from keyguard.core.observation import Observation
from keyguard.detect.engine import Detector
from keyguard.detect.settings import DetectSettings

T0 = 1_767_600_000.0  # a Monday, 08:00 UTC
UA = "AzureOpenAI/Python 1.109.1"
CLIENT = "Python/1.109.1/Linux/x64/CPython/3.11.7"
POOL = 64  # observations reused in turn (their time, id and digest set per call)
DIGESTS = [f"{i:016x}" for i in range(4096)]


def _obs(i: int, key: str) -> Observation:
    return Observation(
        at=T0,
        request_id=f"{i:016x}",
        key_id=key,
        app="app",
        presented_key_id=key,
        source=f"10.0.{i % 4}.{i % 200 + 1}",
        network=f"10.0.{i % 4}.0/24",
        user_agent=UA,
        client=CLIENT,
        operation="chat",
        deployment="gpt-4o",
        api_version="2024-10-21",
        status=200,
        upstream_status=200,
        prompt_tokens=180,
        completion_tokens=42,
        cost=0.00087,
        latency_ms=5.0,
        upstream_ms=4.0,
        max_tokens=256,
        temperature=0.7,
    )


def part(name: str) -> Callable[[], None]:
    detector = Detector(DetectSettings(), {"app": "team"})
    history = [_obs(i, "k-old") for i in range(POOL)]
    for day in range(4, 0, -1):  # the app's older key, a burst a day at the same pace: four
        for i in range(300):  # days of history, baselines for it and its app
            obs = history[i % POOL]
            obs.at = T0 - day * 86400 + i
            obs.request_id = DIGESTS[i]
            detector.observe(obs)
    key = "k-old" if name == "mature" else "k-new"
    pool = [_obs(i, key) for i in range(POOL)]
    state = {"i": 0}

    def call() -> None:
        i = state["i"] = state["i"] + 1
        obs = pool[i % POOL]
        obs.at = T0 + i
        obs.request_id = obs.prompt_digest = DIGESTS[i % 4096]
        detector.observe(obs)

    return call


if __name__ == "__main__":
    call = part(sys.argv[1])
    for _ in range(int(sys.argv[2])):
        call()
