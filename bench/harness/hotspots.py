#!/usr/bin/env python3
"""Turn a py-spy "raw" profile (collapsed stacks) into hot-spot tables (markdown).

  python3 bench/harness/hotspots.py profile.txt [--pkg keyguard] [--top 25]

Each line of the input is `frame;frame;...;leaf COUNT`, a frame being `func (file:line)`.
Prints, as % of all samples:
  1. self time by function (the leaf frame), any code;
  2. inclusive time of the product's functions (frame anywhere in the stack, once per sample);
  3. "attributed" time: each sample charged to the deepest frame of the product's code in its
     stack, with the line, i.e. which line of ours is responsible for the time spent below it
     (in libraries included) -- the list to optimise from;
  4. the share of samples with no frame of the product's code below the event loop's entry
     (the loop itself, aiohttp's server/client protocol callbacks, ...), and of other threads.
File paths are shortened to the part after site-packages/ or src/ so no machine path shows.
"""

import argparse
import re
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def short(path):
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        i = path.rfind(marker)
        if i >= 0:
            rest = path[i + len(marker) :]
            return rest if marker != "/lib/python3" else "stdlib:" + rest.split("/", 1)[-1]
    return path.rsplit("/", 2)[-1] if path.startswith("/") else path


def parse(path):
    for raw in open(path, encoding="utf-8", errors="replace"):
        raw = raw.rstrip("\n")
        if not raw:
            continue
        stack, _, n = raw.rpartition(" ")
        try:
            n = int(n)
        except ValueError:
            continue
        frames = []
        for fr in stack.split(";"):
            m = FRAME.match(fr)
            if m:
                frames.append((m["func"], short(m["file"]), m["line"] or ""))
            else:
                frames.append((fr, "", ""))
        yield frames, n


# Frames that run the event loop: everything above (and including) the last of them is start-up
# code (keyguard's CLI `serve`, asyncio.run, ...), not request handling, so a product frame
# there does not make a sample "ours".
LOOP_ENTRY = {"run", "run_until_complete", "run_forever", "run_app", "_run_once", "_run"}


def loop_cut(frames):
    cut = 0
    for i, (func, file, _) in enumerate(frames):
        if func in LOOP_ENTRY and (
            file.startswith(("stdlib:asyncio/", "uvloop/", "aiohttp/web.py"))
            or file.startswith("asyncio/")
        ):
            cut = i + 1
    return frames[cut:]


def pct(n, total):
    return f"{100 * n / max(total, 1):.1f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument(
        "--pkg", default="keyguard", help="product package (path prefix) to attribute to"
    )
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    pkg = args.pkg.rstrip("/")

    def ours(file):
        return file == pkg or file.startswith(pkg + "/")

    total = 0
    self_fn, incl_fn, attr_line, attr_fn = Counter(), Counter(), Counter(), Counter()
    outside = other_threads = 0
    for frames, n in parse(args.profile):
        total += n
        if frames and frames[0][0] == "Thread._bootstrap":
            # a worker thread (aiosqlite's, executors): not the event loop's thread
            other_threads += n
            self_fn[f"{frames[-1][0]} ({frames[-1][1]})"] += n
            continue
        leaf = frames[-1]
        self_fn[f"{leaf[0]} ({leaf[1]})"] += n
        seen = set()
        deepest = None
        for fr in loop_cut(frames):
            if ours(fr[1]):
                key = f"{fr[0]} ({fr[1]})"
                if key not in seen:
                    incl_fn[key] += n
                    seen.add(key)
                deepest = fr
        if deepest is None:
            outside += n
        else:
            attr_fn[f"{deepest[0]} ({deepest[1]})"] += n
            attr_line[f"{deepest[0]} ({deepest[1]}:{deepest[2]})"] += n

    print(
        f"Samples: {total} (all threads). Event-loop thread with no {args.pkg} frame below the "
        f"loop (the loop itself, server/client protocol callbacks): {pct(outside, total)} %. "
        f"Other threads (e.g. aiosqlite's worker): {pct(other_threads, total)} %.\n"
    )
    for title, counter in (
        (
            f"Attributed to the deepest {args.pkg} line "
            "(its own time + the library calls it makes)",
            attr_line,
        ),
        (f"Attributed to the deepest {args.pkg} function", attr_fn),
        (f"Inclusive time of {args.pkg} functions", incl_fn),
        ("Self time by function (leaf frame, any code)", self_fn),
    ):
        print(f"### {title}\n\n| % samples | frame |\n|---:|---|")
        for k, n in counter.most_common(args.top):
            print(f"| {pct(n, total)} | `{k}` |")
        print()


if __name__ == "__main__":
    main()
