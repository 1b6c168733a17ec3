"""One part of the guard stage called N times (the body of ``bench/instructions/stage``, which
runs this under callgrind twice and divides the difference by the difference of N).

    python stage_calls.py PART N       # PART: stream, stream_detectors, request, answer
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from keyguard.guard.engine import GuardEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "guardrails"))
from stage import answer_stage, nothing, request_stage, stream_stage, upstream_bodies  # noqa: E402


def parts() -> dict[str, Callable[[], None]]:
    engine = GuardEngine()
    answer, stream = upstream_bodies()
    return {
        "stream": lambda: stream_stage(stream, nothing),
        "stream_detectors": lambda: stream_stage(stream, engine.scan),
        "request": lambda: request_stage(engine.scan_slots),
        "answer": lambda: answer_stage(answer, engine.scan_slots),
    }


if __name__ == "__main__":
    call = parts()[sys.argv[1]]
    for _ in range(int(sys.argv[2])):
        call()
