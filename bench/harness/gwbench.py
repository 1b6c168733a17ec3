#!/usr/bin/env python3
"""Measure one HTTP gateway in front of the fake Azure OpenAI upstream with wrk.

Prints ONE JSON line: throughput (fixed high connection count) and latency (1 connection)
for non-streaming and streaming chat completions, plus the gateway's CPU use during
each run, its RSS and RSS high-water mark (process tree) after each mode, and, with
--log-file, how many bytes of log the gateway wrote per request. Stdlib only; needs
`wrk` and `taskset` on PATH. bench/run calls it once per configuration per round.

Example (a gateway listening on 127.0.0.1:8000, Azure-style route, api-key auth):
  taskset -c 1 <start your gateway>        # gateway on CPU 1, wrk + upstream on CPU 0
  python3 bench/harness/gwbench.py --label mygw --base-url http://127.0.0.1:8000 \
      --route '/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21' \
      --stream-route '/openai/deployments/gpt-4o-stream/chat/completions?api-version=2024-10-21' \
      --header 'api-key: <gateway key>'
The gateway process is found from the listening port (or pass --pid). CPU and RSS
are summed over that process and all its descendants.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "post_chat.lua")
TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- process accounting
def _children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rfind(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def proc_tree(pid):
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pids):
    t = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            fields = st[st.rfind(")") + 2 :].split()
            t += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return t


def rss_kb(pids):
    rss = hwm = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
        except OSError:
            pass
    return rss, hwm


def pss_kb(pids):
    """Proportional set size of the process tree: a page shared by N of its processes counts
    1/N in each, so a supervisor and its forked workers are not counted twice."""
    pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                        break
        except OSError:
            pass
    return pss


def cpu_stat():
    """Per-CPU (busy, steal, total) jiffies from /proc/stat, to see who else used the cores."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *v = line.split()
                v = [int(x) for x in v]
                idle = v[3] + v[4]
                steal = v[7] if len(v) > 7 else 0
                total = sum(v[:8])
                out[int(name[3:])] = (total - idle - steal, steal, total)
    return out


def reset_hwm(pids):
    """Reset the peak-RSS counter (VmHWM) of each process (Linux: write 5 to clear_refs).

    Lets each mode report its own high-water mark. Returns False if not permitted."""
    ok = bool(pids)
    for p in pids:
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


def pid_from_port(port):
    try:
        out = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    pids = [int(x) for x in re.findall(r"pid=(\d+)", out)]
    if not pids:
        return None
    # several listeners (workers sharing a socket): take their common ancestor-most one
    pset = set(pids)
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            ppid = int(st[st.rfind(")") + 2 :].split()[1])
        except OSError:
            continue
        if ppid not in pset:
            return p
    return pids[0]


# ---------------------------------------------------------------- functional check
def sanity_check(url, headers, stream, model):
    body = {
        "model": model,
        "max_tokens": 256,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Summarise the Q3 report."},
        ],
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    h = {"Content-Type": "application/json"}
    h.update(headers)
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read().decode("utf-8", "replace")
            ctype = r.headers.get("content-type", "")
            status = r.status
    except urllib.error.HTTPError as e:
        return {"ok": False, "status": e.code, "body": e.read()[:300].decode("utf-8", "replace")}
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": repr(e)[:300]}
    res = {"status": status, "content_type": ctype, "bytes": len(data)}
    if stream:
        events = [ln for ln in data.splitlines() if ln.startswith("data:")]
        res["data_events"] = len(events)
        res["ok"] = status == 200 and len(events) >= 3 and "[DONE]" in data
        res["usage_seen"] = '"usage"' in data and '"total_tokens"' in data
    else:
        try:
            j = json.loads(data)
            res["ok"] = status == 200 and bool(j.get("choices"))
            res["usage_seen"] = bool(j.get("usage"))
        except ValueError:
            res["ok"] = False
            res["body"] = data[:300]
    return res


# ---------------------------------------------------------------- wrk
def run_wrk(base_url, path, headers, stream, model, conns, duration, threads, cpu, timeout):
    env = dict(
        os.environ,
        BENCH_PATH=path,
        BENCH_STREAM="1" if stream else "0",
        BENCH_MODEL=model,
        BENCH_HEADERS="||".join(f"{k}: {v}" for k, v in headers.items()),
    )
    cmd = [
        "taskset",
        "-c",
        str(cpu),
        "wrk",
        f"-t{min(threads, conns)}",
        f"-c{conns}",
        f"-d{duration}s",
        f"--timeout={timeout}s",
        "--latency",
        "-s",
        LUA,
        base_url,
    ]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    for line in p.stdout.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[8:])
    raise RuntimeError(f"wrk failed rc={p.returncode}: {p.stdout[-500:]} {p.stderr[-500:]}")


