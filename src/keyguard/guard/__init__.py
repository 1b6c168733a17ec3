"""Guardrails: what a request or an answer carries, read before it leaves.

``findings`` holds the types every part shares: a ``Match`` found in one text, a ``Slot`` (one
text of a request or answer, with where it sits), and the ``ModelGuard`` seam for model-based
checks (Azure AI Content Safety). ``engine`` runs the local detectors over a text; ``extract``
lists a body's texts and writes redactions back.
"""
