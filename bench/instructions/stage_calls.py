"""One part of the guard stage called N times (the body of ``bench/instructions/stage``, which
runs this under callgrind twice and divides the difference by the difference of N).

    python stage_calls.py PART N       # PART: stream, stream_detectors, request, answer
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from keyguard.guard.decide import Placeholders, judge
from keyguard.guard.engine import GuardEngine
from keyguard.guard.extract import request_slots, response_slots
from keyguard.policy.guardrails import DEFAULTS
from keyguard.proxy.guard_stream import StreamGuard
from keyguard.proxy.guardrails import unread_slots

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "guardrails"))
from stage import BODY, upstream_bodies  # noqa: E402


def parts() -> dict[str, Callable[[], None]]:
    engine = GuardEngine()
    answer, stream = upstream_bodies()

    def fp(value: str) -> str:
        return ""

    def nothing(_: str) -> list[Any]:
        return []

    def streamed(scan: Callable[[str], list[Any]]) -> Callable[[], None]:
        def call() -> None:
            guard = StreamGuard(
                scan, DEFAULTS, fp, placeholders=Placeholders(), restore=None, window=128,
                context=128,
            )  # fmt: skip
            guard.feed(stream)
            guard.flush(b"")

        return call

    def request() -> None:
        found = request_slots("chat", BODY)
        found.extend(unread_slots(BODY, found))
        judge(found, engine.scan_slots, DEFAULTS, fp, "request", Placeholders())

    def answered() -> None:
        body = orjson.loads(answer)
        slots = response_slots("chat", body)
        judge(slots, engine.scan_slots, DEFAULTS, fp, "answer", Placeholders())

    return {
        "stream": streamed(nothing),
        "stream_detectors": streamed(engine.scan),
        "request": request,
        "answer": answered,
    }


if __name__ == "__main__":
    call = parts()[sys.argv[1]]
    for _ in range(int(sys.argv[2])):
        call()
