"""A git repository with keys added, changed, moved and removed across commits.

``build_history(repo)`` creates it and returns the expected findings: for each leaked value,
the path where it appeared and the commit that introduced it there. A value that stays in a
file across later commits, or a file renamed without change, is expected once.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from keyguard.scan.testkeys import expected_kind, generate


@dataclass
class HistoryLabel:
    file: str
    secret: str
    kind: str
    commit: str


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def build_history(repo: Path) -> list[HistoryLabel]:
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    env = dict(os.environ)
    env.update(GIT_AUTHOR_NAME="dev", GIT_AUTHOR_EMAIL="dev@contoso.com")
    env.update(GIT_COMMITTER_NAME="dev", GIT_COMMITTER_EMAIL="dev@contoso.com")
    values = {
        "k1": ("AZURE", "openai"),
        "k2": ("LEGACY", ""),
        "k3": ("AZURE", "ai_services,base62"),
        "k4": ("LEGACY", ""),
        "k5": ("KGK", ""),
        "k6": ("ENTRA", ""),
        "k7": ("SHARED", ""),
        "k8": ("SAS", ""),
        "k9": ("COSMOS", ""),
    }
    v = {name: generate(gen, arg) for name, (gen, arg) in values.items()}
    kinds = {name: expected_kind(gen, arg) or "" for name, (gen, arg) in values.items()}
    labels: list[HistoryLabel] = []
    clock = [1_700_000_000]

    def commit(message: str, files: dict[str, str | None], leaks: list[tuple[str, str]]) -> str:
        for path, content in files.items():
            target = repo / path
            if content is None:
                _git(repo, "rm", "-q", path)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            _git(repo, "add", path)
        clock[0] += 3600
        stamp = f"{clock[0]} +0000"
        env.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
        _git(repo, "commit", "-q", "-m", message, env=env)
        sha = _git(repo, "rev-parse", "HEAD")
        labels.extend(HistoryLabel(path, v[name], kinds[name], sha) for path, name in leaks)
        return sha

    config_clean = 'import os\n\nAPI_KEY = os.environ["AZURE_OPENAI_API_KEY"]\n'
    commit("initial", {"README.md": "# svc\n", "app/config.py": config_clean}, [])
    config_key = f'ENDPOINT = "https://hist.openai.azure.com/"\nAPI_KEY = "{v["k1"]}"\n'
    commit("hardcode key for the demo", {"app/config.py": config_key}, [("app/config.py", "k1")])
    commit("add timeout", {"app/config.py": config_key + "TIMEOUT = 30\n"}, [])
    commit("read key from env", {"app/config.py": config_clean + "TIMEOUT = 30\n"}, [])
    env_file = (
        f"AZURE_OPENAI_ENDPOINT=https://hist.openai.azure.com/\nAZURE_OPENAI_API_KEY={v['k2']}\n"
    )
    commit("add .env", {".env": env_file}, [(".env", "k2")])
    commit("remove .env", {".env": None}, [])
    _git(repo, "checkout", "-q", "-b", "feature/k8s")
    secret = base64.b64encode(v["k3"].encode()).decode()
    manifest = f"apiVersion: v1\nkind: Secret\ndata:\n  AZURE_OPENAI_API_KEY: {secret}\n"
    commit("k8s manifests", {"deploy/secret.yaml": manifest}, [("deploy/secret.yaml", "k3")])
    _git(repo, "checkout", "-q", "main")
    commit("docs", {"docs/usage.md": "Set `AZURE_OPENAI_API_KEY` to `<your-key>`.\n"}, [])
    clock[0] += 3600
    stamp = f"{clock[0]} +0000"
    env.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    _git(repo, "merge", "-q", "--no-ff", "-m", "merge k8s", "feature/k8s", env=env)
    run_sh = (
        f'#!/bin/sh\ncurl -H "api-key: {v["k1"]}" https://hist.openai.azure.com/openai/models\n'
    )
    commit("smoke test script", {"scripts/run.sh": run_sh}, [("scripts/run.sh", "k1")])
    client_js = (
        "const endpoint = 'https://hist.openai.azure.com';\n"
        f"const apiKey = '{v['k4'][:16]}' +\n  '{v['k4'][16:]}';\n"
    )
    commit("js client", {"src/client.js": client_js}, [("src/client.js", "k4")])
    _git(repo, "mv", "src/client.js", "src/api.js")
    commit("rename client", {}, [])
    commit("drop key", {"src/api.js": "const endpoint = 'https://hist.openai.azure.com';\n"}, [])
    worker = f"worker:\n  keyguard_api_key: {v['k5']}\n  client_secret: {v['k6']}\n"
    commit(
        "worker config",
        {"deploy/worker.yaml": worker},
        [("deploy/worker.yaml", "k5"), ("deploy/worker.yaml", "k6")],
    )
    commit("revert worker config", {"deploy/worker.yaml": None}, [])
    bus = (
        "orders:\n  connection: Endpoint=sb://hist.servicebus.windows.net/;"
        f"SharedAccessKeyName=send;SharedAccessKey={v['k7']}\n"
        "  export: https://hist.blob.core.windows.net/x?sv=2022-11-02&sp=r&sig="
        f"{quote(v['k8'], safe='')}\n"
    )
    commit(
        "orders queue",
        {"deploy/orders.yaml": bus},
        [("deploy/orders.yaml", n) for n in ("k7", "k8")],
    )
    cosmos = f'COSMOS_URL = "https://hist.documents.azure.com:443/"\nCOSMOS_KEY = "{v["k9"]}"\n'
    commit("catalog store", {"app/catalog.py": cosmos}, [("app/catalog.py", "k9")])
    commit("keys from Key Vault", {"deploy/orders.yaml": None, "app/catalog.py": None}, [])
    return labels
