"""One pass over a text that says whether any secret detector could fire on it at all.

Every secret the scanner's detectors report (``keyguard.scan``) needs, in the text as given,
one of:

* a run of 16 or more credential characters (``A-Z a-z 0-9 + / = _ . ~ % -``): every shaped
  key, token and base64 or hex value is at least 20 such characters in a row (an AWS access
  key 20, a bearer token 20, a Stripe key 24, a JWT 40, a 32-hex legacy key 32), and the
  base64 decoder reads runs of 40 or more;
* a literal that anchors a detector whose value may be short: ``://`` (database URLs),
  ``password`` / ``pwd`` (connection-string passwords), ``basic`` (``Authorization: Basic``),
  ``PRIVATE KEY`` (PEM blocks);
* what a decoder or the concatenation rule starts from: a ``%XX`` escape (URL decoding), a
  backslash (JSON escapes), a closing quote followed by glue (``"ab" + "cd"``, ``'ab',
  'cd'``, ``"ab"\\n"cd"``).

A text with none of these (most prose: a question, a report, an answer) skips the detectors
and the decoders, which would find nothing. The test in ``tests/guard/test_prefilter.py``
holds every labelled case of both corpora to this: where a detector fires, the gate is open.
Assigned secrets, custom rules and personal data have their own anchors and are not gated
here.
"""

from __future__ import annotations

import re

__all__ = ["may_hold_secret"]

_CREDENTIAL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_.~%-"
_MASK = bytes(1 if c in _CREDENTIAL else 0 for c in range(256))  # UTF-8 tails and leads: 0
_RUN = b"\x01" * 16
_PERCENT = re.compile(rb"%[0-9A-Fa-f]{2}")
_GLUE = re.compile(r"""["'`](?:[ \t]*[\\\r\n;+.&|(),]|[ \t]+(?:[@$]|[rRbBuUfF]{1,2})?["'`])""")


def may_hold_secret(text: str) -> bool:
    """False only when no secret detector or decoder can find anything in ``text``."""
    data = text.encode("utf-8", "surrogatepass")
    if _RUN in data.translate(_MASK):
        return True
    if b"://" in data or b"\\" in data or b"PRIVATE KEY" in data:
        return True
    if b"%" in data and _PERCENT.search(data) is not None:
        return True
    lowered = data.lower()  # ASCII only: the anchors' letters have no other lower-case source
    if b"password" in lowered or b"pwd" in lowered or b"basic" in lowered:
        return True
    if b'"' in data or b"'" in data or b"`" in data:
        return _GLUE.search(text) is not None
    return False
