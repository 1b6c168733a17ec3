"""The CI snippets of docs/scanner.md, run as far as this machine allows.

Each snippet is read from the page. A clone is made the way its checkout step makes it (fetch
depth and refspecs of actions/checkout and of the Azure Pipelines checkout task, for a push and
for a pull request's merge ref) from a local bare repository; the scan step's script runs as
written, with the CI expressions and predefined variables substituted. The actions, the Python
set-up, ``pip install`` and the SARIF upload are not run; the upload step's path is checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from keyguard.scan import testkeys

from .gitrepo import Repo, git_test_env, keyguard_bin_dir

DOC = Path(__file__).resolve().parents[2] / "docs" / "scanner.md"
CI_KEY = "ab" * 32  # the KEYGUARD_FINGERPRINT_KEY secret of the test pipeline


def snippet(first_line: str) -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    doc = yaml.safe_load(block)
    assert isinstance(doc, dict)
    return doc


@dataclass
class Origin:
    url: str
    main: str
    merge: str  # refs/pull/1/merge: the pull request merged into main
    feature_key: str


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Origin:
    """main: a key committed and removed long ago (accepted by the committed baseline);
    a pull request (from a fork: only its merge ref is in the repository) adding a new key."""
    tmp = tmp_path_factory.mktemp("ci")
    work = Repo(tmp / "work")
    work.commit({"README.md": "# service\n"})
    work.commit({"legacy.py": f'KEY = "{testkeys.generate("AZURE")}"\n'})
    work.commit({"legacy.py": None})
    env = dict(work.env, KEYGUARD_FINGERPRINT_KEY=CI_KEY, PATH=_path(tmp))
    subprocess.run(
        ["keyguard", "scan", ".", "--git-history", "--write-baseline",
         ".keyguard-scan-baseline.json"],
        cwd=work.root, env=env, check=True, capture_output=True,
    )  # fmt: skip
    work.commit({".keyguard-scan-baseline.json": (work.root / ".keyguard-scan-baseline.json")
                 .read_text()})  # fmt: skip
    main = work.commit({"app.py": "print('hello')\n"})
    work.git("checkout", "-q", "-b", "feature")
    feature_key = testkeys.generate("KGK")
    work.commit({"worker.yaml": f"keyguard_key: {feature_key}\n"})
    work.git("checkout", "-q", "--detach", main)
    work.env["GIT_COMMITTER_DATE"] = work.env["GIT_AUTHOR_DATE"] = "1700009999 +0000"
    work.git("merge", "-q", "--no-ff", "-m", "Merge pull request #1", "feature")
    merge = work.git("rev-parse", "HEAD")
    bare = tmp / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, env=work.env)
    work.git("push", "-q", str(bare), "main", f"{merge}:refs/pull/1/merge")
    return Origin(bare.as_uri(), main, merge, feature_key)


def _path(tmp: Path) -> str:
    bindir = tmp / "bin"
    if not bindir.exists():
        keyguard_bin_dir(tmp)
    return f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=git_test_env())


def checkout(origin: Origin, dest: Path, depth: int, pull_request: bool, azure: bool) -> None:
    """What actions/checkout (or the Azure Pipelines checkout task) runs for this depth."""
    dest.mkdir(parents=True)
    _git(dest, "init", "-q")
    _git(dest, "remote", "add", "origin", origin.url)
    target = "refs/remotes/pull/1/merge" if pull_request else "refs/remotes/origin/main"
    if depth == 0:
        specs = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
        if pull_request:
            specs.append(f"+refs/pull/1/merge:{target}")
        flags = ["--force", "--tags", "--prune"] if azure else ["--prune"]
    else:
        sha = origin.merge if pull_request else origin.main
        specs = [f"+{sha}:{target}"]
        flags = ["--no-tags", "--prune", f"--depth={depth}"]
    _git(dest, "fetch", "-q", *flags, "--no-recurse-submodules", "origin", *specs)
    _git(dest, "checkout", "-q", "--force", "--detach", target)


def _substitute(text: str, pattern: str, values: dict[str, str]) -> str:
    """Replace CI expressions; one the test does not know fails it (the snippet would use
    something untested)."""
    return re.sub(pattern, lambda m: values[m.group(1).strip()], text)


@dataclass
class Run:
    code: int
    stderr: str
    sarif: dict[str, Any] | None


def run_github(origin: Origin, tmp: Path, pull_request: bool, depth: int | None = None) -> Run:
    doc = snippet("# .github/workflows/keyguard-scan.yml")
    steps = doc["jobs"]["scan"]["steps"]
    (co,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout@")]
    (scan,) = [s for s in steps if "keyguard scan" in s.get("run", "")]
    (upload,) = [s for s in steps if str(s.get("uses", "")).startswith("github/codeql-action/")]
    assert upload["if"] == "always()" and "${{" not in scan["run"]
    workdir = tmp / ("pr" if pull_request else "push")
    checkout(origin, workdir, co["with"]["fetch-depth"] if depth is None else depth,
             pull_request, azure=False)  # fmt: skip
    contexts = {
        "secrets.KEYGUARD_FINGERPRINT_KEY": CI_KEY,
        "github.base_ref": "main" if pull_request else "",
    }
    env = {k: _substitute(str(v), r"\$\{\{(.*?)\}\}", contexts) for k, v in scan["env"].items()}
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", scan["run"]],
        cwd=workdir, capture_output=True, text=True,
        env=dict(git_test_env(), PATH=_path(tmp), **env),
    )  # fmt: skip
    sarif = workdir / upload["with"]["sarif_file"]
    return Run(
        proc.returncode, proc.stderr, json.loads(sarif.read_text()) if sarif.exists() else None
    )


def run_azure(origin: Origin, tmp: Path, pull_request: bool, depth: int | None = None) -> Run:
    doc = snippet("# azure-pipelines.yml")
    steps = doc["steps"]
    (co,) = [s for s in steps if s.get("checkout") == "self"]
    (scan,) = [s for s in steps if "keyguard scan" in s.get("script", "")]
    (publish,) = [s for s in steps if str(s.get("task", "")).startswith("PublishBuildArtifacts@")]
    assert publish["condition"] in ("succeededOrFailed()", "always()")
    workdir = tmp / ("pr" if pull_request else "push")
    staging = tmp / "staging"
    checkout(origin, workdir, co["fetchDepth"] if depth is None else depth, pull_request,
             azure=True)  # fmt: skip
    macros = {
        "Build.ArtifactStagingDirectory": str(staging),
        "KEYGUARD_FINGERPRINT_KEY": CI_KEY,
    }
    script = _substitute(scan["script"], r"\$\(([A-Za-z_][\w.]*)\)", macros)
    env = {
        k: _substitute(str(v), r"\$\(([A-Za-z_][\w.]*)\)", macros) for k, v in scan["env"].items()
    }
    predefined = {
        "BUILD_REASON": "PullRequest" if pull_request else "IndividualCI",
        **({"SYSTEM_PULLREQUEST_TARGETBRANCH": "refs/heads/main"} if pull_request else {}),
    }
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script], cwd=workdir, capture_output=True,
        text=True, env=dict(git_test_env(), PATH=_path(tmp), **env, **predefined),
    )  # fmt: skip
    published = Path(_substitute(publish["inputs"]["PathtoPublish"], r"\$\(([A-Za-z_][\w.]*)\)",
                                 macros))  # fmt: skip
    sarifs = sorted(published.glob("*.sarif")) if published.is_dir() else []
    return Run(proc.returncode, proc.stderr, json.loads(sarifs[0].read_text()) if sarifs else None)


RUNNERS = {"github": run_github, "azure": run_azure}


def _results(sarif: dict[str, Any] | None) -> list[tuple[str, str]]:
    assert sarif is not None and sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert len({r["id"] for r in rules}) == len(rules) and all(r["help"]["text"] for r in rules)
    out = []
    for result in run["results"]:
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert not uri.startswith("/") and ":" not in uri  # relative to the checkout
        assert len(result["partialFingerprints"]["keyguardSecretFingerprint/v1"]) == 64
        out.append((uri, result["ruleId"]))
    return out


@pytest.mark.parametrize("ci", sorted(RUNNERS))
def test_pull_request_with_a_new_key_fails_and_uploads_it(
    ci: str, origin: Origin, tmp_path: Path
) -> None:
    run = RUNNERS[ci](origin, tmp_path, pull_request=True)
    assert run.code == 1, run.stderr
    assert _results(run.sarif) == [("worker.yaml", "keyguard_key")]
    assert origin.feature_key not in json.dumps(run.sarif) + run.stderr
    assert run.sarif is not None
    assert run.sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"] == []


@pytest.mark.parametrize("ci", sorted(RUNNERS))
def test_push_with_only_baselined_history_passes(ci: str, origin: Origin, tmp_path: Path) -> None:
    run = RUNNERS[ci](origin, tmp_path, pull_request=False)
    assert run.code == 0, run.stderr
    assert _results(run.sarif) == []


@pytest.mark.parametrize("ci", sorted(RUNNERS))
def test_the_default_shallow_checkout_does_not_pass_silently(
    ci: str, origin: Origin, tmp_path: Path
) -> None:
    """Why the snippets set the fetch depth: with the default (1) the same commands report
    the unscanned history (exit 3) or the missing base branch (exit 2)."""
    push = RUNNERS[ci](origin, tmp_path / "push", pull_request=False, depth=1)
    assert push.code == 3 and "shallow clone" in push.stderr
    assert push.sarif is not None
    notes = push.sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert any("NOT scanned" in n["message"]["text"] for n in notes)
    pr = RUNNERS[ci](origin, tmp_path / "pr", pull_request=True, depth=1)
    assert pr.code == 2 and "--since origin/main: no such commit" in pr.stderr
