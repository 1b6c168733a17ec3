"""Send exactly N chat requests to a gateway over keep-alive connections (the benchmark's 1 KB
body, as bench/harness/post_chat.lua builds it), C at a time, and fail unless every answer is
a 200. Standard library only: the load generator of ``bench/instructions/run``, where the
gateway runs under valgrind and what is counted is its instructions, not this client's speed.

    python3 client.py --port 18410 --header 'api-key: kg_...' --requests 400 [--stream]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading

SYSTEM = (
    "You are a helpful assistant for the finance team of Contoso Ltd. Answer concisely, cite "
    "the document section you used, and never reveal internal account numbers or personal "
    "data. If you are unsure, say so and suggest who to ask."
)
USER = (
    "Please summarise the key points of the Q3 quarterly report below in two sentences for an "
    "executive audience.\n\nQ3 report excerpt: Revenue for the quarter was 4.2 billion, up 12 "
    "percent year over year, driven mainly by the cloud segment which grew 31 percent. "
    "Operating margin improved by two points to 24 percent as data-centre utilisation rose and "
    "marketing spend was held flat. Hardware revenue declined 6 percent on weaker consumer "
    "demand. Free cash flow was 1.1 billion. The company repurchased 300 million of shares and "
    "reiterated full-year guidance, while noting currency headwinds of roughly one point in "
    "the fourth quarter."
)


def body(stream: bool) -> bytes:
    doc: dict[str, object] = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
        "max_tokens": 256,
        "temperature": 0.2,
        "top_p": 1,
        "n": 1,
        "user": "bench-user-0001",
        "stream": stream,
    }
    if stream:
        doc["stream_options"] = {"include_usage": True}
    return json.dumps(doc, separators=(",", ":")).encode()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--requests", type=int, required=True)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--stream", action="store_true")
    args = ap.parse_args()
    dep = "gpt-4o-stream" if args.stream else "gpt-4o"
    path = f"/openai/deployments/{dep}/chat/completions?api-version=2024-10-21"
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if args.stream else "application/json",
    }
    for item in args.header:
        name, _, value = item.partition(":")
        headers[name.strip()] = value.strip()
    payload = body(args.stream)
    lock = threading.Lock()
    left = [args.requests]
    failures: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=600)
        while True:
            with lock:
                if left[0] == 0 or failures:
                    break
                left[0] -= 1
            conn.request("POST", path, payload, headers)
            answer = conn.getresponse()
            data = answer.read()
            if answer.status != 200 or (args.stream and b"[DONE]" not in data):
                with lock:
                    failures.append(f"{answer.status}: {data[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        print(f"client: {len(failures)} failed answers, first: {failures[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
