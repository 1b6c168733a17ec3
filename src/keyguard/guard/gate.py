"""One pass over a text that says which detectors could find anything in it at all.

Each detector already starts from a cheap necessary condition (its anchor); :func:`gates`
tests all of them in a single DFA pass (an RE2 set, linear in the text, compiled once), so a
clean text (most prompts and answers) costs that one pass, and a text with, say, a number in
it runs the number detectors only. Every condition is one a detector needs to report
anything, so skipping a detector whose condition is absent changes no finding:

* ``SECRET``: exactly :func:`keyguard.scan.prefilter.may_hold_secret` (a run of 16 credential
  characters, ``://``, a backslash, ``PRIVATE KEY``, a ``%XX`` escape, ``password`` / ``pwd``
  / ``basic`` in any case, a closing quote followed by glue);
* ``ASSIGNED``: a name ending in ``password``, ``passwd``, ``pwd``, ``pass``, ``secret``,
  ``key`` or ``token`` (any case) followed by at most three quotes, spaces or tabs and ``:``,
  ``=`` or ``>`` (:mod:`keyguard.guard.assigned` reads a value only there; ``>`` ends an XML
  element's opening tag), or by a string type (``adminPassword string =``), or by a quote
  and ``value=`` (``<add key="SmtpPassword" value="...">``);
* ``NUMBERS``: what opens a numeric window of :mod:`keyguard.guard.windows`, where every
  numeric detector reads: six digits joined by number separators, or four digits so joined
  and three dots in one run (an IPv4 address); or six letters of one case and two digits
  (where an Italian fiscal code can start); or two upper-case letters, two digits and twelve
  letters or digits (an IBAN whose account part has letters). A year, a short id
  (``user-0001``) or a price opens none;
* ``EMAIL``: an ``@``;
* ``IPV6``: two colons with only hex digits between them.

The text is read as its UTF-8 bytes, one byte a character (RE2's Latin-1 mode): every
condition is ASCII, and a multi-byte character's bytes are never ASCII, so a byte-level match
exists exactly where a character-level one does. An RE2 set never gives up on a long or
hostile text (its DFA flushes its cache and goes on; a budget too small fails at compile
time, here at import).
"""

from __future__ import annotations

import re2

__all__ = ["ASSIGNED", "EMAIL", "IPV6", "NUMBERS", "SECRET", "gates"]

SECRET, ASSIGNED, NUMBERS, EMAIL, IPV6 = 1, 2, 4, 8, 16

_FOUR, _DOTS = 32, 64  # together (anywhere in the text): an IPv4 window may open
_SEP = rb"[ .\t/()+\-]*"  # number separators (windows.py: "p" and "s")
_DIGIT = rb"[0-9]"
_CONDITIONS: tuple[tuple[int, bytes], ...] = (
    (SECRET, rb"[A-Za-z0-9+/=_.~%\-]{16}"),
    (SECRET, rb"://|\\|PRIVATE KEY|%[0-9A-Fa-f]{2}|(?i:password|pwd|basic)"),
    (SECRET, rb"[\"'`](?:[ \t]*[\\\r\n;+.&|(),]|[ \t]+(?:[@$]|[rRbBuUfF]{1,2})?[\"'`])"),
    (ASSIGNED, rb"(?i:password|passwd|pwd|pass|secret|key|token)[\"' \t]{0,3}[:=>]"),
    (ASSIGNED, rb"(?i:password|passwd|pwd|pass|secret|key|token)[ \t]*:?[ \t]*(?i:string|str)"),
    (ASSIGNED, rb"(?i:password|passwd|pwd|pass|secret|key|token)[\"'][ \t]+(?i:value)[ \t]*="),
    (NUMBERS, _DIGIT + (_SEP + _DIGIT) * 5),
    (_FOUR, _DIGIT + (_SEP + _DIGIT) * 3),
    (_DOTS, rb"\.(?:[0-9 \t/()+\-]*\.){2}"),  # three dots in one run
    (NUMBERS, rb"[A-Z]{6}[0-9]{2}|[a-z]{6}[0-9]{2}"),
    (NUMBERS, rb"[A-Z]{2}[0-9]{2}(?:[ \t/()+\-]?[A-Z0-9]){12}"),  # an IBAN with letters
    (EMAIL, rb"@"),
    (IPV6, rb":[0-9A-Fa-f]*:"),
)


def _compile() -> re2.Set:
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    options.log_errors = False
    found = re2.Set.SearchSet(options)
    for _, pattern in _CONDITIONS:
        found.Add(pattern)
    found.Compile()
    return found


_SET = _compile()
_FLAGS = tuple(flag for flag, _ in _CONDITIONS)


def gates(text: str) -> int:
    """The detector families (``SECRET | NUMBERS | ...``) whose condition ``text`` meets; 0
    when no detector could find anything in it."""
    matched = _SET.Match(text.encode("utf-8", "surrogatepass"))
    if not matched:
        return 0
    flags = 0
    for i in matched:
        flags |= _FLAGS[i]
    if flags & _FOUR and flags & _DOTS:
        flags |= NUMBERS
    return flags & _PUBLIC


_PUBLIC = SECRET | ASSIGNED | NUMBERS | EMAIL | IPV6
