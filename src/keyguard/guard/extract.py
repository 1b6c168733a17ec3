"""The texts a request or an answer carries, and redactions written back into its body.

``request_slots`` and ``response_slots`` walk a parsed JSON body of a known operation and
return every text in it with where it sits; ``with_replacements`` returns a copy of the body
with some slots' text replaced. What is read (anything else is left alone; a value of an
unexpected type is skipped, never an error):

=================  =========================================================================
operation          texts
=================  =========================================================================
chat               ``messages[i].content`` (a string, or each part's ``text`` / ``refusal``),
                   ``messages[i].name``, ``tool_calls[k].function.arguments``,
                   ``function_call.arguments``; ``prediction.content``
completions        ``prompt`` (a string or a list of strings; token arrays are not text),
                   ``suffix``
responses          ``instructions``; ``input`` (a string, or items: messages' ``content``
                   string or parts' ``text``, ``function_call_output.output`` (string or
                   parts), ``function_call.arguments``, ``custom_tool_call_output.output``)
embeddings         ``input`` (a string or a list of strings; token arrays are not text)
images, speech     ``prompt``, ``input``
=================  =========================================================================

Answers: chat ``choices[i].message.content`` (string or parts), ``.tool_calls[k].function
.arguments``, ``.function_call.arguments``, ``.audio.transcript``; completions
``choices[i].text``; responses ``output[i]``: messages' ``content[j].text`` and
``function_call.arguments``.

Roles: a chat message's own role (``system``, ``developer``, ``user``, ``assistant``; ``tool``
and ``function`` results are ``tool``), ``tool_call`` for arguments the model sent,
``input`` for embeddings input, ``completion`` for answer text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from keyguard.guard.findings import Slot

__all__ = ["request_slots", "response_slots", "with_replacements"]

Path = tuple[str | int, ...]
_ROLES = {"system", "developer", "user", "assistant", "tool"}


def _role(value: object, default: str = "user") -> str:
    if value == "function":
        return "tool"
    return value if isinstance(value, str) and value in _ROLES else default


def _content(content: object, path: Path, role: str) -> Iterator[Slot]:
    """A string, or a list of parts each with ``text`` (or ``refusal``)."""
    if isinstance(content, str):
        yield Slot(path, role, content)
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, str):
                yield Slot((*path, j), role, part)
            elif isinstance(part, dict):
                for key in ("text", "refusal"):
                    if isinstance(part.get(key), str):
                        yield Slot((*path, j, key), role, part[key])


def _arguments(holder: object, path: Path) -> Iterator[Slot]:
    if isinstance(holder, dict) and isinstance(holder.get("arguments"), str):
        yield Slot((*path, "arguments"), "tool_call", holder["arguments"])


def _tool_calls(message: Mapping[str, Any], path: Path) -> Iterator[Slot]:
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for k, call in enumerate(calls):
            if isinstance(call, dict):
                yield from _arguments(call.get("function"), (*path, "tool_calls", k, "function"))
    yield from _arguments(message.get("function_call"), (*path, "function_call"))


def _chat(body: Mapping[str, Any]) -> Iterator[Slot]:
    messages = body.get("messages")
    if isinstance(messages, list):
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                continue
            role = _role(message.get("role"))
            path: Path = ("messages", i)
            yield from _content(message.get("content"), (*path, "content"), role)
            if isinstance(message.get("name"), str):
                yield Slot((*path, "name"), role, message["name"])
            yield from _tool_calls(message, path)
    prediction = body.get("prediction")
    if isinstance(prediction, dict):
        yield from _content(prediction.get("content"), ("prediction", "content"), "assistant")


def _strings(value: object, path: Path, role: str) -> Iterator[Slot]:
    """A string or a list of strings (lists of token ids are skipped)."""
    if isinstance(value, str):
        yield Slot(path, role, value)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield Slot((*path, i), role, item)


def _responses_item(item: Mapping[str, Any], path: Path) -> Iterator[Slot]:
    kind = item.get("type", "message")
    if kind == "message" or (kind is None and "role" in item):
        yield from _content(item.get("content"), (*path, "content"), _role(item.get("role")))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        yield from _content(item.get("output"), (*path, "output"), "tool")
    elif kind == "function_call":
        yield from _arguments(item, path)
    elif kind == "custom_tool_call" and isinstance(item.get("input"), str):
        yield Slot((*path, "input"), "tool_call", item["input"])


def _responses(body: Mapping[str, Any]) -> Iterator[Slot]:
    if isinstance(body.get("instructions"), str):
        yield Slot(("instructions",), "developer", body["instructions"])
    value = body.get("input")
    if isinstance(value, str):
        yield Slot(("input",), "user", value)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield Slot(("input", i), "user", item)
            elif isinstance(item, dict):
                yield from _responses_item(item, ("input", i))


def _completions(body: Mapping[str, Any]) -> Iterator[Slot]:
    yield from _strings(body.get("prompt"), ("prompt",), "user")
    if isinstance(body.get("suffix"), str):
        yield Slot(("suffix",), "user", body["suffix"])


def _single(key: str, role: str) -> Any:
    def read(body: Mapping[str, Any]) -> Iterator[Slot]:
        return _strings(body.get(key), (key,), role)

    return read


_REQUESTS = {
    "chat": _chat,
    "completions": _completions,
    "responses": _responses,
    "embeddings": _single("input", "input"),
    "images": _single("prompt", "user"),
    "speech": _single("input", "user"),
}


def request_slots(operation: str, body: Mapping[str, Any]) -> list[Slot]:
    """Every text of a request body of ``operation`` (none for an unknown operation)."""
    reader = _REQUESTS.get(operation)
    if reader is None or not isinstance(body, dict):
        return []
    return list(reader(body))


def _chat_answer(body: Mapping[str, Any]) -> Iterator[Slot]:
    choices = body.get("choices")
    if not isinstance(choices, list):
        return
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            path: Path = ("choices", i, "message")
            yield from _content(message.get("content"), (*path, "content"), "completion")
            yield from _tool_calls(message, path)
            audio = message.get("audio")
            if isinstance(audio, dict) and isinstance(audio.get("transcript"), str):
                yield Slot((*path, "audio", "transcript"), "completion", audio["transcript"])
        if isinstance(choice.get("text"), str):
            yield Slot(("choices", i, "text"), "completion", choice["text"])


def _responses_answer(body: Mapping[str, Any]) -> Iterator[Slot]:
    output = body.get("output")
    if not isinstance(output, list):
        return
    for i, item in enumerate(output):
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            yield from _content(item.get("content"), ("output", i, "content"), "completion")
        elif item.get("type") == "function_call":
            yield from _arguments(item, ("output", i))


_ANSWERS = {"chat": _chat_answer, "completions": _chat_answer, "responses": _responses_answer}


def response_slots(operation: str, body: Mapping[str, Any]) -> list[Slot]:
    """Every text of an answer body of ``operation`` (none for an unknown operation)."""
    reader = _ANSWERS.get(operation)
    if reader is None or not isinstance(body, dict):
        return []
    return list(reader(body))


def _replace(node: Any, tree: Mapping[str | int, Any], path: Path) -> Any:
    if isinstance(node, dict):
        copy: dict[Any, Any] = dict(node)
    elif isinstance(node, list):
        copy = dict(enumerate(node))
    else:
        raise ValueError(f"no text at {list(path)}: the body changed since it was read")
    for key, sub in tree.items():
        if key not in copy or (isinstance(node, list) and not isinstance(key, int)):
            raise ValueError(f"no text at {[*path, key]}: the body changed since it was read")
        if isinstance(sub, str):
            if not isinstance(copy[key], str):
                raise ValueError(f"no text at {[*path, key]}: the body changed since it was read")
            copy[key] = sub
        else:
            copy[key] = _replace(copy[key], sub, (*path, key))
    return [copy[i] for i in range(len(node))] if isinstance(node, list) else copy


def with_replacements(body: Mapping[str, Any], texts: Mapping[tuple[str | int, ...], str]) -> Any:
    """A copy of ``body`` with the text at each path replaced; only the containers on those
    paths are copied (``body`` itself is never changed). ``ValueError`` when a path does not
    lead to a string of ``body``."""
    tree: dict[str | int, Any] = {}
    for path, text in texts.items():
        if not path:
            raise ValueError("an empty path names no text")
        node = tree
        for key in path[:-1]:
            nxt = node.setdefault(key, {})
            if isinstance(nxt, str):
                raise ValueError(f"path {list(path)} runs through a replaced text")
            node = nxt
        if isinstance(node.get(path[-1]), dict):
            raise ValueError(f"path {list(path)} runs through a replaced text")
        node[path[-1]] = text
    return _replace(body, tree, ())
