"""The issuer's JWK Set, read entry by entry: each key usable, or ignored with a reason.

A hostile or careless JWKS can never break the set: every entry is checked on its own, and a
bad entry is skipped while the good ones are kept. An entry is used only when

* it is a JSON object with a ``kid`` (1-256 characters) and a string ``kty``; ``use``
  absent or ``sig``, ``key_ops`` absent or a list naming ``verify``, ``alg`` absent or a
  string -- members of any other type make the entry invalid;
* it holds a **public** key only (``d``, ``p``, ``q``, ... or a symmetric ``oct`` key: never);
* RSA: ``n`` and ``e`` strings making a valid key of 2048 to 16384 bits with an exponent of
  at most 2**32, for RS256;
* EC: on P-256, P-384 or P-521 (``x``/``y`` of the curve's length, a point on it), for
  ES256, ES384 or ES512 respectively;
* its algorithm (``alg`` when given, which must match the key) is one Keyguard allows;
* its ``kid`` appears once: two entries with one ``kid`` are both ignored.

Invalid, weak and off-curve keys come back as ``problems`` (the caller logs them in one
line); keys merely for another algorithm or use are left out silently. Keys are parsed and
signatures verified with PyJWT's algorithm implementations (on ``cryptography``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import Algorithm, get_default_algorithms

__all__ = ["KeySet", "MAX_KEYS", "MAX_KID_LENGTH", "SigningKey", "read_key_set"]

MAX_KID_LENGTH = 256
MAX_KEYS = 100  # entries read from one answer (Entra publishes fewer than 10)
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384  # verification cost grows with the modulus ...
MAX_RSA_EXPONENT = 2**32  # ... and with the exponent (everyone uses 65537)
_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_OTHER_RSA = frozenset({"RS384", "RS512", "PS256", "PS384", "PS512", "RSA-OAEP", "RSA-OAEP-256"})
_PRIVATE = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_ALGORITHMS: dict[str, Algorithm] = {
    name: algorithm
    for name, algorithm in get_default_algorithms().items()
    if name in ("RS256", "ES256", "ES384", "ES512")
}


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str  # RS256, ES256, ES384 or ES512
    key: RSAPublicKey | EllipticCurvePublicKey = field(repr=False)

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        try:
            return bool(_ALGORITHMS[self.algorithm].verify(signing_input, self.key, signature))
        except (ValueError, TypeError):  # pragma: no cover - PyJWT answers False itself
            return False


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: dict[str, SigningKey]
    problems: list[str]  # one short line per entry ignored for a fault, for the log


class _Ignored(Exception):
    def __init__(self, problem: str | None) -> None:
        super().__init__(problem)
        self.problem = problem  # None: not for us (another algorithm or use), not a fault


def _string(entry: dict[str, Any], name: str) -> str | None:
    value = entry.get(name)
    if value is not None and not isinstance(value, str):
        raise _Ignored(f"'{name}' is not a string")
    return value


def _rsa(entry: dict[str, Any], alg: str | None) -> tuple[str, Any]:
    if alg is not None and alg != "RS256":
        raise _Ignored(None if alg in _OTHER_RSA else f"'alg' {alg!r:.20} is not for an RSA key")
    n, e = _string(entry, "n"), _string(entry, "e")
    if n is None or e is None:
        raise _Ignored("an RSA key without 'n' and 'e'")
    try:
        key = _ALGORITHMS["RS256"].from_jwk({"kty": "RSA", "n": n, "e": e})
    except Exception:  # whatever PyJWT or cryptography make of hostile numbers
        raise _Ignored("not a valid RSA public key") from None
    if not isinstance(key, RSAPublicKey):  # pragma: no cover - only public members passed
        raise _Ignored("not an RSA public key")
    if key.key_size < MIN_RSA_BITS:
        raise _Ignored(f"an RSA key of {key.key_size} bits, under {MIN_RSA_BITS}")
    if key.key_size > MAX_RSA_BITS:
        raise _Ignored(f"an RSA key of {key.key_size} bits, over {MAX_RSA_BITS}")
    if key.public_numbers().e > MAX_RSA_EXPONENT:
        raise _Ignored("an RSA public exponent over 2**32")
    return ("RS256", key)


def _ec(entry: dict[str, Any], alg: str | None) -> tuple[str, Any]:
    crv = _string(entry, "crv")
    expected = _CURVES.get(crv or "")
    if expected is None:
        raise _Ignored(f"curve {crv!r:.40} is not P-256, P-384 or P-521")
    if alg is not None and alg != expected:
        raise _Ignored(f"'alg' {alg!r:.20} does not match curve {crv}")
    x, y = _string(entry, "x"), _string(entry, "y")
    if x is None or y is None:
        raise _Ignored("an EC key without 'x' and 'y'")
    try:
        key = _ALGORITHMS[expected].from_jwk({"kty": "EC", "crv": crv, "x": x, "y": y})
    except Exception:  # wrong coordinate length, a point off the curve, ...
        raise _Ignored("not a valid EC public key") from None
    if not isinstance(key, EllipticCurvePublicKey):  # pragma: no cover
        raise _Ignored("not an EC public key")
    return (expected, key)


def _read_entry(entry: Any, algorithms: frozenset[str]) -> SigningKey:
    if not isinstance(entry, dict):
        raise _Ignored("not a JSON object")
    kid = entry.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        raise _Ignored("no 'kid' of 1-256 characters")
    kty, use, alg = _string(entry, "kty"), _string(entry, "use"), _string(entry, "alg")
    ops = entry.get("key_ops")
    if ops is not None and not (isinstance(ops, list) and all(isinstance(o, str) for o in ops)):
        raise _Ignored("'key_ops' is not a list of strings")
    if any(name in entry for name in _PRIVATE) or kty == "oct":
        raise _Ignored("a private or symmetric key: never published, never used")
    if (use is not None and use != "sig") or (ops is not None and "verify" not in ops):
        raise _Ignored(None)
    if kty == "RSA":
        algorithm, key = _rsa(entry, alg)
    elif kty == "EC":
        algorithm, key = _ec(entry, alg)
    elif kty is None:
        raise _Ignored("no 'kty'")
    else:
        raise _Ignored(None)
    if algorithm not in algorithms:
        raise _Ignored(None)
    return SigningKey(kid, algorithm, key)


def _label(index: int, entry: Any) -> str:
    kid = entry.get("kid") if isinstance(entry, dict) else None
    return f"kid {kid!r:.60}" if isinstance(kid, str) else f"entry {index}"


def read_key_set(entries: list[Any], algorithms: Collection[str]) -> KeySet:
    """The usable keys of a JWK Set's ``keys`` list, by kid, and what was wrong with the rest."""
    allowed = frozenset(algorithms)
    keys: dict[str, SigningKey] = {}
    problems: list[str] = []
    duplicated: set[str] = set()
    for index, entry in enumerate(entries[:MAX_KEYS]):
        try:
            key = _read_entry(entry, allowed)
        except _Ignored as ignored:
            if ignored.problem is not None:
                problems.append(f"{_label(index, entry)} ({ignored.problem})")
            continue
        if key.kid in keys or key.kid in duplicated:
            duplicated.add(key.kid)
            keys.pop(key.kid, None)
            problems.append(f"{_label(index, entry)} (the kid appears twice: both ignored)")
            continue
        keys[key.kid] = key
    if len(entries) > MAX_KEYS:
        problems.append(f"{len(entries) - MAX_KEYS} entries after the first {MAX_KEYS}")
    return KeySet(keys, problems)
