"""Evaluate the detectors on weeks of benign traffic with every attack scenario mixed in.

    .venv/bin/python bench/detect/evaluate.py [--weeks 4] [--seed 7] [--scale 1.0]
                                              [--write traffic.jsonl] [--check]
                                              [--without-declarations]

Builds the traffic (:mod:`traffic`, :mod:`attacks`), replays it through the detectors with the
recorded clock (``keyguard.detect.replay``, the code behind ``keyguard replay``) and prints,
per rule: detection rate, time to detect (requests and seconds after each scenario's first
malicious request) and false alerts per 10,000 benign requests; then one line per scenario.
``--write`` saves the labelled traffic, which ``keyguard replay FILE`` replays and scores the
same way. ``--check`` exits 1 when a target of docs/monitoring.md is missed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))

from attacks import scenarios  # noqa: E402
from declared import LIMITS, benign_new_keys  # noqa: E402
from declared import scenarios as declared_scenarios  # noqa: E402
from evasions import benign_lookalikes  # noqa: E402
from evasions import scenarios as evasion_scenarios  # noqa: E402
from traffic import T0, WEEK, benign  # noqa: E402

from keyguard.detect.settings import DetectSettings  # noqa: E402
from keyguard.monitor.declarations import declarations_from  # noqa: E402
from keyguard.monitor.replay import format_report, replay
from keyguard.monitor.replay import score as score_replay

DECOYS = ("DECOYCIKEY01", "DECOYWIKI001")
FIRST_REQUEST_RULES = ("key_probe", "decoy", "raw_azure_key")


def build(weeks: float, seed: int, scale: float) -> list[tuple[object, str]]:
    items: list[tuple[object, str]] = [(o, "benign") for o in benign(weeks, seed, scale)]
    items.extend((o, "benign") for o in benign_new_keys(seed) if o.at < T0 + weeks * WEEK)
    items.extend((o, "benign") for o in benign_lookalikes(seed) if o.at < T0 + weeks * WEEK)
    for scenario in [*scenarios(), *declared_scenarios(), *evasion_scenarios()]:
        items.extend(scenario.requests(seed))
    items.sort(key=lambda pair: pair[0].at)  # type: ignore[attr-defined]
    return items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0, help="benign volume multiplier")
    parser.add_argument("--write", type=Path, help="save the labelled traffic (JSON lines)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--without-declarations",
        action="store_true",
        help="judge new keys without their limit rules (peers and defaults only)",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    items = build(args.weeks, args.seed, args.scale)
    built = time.perf_counter()
    if args.write:
        with args.write.open("wb") as fh:
            for obs, label in items:
                fh.write(orjson.dumps({**obs.to_record(), "label": label}) + b"\n")  # type: ignore[attr-defined]
    settings = DetectSettings(decoy_key_ids=DECOYS)
    result = replay(
        items,  # type: ignore[arg-type]
        settings,
        keep_labels=True,
        declarations=None if args.without_declarations else declarations_from(LIMITS),
    )
    replayed = time.perf_counter()
    ev = score_replay(result)
    print(
        f"# Detection scenario report (seed {args.seed}, {args.weeks:g} weeks, "
        f"scale {args.scale:g})\n"
    )
    print(format_report(ev))
    print(
        f"\nbuilt {len(items)} requests in {built - started:.1f} s, replayed in "
        f"{replayed - built:.1f} s ({1e6 * (replayed - built) / len(items):.0f} us per request)\n"
    )
    print(
        "| scenario | rule | malicious requests | detected after (requests / s) "
        "| served before the response | rules fired |"
    )
    print("|---|---|---|---|---|---|")
    for name, s in ev.scenarios.items():
        when = f"{s['requests']} / {s['seconds']}" if "seconds" in s else "missed"
        fired = ", ".join(s["fired"]) or "-"
        # request-decidable rules refuse the triggering request itself; a window rule's
        # response (block, suspension) applies from the request after the one that fired it
        served = 0 if s["rule"] in FIRST_REQUEST_RULES else s.get("requests", "-")
        print(f"| {name} | {s['rule']} | {s['malicious_requests']} | {when} | {served} | {fired} |")
    fresh = {"CALMNEWKEY01", "BUSYNEWKEY01", "BATCHNEWKEY1"}  # below their declaration
    fresh_requests = sum(1 for o, _ in items if getattr(o, "key_id", None) in fresh)
    fresh_alerts = sum(1 for a in result.alerts if a.incident.key_id in fresh)
    print(
        f"\nbenign new keys working at 10-30 %, ~60 % and up to ~55 % of their declared tpm: "
        f"{fresh_requests} requests, {fresh_alerts} alerts"
    )
    benign_alerts = [a for a in result.alerts if a.label in (None, "benign")]
    if benign_alerts:
        print("\nfalse alerts:")
        for a in benign_alerts:
            i = a.incident
            print(f"- {i.rule} ({i.severity}) {i.subject}: {i.summary}")
    if not args.check:
        return 0
    failures = []
    for rule, score in ev.rules.items():
        if score.scenarios and score.detected < score.scenarios:
            failures.append(f"{rule}: {score.scenarios - score.detected} scenario(s) missed")
        if rule in FIRST_REQUEST_RULES and any(n > 1 for n in score.requests_to_detect):
            failures.append(f"{rule}: not on the first request")
        if rule == "velocity" and any(s > 60 for s in score.seconds_to_detect):
            failures.append("velocity: slower than 60 s")
    for name, found in ev.scenarios.items():
        # the "first minute"
        quick = name in ("stuffing-garbage", "velocity-new-key", "declared-ceiling")
        if quick and found.get("seconds", 1e9) > 60:
            failures.append(f"{name}: not within its first minute")
    if ev.false_per_10k >= 1.0:
        failures.append(f"{ev.false_per_10k:.2f} false alerts per 10,000 benign requests")
    for failure in failures:
        print(f"TARGET MISSED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
