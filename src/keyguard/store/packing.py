"""How a record's JSON is kept in the store: deflated against a fixed dictionary (pure).

A request record is mostly the same key names and a few common values, each record on its own
(the audit rows are read and deleted one by one, so they cannot share a compressed stream).
Deflate primed with a dictionary holding those names and values keeps only what differs: a
request record of about 550 bytes of JSON takes about 100-140 bytes. What is hashed, exported,
sent to a SIEM and verified is still the canonical JSON text (:mod:`.chain`): the packing is
the store's alone, undone on every read.

A packed value is one format byte, then the raw deflate stream. The dictionary of a format is
never changed (rows written with it must stay readable); another dictionary is another format
byte. The ``packed`` column holds it, and ``data`` is then ``''`` (which no canonical JSON is);
rows written before (or by hand) keep their text in ``data``, which is read when not empty.
"""

from __future__ import annotations

import zlib

__all__ = ["pack", "unpack", "FORMAT"]

FORMAT = 1
_WBITS = -11  # raw deflate, a 2 KiB window: the dictionary and a typical record fit in it
_LEVEL = 1  # measured: level 6 saves about 15 more bytes a record for twice the time
_MEM = 4
_LIMIT = 1 << 26  # the largest record text unpacked (64 MiB; max_record_bytes is far below)

# Format 1 (never to be changed): a segment record, the fields of the other kinds, then a
# request record (core/observation.py) with common values, the most frequent strings last
# (deflate reaches them the cheapest).
_DICTIONARIES = {
    1: (
        b'{"after":{"hash":"","seq":0},"event":"open","found":[],"writer":""}{"action":"",'
        b'"actor":"cli:","after":null,"before":null,"content":{"completion":"","prompt":""'
        b'},"evidence":{},"guardrails":[],"out_of_range":true,"presented_key_id":"","promp'
        b't_digest":"","refused":"","requested":"","severity":"warning","summary":"","targ'
        b'et":"key:","upstream":null}{"api_version":"2024-10-21","app":"","at":1800000000.'
        b'0,"cached_tokens":0,"client":"python/3.11 openai/1.54.0 linux x64","completion_t'
        b'okens":0,"cost":0.0,"decision":"allow","deployment":"gpt-4o","empty_prompt":fals'
        b'e,"key_id":"","latency_ms":0.0,"max_tokens":0,"network":"10.0.0.0/16","operation'
        b'":"chat","prompt_tokens":0,"reason":"ok","request_id":"","seed":null,"source":"1'
        b'0.0.0.1","status":200,"stream":false,"temperature":0.0,"upstream_ms":0.0,"upstre'
        b'am_status":200,"user_agent":"OpenAI/Python 1.54.0"}'
    ),
}


# A compressor primed with the format's dictionary, copied for each record: the same bytes as
# a fresh one, for a fifth fewer instructions (the dictionary is not hashed again per record).
# A copy is taken under the object's own lock, so the writer's threads may share it.
_PRIMED = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEM, zlib.Z_DEFAULT_STRATEGY,
                           _DICTIONARIES[FORMAT])  # fmt: skip
_HEAD = bytes((FORMAT,))


def pack(data: str) -> bytes:
    """``data`` (canonical JSON) as stored: the format byte and its deflate stream."""
    deflate = _PRIMED.copy()
    return _HEAD + deflate.compress(data.encode()) + deflate.flush()


def unpack(packed: bytes) -> str:
    """The JSON text of a packed value; raises :class:`ValueError` when it is none (a format
    this version does not know, damaged or forged bytes)."""
    dictionary = _DICTIONARIES.get(packed[0]) if packed else None
    if dictionary is None:
        raise ValueError("not a packed audit record of a known format")
    inflate = zlib.decompressobj(_WBITS, dictionary)
    try:
        text = inflate.decompress(packed[1:], _LIMIT)  # bounded: a forged row is no bomb
        if not inflate.eof or inflate.unused_data or inflate.unconsumed_tail:
            raise ValueError("a packed audit record that does not end where it should")
        return text.decode()
    except (zlib.error, UnicodeDecodeError) as exc:
        raise ValueError(f"a damaged packed audit record ({exc})") from None
