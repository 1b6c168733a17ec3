"""Exact prompt counts from packaged BPE data, Azure's estimate, the default max_tokens cap."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
import tiktoken.load
from tiktoken_ext import openai_public  # type: ignore[import-untyped]

from keyguard.core.request import RequestContext
from keyguard.errors import ConfigurationError
from keyguard.limits import tokenizer as tokmod
from keyguard.limits.estimator import Estimate, Estimator, Large, completion_cap, prompt_parts
from keyguard.limits.tokenizer import Tokenizer, encoding_name_for, load_encoding
from keyguard.proxy.routes import parse_route


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    tok = Tokenizer()
    tok.load(["gpt-4o", "gpt-35-turbo"])
    return tok


def test_known_token_ids_for_both_encodings(tokenizer: Tokenizer) -> None:
    assert tokenizer.for_model("gpt-4o").encode_ordinary("Hello world") == [13225, 2375]
    assert tokenizer.for_model("gpt-35-turbo").encode_ordinary("Hello world") == [9906, 1917]


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("my-finetune", "o200k_base"),
        ("davinci", "cl100k_base"),  # tiktoken says r50k: not shipped, nearest shipped
    ],
)
def test_encoding_by_model(model: str, encoding: str) -> None:
    assert encoding_name_for(model) == encoding


def test_the_hashes_checked_are_the_ones_tiktoken_publishes() -> None:
    for name in ("cl100k_base", "o200k_base"):
        source = inspect.getsource(getattr(openai_public, name))
        assert re.search(r'expected_hash="[0-9a-f]{64}"', source)


def test_nothing_is_downloaded_and_a_tampered_file_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("tiktoken tried to read a file itself")

    monkeypatch.setattr(tiktoken.load, "read_file_cached", no_network)
    uncached = load_encoding.__wrapped__
    assert uncached("cl100k_base").encode_ordinary("ok") == [564]
    monkeypatch.setattr(tiktoken.load, "check_hash", lambda data, expected: False)
    with pytest.raises(ConfigurationError, match="does not match tiktoken's SHA-256"):
        uncached("cl100k_base")
    with pytest.raises(ConfigurationError, match="no packaged BPE data"):
        tokmod._packaged_ranks("https://example.invalid/r50k_base.tiktoken", "00")


def chat(messages: list[Any], **extra: Any) -> dict[str, Any]:
    return {"messages": messages, **extra}


def test_chat_prompt_follows_openais_counting_rule(tokenizer: Tokenizer) -> None:
    enc = tokenizer.for_model("gpt-4o")
    payload = chat(
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "name": "ann", "content": "What is 2+2?"},
        ]
    )
    texts, fixed = prompt_parts("chat", payload)
    expected = 3 + len(enc.encode("system")) + len(enc.encode("You are terse."))
    expected += 3 + len(enc.encode("user")) + len(enc.encode("ann")) + 1
    expected += len(enc.encode("What is 2+2?")) + 3
    assert fixed + tokenizer.count(enc, texts) == expected


def test_images_tools_and_token_ids_are_counted() -> None:
    texts, fixed = prompt_parts(
        "chat",
        chat(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "x", "detail": "low"}},
                        {"type": "image_url", "image_url": {"url": "y"}},
                    ],
                }
            ],
            tools=[{"type": "function", "function": {"name": "f"}}],
        ),
    )
    assert fixed == 3 + 85 + 1445 + 3
    assert "look" in texts and any('"function"' in t for t in texts)
    texts, fixed = prompt_parts("embeddings", {"input": [[1, 2, 3], [4]]})
    assert (texts, fixed) == ([], 4)
    texts, fixed = prompt_parts("completions", {"prompt": ["a", "b"]})
    assert (texts, fixed) == (["a", "b"], 0)
    texts, fixed = prompt_parts("responses", {"instructions": "be nice", "input": "hi"})
    assert (texts, fixed) == (["be nice", "hi"], 9)


@pytest.mark.parametrize(
    ("operation", "payload", "model", "cap", "injected"),
    [
        ("chat", {"max_tokens": 50, "n": 2}, "gpt-4o", 100, None),
        ("chat", {"max_completion_tokens": 70}, "o3-mini", 70, None),
        ("chat", {}, "gpt-4o", 256, "max_tokens"),
        ("chat", {"n": 3}, "o3-mini", 768, "max_completion_tokens"),
        ("chat", {}, "gpt-5-mini", 256, "max_completion_tokens"),
        ("responses", {}, "gpt-4o", 256, "max_output_tokens"),
        ("responses", {"max_output_tokens": 30}, "gpt-4o", 30, None),
        ("completions", {}, "gpt-35-turbo-instruct", 16, None),
        ("completions", {"max_tokens": 10, "n": 2, "best_of": 5}, "x", 50, None),
        ("embeddings", {}, "text-embedding-3-small", 0, None),
        ("chat", {"max_tokens": "many"}, "gpt-4o", 256, None),  # Azure will refuse it
    ],
)
def test_completion_cap_and_the_injected_default(
    operation: str, payload: dict[str, Any], model: str, cap: int, injected: str | None
) -> None:
    before = dict(payload)
    got, changed = completion_cap(operation, payload, model, 256, inject=True)
    assert got == cap
    assert changed == (injected or "")
    if injected:
        assert payload == {**before, injected: 256}
    else:
        assert payload == before


def test_no_injection_when_turned_off() -> None:
    payload: dict[str, Any] = {}
    assert completion_cap("chat", payload, "gpt-4o", 100, inject=False) == (100, "")
    assert payload == {}


def ctx_for(path: str, payload: dict[str, Any]) -> RequestContext:
    ctx = RequestContext("r", 0.0, "POST", None, None)
    ctx.route = parse_route("POST", path, "api-version=2024-10-21")
    ctx.payload = payload
    return ctx


async def test_estimate_marks_the_payload_changed_and_large_prompts_use_a_thread(
    tokenizer: Tokenizer,
) -> None:
    estimator = Estimator(
        tokenizer, default_max_tokens=64, inject_max_tokens=True, large_prompt_chars=100
    )
    small = ctx_for(
        "/openai/deployments/gpt-4o/chat/completions", chat([{"role": "user", "content": "hi"}])
    )
    est = await estimator.estimate(small, "gpt-4o")
    assert est.completion_tokens == 64 and small.payload_changed is True
    assert est.prompt_tokens == 3 + 1 + 1 + 3
    big_text = "word " * 1000
    big = ctx_for(
        "/openai/deployments/gpt-4o/chat/completions",
        chat([{"role": "user", "content": big_text}], max_tokens=5),
    )
    # Above large_prompt_chars the count is left for a worker thread, not done on the loop.
    assert isinstance(estimator.estimate_now(small, "gpt-4o"), Estimate)
    pending = estimator.estimate_now(big, "gpt-4o")
    assert isinstance(pending, Large) and pending.cap == 5
    est = await estimator.estimate(big, "gpt-4o")
    assert est == await estimator.finish(pending)
    enc = tokenizer.for_model("gpt-4o")
    assert est.prompt_tokens == 3 + 1 + len(enc.encode(big_text)) + 3
    assert est.completion_tokens == 5 and big.payload_changed is False
    images = ctx_for("/openai/deployments/dall-e-3/images/generations", {"prompt": "cat"})
    assert (await estimator.estimate(images, "dall-e-3")).tokens == 0
