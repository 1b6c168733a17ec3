"""What the words just before a candidate say it is.

A number named as an order, invoice, tracking or ISBN number is not personal data even when
it validates; a weakly checked identifier (nine or eleven digits) is only one when named.
"""

from __future__ import annotations

import re

__all__ = ["named_before", "named_otherwise"]

WINDOW = 48  # characters before a candidate that may name it
_OTHERWISE = re.compile(
    r"(?i)\b(?:order|invoice|tracking|shipment|parcel|ticket|case|ref(?:erence)?|po|sku|serial|"
    r"isbn(?:-1[03])?|issn|ean|gtin|upc|part|build|version|transaction|txn|confirmation|"
    r"booking|reservation|receipt|batch|lot|item|product|request|trace|"
    r"correlation|session|job|run|commit|file|row|record|doi|pmid|arxiv)"
    r"(?:\s*(?:no\.?|nr\.?|number|num|id|#|code))?\s*[:#=]?\s*[#(\"'`]?\s*$"
)


def named_before(text: str, start: int, names: re.Pattern[str]) -> bool:
    """True when ``names`` occurs in the ``WINDOW`` characters before ``start``."""
    return names.search(text, max(0, start - WINDOW), start) is not None


def named_otherwise(text: str, start: int) -> bool:
    """True when the words right before ``start`` name the value as a non-personal number."""
    return _OTHERWISE.search(text[max(0, start - 32) : start]) is not None
