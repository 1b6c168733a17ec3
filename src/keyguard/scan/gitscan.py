"""Git history and staged changes, read with plain ``git`` subprocesses.

History: ``git rev-list --all --objects`` lists every reachable blob once (so a file that
never changed is scanned once, however many commits contain it); ``git log --raw`` in
topological order, oldest first, gives the commit that introduced each blob; ``git cat-file
--batch`` streams the contents. A secret is reported once per path, at the oldest commit
whose blob contains it. ``--since REV`` limits everything to commits not reachable from REV.

Staged: the blobs of the index entries that ``git diff --cached`` shows as added or changed.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from keyguard.errors import ConfigurationError

__all__ = ["Blob", "history_blobs", "introducing_commits", "read_blobs", "staged_blobs"]


@dataclass(frozen=True, slots=True)
class Blob:
    oid: str
    path: str
    commit: str | None  # the commit that introduced this blob at ``path``
    order: int  # position of ``commit`` in oldest-first topological order


def _git(repo: Path, *args: str) -> bytes:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise ConfigurationError("git is not installed") from exc
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ConfigurationError(
            f"git {args[0]} failed in {repo}: {message[-1] if message else ''}"
        )
    return proc.stdout


def _range(since: str | None) -> list[str]:
    return ["--all"] + ([f"^{since}"] if since else [])


def introducing_commits(repo: Path, since: str | None) -> dict[str, tuple[str, str, int]]:
    """blob id -> (commit, path, order) for the oldest commit that added or changed it."""
    out = _git(
        repo,
        "log",
        *_range(since),
        "--topo-order",
        "--reverse",
        "-m",
        "--raw",
        "--no-abbrev",
        "--no-renames",
        "-z",
        "--format=%x01%H",
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
            if len(meta) >= 5 and meta[4][:1] in (b"A", b"M", b"T"):
                oid = meta[3].decode("ascii")
                if oid not in result:
                    result[oid] = (commit, path, order)
    return result


def history_blobs(repo: Path, since: str | None) -> list[Blob]:
    """Every blob reachable from any ref (and not from ``since``), once, with its commit."""
    listing = _git(repo, "rev-list", "--objects", *_range(since), "--filter=object:type=blob")
    intro = introducing_commits(repo, since)
    blobs: dict[str, Blob] = {}
    for raw in listing.splitlines():
        oid_b, _, path_b = raw.partition(b" ")
        if not path_b:
            continue  # a commit line
        oid = oid_b.decode("ascii")
        if oid in blobs:
            continue
        commit, path, order = intro.get(
            oid, (None, path_b.decode("utf-8", "surrogateescape"), 1 << 30)
        )
        blobs[oid] = Blob(oid, path, commit, order)
    return sorted(blobs.values(), key=lambda b: (b.order, b.path))


def read_blobs(
    repo: Path, specs: Iterable[str], max_size: int
) -> Iterator[tuple[str, bytes | None]]:
    """``(spec, content)`` for each object spec via ``git cat-file --batch``.

    Content is ``None`` for missing objects, non-blobs and blobs above ``max_size``.
    """
    wanted = list(specs)
    if not wanted:
        return
    proc = subprocess.Popen(
        ["git", "-C", str(repo), "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def feed() -> None:
        try:
            for spec in wanted:
                stdin.write(spec.encode("utf-8", "surrogateescape") + b"\n")
            stdin.close()
        except BrokenPipeError:  # pragma: no cover - git died; the reader reports it
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        for spec in wanted:
            header = stdout.readline()
            parts = header.split()
            if len(parts) != 3:  # "<spec> missing"
                yield spec, None
                continue
            size = int(parts[2])
            if parts[1] != b"blob" or size > max_size:
                remaining = size + 1
                while remaining:
                    remaining -= len(stdout.read(min(remaining, 1 << 20)))
                yield spec, None
                continue
            data = stdout.read(size)
            stdout.read(1)
            yield spec, data
    finally:
        writer.join()
        stdout.close()
        proc.wait()


def staged_blobs(repo: Path) -> list[str]:
    """Paths of files added, copied, modified or renamed in the index."""
    out = _git(repo, "diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR")
    return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]
