"""Where a configuration error is: the file, the line, and a did-you-mean for unknown keys.

:func:`read_yaml` parses a YAML file and records the line of every key and list item, so a
validation error at ``upstreams.0.deployments`` can say ``keyguard.yaml:14``.
:func:`describe_error` turns the first of pydantic's errors into one line naming the fix::

    keyguard.yaml:3: stroe: unknown key; did you mean 'store'? (fix the key or remove it)
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from .errors import ConfigurationError

__all__ = ["Lines", "read_yaml", "describe_error", "line_of", "suggest"]

#: the 1-based line of each key path (``("upstreams", 0, "name")``) in the file
Lines = dict[tuple[str | int, ...], int]


def _walk(node: yaml.Node, path: tuple[str | int, ...], lines: Lines) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, str(key.value))
            lines.setdefault(sub, key.start_mark.line + 1)
            _walk(value, sub, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.setdefault((*path, i), item.start_mark.line + 1)
            _walk(item, (*path, i), lines)


def read_yaml(path: Path, *, hint: str = "") -> tuple[Any, Lines]:
    """The parsed document and the line of every key in it; one-line errors naming the file
    (a missing file's error ends with ``hint``: how to name another one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"config file '{path}' does not exist{hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigurationError(f"config file '{path}' cannot be read: {reason}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigurationError(
            f"{where}: not valid YAML ({problem}); check the indentation and quoting there"
        ) from None
    lines: Lines = {}
    if node is not None:
        _walk(node, (), lines)
    return data, lines


def line_of(loc: Sequence[Any], lines: Lines) -> int | None:
    """The line of the deepest known prefix of ``loc``."""
    key = tuple(p for p in loc if isinstance(p, int) or "[" not in str(p))
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return None


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The settings models an annotation can hold (through Optional, lists and dicts)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, dict, tuple, Sequence, Mapping):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def _keys_at(model: type[BaseModel], loc: Sequence[str | int]) -> set[str]:
    """The keys a mapping at ``loc`` (inside ``model``) may have; empty when unknown."""
    candidates = [model]
    for part in loc:
        if isinstance(part, int) or not candidates:
            continue  # a list index or a dict key: the item's model is the same
        following: list[type[BaseModel]] = []
        for m in candidates:
            field = m.model_fields.get(part)
            if field is not None:
                following += _models(field.annotation)
        if following:
            candidates = following
        else:  # a free-form dict key (a deployment's name): stay on the value's models
            continue
    keys: set[str] = set()
    for m in candidates:
        for name, field in m.model_fields.items():
            keys.add(field.alias or name)
    return keys


def suggest(word: str, choices: set[str]) -> str:
    """``; did you mean 'store'?`` or nothing."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def describe_error(
    error: Mapping[str, Any], model: type[BaseModel], lines: Lines, source: str
) -> str:
    """One line for one pydantic error: ``FILE:LINE: key.path: what is wrong; the fix``."""
    loc: list[str | int] = [
        p
        for p in error.get("loc", ())
        if isinstance(p, int) or (isinstance(p, str) and "[" not in p)
    ]
    line = line_of(loc, lines)
    where = f"{source}:{line}" if line is not None else source
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    if error.get("type") == "extra_forbidden" and loc and isinstance(loc[-1], str):
        allowed = _keys_at(model, loc[:-1])
        hint = suggest(loc[-1], allowed)
        return f"{where}: {dotted}: unknown key{hint} (fix the key or remove it)"
    msg = str(error.get("msg", "is not valid"))
    msg = msg.removeprefix("Value error, ")
    if error.get("type") == "missing":
        return f"{where}: {dotted}: a required key is missing; add it"
    return f"{where}: {dotted}: {msg}"
