"""Which files to scan: a directory walk with excludes, skipping binaries and large files.

Version-control metadata, dependency and cache directories are skipped; so are files with a
binary extension, files with a NUL byte in their first 8 KiB, and files above the size limit
(generated bundles, datasets). Paths are reported relative to the scanned root; with several
roots, relative to their common parent directory, so ``keyguard scan src config`` reports
``config/.env``, never a bare ``.env``. ``--exclude`` globs match the reported path, any of
its parent directories, or the file name.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "DEFAULT_MAX_SIZE",
    "FileEntry",
    "is_binary_data",
    "is_excluded",
    "iter_files",
    "read_text_file",
    "root_prefixes",
    "skip_by_name",
]

DEFAULT_MAX_SIZE = 5 * 1024 * 1024
SKIP_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache",
        ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".gradle", ".terraform",
    }
)  # fmt: skip
BINARY_EXTENSIONS = frozenset(
    {
        "png", "jpg", "jpeg", "gif", "bmp", "ico", "webp", "tif", "tiff", "psd", "pdf", "zip",
        "gz", "tgz", "bz2", "xz", "7z", "rar", "zst", "jar", "war", "ear", "class", "so", "dll",
        "dylib", "exe", "o", "a", "lib", "obj", "pyc", "pyo", "whl", "egg", "woff", "woff2",
        "ttf", "otf", "eot", "mp3", "mp4", "mov", "avi", "wav", "flac", "ogg", "webm", "mkv",
        "iso", "dmg", "bin", "db", "sqlite", "sqlite3", "parquet", "avro", "onnx", "pt", "pth",
        "h5", "npz", "npy", "pkl", "pickle", "svgz", "ai", "sketch", "fig",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str  # filesystem path
    rel: str  # reported path, POSIX separators
    size: int


def skip_by_name(rel: str) -> bool:
    """True for file names that are never text worth scanning."""
    name = rel.rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return ext in BINARY_EXTENSIONS


def is_excluded(rel: str, patterns: Sequence[str]) -> bool:
    if not patterns:
        return False
    pure = PurePosixPath(rel)
    candidates = [rel, pure.name, *(str(p) for p in pure.parents if str(p) != ".")]
    return any(fnmatch.fnmatchcase(c, pat.rstrip("/")) for pat in patterns for c in candidates)


def is_binary_data(data: bytes) -> bool:
    return b"\0" in data[:8192]


def root_prefixes(roots: Sequence[Path]) -> list[str]:
    """What each root's files are reported under: nothing for a single root; with several,
    the root's directory relative to the roots' common parent (``src/``, ``config/``)."""
    if len(roots) < 2:
        return [""] * len(roots)
    dirs = [os.path.abspath(root if root.is_dir() else root.parent) for root in roots]
    base = os.path.commonpath(dirs)
    prefixes = []
    for d in dirs:
        rel = os.path.relpath(d, base).replace(os.sep, "/")
        prefixes.append("" if rel == "." else rel + "/")
    return prefixes


def iter_files(
    root: Path, excludes: Sequence[str] = (), max_size: int = DEFAULT_MAX_SIZE, prefix: str = ""
) -> Iterator[FileEntry]:
    """Files under ``root`` (or ``root`` itself), reported as ``prefix`` + the path relative
    to ``root`` (to its directory for a file)."""
    if root.is_file():
        rel = prefix + root.name
        size = root.stat().st_size
        if not skip_by_name(rel) and size <= max_size and not is_excluded(rel, excludes):
            yield FileEntry(str(root), rel, size)
        return
    base = str(root)
    for dirpath, dirnames, filenames in os.walk(base):
        reldir = os.path.relpath(dirpath, base).replace(os.sep, "/")
        reldir = prefix + ("" if reldir == "." else reldir + "/")
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIP_DIRS and not is_excluded(reldir + d, excludes)
        )
        for name in sorted(filenames):
            rel = reldir + name
            if skip_by_name(rel) or is_excluded(rel, excludes):
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if not os.path.isfile(full) or os.path.islink(full) or st.st_size > max_size:
                continue
            yield FileEntry(full, rel, st.st_size)


def read_text_file(entry: FileEntry) -> bytes | None:
    """The file's bytes, or ``None`` when unreadable or binary."""
    try:
        with open(entry.path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return None if is_binary_data(data) else data
