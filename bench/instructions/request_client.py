"""Send N chat completions to a gateway over C kept-alive connections and check each answer
(the client of ``bench/instructions/request``; it runs outside callgrind, so its own cost is
not counted).

    python request_client.py URL KEY MODE N [C]     # MODE: nonstream, stream

The body is the benchmark's (``bench/lib/chat_body.py``, as ``bench/harness/post_chat.lua``
sends it: a ~1 KB chat with a system and a user message). Exits 1 on the first answer that is
not a 200 with the expected shape.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from chat_body import chat_request  # noqa: E402

PATHS = {
    "nonstream": "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
    "stream": "/openai/deployments/gpt-4o-stream/chat/completions?api-version=2024-10-21",
}


def body(stream: bool) -> bytes:
    return json.dumps(chat_request(stream), separators=(",", ":")).encode()


def worker(url: str, key: str, mode: str, count: int, failures: list[str]) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=600)
    stream = mode == "stream"
    data = body(stream)
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        "api-key": key,
    }
    for _ in range(count):
        conn.request("POST", PATHS[mode], body=data, headers=headers)
        answer = conn.getresponse()
        text = answer.read()
        whole = b"data: [DONE]" in text if stream else b'"choices"' in text
        if answer.status != 200 or not whole:
            failures.append(f"{answer.status} {text[:200]!r}")
            return
    conn.close()


def main() -> int:
    url, key, mode, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    conns = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    failures: list[str] = []
    shares = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]
    threads = [
        threading.Thread(target=worker, args=(url, key, mode, n, failures)) for n in shares if n
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        print(f"request_client: {len(failures)} failed, first: {failures[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
