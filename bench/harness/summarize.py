#!/usr/bin/env python3
"""Summarise gwbench.py JSON lines (one per configuration per round) into markdown.

  python3 bench/harness/summarize.py bench/results/raw_<stamp>.jsonl [--direct direct]
      [--floor aiohttp_floor] [--product keyguard]

Per configuration and mode, medians over rounds of: requests/s and latency at the high
connection count, p50/p99 latency at 1 connection, gateway CPU (% of one core and CPU-ms
per request at the high connection count), RSS after the mode and the RSS high-water mark
(max over rounds; the process tree's VmHWM, so it covers everything the process did so far),
log bytes per request (when the harness was given the log file) and errors (summed).
Overhead = config c1 p50/p99 minus direct-to-upstream c1 p50/p99 (same round's medians).
Lines {"label": ..., "skipped": "..."} (written by bench/run) are listed as skipped.
A budget verdict for the product (default: keyguard) closes the output.
"""

import argparse
import json
import statistics
from collections import defaultdict

MODES = (
    ("nonstream", "Non-streaming (`stream: false`, 936-byte JSON answer)"),
    ("stream", "Streaming (`stream: true`, 24 SSE events, 6,080 bytes)"),
)

# Budget from the performance issue.
BUDGET_RPS_RATIO = 0.5  # >= half the bare aiohttp pass-through's req/s (same core)
BUDGET_OVERHEAD_MS = 0.5  # <= +0.5 ms median at 1 connection over direct
BUDGET_RSS_MB = 150.0  # < 150 MB RSS (high-water mark, streaming included)
BUDGET_MONITORING = 0.2  # audit + metrics + detection: per-core throughput within 20% of the core
BUDGET_GUARDRAILS = 0.15  # the default guardrails: per-core throughput within 15% without them


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, p=2):
    return "-" if v is None else f"{v:,.{p}f}"


def conn_keys(res):
    ks = [k for k in res if k.startswith("c") and k[1:].isdigit()]
    return (
        (max(ks, key=lambda k: int(k[1:])), min(ks, key=lambda k: int(k[1:])))
        if ks
        else (None, None)
    )


