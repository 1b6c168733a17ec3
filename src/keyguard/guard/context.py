"""What the words just before a candidate say it is.

A number named as an order, invoice, tracking or ISBN number (in English, German, French,
Spanish, Italian, Dutch or Polish: ``Bestellnummer``, ``facture``, ``pedido``) is not personal
data even when it validates, a card "on file" excepted; a weakly checked identifier (nine or
eleven digits) is only one when named.
"""

from __future__ import annotations

import re

__all__ = ["inside_iban", "named_before", "named_otherwise"]

WINDOW = 48  # characters before a candidate that may name it
_OTHERWISE = re.compile(
    r"(?i)\b(?:order|invoice|tracking|shipment|parcel|ticket|case|ref(?:erence)?|po|sku|serial|"
    r"isbn(?:-1[03])?|issn|ean|gtin|upc|part|build|version|transaction|txn|confirmation|"
    r"booking|reservation|receipt|batch|lot|item|product|request|trace|"
    r"correlation|session|job|run|commit|(?<!on )file|row|record|doi|pmid|arxiv|"
    r"bestell(?:ung)?|auftrags?|rechnungs?|sendungs?|lieferschein|commande|facture|"
    r"pedido|factura|albar[áa]n|ordine|fattura|spedizione|bestelling|factuur|zam[óo]wieni[ae])"
    r"(?:[\s_-]*(?:no\.?|nr\.?|number|nummer|num|id|#|code|ref))?[\"'`]?\s*[:#=]?\s*[#(\"'`\[]?\s*$"
)


def named_before(text: str, start: int, names: re.Pattern[str]) -> bool:
    """True when ``names`` occurs in the ``WINDOW`` characters before ``start``."""
    return names.search(text, max(0, start - WINDOW), start) is not None


def named_otherwise(text: str, start: int) -> bool:
    """True when the words right before ``start`` name the value as a non-personal number."""
    return _OTHERWISE.search(text[max(0, start - 32) : start]) is not None


_IBAN_HEAD = re.compile(r"[A-Z]{2}\d{2}(?:[ -][A-Z0-9]{4})*[ -]\Z")


def inside_iban(text: str, start: int) -> bool:
    """True when the digit groups at ``start`` continue an IBAN-shaped token (``DE44 5001
    ...``): not a card or a phone number of their own, whether the IBAN is valid or not."""
    return _IBAN_HEAD.search(text, max(0, start - 40), start) is not None
