"""The guardrails' labelled corpus: YAML case templates filled with fresh values.

Cases live in ``bench/guard/corpus/*.yaml``; each is a mapping with ``id``, ``family``
(``secret``, ``personal``, ``custom``, ``negative``, ``injection``), ``form`` (``plain``,
``code``, ``log``, ``json``, ``yaml``, ``tool``, ``multipart``, ``base64``, ``url``,
``split``, ``invisible``, ...), and either ``text`` or ``body`` (a request body, with
``operation``, default ``chat``); optional ``each`` (generator names: the case is expanded
once per name, ``*`` in placeholders standing for it), ``also`` (categories the fixed text
itself holds), ``config`` (a ``guardrails:`` section for custom rules).

Placeholders in strings: ``{{GEN}}`` or ``{{*}}`` a value (one per name per case),
``{{GEN:label}}`` / ``{{GEN:key}}`` the words or field name that go with it, and filters
``{{GEN|json}}`` (escaped for a JSON string), ``|b64kv`` (base64 of ``key=value``), ``|b64``,
``|pct`` (percent-encoded), ``|lower``, ``|nbsp`` (no-break spaces), ``|dots`` (grouped
with dots), ``|e164`` (``+`` and the digits), ``|half1`` / ``|half2`` (the two halves),
``|zw`` (zero-width spaces inside). The expected categories of a case are those of the
positive generators it uses, plus ``also``.
"""

from __future__ import annotations

import base64
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from generators import GENERATORS, make

CASES = Path(__file__).parent / "corpus"
_PLACEHOLDER = re.compile(r"\{\{([A-Z0-9_*]+)(?::(label|key))?(?:\|([a-z0-9]+))?\}\}")


@dataclass
class Case:
    id: str
    family: str
    form: str
    expect: set[str]
    text: str | None = None
    body: dict[str, Any] | None = None
    operation: str = "chat"
    config: dict[str, Any] = field(default_factory=dict)


def _filter(value: str, key: str, name: str | None) -> str:
    if name is None:
        return value
    if name == "json":
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    if name == "b64kv":
        return base64.b64encode(f"{key}={value}".encode()).decode()
    if name == "b64":
        return base64.b64encode(value.encode()).decode()
    if name == "pct":
        return quote(value, safe="")
    if name == "lower":
        return value.lower()
    if name == "dots":
        return value.replace(" ", ".").replace("-", ".")
    if name == "e164":
        return "+" + "".join(c for c in value if c.isdigit())
    if name == "nbsp":
        return value.replace(" ", "\u00a0")
    if name in ("half1", "half2"):
        cut = len(value) // 2
        return value[:cut] if name == "half1" else value[cut:]
    if name == "zw":
        return "\u200b".join(value[i : i + 8] for i in range(0, len(value), 8))
    raise ValueError(f"unknown filter {name!r}")


class _Filler:
    def __init__(self, rng: random.Random, star: str | None) -> None:
        self.rng, self.star = rng, star
        self.values: dict[str, tuple[str | None, tuple[str, str, str]]] = {}

    def _value(self, name: str) -> tuple[str | None, tuple[str, str, str]]:
        gen = self.star if name == "*" else name
        if gen is None or gen not in GENERATORS:
            raise ValueError(f"unknown generator {name!r}")
        if gen not in self.values:
            self.values[gen] = make(gen, self.rng)
        return self.values[gen]

    def fill(self, node: Any) -> Any:
        if isinstance(node, str):
            return _PLACEHOLDER.sub(self._sub, node)
        if isinstance(node, list):
            return [self.fill(n) for n in node]
        if isinstance(node, dict):
            return {self.fill(k): self.fill(v) for k, v in node.items()}
        return node

    def _sub(self, m: re.Match[str]) -> str:
        _, (value, label, key) = self._value(m.group(1))
        if m.group(2) == "label":
            return label
        if m.group(2) == "key":
            return key
        return _filter(value, key, m.group(3))

    def expected(self) -> set[str]:
        return {cat for cat, _ in self.values.values() if cat is not None}


def load_cases(seed: int | None = None, root: Path = CASES) -> list[Case]:
    """Every case of every template file, filled (``seed`` makes a build repeatable)."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for path in sorted(root.glob("*.yaml")):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8")):
            for star in entry.get("each") or [None]:
                filler = _Filler(rng, star)
                text = filler.fill(entry["text"]) if "text" in entry else None
                body = filler.fill(entry["body"]) if "body" in entry else None
                cid = f"{path.stem}/{entry['id']}" + (f"/{star}" if star else "")
                cases.append(
                    Case(
                        id=cid,
                        family=entry["family"],
                        form=entry.get("form", "plain"),
                        expect=filler.expected() | set(entry.get("also", [])),
                        text=text,
                        body=body,
                        operation=entry.get("operation", "chat"),
                        config=entry.get("config", {}),
                    )
                )
    return cases
