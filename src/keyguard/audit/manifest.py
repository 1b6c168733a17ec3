"""An archive manifest: what :mod:`.archive` signs for each chain it moves out of the store."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from .chain import canonical

__all__ = ["Manifest"]


@dataclass(frozen=True, slots=True)
class Manifest:
    chain: str
    file: str
    sha256: str
    records: int
    last_seq: int
    last_hash: str
    created: str
    prev: str  # SHA-256 of the previous manifest line ("0" * 64 for the first)
    key_id: str
    signature: str = ""
    size: int | None = None  # the file's length in bytes (manifests before it had none)

    def payload(self) -> bytes:
        fields = {
            "type": "archive", "chain": self.chain, "file": self.file, "sha256": self.sha256,
            "records": self.records, "last_seq": self.last_seq, "last_hash": self.last_hash,
            "created": self.created, "prev": self.prev, "key_id": self.key_id,
        }  # fmt: skip
        if self.size is not None:
            fields["bytes"] = self.size
        return canonical(fields).encode()

    def line(self) -> str:
        return canonical({**orjson.loads(self.payload()), "signature": self.signature})

    @classmethod
    def from_line(cls, line: str) -> Manifest:
        obj = orjson.loads(line)
        if not isinstance(obj, dict) or obj.get("type") != "archive":
            raise ValueError("not an archive manifest")
        return cls(
            chain=str(obj["chain"]), file=str(obj["file"]), sha256=str(obj["sha256"]),
            records=int(obj["records"]), last_seq=int(obj["last_seq"]),
            last_hash=str(obj["last_hash"]), created=str(obj["created"]),
            prev=str(obj["prev"]), key_id=str(obj["key_id"]), signature=str(obj["signature"]),
            size=None if obj.get("bytes") is None else int(obj["bytes"]),
        )  # fmt: skip
