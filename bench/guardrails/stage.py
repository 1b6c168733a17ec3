"""What the guard stage costs per request, in process, with and without the detectors.

    .venv/bin/python bench/guardrails/stage.py

The benchmark's ~1 KB chat prompt (bench/harness/post_chat.lua), its 936-byte answer and its
24-event stream (bench/upstream/gen_nginx_conf.py): the detectors over the prompt and the
answer, then the stage's own work with an engine that finds nothing (extraction, every other
string, decisions; the answer parsed and judged; the stream guard following each event). Each
figure is the mean of ``--calls`` calls.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import runpy
import sys
import time
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from chat_body import chat_request  # noqa: E402

BODY: dict[str, Any] = chat_request(stream=False)  # every field, as the benchmark sends it


def upstream_bodies() -> tuple[bytes, bytes]:
    """The benchmark upstream's answer and stream, as its generator makes them."""
    script = Path(__file__).resolve().parents[1] / "upstream" / "gen_nginx_conf.py"
    argv, sys.argv = sys.argv, [str(script)]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            made = runpy.run_path(str(script))
    finally:
        sys.argv = argv
    return str(made["body_json"]).encode(), str(made["sse"]).encode()


def mean_us(call: Callable[[], object], calls: int) -> float:
    call()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


def _fp(value: str) -> str:
    return ""


def nothing(_: Any) -> list[Any]:
    return []


def request_stage(scan_slots: Callable[[Any], list[Any]]) -> None:
    """The request stage over the benchmark's prompt (``nothing``: without the detectors)."""
    found = request_slots("chat", BODY)
    found.extend(unread_slots(BODY, found))
    judge(found, scan_slots, DEFAULTS, _fp, "request", Placeholders())


def answer_stage(answer: bytes, scan_slots: Callable[[Any], list[Any]]) -> None:
    """The non-streamed answer parsed and judged."""
    body = orjson.loads(answer)
    judge(response_slots("chat", body), scan_slots, DEFAULTS, _fp, "answer", Placeholders())


def stream_stage(stream: bytes, scan: Callable[[str], list[Any]]) -> None:
    """The stream guard over the benchmark's stream, fed in one read."""
    guard = StreamGuard(
        scan, DEFAULTS, _fp, placeholders=Placeholders(), restore=None, window=128, context=128
    )
    guard.feed(stream)
    guard.flush(b"")


def main(calls: int) -> None:
    engine = GuardEngine()
    answer, stream = upstream_bodies()
    slots = request_slots("chat", BODY)
    answer_slots = response_slots("chat", orjson.loads(answer))

    rows = [
        ("the detectors over the prompt (~1 KB)", lambda: engine.scan_slots(slots)),
        ("the detectors over the answer", lambda: engine.scan_slots(answer_slots)),
        ("the request stage without the detectors", lambda: request_stage(nothing)),
        ("the non-streamed answer without the detectors", lambda: answer_stage(answer, nothing)),
        ("the stream guard without the detectors", lambda: stream_stage(stream, nothing)),
        ("the stream guard with the detectors", lambda: stream_stage(stream, engine.scan)),
    ]
    print(f"| part ({calls} calls each) | us per request |\n| --- | ---: |")
    for label, call in rows:
        print(f"| {label} | {mean_us(call, calls):.1f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    main(ap.parse_args().calls)
