"""Deterministic embeddings, images and audio: cheap to make, valid to decode.

* Embeddings: unit-length float32 vectors from SHAKE-256 of the input, so the ``float`` and
  ``base64`` encodings carry exactly the same numbers.
* Images: a valid 1x1 PNG whose colour comes from the prompt hash.
* Speech: silent MPEG-1 Layer III frames (``mp3``; also labelled ``opus``/``aac``/``flac``),
  or 16 kHz 16-bit mono silence (``wav``, ``pcm``); the length grows with the input text.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import zlib
from array import array
from collections.abc import Sequence
from functools import lru_cache

__all__ = [
    "default_dimensions",
    "embedding_vector",
    "encode_vector",
    "png_image",
    "speech_audio",
    "SPEECH_CONTENT_TYPES",
]

SPEECH_CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, mono: 417-byte frames of 1152 samples (26 ms).
_MP3_FRAME = bytes([0xFF, 0xFB, 0x90, 0xC4]) + bytes(413)
_MP3_FRAME_SECONDS = 1152 / 44100


def default_dimensions(model: str) -> int:
    return 3072 if "large" in model else 1536


@lru_cache(maxsize=4096)
def embedding_vector(text: str, dimensions: int) -> tuple[float, ...]:
    """A unit-length vector, float32-exact, deterministic in ``(text, dimensions)``."""
    raw = hashlib.shake_256(f"{dimensions}:{text}".encode()).digest(4 * dimensions)
    ints = array("i")
    ints.frombytes(raw)
    norm = math.sqrt(sum(float(v) * v for v in ints)) or 1.0
    floats = array("f", (v / norm for v in ints))
    return tuple(floats)


def encode_vector(vector: Sequence[float], encoding: str) -> list[float] | str:
    """``float`` → a JSON list; ``base64`` → little-endian float32 bytes in base64."""
    if encoding == "base64":
        packed = array("f", vector)
        if packed.itemsize != 4:  # pragma: no cover - every supported platform has 4-byte floats
            raise RuntimeError("float32 array needed")
        return base64.b64encode(packed.tobytes()).decode("ascii")
    return list(vector)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_image(seed: bytes) -> bytes:
    """A valid 1x1 RGB PNG coloured from ``seed``."""
    red, green, blue = (seed + b"\x80\x80\x80")[:3]
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes([0, red, green, blue]))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", pixels)
        + _chunk(b"IEND", b"")
    )


def _seconds_for(text: str) -> float:
    return min(30.0, 0.5 + 0.35 * len(text.split()))


def speech_audio(text: str, response_format: str) -> bytes:
    """Silent audio lasting about as long as reading ``text`` aloud."""
    seconds = _seconds_for(text)
    if response_format in ("wav", "pcm"):
        samples = int(seconds * 16000)
        pcm = bytes(2 * samples)
        if response_format == "pcm":
            return pcm
        fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
        body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        body += b"data" + struct.pack("<I", len(pcm)) + pcm
        return b"RIFF" + struct.pack("<I", len(body)) + body
    return _MP3_FRAME * max(1, round(seconds / _MP3_FRAME_SECONDS))
