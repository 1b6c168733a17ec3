"""One very long line: each candidate is judged by the text within reach of it, never by the
whole line (a line of a megabyte dense with candidates would otherwise be read once per
candidate: seconds of a worker's time for one request; ``bench/guard/speed.py`` measures it).
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from keyguard.scan import testkeys
from keyguard.scan.hexcontext import prefix_for, section_name, sentence_around
from keyguard.scan.lines import LINE_REACH

from .conftest import scan

FILLER = "lorem ipsum dolor sit amet, " * 4_000  # ~112,000 characters, no line break


def _forms() -> list[tuple[str, str]]:
    sig = quote(testkeys.generate("SAS"), safe="")
    storage = testkeys.storage_key()
    shared = testkeys.generate("SHARED_ID", "servicebus")
    legacy = testkeys.legacy_key()
    encoded = base64.b64encode(f"AZURE_OPENAI_API_KEY={legacy}".encode()).decode()
    return [
        ("azure_legacy_key", f' AZURE_OPENAI_API_KEY="{legacy}" '),
        ("azure_sas_signature", f" https://a.blob.core.windows.net/c?sv=2022-11-02&sig={sig} "),
        ("azure_storage_key", f" AccountName=a;AccountKey={storage}; "),
        ("azure_shared_access_key", f" Endpoint=sb://x.servicebus.windows.net/;"
                                    f"SharedAccessKey={shared}; "),
        ("azure_legacy_key", f" {encoded} "),
        ("azure_legacy_key", f' AZURE_OPENAI_API_KEY = "{legacy[:16]}" + "{legacy[16:]}" '),
    ]  # fmt: skip


@pytest.mark.parametrize(("kind", "form"), _forms())
def test_a_secret_deep_in_a_long_line_is_found_as_on_a_short_one(kind: str, form: str) -> None:
    short = scan(form + "\n")
    assert [f.kind for f in short] == [kind]
    long = scan(FILLER + form + FILLER + "\n")
    assert [f.kind for f in long] == [kind]
    assert long[0].fingerprint == short[0].fingerprint


def test_the_context_read_for_a_candidate_is_bounded_on_a_long_line() -> None:
    key = testkeys.legacy_key()
    text = "a" * 1_000_000 + f" api_key = {key} " + "b" * 1_000_000
    start = text.index(key)
    prefix, near = prefix_for(text, start, "")
    assert prefix.endswith("api_key = ") and len(prefix) <= LINE_REACH
    assert key in near and len(near) <= 80 + 72
    assert len(sentence_around(text, start, start + 32)) <= 240 + 32 + 160
    assert section_name("azure:\n" + text, start + 7) == ""  # not a YAML entry of its own


@pytest.mark.parametrize("indent", [" " * 40, " " * (LINE_REACH + 100), "\t" * 3 * LINE_REACH])
def test_a_value_indented_past_the_reach_still_belongs_to_the_line_introducing_it(
    indent: str,
) -> None:
    """Indenting a value alone on its line does not cut it from the sentence above (a reach
    only bounds what is read: the indent is followed back, once)."""
    key = testkeys.legacy_key()
    found = scan(f"Here is the Azure OpenAI API key:\n{indent}{key}\n")
    assert [f.kind for f in found] == ["azure_legacy_key"]
