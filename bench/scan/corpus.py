"""The labelled corpus: templates with placeholders, filled with freshly generated keys.

Templates live in ``bench/scan/corpus/**/*.tmpl`` (the ``.tmpl`` suffix is dropped when
filling). A placeholder is ``[[@spec]]``:

    [[@AZURE:openai]]            a fresh value (any generator of keyguard.scan.testkeys)
    [[@$k=AZURE:ai_services]]    ... bound to $k and emitted
    [[@$k:=LEGACY]]              ... bound, not emitted
    [[@$k]]                      $k again (another labelled occurrence)
    [[@$k|b64]]                  $k through a filter: b64, b64url, url, pct, jsonu,
                                 kv:NAME, basic:USER, b64json:NAME
    [[@$k[0:40]]] [[@$k[40:]]]   slices: together one labelled occurrence spanning their lines

Every emitted positive value (see ``testkeys.expected_kind``) is a label: file, line range,
kind and the value itself (kept in memory only, to compute the expected fingerprint).
Negative generators (HEX32, SHA1, UUID, LOOKALIKE_*, ...) produce no label: any finding on
them is a false positive.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from keyguard.scan.testkeys import expected_kind, generate

TEMPLATES = Path(__file__).parent / "corpus"
_PLACEHOLDER = re.compile(r"\[\[@(.*?)\]\](?!\])")
_SPEC = re.compile(
    r"^(?:\$(?P<name>\w+)(?P<bind>:?=))?(?P<gen>[A-Z][A-Z0-9_]*)(?::(?P<arg>[^|\]]*))?"
    r"(?:\|(?P<filter>.+))?$"
)
_REF = re.compile(r"^\$(?P<name>\w+)(?:\[(?P<lo>-?\d*):(?P<hi>-?\d*)\])?(?:\|(?P<filter>.+))?$")


@dataclass
class Label:
    file: str
    line: int
    end_line: int
    kind: str
    secret: str
    form: str  # plain, split, b64, url, pct, jsonu, kv, basic, b64json, notebook


def _filter(value: str, spec: str) -> str:
    name, _, arg = spec.partition(":")
    if name == "b64":
        return base64.b64encode(value.encode()).decode()
    if name == "b64url":
        return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
    if name == "url":
        return "".join(f"%{b:02X}" for b in value.encode())
    if name == "pct":  # what a URL query holds: only reserved characters escaped
        return quote(value, safe="")
    if name == "jsonu":
        return "".join(f"\\u{ord(c):04x}" for c in value)
    if name == "kv":
        return base64.b64encode(f"{arg}={value}".encode()).decode()
    if name == "basic":
        return base64.b64encode(f"{arg}:{value}".encode()).decode()
    if name == "b64json":
        doc = f'{{"endpoint": "https://cfg.openai.azure.com/", "{arg}": "{value}"}}'
        return base64.b64encode(doc.encode()).decode()
    raise ValueError(f"unknown filter {spec!r}")


@dataclass
class _Bound:
    value: str
    kind: str | None


class _FileFiller:
    def __init__(self, rel: str) -> None:
        self.rel = rel
        self.bound: dict[str, _Bound] = {}
        self.labels: list[Label] = []
        self.slices: dict[str, Label] = {}

    def _label(self, line: int, bound: _Bound, form: str) -> None:
        if bound.kind is not None:
            form = "notebook" if self.rel.endswith(".ipynb") and form == "plain" else form
            self.labels.append(Label(self.rel, line, line, bound.kind, bound.value, form))

    def expand(self, spec: str, line: int) -> str:
        ref = _REF.match(spec)
        if ref:
            bound = self.bound[ref.group("name")]
            if ref.group("lo") is not None:
                lo = int(ref.group("lo") or 0)
                hi = int(ref.group("hi")) if ref.group("hi") else len(bound.value)
                if bound.kind is not None:
                    key = ref.group("name")
                    lab = self.slices.get(key)
                    if lab is None:
                        lab = Label(self.rel, line, line, bound.kind, bound.value, "split")
                        self.slices[key] = lab
                        self.labels.append(lab)
                    lab.line, lab.end_line = min(lab.line, line), max(lab.end_line, line)
                return bound.value[lo:hi]
            flt = ref.group("filter")
            self._label(line, bound, flt.partition(":")[0] if flt else "plain")
            return _filter(bound.value, flt) if flt else bound.value
        m = _SPEC.match(spec)
        if m is None:
            raise ValueError(f"{self.rel}:{line}: bad placeholder [[@{spec}]]")
        gen, arg = m.group("gen"), m.group("arg") or ""
        bound = _Bound(generate(gen, arg), expected_kind(gen, arg))
        if m.group("name"):
            self.bound[m.group("name")] = bound
            if m.group("bind") == ":=":
                return ""
        flt = m.group("filter")
        self._label(line, bound, flt.partition(":")[0] if flt else "plain")
        return _filter(bound.value, flt) if flt else bound.value


def fill_text(rel: str, template: str) -> tuple[str, list[Label]]:
    filler = _FileFiller(rel)
    out = []
    for i, line in enumerate(template.split("\n"), start=1):
        out.append(_PLACEHOLDER.sub(lambda m, i=i: filler.expand(m.group(1), i), line))
    return "\n".join(out), filler.labels


def template_files(root: Path = TEMPLATES) -> list[Path]:
    return sorted(p for p in root.rglob("*.tmpl") if p.is_file())


def fill_corpus(out_dir: Path, root: Path = TEMPLATES) -> list[Label]:
    """Write every template, filled, under ``out_dir``; return all labels."""
    labels: list[Label] = []
    for path in template_files(root):
        rel = path.relative_to(root).as_posix().removesuffix(".tmpl")
        text, found = fill_text(rel, path.read_text(encoding="utf-8"))
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
        labels.extend(found)
    return labels
