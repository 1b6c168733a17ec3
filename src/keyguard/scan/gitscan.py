"""Git history and staged changes, read with plain ``git`` subprocesses that never fetch.

History: ``git rev-list --all --objects --missing=print`` lists every reachable object once
(so a file that never changed is scanned once, however many commits contain it) and names the
ones this clone does not have instead of failing on them or fetching them; ``git log --raw``
in topological order, oldest first, gives the commit that introduced each blob (and tells
blobs from trees); ``git cat-file --batch`` streams the contents of the blobs that are here.
A secret is reported once per path, at the oldest commit whose blob contains it. ``--since
REV`` limits everything to commits not reachable from REV.

No git process started here may fetch (a partial clone would otherwise fetch every missing
blob, one round trip each): ``GIT_NO_LAZY_FETCH=1`` (git 2.44 and later) and an empty
``GIT_ALLOW_PROTOCOL`` (every transport refused, for older git) are set, and missing objects
are never asked for. ``--fetch-missing`` lifts both (see ``keyguard.scan.gitclone``).

Staged: the blobs of the index entries that ``git diff --cached`` shows as added or changed.
"""

from __future__ import annotations

import enum
import os
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from keyguard.errors import ConfigurationError

__all__ = [
    "Blob",
    "BlobSkip",
    "GitFailed",
    "HistoryListing",
    "git_env",
    "history_listing",
    "introducing_commits",
    "read_blobs",
    "require_repository",
    "run_git",
    "staged_blobs",
]

_GITLINK = b"160000"


class GitFailed(ConfigurationError):
    """A git command failed; the message is git's last line of error output."""


