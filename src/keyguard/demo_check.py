"""The ``keyguard demo --check`` tour: the official ``openai`` SDK against the running demo."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import openai
from openai.types.chat import ChatCompletionMessageParam

__all__ = ["run_checks", "API_VERSION", "CHAT_DEPLOYMENT", "EMBEDDINGS_DEPLOYMENT"]

API_VERSION = "2024-10-21"
CHAT_DEPLOYMENT = "gpt-4o"
EMBEDDINGS_DEPLOYMENT = "text-embedding-3-small"


class DemoTarget(Protocol):
    """What the tour needs of a running demo."""

    @property
    def endpoint(self) -> str: ...
    @property
    def api_key(self) -> str: ...
    @property
    def revoked_key(self) -> str: ...


Reporter = Callable[[str, Callable[[], Awaitable[str]]], Awaitable[bool]]


async def run_checks(env: DemoTarget, report: Reporter) -> int:
    azure = openai.AsyncAzureOpenAI(
        azure_endpoint=env.endpoint, api_key=env.api_key, api_version=API_VERSION, max_retries=0
    )
    v1 = openai.AsyncOpenAI(
        base_url=f"{env.endpoint}/openai/v1/", api_key=env.api_key, max_retries=0
    )
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Say hello to Keyguard."}
    ]

    async def chat() -> str:
        reply = await azure.chat.completions.create(
            model=CHAT_DEPLOYMENT, messages=messages, max_tokens=16
        )
        assert reply.choices[0].message.content, "empty completion"
        assert reply.usage is not None and reply.usage.total_tokens > 0, "no usage"
        return f"{reply.usage.total_tokens} tokens, {reply.choices[0].message.content[:40]!r}"

    async def stream() -> str:
        chunks = 0
        text = ""
        usage = None
        events = await azure.chat.completions.create(
            model=CHAT_DEPLOYMENT,
            messages=messages,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in events:
            chunks += 1
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage is not None:
                usage = chunk.usage
        assert text, "no streamed content"
        assert usage is not None, "no usage chunk"
        return f"{chunks} chunks, {usage.total_tokens} tokens"

    async def v1_chat() -> str:
        reply = await v1.chat.completions.create(
            model=CHAT_DEPLOYMENT, messages=messages, max_tokens=8
        )
        assert reply.choices[0].message.content
        tokens = reply.usage.total_tokens if reply.usage else 0
        return f"OpenAI(base_url=.../openai/v1/): {tokens} tokens"

    async def embeddings() -> str:
        result = await azure.embeddings.create(model=EMBEDDINGS_DEPLOYMENT, input="keyguard")
        return f"{len(result.data[0].embedding)} dimensions"

    async def denied_revoked() -> str:
        revoked = openai.AsyncAzureOpenAI(
            azure_endpoint=env.endpoint,
            api_key=env.revoked_key,
            api_version=API_VERSION,
            max_retries=0,
        )
        try:
            await revoked.chat.completions.create(model=CHAT_DEPLOYMENT, messages=messages)
        except openai.AuthenticationError as exc:
            return f"revoked key refused with {exc.status_code}"
        finally:
            await revoked.close()
        raise AssertionError("a revoked key was accepted")

    async def denied_deployment() -> str:
        try:
            await azure.chat.completions.create(model="not-a-deployment", messages=messages)
        except openai.NotFoundError as exc:
            return f"unknown deployment refused with {exc.status_code}"
        raise AssertionError("an unknown deployment was served")

    steps: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        ("chat completion (AzureOpenAI)", chat),
        ("streaming chat with usage", stream),
        ("chat completion (v1 OpenAI client)", v1_chat),
        ("embeddings", embeddings),
        ("denied: revoked key", denied_revoked),
        ("denied: unknown deployment", denied_deployment),
    ]
    print("")
    print("Checking the gateway with the official openai SDK:")
    results = [await report(name, step) for name, step in steps]
    await azure.close()
    await v1.close()
    passed = sum(results)
    print("")
    print(f"{passed} of {len(results)} checks passed")
    return 0 if passed == len(results) else 1