def file_size(path):
    try:
        return os.path.getsize(path) if path else None
    except OSError:
        return None


def wait_quiet(args):
    """Before a measured run: wait (at most --quiet-wait s) until the gateway core is idle.

    Between runs nothing of ours runs there, so anything busy on it is another tenant's
    work (shared VM). Returns the seconds waited."""
    t0 = time.monotonic()
    k = int(args.gw_cpu)
    while time.monotonic() - t0 < args.quiet_wait:
        a = cpu_stat()
        time.sleep(0.5)
        b = cpu_stat()
        busy, _, tot = (y - x for x, y in zip(a[k], b[k], strict=True))
        if 100 * busy / max(tot, 1) < args.quiet_pct:
            break
    return round(time.monotonic() - t0, 1)


def measure(args, path, headers, stream, model, conns, gw_pid):
    waited = wait_quiet(args) if args.quiet_wait > 0 else 0
    pids = proc_tree(gw_pid) if gw_pid else []
    s0 = file_size(args.log_file)
    st0 = cpu_stat()
    t0, c0 = time.monotonic(), cpu_ticks(pids)
    w = run_wrk(
        args.base_url,
        path,
        headers,
        stream,
        model,
        conns,
        args.duration,
        args.wrk_threads,
        args.wrk_cpu,
        args.timeout,
    )
    wall = time.monotonic() - t0
    pids = proc_tree(gw_pid) if gw_pid else []
    c1 = cpu_ticks(pids)
    s1 = file_size(args.log_file)
    st1 = cpu_stat()
    secs = w["duration_us"] / 1e6
    errors = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_status"] + w["err_timeout"]
    out = {
        "rps": round(w["requests"] / secs, 1),
        "p50_ms": w["lat_p50_us"] / 1000,
        "p90_ms": w["lat_p90_us"] / 1000,
        "p99_ms": w["lat_p99_us"] / 1000,
        "mean_ms": round(w["lat_mean_us"] / 1000, 3),
        "requests": w["requests"],
        "errors": errors,
        "err_status": w["err_status"],
        "quiet_wait_s": waited,
    }
    if gw_pid:
        cpu_s = (c1 - c0) / TCK
        out["gw_cpu_pct"] = round(100 * cpu_s / wall, 1)
        out["gw_cpu_ms_per_req"] = round(1000 * cpu_s / max(w["requests"], 1), 3)
    # whole-core figures: busy % of the gateway core (gateway + anything else scheduled
    # there) and of the load core (nginx + wrk + others), and VM steal
    for label, cpu in (("gw_core", args.gw_cpu), ("load_core", args.wrk_cpu)):
        try:
            k = int(str(cpu).split(",")[0].split("-")[0])
            busy, steal, tot = (b - a for a, b in zip(st0[k], st1[k], strict=True))
            out[f"{label}_busy_pct"] = round(100 * busy / max(tot, 1), 1)
            out[f"{label}_steal_pct"] = round(100 * steal / max(tot, 1), 1)
        except (KeyError, ValueError):
            pass
    if "gw_core_busy_pct" in out:
        # CPU on the gateway core not used by the gateway: other tenants = noise. (For
        # `direct` the measured process, nginx, is not on that core: all of it is foreign.)
        own = 0.0
        try:
            if gw_pid and os.sched_getaffinity(gw_pid) == {int(args.gw_cpu)}:
                own = out.get("gw_cpu_pct", 0.0)
        except (OSError, ValueError):
            pass
        out["gw_core_foreign_pct"] = round(max(out["gw_core_busy_pct"] - own, 0), 1)
    if s0 is not None and s1 is not None:
        # bytes the gateway logged during the run (flushed by now, or close to it)
        out["log_bytes_per_req"] = round((s1 - s0) / max(w["requests"], 1), 1)
    return out