def aggregate(runs, mode):
    res = [r.get("results", {}).get(mode) for r in runs]
    res = [x for x in res if x and "skipped" not in x]
    if not res:
        return None
    hi, lo = conn_keys(res[0])
    if hi is None:
        return None

    def g(c, m):
        return med([x.get(c, {}).get(m) for x in res])

    rps_all = [x.get(hi, {}).get("rps") for x in res if x.get(hi, {}).get("rps") is not None]
    hwm = [x.get("rss_hwm_mb") for x in res if x.get("rss_hwm_mb") is not None]
    return {
        "n": len(res),
        "hi": hi,
        "lo": lo,
        "rps": g(hi, "rps"),
        "rps_min": min(rps_all) if rps_all else None,
        "rps_max": max(rps_all) if rps_all else None,
        "hi_p50": g(hi, "p50_ms"),
        "hi_p99": g(hi, "p99_ms"),
        "p50": g(lo, "p50_ms"),
        "p99": g(lo, "p99_ms"),
        "rps1": g(lo, "rps"),
        "cpu": g(hi, "gw_cpu_pct"),
        "cpu_ms": g(hi, "gw_cpu_ms_per_req"),
        "cpu_ms1": g(lo, "gw_cpu_ms_per_req"),
        "log_b": g(hi, "log_bytes_per_req"),
        "foreign": med([x.get(c, {}).get("gw_core_foreign_pct") for x in res for c in (hi, lo)]),
        "steal": med([x.get(c, {}).get("gw_core_steal_pct") for x in res for c in (hi, lo)]),
        "err": sum(x.get(hi, {}).get("errors", 0) + x.get(lo, {}).get("errors", 0) for x in res),
        "rss": med([x.get("rss_mb") for x in res]) or med([r.get("gw_rss_mb") for r in runs]),
        "hwm": max(hwm) if hwm else None,
        "pss": med([x.get("pss_mb") for x in res if x.get("pss_mb") is not None]),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--direct", default="direct")
    ap.add_argument("--floor", default="aiohttp_floor")
    ap.add_argument(
        "--product",
        default=(
            "keyguard_core,keyguard_noguard,keyguard,keyguard_granian,keyguard_pyreqwest,"
            "keyguard_granian_pyreqwest"
        ),
        help="comma-separated labels that get a budget verdict",
    )
    ap.add_argument(
        "--monitoring",
        default="keyguard_core:keyguard_noguard",
        help="CORE:FULL labels: the cost of monitoring (FULL within 20%% of CORE per core)",
    )
    ap.add_argument(
        "--versus",
        default=(
            "keyguard_core:keyguard_core_base,keyguard:keyguard_base,keyguard_granian:keyguard,"
            "keyguard_pyreqwest:keyguard,keyguard_granian_pyreqwest:keyguard,"
            "keyguard_pyreqwest:keyguard_base,keyguard_granian_pyreqwest:keyguard_base"
        ),
        help="comma-separated NEW:BASE labels: a change against a base build (BASE_KEYGUARD)",
    )
    ap.add_argument(
        "--guardrails",
        default="keyguard_noguard:keyguard",
        help="OFF:ON labels: the cost of the default guardrails (ON within 15%% of OFF)",
    )
    ap.add_argument(
        "--candidates",
        default=(
            "aiohttp_floor,granian_aiohttp_floor,granian_pyreqwest_floor,"
            "granian_asgi_pyreqwest_floor,aiohttp_pyreqwest_floor"
        ),
        help="comma-separated labels: the HTTP core candidates' pass-throughs, side by side",
    )
    ap.add_argument("--order", default="", help="space-separated labels: row order (others after)")
    args = ap.parse_args()
    rows = [json.loads(ln) for ln in open(args.raw) if ln.strip().startswith("{")]
    order, by, skipped = [], defaultdict(list), {}
    meta = next((r for r in rows if r.get("label") == "_meta"), None)
    rows = [r for r in rows if r.get("label") != "_meta"]
    for r in rows:
        if r["label"] not in order:
            order.append(r["label"])
        if "skipped" in r:
            skipped.setdefault(r["label"], r["skipped"])
        else:
            by[r["label"]].append(r)
    pref = args.order.split()
    order.sort(key=lambda lb: pref.index(lb) if lb in pref else len(pref))
    agg = {(label, mode): aggregate(by[label], mode) for label in order for mode, _ in MODES}
    measured = [r for r in rows if "skipped" not in r]
    rounds = max((len(v) for v in by.values()), default=0)
    dur = sorted({r.get("duration_s") for r in measured})
    t0 = min((r["time"] for r in measured), default="-")

    print(
        f"# Keyguard gateway benchmark ({t0}, {rounds} round(s), {', '.join(map(str, dur))} s per "
        f"measured run, medians over rounds)\n"
    )
    print(
        "Gateway pinned to CPU 1; nginx fake Azure upstream and wrk (1 thread) share CPU 0. "
        "`rps` and `p50/p99 @32` at 32 connections; `p50/p99 @1` at 1 connection (ms). "
        "`overhead` = config c1 latency minus direct c1 latency. `vs floor` = rps / "
        f"`{args.floor}` rps. CPU = gateway process tree at 32 connections (% of one core, "
        "CPU-ms per request). RSS = after the mode; HWM = process-tree RSS high-water mark "
        "(max over rounds). `log B/req` = bytes the gateway logged per request. "
        "`errors` = wrk socket errors + non-2xx, all runs. `noise %` = CPU time on the gateway "
        "core used by other processes during the measured runs (median; shared VM), plus "
        "VM steal when there was any.\n"
    )
    if meta:
        m, c, t = meta.get("machine", {}), meta.get("code", {}), meta.get("tools", {})
        kg = meta.get("keyguard_venv") or {}
        k = meta.get("knobs", {})
        dirty = c.get("src_uncommitted_files")
        print(
            f"Machine: {m.get('cpu')}, {m.get('nproc')} vCPU, {m.get('mem_gib')} GiB, "
            f"{m.get('os')}, kernel {m.get('kernel')}. Code: commit {c.get('commit')}"
            + (f" + {dirty} uncommitted file(s) under src/" if dirty else "")
            + f"; keyguard {kg.get('keyguard')} (aiohttp {kg.get('aiohttp')}, uvloop "
            f"{kg.get('uvloop')}). nginx {t.get('nginx')}, wrk {t.get('wrk')}, Python "
            f"{t.get('python')}. Knobs: "
            + ", ".join(f"{a}={b}" for a, b in k.items() if a != "ONLY")
            + ".\n"
        )
    for mode, title in MODES:
        d = agg.get((args.direct, mode))
        f = agg.get((args.floor, mode))
        print(f"## {title}\n")
        print(
            "| config | rps @32 | rps range | p50 @32 | p99 @32 | p50 @1 | p99 @1 | overhead p50 "
            "| overhead p99 | vs floor | CPU % | CPU ms/req | RSS MB | HWM MB | log B/req "
            "| errors | noise % | rounds |"
        )
        print(
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )
        for label in order:
            a = agg.get((label, mode))
            if not a:
                why = skipped.get(label, "failed (functional check or no data)")
                print(f"| {label} | skipped: {why} |" + " |" * 16)
                continue
            ov50 = a["p50"] - d["p50"] if d and a["p50"] is not None else None
            ov99 = a["p99"] - d["p99"] if d and a["p99"] is not None else None
            ratio = a["rps"] / f["rps"] if f and f["rps"] else None
            noise = fmt(a["foreign"], 0) + (
                f" (+{a['steal']:.0f} steal)" if (a["steal"] or 0) >= 0.5 else ""
            )
            rng = f"{a['rps_min']:,.0f}-{a['rps_max']:,.0f}" if a["n"] > 1 else "-"
            print(
                f"| {label} | {a['rps']:,.0f} | {rng} | {fmt(a['hi_p50'])} | {fmt(a['hi_p99'])} | "
                f"{fmt(a['p50'], 3)} | {fmt(a['p99'], 3)} | {fmt(ov50, 3)} | {fmt(ov99, 3)} | "
                f"{fmt(ratio)} | {fmt(a['cpu'], 0)} | {fmt(a['cpu_ms'], 3)} | {fmt(a['rss'], 0)} | "
                f"{fmt(a['hwm'], 0)} | {fmt(a['log_b'], 0)} | {a['err']} | {noise} | {a['n']} |"
            )
        print()

    candidates(args, agg, args.candidates.split(","))
    # ------------------------------------------------------------------ budget
    for product in args.product.split(","):
        if product in order:
            budget(args, agg, by, skipped, product)
    core, _, full = args.monitoring.partition(":")
    monitoring_cost(agg, core, full)
    for pair in args.versus.split(","):
        new, _, base = pair.partition(":")
        versus(agg, new, base)
    off, _, on = args.guardrails.partition(":")
    monitoring_cost(agg, off, on, "Guardrails cost", BUDGET_GUARDRAILS)


def candidates(args, agg, labels):
    """The HTTP core candidates side by side: the figures the choice of stack rests on."""
    labels = [lb for lb in labels if any(agg.get((lb, m)) for m, _ in MODES)]
    if len(labels) < 2:
        return
    base = labels[0]
    print("## HTTP core candidates\n")
    print(
        "Pass-throughs only (no Keyguard code). `req/s per core` = 1000 / CPU ms per request at "
        f"32 connections; `vs {base}` compares that; `added p50 @1` = p50 at 1 connection minus "
        "`direct`'s; `p99 @32` under load; memory: the process tree's RSS high-water mark and "
        "its PSS after the mode (a supervisor's and its worker's shared pages counted once).\n"
    )
    print(
        f"| candidate | mode | req/s per core | vs {base} | CPU ms/req | rps @32 | added p50 @1 "
        "| p99 @32 | HWM MB | PSS MB | errors |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode, _ in MODES:
        d, b = agg.get((args.direct, mode)), agg.get((base, mode))
        for label in labels:
            a = agg.get((label, mode))
            if not a:
                print(f"| {label} | {mode} | no data |" + " |" * 8)
                continue
            per_core = 1000 / a["cpu_ms"] if a["cpu_ms"] else None
            ratio = b["cpu_ms"] / a["cpu_ms"] if b and b["cpu_ms"] and a["cpu_ms"] else None
            added = a["p50"] - d["p50"] if d and a["p50"] is not None else None
            print(
                f"| {label} | {mode} | {fmt(per_core, 0)} | {fmt(ratio)} | "
                f"{fmt(a['cpu_ms'], 3)} | {a['rps']:,.0f} | {fmt(added, 3)} | "
                f"{fmt(a['hi_p99'])} | {fmt(a['hwm'], 0)} | {fmt(a['pss'], 0)} | {a['err']} |"
            )
    print()


def budget(args, agg, by, skipped, product):
    """The performance issue's budget, checked for one configuration."""
    if not any(agg.get((product, m)) for m, _ in MODES):
        if product in skipped:
            print(f"## Budget\n\n`{product}` skipped: {skipped[product]}\n")
        return
    print(f"## Budget check ({product})\n")
    print("| check | mode | budget | measured | verdict |")
    print("|---|---|---|---:|---|")
    for mode, _ in MODES:
        a, d, f = (
            agg.get((product, mode)),
            agg.get((args.direct, mode)),
            agg.get((args.floor, mode)),
        )
        if not a:
            print(f"| all | {mode} | - | no data | FAIL |")
            continue
        if f and f["rps"]:
            need = BUDGET_RPS_RATIO * f["rps"]
            ok = a["rps"] >= need
            print(
                f"| throughput @32 | {mode} | >= {BUDGET_RPS_RATIO:.0%} of {args.floor} "
                f"({need:,.0f} req/s) | {a['rps']:,.0f} req/s ({a['rps'] / f['rps']:.2f}x) | "
                f"{'PASS' if ok else 'FAIL'} |"
            )
        else:
            print(
                f"| throughput @32 | {mode} | >= {BUDGET_RPS_RATIO:.0%} of {args.floor} | "
                f"{a['rps']:,.0f} req/s (no floor in this run) | n/a |"
            )
        if f and f["cpu_ms"] and a["cpu_ms"]:
            # the same comparison from CPU time per request: what one dedicated core would
            # sustain (1000 / CPU-ms), less sensitive than rps to how much of the core the
            # gateway got on a shared machine
            r = f["cpu_ms"] / a["cpu_ms"]
            print(
                f"| throughput per core, from CPU ms/req | {mode} | >= {BUDGET_RPS_RATIO:.0%} of "
                f"{args.floor} ({1000 * BUDGET_RPS_RATIO / f['cpu_ms']:,.0f} req/s per core) | "
                f"{a['cpu_ms']:.3f} ms/req = {1000 / a['cpu_ms']:,.0f} req/s per core ({r:.2f}x) | "
                f"{'PASS' if r >= BUDGET_RPS_RATIO else 'FAIL'} |"
            )
        if d:
            ov = a["p50"] - d["p50"]
            print(
                f"| added p50 @1 | {mode} | <= +{BUDGET_OVERHEAD_MS} ms | +{ov:.3f} ms | "
                f"{'PASS' if ov <= BUDGET_OVERHEAD_MS else 'FAIL'} |"
            )
        else:
            print(
                f"| added p50 @1 | {mode} | <= +{BUDGET_OVERHEAD_MS} ms | p50 {a['p50']:.3f} ms "
                f"(no direct in this run) | n/a |"
            )
        hw = a["hwm"]
        print(
            f"| RSS high-water (during the mode) | {mode} | < {BUDGET_RSS_MB:.0f} MB | "
            f"{fmt(hw, 1)} MB | "
            f"{'PASS' if hw is not None and hw < BUDGET_RSS_MB else 'FAIL'} |"
        )
        if a.get("pss") is not None:  # shared pages counted once: a supervisor and its workers
            print(
                f"| memory, PSS of the process tree (after the mode) | {mode} | "
                f"< {BUDGET_RSS_MB:.0f} MB | {a['pss']:.1f} MB | "
                f"{'PASS' if a['pss'] < BUDGET_RSS_MB else 'FAIL'} |"
            )
        print(f"| errors | {mode} | 0 | {a['err']} | {'PASS' if a['err'] == 0 else 'FAIL'} |")
    first = by[product][0] if by.get(product) else {}
    if first.get("gw_rss_hwm_before_mb"):
        hw = first["gw_rss_hwm_before_mb"]
        print(
            f"| RSS high-water (start-up + idle, before round 1) | - | < {BUDGET_RSS_MB:.0f} MB | "
            f"{hw:.1f} MB | {'PASS' if hw < BUDGET_RSS_MB else 'FAIL'} |"
        )
    print()


def monitoring_cost(agg, core, full, title="Monitoring cost", allowed=BUDGET_MONITORING):
    """Audit, metrics and detection on (FULL) against the gateway core (CORE): per-core
    throughput must stay within ``allowed`` of the core's (also used for the guardrails:
    the product against itself with them off)."""
    rows = [(m, agg.get((core, m)), agg.get((full, m))) for m, _ in MODES]
    rows = [(m, c, f) for m, c, f in rows if c and f and c["cpu_ms"] and f["cpu_ms"]]
    if not rows:
        return
    print(f"## {title} ({full} against {core})\n")
    print("| check | mode | budget | measured | verdict |")
    print("|---|---|---|---:|---|")
    for mode, c, f in rows:
        r = c["cpu_ms"] / f["cpu_ms"]
        print(
            f"| throughput per core, from CPU ms/req | {mode} | >= {1 - allowed:.0%} "
            f"of {core} | {f['cpu_ms']:.3f} vs {c['cpu_ms']:.3f} ms/req ({r:.2f}x) | "
            f"{'PASS' if r >= 1 - allowed else 'FAIL'} |"
        )
        if c["rps"]:
            q = f["rps"] / c["rps"]
            print(
                f"| throughput @32 | {mode} | >= {1 - allowed:.0%} of {core} | "
                f"{f['rps']:,.0f} vs {c['rps']:,.0f} req/s ({q:.2f}x) | "
                f"{'PASS' if q >= 1 - allowed else 'FAIL'} |"
            )
    print()


def versus(agg, new, base):
    """A change (NEW) against a base build of Keyguard (BASE) measured in the same rounds:
    the ratio of per-core throughput (from CPU ms per request) and of requests/s at 32."""
    rows = [(m, agg.get((new, m)), agg.get((base, m))) for m, _ in MODES]
    rows = [(m, n, b) for m, n, b in rows if n and b and n["cpu_ms"] and b["cpu_ms"]]
    if not rows:
        return
    what = "the same build on aiohttp" if new.endswith("_granian") else "the base build"
    print(f"## {new} against {base} ({what}, same rounds)\n")
    print("| mode | CPU ms/req | per core | rps @32 | p50 @1 |")
    print("|---|---:|---:|---:|---:|")
    for mode, n, b in rows:
        rps = "-"
        if b["rps"]:
            rps = f"{n['rps']:,.0f} vs {b['rps']:,.0f} ({n['rps'] / b['rps']:.2f}x)"
        per_core = b["cpu_ms"] / n["cpu_ms"]
        print(
            f"| {mode} | {n['cpu_ms']:.3f} vs {b['cpu_ms']:.3f} | {per_core:.2f}x | "
            f"{rps} | {fmt(n['p50'], 3)} vs {fmt(b['p50'], 3)} |"
        )
    print()


if __name__ == "__main__":
    main()
