"""The gateway benchmark's ~1 KB chat prompt and request body (bench/harness/post_chat.lua), for
the in-process measurements that must read the same texts (guardrails, limits estimate) and the
clients that must send the same request (bench/instructions/request_client.py)."""

from __future__ import annotations

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
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]


def chat_request(stream: bool) -> dict[str, object]:
    """The whole request body, every field as the benchmark sends it."""
    body: dict[str, object] = {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "max_tokens": 256,
        "temperature": 0.2,
        "top_p": 1,
        "n": 1,
        "user": "bench-user-0001",
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body
