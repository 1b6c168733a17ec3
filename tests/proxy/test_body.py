"""One reading of a JSON body: duplicate keys and case-confusable field names are refused."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyguard.errors import BadRequest
from keyguard.proxy.body import CHECKED_FIELDS, MAX_JSON_VALUES, read_json_object


def refused(body: bytes) -> str:
    with pytest.raises(BadRequest) as info:
        read_json_object(body)
    assert info.value.status == 400
    return info.value.reason


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"gpt-4o","model":"gpt-4o-mini"}',
        b'{"stream":true,"stream":false}',
        b'{"max_tokens":100000,"max_tokens":10}',
        b'{"messages":[{"role":"user","content":"a","content":"b"}]}',
        b'{"a":{"b":{"c":{"d":1,"d":2}}}}',
        b'{"x":"::::","a":1,"a":2}',  # colons in strings do not hide a duplicate
        b'{"a":1,"a":2,"b":"\\u003a"}',  # nor an escaped colon
        b'{"k\\u0065y":1,"key":2}',  # the same key, spelled with an escape
    ],
)
def test_a_key_given_twice_is_refused_at_any_depth(body: bytes) -> None:
    assert refused(body) == "duplicate_json_key"


@pytest.mark.parametrize(
    "body",
    [b'{"Stream":true}', b'{"MODEL":"x"}', b'{"messages":[{"Role":"system","content":"x"}]}'],
)
def test_a_checked_field_in_another_case_is_refused(body: bytes) -> None:
    assert refused(body) == "confusable_json_key"


def test_the_error_names_the_key_and_the_fix() -> None:
    with pytest.raises(BadRequest) as info:
        read_json_object(b'{"max_tokens":1,"max_tokens":2}')
    assert "'max_tokens'" in info.value.message and "once" in info.value.message
    with pytest.raises(BadRequest) as info:
        read_json_object(b'{"Stream":true}')
    assert "'Stream'" in info.value.message and "'stream'" in info.value.message


@pytest.mark.parametrize(
    "body",
    [
        b'{"messages":[{"role":"user","content":"Note: see https://example.com:8080/a?b=c"}]}',
        b'{"a":"\\u003a","b":{"c":[1,2,{"d":"x:y"}]}}',
        b'{"unknown_Field":1,"Temperature_x":2}',  # not a checked field: forwarded as is
        b'{"a:b":1}',
        '{"msg":"caf\u00e9 \u65e5\u672c"}'.encode(),
    ],
)
def test_ordinary_bodies_pass(body: bytes) -> None:
    assert read_json_object(body) == json.loads(body)


@pytest.mark.parametrize("body", [b"[1]", b'{"a":NaN}', b'{"a":Infinity}', b"{", b'{"a":1e400}'])
def test_what_is_not_one_json_object_is_malformed(body: bytes) -> None:
    assert refused(body) == "malformed_json"


def test_deep_nesting_is_refused_not_a_crash() -> None:
    body = b'{"a":' * 200 + b"1" + b"}" * 200
    assert refused(body) == "malformed_json"


KEYS = st.sampled_from(["a", "b", "c", "a:b", "model", "x\u00e9"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.sampled_from(list('ab:"\\é\u2028 ')), max_size=6),
)


def render(node: Any, escape: bool) -> str:
    """JSON text with every pair kept (duplicates included)."""
    if isinstance(node, tuple):  # an object: a tuple of pairs
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=escape)}:{render(v, escape)}"
                              for k, v in node) + "}"  # fmt: skip
    if isinstance(node, list):
        return "[" + ",".join(render(v, escape) for v in node) + "]"
    return json.dumps(node, ensure_ascii=escape)


NODES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(st.tuples(KEYS, inner), max_size=4).map(tuple),
    ),
    max_leaves=12,
)


def has_duplicate(node: Any) -> bool:
    if isinstance(node, tuple):
        keys = [k for k, _ in node]
        return len(keys) != len(set(keys)) or any(has_duplicate(v) for _, v in node)
    if isinstance(node, list):
        return any(has_duplicate(v) for v in node)
    return False


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(KEYS, NODES), max_size=5).map(tuple), st.booleans())
def test_refused_exactly_when_some_object_repeats_a_key(root: Any, escape: bool) -> None:
    body = render(root, escape).encode()
    if has_duplicate(root):
        assert refused(body) == "duplicate_json_key"
    else:
        assert read_json_object(body) == orjson.loads(body)


def test_every_checked_field_is_lower_case() -> None:
    assert all(name == name.lower() for name in CHECKED_FIELDS)


def test_a_body_of_too_many_strings_objects_or_arrays_is_refused_and_says_how_to_fix_it() -> None:
    many = MAX_JSON_VALUES  # with the body's object and its list: one over
    assert refused(orjson.dumps({"metadata": ["a"] * many})) == "too_many_json_values"
    assert refused(orjson.dumps({"m": [[{}]] * (many // 2)})) == "too_many_json_values"
    chat = {"messages": [{"role": "user", "content": "x"}] * (many // 3)}
    assert refused(orjson.dumps(chat)) == "too_many_json_values"
    with pytest.raises(BadRequest) as info:
        read_json_object(orjson.dumps({"input": ["a"] * many}))
    assert "100,000" in info.value.message and "fewer" in info.value.message


def test_the_value_cap_leaves_real_batches_alone() -> None:
    at_cap = {"input": ["a"] * (MAX_JSON_VALUES - 2)}  # the object, its list, the strings
    assert read_json_object(orjson.dumps(at_cap)) == at_cap
    tokens = {"input": [list(range(100))] * 2048}  # an embeddings batch of token arrays
    assert read_json_object(orjson.dumps(tokens)) == tokens
    chat = {"messages": [{"role": "user", "content": "x"}] * 30_000}
    assert read_json_object(orjson.dumps(chat)) == chat


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":"\\u003a","b":"\\\\u003a:","c":"\\\\\\u003A"}',  # escaped colons, counted
        b'{"x":[' + b"1," * 40_000 + b'1],"k":"\\u003a"}',
    ],
)
def test_an_escaped_colon_is_counted_not_read_again(
    monkeypatch: pytest.MonkeyPatch, body: bytes
) -> None:
    """The standard library's parser (pure Python per object: 0.1 s to 0.16 s more for 4 MB
    of numbers on the event loop) reads a body again only to name a duplicated key."""
    reads = count_second_reads(monkeypatch)
    assert read_json_object(body) == json.loads(body)
    assert reads == []


def test_a_large_body_with_a_duplicate_is_refused_without_a_second_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads = count_second_reads(monkeypatch)
    large = b'{"x":[' + b"1," * 40_000 + b'1],"a":1,"a":2}'
    assert refused(large) == "duplicate_json_key"
    assert reads == []
    assert refused(b'{"a":1,"a":2,"b":"\\u003a"}') == "duplicate_json_key"
    assert len(reads) == 1  # a small body's error names the key


def count_second_reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    from types import SimpleNamespace

    from keyguard.proxy import body as module

    reads: list[bytes] = []

    def loads(data: bytes, **kw: Any) -> Any:
        reads.append(data)
        return json.loads(data, **kw)

    monkeypatch.setattr(module, "json", SimpleNamespace(loads=loads))
    return reads


def render_escaped(node: Any) -> str:
    """As :func:`render`, every colon inside a string spelled ``\\u003a`` or ``\\u003A``."""

    def text(value: Any) -> str:
        out = json.dumps(value)
        if isinstance(value, str):
            parts = out.split(":")
            out = "".join(p + ("\\u003a", "\\u003A")[i % 2] for i, p in enumerate(parts[:-1]))
            out += parts[-1]
        return out

    if isinstance(node, tuple):
        return "{" + ",".join(f"{text(k)}:{render_escaped(v)}" for k, v in node) + "}"
    if isinstance(node, list):
        return "[" + ",".join(render_escaped(v) for v in node) + "]"
    return text(node)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(KEYS, NODES), max_size=5).map(tuple))
def test_refused_exactly_when_some_object_repeats_a_key_whatever_colons_are_escaped(
    root: Any,
) -> None:
    body = render_escaped(root).encode()
    if has_duplicate(root):
        assert refused(body) == "duplicate_json_key"
    else:
        assert read_json_object(body) == orjson.loads(body)
