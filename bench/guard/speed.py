"""What the local guardrails cost: microseconds per KB of prompt text, clean and dirty, and
the bounded cost of hostile inputs.

    .venv/bin/python bench/guard/speed.py [--repeat N]

Runs ``GuardEngine`` (default settings, plus one blocklist and one pattern for the "custom"
rows) in this process, one core, no HTTP: the added CPU per request of the guardrails stage
before any I/O. Each row is the median of ``--repeat`` timed runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from generators import make  # noqa: E402

from keyguard.guard.engine import GuardEngine  # noqa: E402
from keyguard.guard.extract import request_slots  # noqa: E402
from keyguard.guard.settings import GuardSettings  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from chat_body import MESSAGES, USER  # noqa: E402

BENCH_BODY = {
    "model": "gpt-4o",
    "messages": MESSAGES,
    "max_tokens": 256,
}
CODE = """def sync(client, since):
    rows = client.query("SELECT id, total, updated_at FROM orders WHERE updated_at > %s", since)
    for row in rows:
        log.info("order %s total=%.2f at %s", row.id, row.total, row.updated_at.isoformat())
        yield {"id": row.id, "sha": hashlib.sha256(str(row.id).encode()).hexdigest()}
# 2026-11-30T09:12:44.118Z worker-3 req=3f2a8c71-b9d0-4e6a-8c7d-1e2f3a4b5c6d v=2.14.1
"""


def _dirty(rng: random.Random) -> str:
    parts = [USER[:300]]
    for gen in ("OPENAI", "AZURE", "EMAIL", "PHONE", "CARD", "IBAN", "GITHUB", "IP"):
        parts.append(f" {make(gen, rng)[1][0]} ")
        parts.append(USER[:60])
    return "".join(parts)


def _dense(rng: random.Random) -> list[tuple[str, str]]:
    """One line of ~1 MB packed with candidates that each need their context judged."""

    def line(make: Callable[[], str]) -> str:
        parts: list[str] = []
        size = 0
        while size < 1_000_000:
            parts.append(make())
            size += len(parts[-1])
        return "".join(parts)

    def b64(n: int) -> str:
        return base64.b64encode(rng.randbytes(n)).decode()

    return [
        ("1 MB line of 32-hex values", line(lambda: f"{rng.getrandbits(128):032x} ")),
        ("1 MB line of password=value", line(lambda: f"password={rng.getrandbits(64):x} ")),
        ("1 MB line of SAS URLs", line(lambda: f"?sv=2022-11-02&se=2030-01-01&sig={b64(32)} ")),
        ("1 MB line of SharedAccessKey=", line(lambda: f"SharedAccessKey={b64(32)}; ")),
        ("1 MB line of 44-character base64", line(lambda: f"{b64(32)} ")),
        ("1 MB line of e-mail addresses", line(lambda: f"u{rng.randrange(10**6)}@ex.com ")),
        ("1 MB line of split literals", line(lambda: f'"{b64(9)}" + "{b64(9)}"' + " " * 250)),
    ]


def _time(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(7)
    engine = GuardEngine()
    custom = GuardEngine(GuardSettings.model_validate({
        "blocklists": [{"name": "codenames", "terms": [f"codename{i}" for i in range(1000)]}],
        "patterns": [{"name": "employee-id", "pattern": r"EMP-[0-9]{6}"}],
    }))  # fmt: skip
    prose = (USER + " ") * 1
    dirty = _dirty(rng)
    body_slots = request_slots("chat", BENCH_BODY)
    bench_chars = sum(len(s.text) for s in body_slots)
    tiny = request_slots("chat", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "ok "} for _ in range(10_000)]}]})  # fmt: skip
    rows: list[tuple[str, int, float]] = [
        ("benchmark 1 KB chat body (scan_slots)", bench_chars,
         _time(lambda: engine.scan_slots(body_slots), args.repeat)),
        ("clean prose", len(prose), _time(lambda: engine.scan(prose), args.repeat)),
        ("clean prose, custom rules on", len(prose),
         _time(lambda: custom.scan(prose), args.repeat)),
        ("code and log lines", len(CODE), _time(lambda: engine.scan(CODE), args.repeat)),
        ("dirty: 8 secrets and personal values", len(dirty),
         _time(lambda: engine.scan(dirty), args.repeat)),
    ]  # fmt: skip
    big = (USER + "\n" + CODE) * (1_000_000 // (len(USER) + len(CODE)))
    hostile = [
        ("1 MB prose and code", big),
        ("1 MB of digits", "4" * 1_000_000),
        ("1 MB of digit groups", "1234 " * 200_000),
        ("1 MB of '@'", "@" * 1_000_000),
        ("1 MB of base64", "QUJD" * 250_000),
        ("1 MB of quotes and plus", '"a" + ' * 166_666),
        *_dense(rng),
    ]
    for name, text in hostile:
        rows.append((name, len(text), _time(lambda t=text: engine.scan(t), 3)))  # type: ignore[misc]
    rows.append(("10,000 tiny parts (scan_slots)", sum(len(s.text) for s in tiny),
                 _time(lambda: engine.scan_slots(tiny), 5)))  # fmt: skip
    print("| input | chars | ms | µs per KB |")
    print("|---|---:|---:|---:|")
    for name, chars, seconds in rows:
        per_kb = seconds * 1e6 / (chars / 1024)
        print(f"| {name} | {chars:,} | {seconds * 1e3:.3f} | {per_kb:,.0f} |")
    print("\n" + json.dumps({"python": sys.version.split()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
