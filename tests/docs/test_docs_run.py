"""Every shell and Python block of README.md and docs/*.md runs, in order, as a user would run
it: one shell session per document, in a temporary directory that stands for the machine
(``/etc/keyguard``, ``/var/lib/keyguard`` and ``/var/log/keyguard`` are folders in it; the
ports 8080, 8081, 8090 and 9000 are free ports). ``keyguard serve``, ``keyguard demo`` and
``keyguard emulator`` start in the background and must report they are serving (the next one
stops the last, as the reader's Ctrl-C would); ``keyguard demo``'s environment is exported,
as the quick start tells the reader to do. A command that
reads a secret from a terminal gets a stand-in value on standard input.

A block that cannot run here is marked ``<!-- not run: REASON -->`` (tests/docs/blocks.py);
a block without a marker runs, and a failing one fails this test with its document and line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from keyguard.vault.master import create_master_key_file
from tests.support.settings import free_port

from .blocks import Block, blocks_of

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
PORTS = ("8080", "8081", "8090", "9000")
STAND_IN_KEY = "docs-test-stand-in-upstream-key"
#: how long a background server may take to say it is serving (seconds)
READY_S = 90

PRELUDE = r"""
set -eo pipefail
cd "$DOCS_ROOT"
__bg_n=0
__bg() {  # READY_REGEX COMMAND...: start COMMAND in the background, wait until it is serving
    local ready=$1; shift
    if [ -f "$DOCS_ROOT/.server-pids" ]; then  # the reader stops the last server (Ctrl-C)
        while read -r old; do kill -INT "$old" 2>/dev/null || true; done < "$DOCS_ROOT/.server-pids"
        while read -r old; do
            while kill -0 "$old" 2>/dev/null; do sleep 0.1; done
        done < "$DOCS_ROOT/.server-pids"
        : > "$DOCS_ROOT/.server-pids"
    fi
    __bg_n=$((__bg_n + 1))
    local log="$DOCS_ROOT/.server-$__bg_n.log"
    "$@" > "$log" 2>&1 < /dev/null &
    local pid=$!
    echo "$pid" >> "$DOCS_ROOT/.server-pids"
    local waited=0
    until grep -qE "$ready" "$log" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "docs: '$*' stopped before serving:" >&2; cat "$log" >&2; return 1
        fi
        if [ "$waited" -ge $((DOCS_READY_S * 10)) ]; then
            echo "docs: '$*' did not start serving:" >&2; cat "$log" >&2; return 1
        fi
        sleep 0.1; waited=$((waited + 1))
    done
    __last_log=$log
}
keyguard() {
    case "$1" in
        serve) __bg 'proxy on' command keyguard "$@" ;;
        emulator) __bg 'key1|KEY1|api-key' command keyguard "$@" ;;
        demo)
            if [[ " $* " == *" --check "* ]]; then command keyguard "$@"; return; fi
            __bg '^AZURE_OPENAI_DEPLOYMENT=' command keyguard "$@" \
                --port "$DOCS_PORT_8080" --admin-port "$DOCS_PORT_8081"
            eval "$(grep -E '^(AZURE_OPENAI|OPENAI)_[A-Z_]+=' "$__last_log" | sed 's/^/export /')"
            ;;
        vault)
            if [ "$2" = put ] && [ ! -p /dev/stdin ]; then
                printf %s "$DOCS_STAND_IN_KEY" | command keyguard "$@"
            else
                command keyguard "$@"
            fi
            ;;
        *) command keyguard "$@" ;;
    esac
}
scripts/setup() { :; }  # the test runs in the set-up virtualenv
az() { printf '%s\n' "$DOCS_STAND_IN_KEY"; }  # Azure's CLI needs a login: it "prints a key"
.venv/bin/keyguard() { keyguard "$@"; }
"""


def _machine(text: str, root: Path, ports: dict[str, str]) -> str:
    """The block's text on the test's machine: its folders and ports."""
    for folder in ("/etc/keyguard", "/var/lib/keyguard", "/var/log/keyguard"):
        text = text.replace(folder, f"{root}{folder}")
    for port, free in ports.items():
        text = re.sub(rf"(?<![0-9]){port}(?![0-9])", free, text)
    return text


def _script(blocks: list[Block], root: Path, ports: dict[str, str]) -> str:
    parts = [PRELUDE]
    for block in blocks:
        if block.file is not None:
            target = root / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_machine(block.text, root, ports))
            continue
        if not block.runs:
            continue
        parts.append(f"echo '::: {block.where}' >&2")
        body = _machine(block.text if block.lang == "python" else block.commands(), root, ports)
        if block.lang == "python":
            parts.append(f"{sys.executable} - <<'__KEYGUARD_DOCS_PYTHON__'\n{body}")
            parts.append("__KEYGUARD_DOCS_PYTHON__")
        else:
            parts.append(body)
    parts.append("echo '::: done' >&2")
    return "\n".join(parts) + "\n"


def _default_config(root: Path, ports: dict[str, str]) -> None:
    """``keyguard.yaml`` in the working directory, for documents that use the CLI with their
    reader's config (``-c keyguard.yaml`` or none); its store and master key in ``default/``
    (``/etc/keyguard`` and the rest do not exist until a document makes them)."""
    (root / "default").mkdir()
    config = {
        "listen": {"proxy": f"127.0.0.1:{ports['8080']}", "admin": f"127.0.0.1:{ports['8081']}"},
        "store": f"sqlite:///{root}/default/keyguard.db",
        "master_key_file": f"{root}/default/master.key",
        "upstreams": [
            {
                "name": "prod-eastus",
                "endpoint": f"http://127.0.0.1:{ports['8090']}",
                "credential": {"vault": "upstream/prod-eastus"},
                "deployments": ["gpt-4o", "gpt-4o-mini"],
            }
        ],
    }
    (root / "keyguard.yaml").write_text(yaml.safe_dump(config))


def _stop_servers(root: Path) -> None:
    pids = root / ".server-pids"
    if not pids.exists():
        return
    for pid in pids.read_text().split():
        try:
            os.kill(int(pid), 15)
        except ProcessLookupError:
            pass
    for pid in pids.read_text().split():
        try:
            os.waitpid(int(pid), 0)
        except ChildProcessError:
            pass  # not our child: the shell started it and has exited


def _runs(doc: str) -> list[Block]:
    return [b for b in blocks_of(ROOT, doc) if b.runs or b.file is not None]


@pytest.mark.slow  # minutes: servers start and stop; scripts/test runs it (-m slow)
@pytest.mark.parametrize("doc", [d for d in DOCS if any(b.runs for b in blocks_of(ROOT, d))])
def test_the_blocks_of_a_document_run_in_order(doc: str, tmp_path: Path) -> None:
    ports = {p: str(free_port()) for p in PORTS}
    root = tmp_path / "machine"
    root.mkdir()
    _default_config(root, ports)
    create_master_key_file(root / "default/master.key")
    script = _script(_runs(doc), root, ports)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KEYGUARD_", "AZURE_", "OPENAI_"))
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(root),
        DOCS_ROOT=str(root),
        DOCS_READY_S=str(READY_S),
        DOCS_STAND_IN_KEY=STAND_IN_KEY,
        **{f"DOCS_PORT_{p}": free for p, free in ports.items()},
    )
    try:
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        _stop_servers(root)
    markers = re.findall(r"^::: (\S+)", done.stderr, re.M)
    where = markers[-1] if markers else doc
    assert done.returncode == 0 and where == "done", (
        f"{where}: a documented block failed (exit {done.returncode}); fix the document or "
        f"the behaviour, or mark the block '<!-- not run: reason -->'.\n"
        f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    )


def test_every_block_is_run_or_marked_with_a_reason() -> None:
    counted = {"run": 0, "not run": 0, "files": 0}
    for doc in DOCS:
        for block in blocks_of(ROOT, doc):
            if block.not_run is not None:
                assert len(block.not_run) >= 10, f"{block.where}: say why it is not run"
                counted["not run"] += 1
            elif block.file is not None:
                assert block.file and ".." not in block.file, block.where
                counted["files"] += 1
            elif block.runs:
                counted["run"] += 1
    print(f"documentation blocks: {counted}")
    assert counted["run"] >= 10, counted  # the blocks that run today: none may quietly stop


def test_bash_is_there() -> None:
    assert shutil.which("bash"), "the documentation's shell blocks need bash"
