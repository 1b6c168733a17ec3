#!/usr/bin/env python3
"""Print one JSON line describing the run: machine, versions, knobs, the code measured.

  python3 bench/harness/meta.py KEY=VALUE...      (bench/run passes its knobs)

Paths are never printed (results are committed); tools that are missing print null.
"""

import json
import os
import platform
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("BENCH_CACHE") or os.path.join(ROOT, "bench", ".cache")


def out(*cmd, cwd=None):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return (p.stdout + p.stderr).strip() or None


def first(pattern, text):
    m = re.search(pattern, text or "")
    return m.group(1) if m else None


def pkg_versions(python, names):
    code = (
        "import importlib.metadata as m, json\n"
        "v = {}\n"
        f"for n in {names!r}:\n"
        "    try: v[n] = m.version(n)\n"
        "    except Exception: v[n] = None\n"
        "print(json.dumps(v))"
    )
    res = out(python, "-c", code) if os.path.exists(python) else None
    try:
        return json.loads(res) if res else None
    except ValueError:
        return None


def main():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = first(r"model name\s*:\s*(.*)", f.read())
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(first(r"MemTotal:\s*(\d+)", f.read())) / 1024 / 1024, 1)
    except (OSError, TypeError):
        pass
    os_name = None
    try:
        with open("/etc/os-release") as f:
            os_name = first(r'PRETTY_NAME="?([^"\n]*)', f.read())
    except OSError:
        pass
    venv_py = os.environ.get("KEYGUARD_PYTHON") or os.path.join(ROOT, ".venv", "bin", "python")
    status = out("git", "status", "--porcelain", "--", "src", cwd=ROOT)
    meta = {
        "label": "_meta",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpu": cpu,
            "nproc": os.cpu_count(),
            "mem_gib": mem_gib,
            "os": os_name,
            "kernel": platform.release(),
        },
        "code": {
            "commit": out("git", "rev-parse", "--short", "HEAD", cwd=ROOT),
            "src_uncommitted_files": len(status.splitlines()) if status else 0,
        },
        "tools": {
            "nginx": first(r"nginx/(\S+)", out("nginx", "-v")),
            "wrk": first(r"wrk (\S+)", out("wrk", "-v")),
            "node": out("node", "--version"),
            "python": platform.python_version(),
        },
        "keyguard_venv": pkg_versions(
            venv_py, ["keyguard", "aiohttp", "uvloop", "yarl", "multidict", "orjson"]
        ),
        "floor_venv": pkg_versions(
            os.path.join(CACHE, "floor-venv", "bin", "python"),
            ["aiohttp", "uvloop", "starlette", "uvicorn", "httpx", "httptools"],
        ),
        "litellm_venv": pkg_versions(
            os.path.join(CACHE, "litellm-venv", "bin", "python"),
            ["litellm", "fastapi", "starlette", "uvicorn", "aiohttp"],
        ),
        "portkey": first(
            r'"version"\s*:\s*"([^"]+)"',
            open(
                os.path.join(CACHE, "portkey/node_modules/@portkey-ai/gateway/package.json")
            ).read()
            if os.path.exists(
                os.path.join(CACHE, "portkey/node_modules/@portkey-ai/gateway/package.json")
            )
            else "",
        ),
        "knobs": dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a),
    }
    print(json.dumps(meta, separators=(",", ":")))


if __name__ == "__main__":
    main()
