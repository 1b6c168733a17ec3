"""``keyguard serve`` with its one worker in the process started, not in a forked child (the
launcher of ``bench/instructions/request``): valgrind's gdbserver, through which
``callgrind_control`` zeroes and dumps the counters, does not reach a forked child. The
supervisor's ``fork`` returns 0, so this process runs the worker's code as a child would (the
readiness pipe's read end stays open, so the worker's "ready" finds a reader), and the
worker's watch of its parent sees itself. Bench only; a build without a supervisor runs as it
is.

    python serve_inline.py serve --config keyguard.yaml
"""

from __future__ import annotations

import os
import sys

_pipe, _close = os.pipe, os.close
_kept: set[int] = set()


def _kept_pipe() -> tuple[int, int]:
    read, write = _pipe()
    _kept.add(read)
    return read, write


def _close_unless_kept(fd: int) -> None:
    if fd not in _kept:
        _close(fd)


os.fork = lambda: 0
os.getppid = os.getpid
os.pipe = _kept_pipe
os.close = _close_unless_kept

from keyguard.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "keyguard"
    sys.exit(main())