def median_merge(runs):
    if len(runs) == 1:
        return runs[0]
    merged = {}
    for k in runs[0]:
        vals = [r[k] for r in runs if k in r]
        merged[k] = statistics.median(vals)
    merged["raw"] = runs
    return merged


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--label", required=True)
    ap.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8000 (loopback only)")
    ap.add_argument(
        "--route", default="/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    )
    ap.add_argument(
        "--stream-route", default=None, help="route for streaming runs (default: --route)"
    )
    ap.add_argument("--header", action="append", default=[], help="'Name: value' (repeatable)")
    ap.add_argument(
        "--stream-header",
        action="append",
        default=[],
        help="extra header only for streaming runs (repeatable)",
    )
    ap.add_argument("--model", default="gpt-4o", help="'model' field in the body")
    ap.add_argument("--stream-model", default=None)
    ap.add_argument("--modes", default="nonstream,stream")
    ap.add_argument("--conns", default="32,1", help="connection counts to run, e.g. 32,1")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of unrecorded load per mode")
    ap.add_argument("--repeats", type=int, default=1, help="report the median of N runs")
    ap.add_argument("--wrk-cpu", default="0", help="CPU list for wrk (taskset -c)")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument(
        "--gw-cpu", default="1", help="CPU the gateway is pinned to (for the busy/steal figures)"
    )
    ap.add_argument("--timeout", type=int, default=10, help="wrk per-request timeout, s")
    ap.add_argument("--pid", type=int, default=None, help="gateway pid (default: from the port)")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=0,
        help="wait up to N s before each measured run until the gateway core is idle",
    )
    ap.add_argument("--quiet-pct", type=float, default=15, help="'idle' = busy below this %%")
    ap.add_argument(
        "--log-file",
        default=None,
        help="gateway log file whose growth per request is reported (access log)",
    )
    ap.add_argument("--no-check", action="store_true")
    args = ap.parse_args()

    u = urllib.parse.urlsplit(args.base_url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1") and not (u.hostname or "").startswith(
        "127."
    ):
        sys.exit("refusing: benchmarks target loopback only")
    port = u.port or (443 if u.scheme == "https" else 80)
    gw_pid = args.pid or pid_from_port(port)

    def hdrs(lst):
        d = {}
        for h in lst:
            k, _, v = h.partition(":")
            d[k.strip()] = v.strip()
        return d

    base_headers = hdrs(args.header)
    hwm_start = rss_kb(proc_tree(gw_pid))[1] if gw_pid else 0
    result = {
        "label": args.label,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "base_url": args.base_url,
        "route": args.route,
        "duration_s": args.duration,
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "repeats": args.repeats,
        "gw_pid": gw_pid,
        "check": {},
        "results": {},
    }
    for mode in [m for m in args.modes.split(",") if m]:
        stream = mode == "stream"
        path = (args.stream_route or args.route) if stream else args.route
        model = (args.stream_model or args.model) if stream else args.model
        headers = dict(base_headers)
        if stream:
            headers.update(hdrs(args.stream_header))
        if not args.no_check:
            chk = sanity_check(args.base_url.rstrip("/") + path, headers, stream, model)
            result["check"][mode] = chk
            if not chk.get("ok"):
                result["results"][mode] = {"skipped": "sanity check failed"}
                continue
        conns = [int(c) for c in args.conns.split(",")]
        hwm_reset = reset_hwm(proc_tree(gw_pid)) if gw_pid else False
        if args.warmup > 0:
            run_wrk(
                args.base_url,
                path,
                headers,
                stream,
                model,
                max(conns),
                args.warmup,
                args.wrk_threads,
                args.wrk_cpu,
                args.timeout,
            )
        per = {}
        for c in conns:
            per[f"c{c}"] = median_merge(
                [
                    measure(args, path, headers, stream, model, c, gw_pid)
                    for _ in range(args.repeats)
                ]
            )
        if gw_pid:
            rss, hwm = rss_kb(proc_tree(gw_pid))
            per["rss_mb"], per["rss_hwm_mb"] = round(rss / 1024, 1), round(hwm / 1024, 1)
            per["hwm_is_per_mode"] = hwm_reset
            per["pss_mb"] = round(pss_kb(proc_tree(gw_pid)) / 1024, 1)
        result["results"][mode] = per
    if gw_pid:
        rss, hwm = rss_kb(proc_tree(gw_pid))
        result["gw_rss_mb"] = round(rss / 1024, 1)
        result["gw_rss_hwm_mb"] = round(hwm / 1024, 1)
        result["gw_nprocs"] = len(proc_tree(gw_pid))
        result["gw_rss_hwm_before_mb"] = round(hwm_start / 1024, 1)  # incl. start-up
    print(json.dumps(result, separators=(",", ":")))
    sys.stdout.flush()
    bad = any(not c.get("ok") for c in result["check"].values())
    sys.exit(2 if bad else 0)


if __name__ == "__main__":
    main()
