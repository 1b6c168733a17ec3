"""``--git-history`` in clones as CI makes them: shallow, partial, treeless, objects missing.

Each clone is made with git from a local bare repository over ``file://`` (partial clones
need ``uploadpack.allowFilter``), exactly as a CI checkout would make it from a server.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from keyguard.cli.scan import scan_command
from keyguard.scan import testkeys

from .gitrepo import Repo, git_test_env

PAD = "# " + "filler text to make this blob larger than the partial clone's limit\n" * 40


class Origin:
    """A server-side repository: a key committed long ago, then removed; a key at the tip."""

    def __init__(self, tmp_path: Path) -> None:
        self.work = Repo(tmp_path / "work")
        self.old_key = testkeys.generate("AZURE")
        self.tip_key = testkeys.generate("KGK")
        self.c1 = self.work.commit({"README.md": "hello\n"})
        self.c2 = self.work.commit({"app/settings.py": f'KEY = "{self.old_key}"\n' + PAD})
        self.c3 = self.work.commit({"app/settings.py": "KEY = None\n" + PAD})
        for i in range(3):
            self.work.commit({"app/settings.py": f"KEY = None  # {i}\n" + PAD})
        self.c7 = self.work.commit({"worker.yaml": f"keyguard_key: {self.tip_key}\n"})
        self.bare = tmp_path / "origin.git"
        subprocess.run(
            ["git", "clone", "-q", "--bare", str(self.work.root), str(self.bare)],
            check=True, env=self.work.env,
        )  # fmt: skip
        self.git_bare("config", "uploadpack.allowFilter", "true")
        self.url = self.bare.resolve().as_uri()

    def git_bare(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.bare), *args],
            check=True, capture_output=True, text=True, env=self.work.env,
        ).stdout.strip()  # fmt: skip

    def clone(self, dest: Path, *args: str) -> Path:
        subprocess.run(
            ["git", "clone", "-q", *args, self.url, str(dest)],
            check=True, capture_output=True, env=self.work.env,
        )  # fmt: skip
        return dest


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(tmp_path)


def scan(repo: Path, *args: str) -> tuple[int, list[dict[str, str]], str]:
    result = CliRunner().invoke(
        scan_command, [str(repo), "--git-history", "--format", "jsonl", *args], env=git_test_env()
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return result.exit_code, rows, result.stderr


def missing_objects(repo: Path) -> int:
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--objects", "--all", "--missing=print"],
        check=True, capture_output=True, text=True, env=git_test_env(),
    ).stdout  # fmt: skip
    return sum(1 for line in out.splitlines() if line.startswith("?"))


def test_full_clone_finds_both_keys_and_exits_1(origin: Origin, tmp_path: Path) -> None:
    code, rows, err = scan(origin.clone(tmp_path / "full"))
    assert code == 1 and "NOT scanned" not in err
    assert {(r["file"], r["commit"]) for r in rows} == {
        ("app/settings.py", origin.c2),
        ("worker.yaml", origin.c7),
    }


def test_shallow_clone_scans_what_is_there_and_says_how_deep(
    origin: Origin, tmp_path: Path
) -> None:
    clone = origin.clone(tmp_path / "shallow", "--depth", "2")
    code, rows, err = scan(clone, "--exclude", "worker.yaml")
    assert code == 3 and rows == []
    assert "shallow clone: scanned 2 commit(s), down to" in err and "NOT scanned" in err
    # A finding at the boundary commit may be older than it: the report says so.
    code, rows, err = scan(origin.clone(tmp_path / "depth1", "--depth", "1"))
    assert code == 1 and [(r["file"], r["commit"]) for r in rows] == [("worker.yaml", origin.c7)]
    assert "at or before this commit" in rows[0]["detail"] and "scanned 1 commit(s)" in err


def test_since_inside_a_shallow_clone_is_complete(origin: Origin, tmp_path: Path) -> None:
    clone = origin.clone(tmp_path / "shallow", "--depth", "3")
    for since in ("HEAD~1", "HEAD~2"):  # HEAD~2 is the boundary itself: still complete
        code, rows, err = scan(clone, "--since", since)
        assert code == 1 and [r["file"] for r in rows] == ["worker.yaml"]
        assert "shallow" not in err


def test_since_a_branch_whose_merge_base_is_cut_off(origin: Origin, tmp_path: Path) -> None:
    """A pull request scanned against a base branch fetched shallowly: the range reaches the
    boundary, so older commits of the range may be missing (exit 3)."""
    origin.work.git("checkout", "-q", "-b", "side", origin.c3)
    origin.work.commit({"side.txt": "x\n"})
    origin.git_bare("fetch", "-q", str(origin.work.root), "side:side")
    clone = origin.clone(tmp_path / "shallow", "--depth", "2", "--no-single-branch")
    code, rows, err = scan(clone, "--since", "origin/side", "--exclude", "worker.yaml")
    assert code == 3 and rows == [] and "scanned 2 commit(s)" in err


def test_since_a_revision_the_shallow_clone_lacks(origin: Origin, tmp_path: Path) -> None:
    clone = origin.clone(tmp_path / "shallow", "--depth", "1")
    code, _, err = scan(clone, "--since", origin.c1)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "no such commit" in line and "shallow" in line


def test_partial_clone_never_fetches_and_exits_4(origin: Origin, tmp_path: Path) -> None:
    clone = origin.clone(tmp_path / "partial", "--filter=blob:limit=1k")
    before = missing_objects(clone)
    assert before == 4  # the versions of app/settings.py before the checked-out one
    code, rows, err = scan(clone, "--exclude", "worker.yaml")
    assert code == 4 and rows == []
    assert "4 blob(s) are missing" in err and "blob:limit=1024" in err
    assert f"app/settings.py@{origin.c2[:12]}" in err and "--fetch-missing" in err
    assert missing_objects(clone) == before  # nothing was fetched
    # Findings take precedence over the incomplete scan: exit 1, the note still printed.
    code, rows, err = scan(clone)
    assert code == 1 and [r["file"] for r in rows] == ["worker.yaml"] and "missing" in err


def test_fetch_missing_fetches_in_a_batch_and_scans(origin: Origin, tmp_path: Path) -> None:
    clone = origin.clone(tmp_path / "partial", "--filter=blob:limit=1k")
    code, rows, err = scan(clone, "--fetch-missing")
    assert code == 1 and "missing" not in err
    assert ("app/settings.py", origin.c2) in {(r["file"], r["commit"]) for r in rows}
    assert missing_objects(clone) == 0


def test_treeless_clone(origin: Origin, tmp_path: Path) -> None:
    clone = origin.clone(tmp_path / "treeless", "--filter=tree:0")
    code, rows, err = scan(clone, "--exclude", "worker.yaml")
    assert code == 4 and "tree(s) or other object(s)" in err and missing_objects(clone) > 0
    code, rows, _ = scan(clone, "--fetch-missing")
    assert code == 1 and ("app/settings.py", origin.c2) in {(r["file"], r["commit"]) for r in rows}


def test_missing_blob_without_a_promisor_remote(origin: Origin, tmp_path: Path) -> None:
    """A mirror that lost an object: skipped and counted, not a crash (exit 4)."""
    clone = origin.clone(tmp_path / "mirror", "--no-local")
    blob = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", f"{origin.c2}:app/settings.py"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    pack_dir = clone / ".git" / "objects" / "pack"
    for pack in list(pack_dir.glob("*.pack")):  # loose objects, so that one can be removed
        data = pack.read_bytes()
        for f in pack_dir.glob(pack.stem + ".*"):
            f.unlink()
        subprocess.run(["git", "-C", str(clone), "unpack-objects", "-q"], input=data, check=True)
    (clone / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    code, rows, err = scan(clone, "--exclude", "worker.yaml")
    assert code == 4 and rows == [] and "1 blob(s) are missing" in err
    code, _, err = scan(clone, "--exclude", "worker.yaml", "--fetch-missing")
    assert code == 4 and "no promisor remote" in err


def test_bare_mirror(origin: Origin) -> None:
    code, rows, _ = scan(origin.bare)
    assert code == 1 and len(rows) == 2


@pytest.mark.parametrize("option", ["--staged", "--git-history"])
def test_outside_a_repository_one_line_exit_2(option: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(scan_command, [option, str(tmp_path)], env=git_test_env())
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "not a git repository" in line or "not in a git repository" in line
    assert "usage" not in line.lower()


def test_sarif_carries_what_was_not_scanned(origin: Origin, tmp_path: Path) -> None:
    clone = origin.clone(tmp_path / "partial", "--depth", "4", "--filter=blob:limit=1k")
    sarif = tmp_path / "out.sarif"
    result = CliRunner().invoke(
        scan_command,
        [str(clone), "--git-history", "--format", "sarif", "-o", str(sarif)],
        env=git_test_env(),
    )
    assert result.exit_code == 1  # the key at the tip; the notes are still there
    (invocation,) = json.loads(sarif.read_text())["runs"][0]["invocations"]
    texts = [n["message"]["text"] for n in invocation["toolExecutionNotifications"]]
    assert any("shallow clone" in t for t in texts)
    assert any("blob(s) are missing" in t for t in texts)


def test_fetch_missing_never_passes_an_option_as_the_remote(origin: Origin, tmp_path: Path) -> None:
    """A clone whose config names its promisor remote like an option (a repository directory
    from elsewhere): --fetch-missing refuses to run git fetch with it."""
    clone = origin.clone(tmp_path / "partial", "--filter=blob:limit=1k")
    subprocess.run(
        ["git", "-C", str(clone), "config", "extensions.partialClone", "--upload-pack=touch pwned"],
        check=True, env=git_test_env(),
    )  # fmt: skip
    code, _, err = scan(clone, "--fetch-missing", "--exclude", "worker.yaml")
    assert code == 4 and "is not a remote name" in err
    assert not (clone / "pwned").exists() and not Path("pwned").exists()