def git_env(fetch: bool = False, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for every git process: never prompt, and never fetch unless asked."""
    env = dict(os.environ if base is None else base)
    env["GIT_TERMINAL_PROMPT"] = "0"
    if fetch:
        env.pop("GIT_NO_LAZY_FETCH", None)
    else:
        env.update(GIT_NO_LAZY_FETCH="1", GIT_ALLOW_PROTOCOL="")
    return env


def run_git(
    repo: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float | None = None,
) -> bytes:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            input=stdin,
            capture_output=True,
            check=False,
            env=git_env() if env is None else env,
            timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise ConfigurationError("git is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitFailed(f"git {args[0]} in {repo} took more than {timeout:.0f} s") from exc
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitFailed(f"git {args[0]} failed in {repo}: {message[-1] if message else ''}")
    return proc.stdout


def require_repository(repo: Path, option: str, env: Mapping[str, str] | None = None) -> None:
    """One clear error instead of git's usage text when ``repo`` is not in a git repository."""
    try:
        run_git(repo, "rev-parse", "--git-dir", env=env)
    except GitFailed:
        raise ConfigurationError(
            f"{option}: {repo} is not in a git repository (run it inside a clone, or scan "
            "the files without it)"
        ) from None


def _range(since: str | None) -> list[str]:
    return ["--all"] + ([f"^{since}"] if since else [])


def introducing_commits(
    repo: Path, since: str | None, env: Mapping[str, str] | None = None
) -> dict[str, tuple[str, str, int]]:
    """blob id -> (commit, path, order) for the oldest commit that added or changed it."""
    out = run_git(
        repo,
        "log",
        *_range(since),
        "--topo-order",
        "--reverse",
        "-m",
        "--raw",
        "--no-abbrev",
        "--no-renames",
        "--no-color",
        "--no-show-signature",
        "--no-ext-diff",
        "--no-textconv",
        "-z",
        "--format=%x01%H",
        env=env,
    )
    result: dict[str, tuple[str, str, int]] = {}
    commit = ""
    order = -1
    tokens = out.split(b"\0")
    i = 0
    while i < len(tokens):
        tok = tokens[i].lstrip(b"\n")
        i += 1
        if tok.startswith(b"\x01"):
            sha = tok[1:].decode("ascii")
            if sha != commit:
                commit, order = sha, order + 1
        elif tok.startswith(b":") and i < len(tokens):
            meta = tok.split()
            path = tokens[i].decode("utf-8", "surrogateescape")
            i += 1
            if len(meta) >= 5 and meta[4][:1] in (b"A", b"M", b"T") and meta[1] != _GITLINK:
                oid = meta[3].decode("ascii")
                if oid not in result:
                    result[oid] = (commit, path, order)
    return result


@dataclass(frozen=True, slots=True)
class Blob:
    oid: str
    path: str
    commit: str | None  # the commit that introduced this blob at ``path``
    order: int  # position of ``commit`` in oldest-first topological order


@dataclass(slots=True)
class HistoryListing:
    """What the history holds, and what of it this clone lacks."""

    blobs: list[Blob] = field(default_factory=list)  # present: to be scanned
    missing: list[Blob] = field(default_factory=list)  # named in the history, not here
    missing_other: int = 0  # absent trees (or objects of unknown type): below them, unknown
    absent: list[str] = field(default_factory=list)  # every absent object id
    commits: set[str] = field(default_factory=set)
    attributed: bool = True  # False: trees are missing, so no commit could be attributed


def _parse_rev_list(out: bytes) -> tuple[set[str], dict[str, str], list[str]]:
    commits: set[str] = set()
    named: dict[str, str] = {}
    missing: list[str] = []
    for raw in out.splitlines():
        if raw.startswith(b"?"):
            missing.append(raw[1:].decode("ascii"))
            continue
        oid_b, sep, path_b = raw.partition(b" ")
        if not sep:
            commits.add(oid_b.decode("ascii"))
        elif path_b:  # a root tree has an empty name
            named.setdefault(oid_b.decode("ascii"), path_b.decode("utf-8", "surrogateescape"))
    return commits, named, missing


def _blob_types(repo: Path, oids: Iterable[str], env: Mapping[str, str]) -> set[str]:
    """Which of these (present) objects are blobs."""
    wanted = "".join(f"{oid}\n" for oid in oids).encode("ascii")
    out = run_git(
        repo, "cat-file", "--batch-check=%(objectname) %(objecttype)", stdin=wanted, env=env
    )
    return {line.split()[0].decode("ascii") for line in out.splitlines() if line.endswith(b" blob")}


def history_listing(
    repo: Path, since: str | None, env: Mapping[str, str] | None = None
) -> HistoryListing:
    """Every blob reachable from any ref (and not from ``since``), once, with its commit."""
    env = git_env() if env is None else env
    out = run_git(repo, "rev-list", "--objects", "--missing=print", *_range(since), env=env)
    commits, named, missing = _parse_rev_list(out)
    listing = HistoryListing(commits=commits, absent=missing)
    try:
        intro = introducing_commits(repo, since, env)
    except GitFailed:
        if not missing:
            raise
        # Trees are missing, so the commits' changes cannot be listed: scan what is here,
        # unattributed, and count every absent object.
        listing.attributed = False
        for oid in sorted(_blob_types(repo, named, env)):
            listing.blobs.append(Blob(oid, named[oid], None, 1 << 30))
        listing.missing_other = len(missing)
        listing.blobs.sort(key=lambda b: b.path)
        return listing
    for oid in named:
        if oid in intro:
            commit, path, order = intro[oid]
            listing.blobs.append(Blob(oid, path, commit, order))
    for oid in missing:
        if oid in intro:
            commit, path, order = intro[oid]
            listing.missing.append(Blob(oid, path, commit, order))
        else:
            listing.missing_other += 1
    listing.blobs.sort(key=lambda b: (b.order, b.path))
    listing.missing.sort(key=lambda b: (b.order, b.path))
    return listing


class BlobSkip(enum.Enum):
    """Why ``read_blobs`` gives no content for a spec."""

    MISSING = "missing"  # not in the object store (or git stopped before answering)
    NOT_BLOB = "not a blob"
    TOO_LARGE = "too large"


def read_blobs(
    repo: Path, specs: Iterable[str], max_size: int, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, bytes | BlobSkip]]:
    """``(spec, content)`` for each object spec via ``git cat-file --batch``.

    Content is a ``BlobSkip`` for missing objects, non-blobs and blobs above ``max_size``.
    If git stops early (a lazy fetch refused by an older git ends the process), every spec
    not yet answered is reported missing, never silently dropped.
    """
    wanted = list(specs)
    if not wanted:
        return
    proc = subprocess.Popen(
        ["git", "-C", str(repo), "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=git_env() if env is None else env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def feed() -> None:
        try:
            for spec in wanted:
                stdin.write(spec.encode("utf-8", "surrogateescape") + b"\n")
            stdin.close()
        except BrokenPipeError:  # git died; the reader reports what is left as missing
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        for spec in wanted:
            header = stdout.readline()
            parts = header.split()
            if len(parts) != 3:  # "<spec> missing", or end of output when git stopped
                yield spec, BlobSkip.MISSING
                continue
            size = int(parts[2])
            if parts[1] != b"blob" or size > max_size:
                remaining = size + 1
                while remaining:
                    chunk = stdout.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                yield spec, BlobSkip.NOT_BLOB if parts[1] != b"blob" else BlobSkip.TOO_LARGE
                continue
            data = stdout.read(size)
            stdout.read(1)
            yield spec, data if len(data) == size else BlobSkip.MISSING
    finally:
        stdout.close()
        if proc.poll() is None:
            proc.kill()
        writer.join()
        proc.wait()


def staged_blobs(repo: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Paths of files added, copied, modified or renamed in the index."""
    require_repository(repo, "--staged", env)
    out = run_git(repo, "diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR", env=env)
    return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]
