"""The minimal Redis client: RESP parsing (pure) and a round trip on a real server."""

from __future__ import annotations

import pytest

from keyguard.limits.resp import RespClient, RespError, _Incomplete, _parse, bulks, encode


def test_commands_are_encoded_as_resp_arrays() -> None:
    assert (
        encode(("SET", "k", 12, b"\x00"))
        == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$1\r\n\x00\r\n"
    )
    # Lengths are in bytes, not characters; a command may be assembled from encoded parts.
    assert encode(("SET", "é", 1)) == b"*3\r\n$3\r\nSET\r\n$2\r\n\xc3\xa9\r\n$1\r\n1\r\n"
    assert b"*3\r\n" + bulks(["SET", "é"]) + bulks(["1"]) == encode(("SET", "é", 1))


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b":42\r\n", 42),
        (b"+OK\r\n", b"OK"),
        (b"$3\r\nabc\r\n", b"abc"),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"*3\r\n:1\r\n*2\r\n:2\r\n$1\r\nx\r\n$0\r\n\r\n", [1, [2, b"x"], b""]),
    ],
)
def test_replies_are_parsed(raw: bytes, value: object) -> None:
    assert _parse(raw, 0) == (value, len(raw))
    for cut in range(1, len(raw)):
        with pytest.raises(_Incomplete):
            _parse(raw[:cut], 0)


def test_error_replies_become_exceptions() -> None:
    error, _ = _parse(b"-NOSCRIPT No matching script\r\n", 0)
    assert isinstance(error, RespError) and str(error).startswith("NOSCRIPT")


@pytest.mark.redis
async def test_pipelined_calls_on_a_real_server(redis_url: str, redis_prefix: str) -> None:
    import asyncio

    client = RespClient(redis_url, timeout=2)
    try:
        key = redis_prefix + "resp"
        replies = await asyncio.gather(*(client.call("INCRBY", key, 1) for _ in range(50)))
        assert sorted(replies) == list(range(1, 51))
        assert await client.call("GET", key) == b"50"
        with pytest.raises(RespError):
            await client.call("NOSUCHCOMMAND")
        assert await client.call("DEL", key) == 1
    finally:
        await client.close()


async def test_an_unreachable_server_is_a_connection_error() -> None:
    client = RespClient("redis://127.0.0.1:1/0", timeout=2)
    with pytest.raises(OSError):
        await client.call("PING")
    await client.close()
