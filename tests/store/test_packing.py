"""A record's JSON packed for the store: it comes back exactly, whatever it holds; bytes that
are not a packed record (another format, damaged, forged, a bomb) are refused, never
inflated without bound."""

from __future__ import annotations

import hashlib
import zlib
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from keyguard.audit.chain import canonical
from keyguard.store import packing
from keyguard.store.packing import FORMAT, pack, unpack

REQUEST = canonical({
    "api_version": "2024-10-21", "app": "billing", "at": 1800000000.25, "cached_tokens": 0,
    "client": "python/3.11 openai/1.54.0 linux x64", "completion_tokens": 42, "cost": 0.00093,
    "decision": "allow", "deployment": "gpt-4o", "key_id": "KEYAAAAAAAA1", "latency_ms": 41.5,
    "network": "10.0.0.0/16", "operation": "chat", "prompt_tokens": 181, "reason": "ok",
    "request_id": "9f1c2d3e4f506172", "source": "10.0.1.17", "status": 200,
    "upstream_ms": 38.2, "upstream_status": 200, "user_agent": "OpenAI/Python 1.54.0",
})  # fmt: skip


@pytest.mark.parametrize(
    "data",
    [
        REQUEST,
        canonical({"action": "keys.create", "actor": "cli:root", "target": "key:K"}),
        canonical({"prompt": "é ✓ 😀 \u0000 \\ \" '", "n": [1, 2.5, None, True]}),
        canonical({"big": "x" * 2_000_000}),  # far beyond the window
        canonical({}),
    ],
)
def test_a_record_comes_back_exactly(data: str) -> None:
    packed = pack(data)
    assert packed[0] == FORMAT and unpack(packed) == data


def fresh(data: str) -> bytes:
    """The record packed by a compressor of its own, primed with format 1's dictionary."""
    deflate = zlib.compressobj(1, zlib.DEFLATED, -11, 4, zlib.Z_DEFAULT_STRATEGY,
                               packing._DICTIONARIES[FORMAT])  # fmt: skip
    return bytes((FORMAT,)) + deflate.compress(data.encode()) + deflate.flush()


def test_each_record_is_packed_alone_whatever_came_before_and_on_any_thread() -> None:
    """The primed compressor is copied per record: nothing of one record (or of another
    thread's) reaches the next one's bytes."""
    records = [canonical({"n": i, "text": "abc" * i, "request_id": f"{i:016x}"}) for i in range(64)]
    records.append(REQUEST)
    assert [pack(r) for r in records] == [fresh(r) for r in records]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(pack, records * 8)) == [fresh(r) for r in records * 8]


def test_a_request_record_takes_a_fraction_of_its_json() -> None:
    assert len(pack(REQUEST)) < len(REQUEST) / 3


@pytest.mark.parametrize(
    "packed",
    [
        b"",
        b"\x00" + pack(REQUEST)[1:],  # a format this version does not know
        b"\xff" + pack(REQUEST)[1:],
        pack(REQUEST)[:-3],  # cut short
        pack(REQUEST) + b"more",  # something after its end
        b"\x01" + b"not deflate at all",
        b"\x01" + bytes(range(256)),
    ],
)
def test_bytes_that_are_not_a_packed_record_are_refused(packed: bytes) -> None:
    with pytest.raises(ValueError):
        unpack(packed)


def test_a_forged_bomb_is_not_inflated_without_bound() -> None:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -11)
    bomb = deflate.compress(b"a" * (1 << 27)) + deflate.flush()  # 128 MiB in ~130 KB
    assert len(bomb) < 1 << 18
    with pytest.raises(ValueError, match="does not end"):
        unpack(bytes((FORMAT,)) + bomb)


def test_the_dictionary_of_format_1_never_changes() -> None:
    # rows written with it must stay readable: its bytes are pinned (a new dictionary is a new
    # format byte), and a row packed by this version unpacks
    assert hashlib.sha256(packing._DICTIONARIES[1]).hexdigest() == PINNED
    assert orjson.loads(unpack(pack(REQUEST)))["request_id"] == "9f1c2d3e4f506172"


PINNED = "f216157308b95931b281da92179d3c2b427923a381b55a0f5455b262a15cf927"
