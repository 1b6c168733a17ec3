"""The clone a history scan runs in: shallow, partial, missing objects; what was not scanned.

CI checks out shallow clones (one commit deep by default) and sometimes partial ones
(``--filter=blob:...``); mirrors may omit large objects. A history scan reads what is there,
never fetches unless ``--fetch-missing`` is given, and says what it could not read:

* **shallow**: the commits listed in the ``shallow`` file have parents this clone lacks. When
  one of them lies in the scanned range, older history was not scanned: the coverage names
  how many commits were scanned and the boundary, and the exit status is 3.
* **missing objects**: blobs (or trees) the history names but the object store lacks are
  skipped and counted; the exit status is 4. With ``--fetch-missing`` they are first fetched
  from the promisor remote in one batch per round (as ``git`` itself would, but not one
  round trip per object); whatever is still missing is skipped and counted as above.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from keyguard.errors import ConfigurationError
from keyguard.scan.gitscan import Blob, GitFailed, HistoryListing, history_listing, run_git

__all__ = [
    "EXIT_MISSING",
    "EXIT_SHALLOW",
    "CloneState",
    "HistoryCoverage",
    "clone_state",
    "coverage_exit_status",
    "coverage_notes",
    "coverage_of",
    "fetch_missing",
    "verify_since",
]

EXIT_SHALLOW = 3
EXIT_MISSING = 4
FETCH_ROUNDS = 8  # trees first, then the blobs below them; more rounds than any clone needs
FETCH_TIMEOUT = 1800.0  # seconds for one --fetch-missing batch
MAX_EXAMPLES = 5
_REMOTE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,99}")
MAX_BOUNDARY_DATES = 20


@dataclass(frozen=True, slots=True)
class CloneState:
    shallow: frozenset[str]  # commits whose parents this clone lacks
    promisor: str | None  # the remote missing objects come from (partial clone)
    filter: str | None  # the partial clone's filter, e.g. "blob:limit=1k"


def clone_state(repo: Path, env: Mapping[str, str]) -> CloneState:
    try:
        out = run_git(
            repo, "rev-parse", "--is-shallow-repository", "--git-path", "shallow", env=env
        )
    except GitFailed:
        raise ConfigurationError(
            f"--git-history: {repo} is not a git repository (clone it, or scan the files "
            "without --git-history)"
        ) from None
    lines = out.decode("utf-8", "surrogateescape").splitlines()
    shallow: frozenset[str] = frozenset()
    if lines and lines[0] == "true":
        path = Path(lines[1])
        path = path if path.is_absolute() else repo / path
        try:
            shallow = frozenset(path.read_text(encoding="ascii", errors="replace").split())
        except OSError as exc:
            raise ConfigurationError(f"--git-history: cannot read {path}: {exc}") from None
    try:
        config = run_git(
            repo,
            "config",
            "--get-regexp",
            r"^(extensions\.partialclone|remote\..*\.(promisor|partialclonefilter))$",
            env=env,
        ).decode("utf-8", "replace")
    except GitFailed:  # no such setting: not a partial clone
        config = ""
    values = dict(line.partition(" ")[::2] for line in config.splitlines())
    promisor = values.get("extensions.partialclone") or next(
        (k.split(".")[1] for k, v in values.items() if k.endswith(".promisor") and v == "true"),
        None,
    )
    filt = values.get(f"remote.{promisor}.partialclonefilter") if promisor else None
    return CloneState(shallow, promisor, filt)


def verify_since(repo: Path, since: str, state: CloneState, env: Mapping[str, str]) -> None:
    """``--since REV`` must name a commit here; say what to fetch when it does not."""
    try:
        run_git(
            repo,
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            f"{since}^{{commit}}",
            env=env,
        )
    except GitFailed:
        hint = (
            "this clone is shallow or single-branch: fetch it (git fetch origin <branch>, "
            "or fetch-depth: 0 in CI)"
            if state.shallow
            else "fetch it, or give a commit or branch this repository has"
        )
        raise ConfigurationError(f"--since {since}: no such commit in {repo}; {hint}") from None


@dataclass(slots=True)
class HistoryCoverage:
    """What a history scan of one repository covered, and what it could not."""

    repo: str
    commits: int = 0
    boundary: list[tuple[str, str]] = field(default_factory=list)  # (commit, date) in range
    boundary_total: int = 0
    missing: list[Blob] = field(default_factory=list)
    missing_other: int = 0
    attributed: bool = True
    filter: str | None = None
    fetched: int = 0
    fetch_error: str | None = None

    @property
    def truncated(self) -> bool:
        return self.boundary_total > 0

    @property
    def incomplete(self) -> bool:
        return bool(self.missing) or self.missing_other > 0


def _boundary_dates(
    repo: Path, commits: Sequence[str], env: Mapping[str, str]
) -> list[tuple[str, str]]:
    wanted = sorted(commits)[:MAX_BOUNDARY_DATES]
    out = run_git(repo, "log", "--no-walk", "--format=%H %cs", *wanted, env=env)
    dated = [tuple(line.split(" ", 1)) for line in out.decode("ascii", "replace").splitlines()]
    return sorted(((c, d) for c, d in dated), key=lambda cd: (cd[1], cd[0]))


def coverage_of(
    repo: Path, listing: HistoryListing, state: CloneState, env: Mapping[str, str]
) -> HistoryCoverage:
    cov = HistoryCoverage(str(repo), commits=len(listing.commits), filter=state.filter)
    cov.missing = listing.missing
    cov.missing_other = listing.missing_other
    cov.attributed = listing.attributed
    inside = state.shallow & listing.commits
    cov.boundary_total = len(inside)
    if inside:
        cov.boundary = _boundary_dates(repo, sorted(inside), env)
    return cov


def fetch_missing(
    repo: Path,
    since: str | None,
    state: CloneState,
    listing: HistoryListing,
    env: Mapping[str, str],
) -> tuple[HistoryListing, int, str | None]:
    """Fetch what the listing lacks from the promisor remote, in batches; list again.

    Returns the new listing, how many objects were fetched and why fetching stopped early.
    """
    if state.promisor is None:
        return listing, 0, "no promisor remote is configured (not a partial clone)"
    if not _REMOTE_NAME.fullmatch(state.promisor):  # never an option to git fetch
        return listing, 0, f"the promisor remote's name {state.promisor!r} is not a remote name"
    seen: set[str] = set()
    previous: set[str] = set()
    error: str | None = "the remote did not send every missing object"
    for _ in range(FETCH_ROUNDS):
        absent = set(listing.absent)
        if not absent:
            error = None
            break
        if absent == previous:
            break
        seen |= absent
        previous = absent
        try:
            run_git(
                repo,
                "-c",
                "fetch.negotiationAlgorithm=noop",
                "fetch",
                state.promisor,
                "--no-tags",
                "--no-write-fetch-head",
                "--recurse-submodules=no",
                "--filter=blob:none",
                "--stdin",
                stdin="".join(f"{oid}\n" for oid in sorted(absent)).encode("ascii"),
                env=env,
                timeout=FETCH_TIMEOUT,
            )
        except GitFailed as exc:
            error = str(exc)
            break
        listing = history_listing(repo, since, env)
    return listing, len(seen - set(listing.absent)), error


def coverage_exit_status(coverages: Sequence[HistoryCoverage]) -> int:
    """0 when every history was scanned whole; else 4 (objects missing) or 3 (shallow)."""
    if any(c.incomplete for c in coverages):
        return EXIT_MISSING
    if any(c.truncated for c in coverages):
        return EXIT_SHALLOW
    return 0


def coverage_notes(
    cov: HistoryCoverage, fetch_requested: bool, name_repo: bool = False
) -> list[str]:
    """One line each for what was not scanned (empty when the history was scanned whole)."""
    notes: list[str] = []
    where = f" in {cov.repo}" if name_repo else ""
    if cov.truncated:
        oldest_commit, oldest_date = cov.boundary[0]
        more = f" and {cov.boundary_total - 1} more" if cov.boundary_total > 1 else ""
        notes.append(
            f"shallow clone{where}: scanned {cov.commits} commit(s), down to "
            f"{oldest_commit[:12]} ({oldest_date}){more}; history older than that is not in "
            f"this clone and was NOT scanned (exit {EXIT_SHALLOW}). Fetch it with "
            "`git fetch --unshallow` (CI: fetch-depth: 0), or scan a range inside the clone "
            "with --since."
        )
    if cov.missing:
        examples = ", ".join(
            f"{b.path}@{b.commit[:12]}" if b.commit else b.path for b in cov.missing[:MAX_EXAMPLES]
        )
        more = ", ..." if len(cov.missing) > MAX_EXAMPLES else ""
        notes.append(
            f"{len(cov.missing)} blob(s){where} are missing from this clone"
            + (f" (partial clone, filter {cov.filter})" if cov.filter else "")
            + f" and were NOT scanned (exit {EXIT_MISSING}): {examples}{more}."
            + _fetch_hint(cov, fetch_requested)
        )
    if cov.missing_other:
        notes.append(
            f"{cov.missing_other} tree(s) or other object(s){where} are missing from this "
            "clone; the files below them were NOT scanned"
            + ("" if cov.attributed else " and no finding could be tied to its commit")
            + f" (exit {EXIT_MISSING})."
            + _fetch_hint(cov, fetch_requested)
        )
    return notes


def _fetch_hint(cov: HistoryCoverage, fetch_requested: bool) -> str:
    if not fetch_requested:
        return " Rerun with --fetch-missing to fetch and scan them, or clone without --filter."
    fetched = f" {cov.fetched} object(s) were fetched;" if cov.fetched else ""
    return f"{fetched} --fetch-missing could not get the rest: {cov.fetch_error}."
