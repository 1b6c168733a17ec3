"""bench/limits raw JSON lines -> a markdown table: what limits cost per gateway core.

Usage: python3 bench/limits/summarize.py bench/limits/results/raw_<stamp>.jsonl

Per configuration and mode: median requests/s at 32 connections (and the range over rounds),
median gateway CPU milliseconds per request (the figure least disturbed by other tenants of a
shared machine), p50/p99 at 1 connection, and both ratios against Keyguard without limits,
checked against the budgets (in-process within 15%, Redis within 30%).
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any

ORDER = ["limits_none", "limits_memory", "limits_redis"]
BUDGET = {"limits_memory": 0.15, "limits_redis": 0.30}


def _values(rows: list[dict[str, Any]], mode: str, conns: str, field: str) -> list[float]:
    out = []
    for run in rows:
        value = run.get("results", {}).get(mode, {}).get(conns, {}).get(field)
        if isinstance(value, int | float):
            out.append(float(value))
    return out


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(path: str) -> None:
    runs: dict[str, list[dict[str, Any]]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                run = json.loads(line)
                runs.setdefault(run["label"], []).append(run)
    print(
        "| configuration | mode | rps @32 | rps range | CPU ms/req | p50 @1 | p99 @1 "
        "| rps vs none | CPU vs none | budget (throughput per core) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    base: dict[str, tuple[float | None, float | None]] = {}
    for label in ORDER:
        rows = runs.get(label, [])
        for mode in ("nonstream", "stream"):
            rps_all = _values(rows, mode, "c32", "rps")
            if not rps_all:
                continue
            rps = _median(rps_all)
            cpu = _median(_values(rows, mode, "c32", "gw_cpu_ms_per_req"))
            p50 = _median(_values(rows, mode, "c1", "p50_ms"))
            p99 = _median(_values(rows, mode, "c1", "p99_ms"))
            if label == "limits_none":
                base[mode] = (rps, cpu)
            base_rps, base_cpu = base.get(mode, (None, None))
            rps_ratio = rps / base_rps if rps and base_rps else None
            # Per-core throughput is the inverse of CPU per request.
            cpu_ratio = base_cpu / cpu if cpu and base_cpu else None
            verdict = ""
            budget = BUDGET.get(label)
            if budget is not None and cpu_ratio is not None:
                ok = cpu_ratio >= 1 - budget
                verdict = f"{'within' if ok else 'OVER'} {budget:.0%} (by CPU/request)"
            print(
                f"| {label} | {mode} | {_fmt(rps, ',.0f')} | "
                f"{min(rps_all):,.0f}-{max(rps_all):,.0f} | {_fmt(cpu, '.3f')} | "
                f"{_fmt(p50, '.2f')} | {_fmt(p99, '.2f')} | {_fmt(rps_ratio, '.0%')} | "
                f"{_fmt(cpu_ratio, '.0%')} | {verdict} |"
            )


if __name__ == "__main__":
    main(sys.argv[1])
