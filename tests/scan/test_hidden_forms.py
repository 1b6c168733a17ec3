"""Encoded and hidden forms: base64, URL-encoding, JSON escapes, notebooks, concatenation."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from keyguard.scan import testkeys
from keyguard.scan.fingerprint import fingerprint

from .conftest import KEY, scan


def _one(text: str, path: str = "app.py") -> tuple[str, int, int, str]:
    (f,) = scan(text, path)
    return f.kind, f.line, f.end_line, f.encoding


def test_base64_and_base64url() -> None:
    key = testkeys.generate("AZURE")
    b64 = base64.b64encode(key.encode()).decode()
    url = base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
    assert _one(f"a = 1\nblob = '{b64}'\n") == ("azure_openai_key", 2, 2, "base64")
    assert _one(f"state={url}\n") == ("azure_openai_key", 1, 1, "base64")


def test_base64_kubernetes_secret_uses_the_outer_name() -> None:
    hexkey = testkeys.generate("LEGACY")
    b64 = base64.b64encode(hexkey.encode()).decode()
    text = f"kind: Secret\ndata:\n  AZURE_OPENAI_API_KEY: {b64}\n  OTHER: {b64}x\n"
    found = scan(text, "secret.yaml")
    assert [(f.kind, f.line, f.encoding) for f in found] == [("azure_legacy_key", 3, "base64")]
    assert found[0].fingerprint == fingerprint(hexkey, KEY)


def test_base64_of_binary_is_ignored() -> None:
    blob = base64.b64encode(bytes(range(256)) * 4).decode()
    assert scan(f"img = '{blob}'\n") == []


def test_percent_encoded_everything() -> None:
    key = testkeys.generate("AZURE", "ai_services")
    enc = "".join(f"%{b:02X}" for b in key.encode())
    assert _one(f"x\ny\nurl = 'https://p.local/?k={enc}'\n") == (
        "azure_ai_services_key",
        3,
        3,
        "url",
    )


def test_url_encoded_name_gives_context() -> None:
    hexkey = testkeys.generate("LEGACY")
    url = "https://p.local/r?target=" + quote(
        f"https://a.openai.azure.com/x?api-key={hexkey}", safe=""
    )
    assert [f.kind for f in scan(url)] == ["azure_legacy_key"]


def test_json_unicode_escapes() -> None:
    key = testkeys.generate("KGK")
    esc = "".join(f"\\u{ord(c):04x}" for c in key)
    assert _one(f'{{\n  "v": "{esc}"\n}}\n', "c.json") == ("keyguard_key", 2, 2, "json-escape")


def test_escaped_json_inside_json() -> None:
    hexkey = testkeys.generate("LEGACY")
    inner = json.dumps({"endpoint": "https://a.openai.azure.com", "api-key": hexkey})
    text = json.dumps({"payload": inner}, indent=2)
    assert [f.kind for f in scan(text, "c.json")] == ["azure_legacy_key"]


def test_concatenation_same_line_and_consecutive_lines() -> None:
    key = testkeys.generate("AZURE")
    same = f'k = "{key[:40]}" + "{key[40:]}"\n'
    assert _one(same) == ("azure_openai_key", 1, 1, "concatenation")
    lines = f'k = (\n    "{key[:30]}"\n    "{key[30:60]}"\n    "{key[60:]}"\n)\n'
    assert _one(lines) == ("azure_openai_key", 2, 4, "concatenation")
    cont = f'k = "{key[:42]}" \\\n    "{key[42:]}"\n'
    assert _one(cont) == ("azure_openai_key", 1, 2, "concatenation")


def test_plus_equals_php_vb_and_join() -> None:
    key = testkeys.generate("AZURE")
    assert _one(f'k = "{key[:50]}"\nk += "{key[50:]}"\n')[3] == "concatenation"
    assert _one(f"$k = '{key[:50]}' . '{key[50:]}';\n", "a.php")[3] == "concatenation"
    assert _one(f'k = "{key[:50]}" & "{key[50:]}"\n', "a.vb")[3] == "concatenation"
    joined = f'const k = ["{key[:28]}", "{key[28:56]}", "{key[56:]}"].join("");\n'
    assert _one(joined, "a.js")[3] == "concatenation"
    arm = f"\"[concat('{key[:42]}', '{key[42:]}')]\"\n"
    assert _one(arm, "a.json")[3] == "concatenation"


def test_comma_separated_literals_without_join_are_not_joined() -> None:
    key = testkeys.generate("AZURE")
    assert scan(f'parts = ["{key[:42]}", "{key[42:]}"]\n') == []


def test_split_hex_key_uses_the_name_before_the_literals() -> None:
    hexkey = testkeys.generate("LEGACY")
    text = f"const apiKey =\n  '{hexkey[:10]}' +\n  '{hexkey[10:20]}' +\n  '{hexkey[20:]}';\n"
    found = scan(text, "a.ts")
    assert [(f.kind, f.line, f.end_line) for f in found] == [("azure_legacy_key", 2, 4)]


def _notebook(source: list[str], outputs: list[str]) -> str:
    cell = {
        "cell_type": "code",
        "execution_count": 1,
        "metadata": {},
        "outputs": [{"name": "stdout", "output_type": "stream", "text": outputs}],
        "source": source,
    }
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4}, indent=1)


def test_notebook_source_outputs_and_split_cells() -> None:
    key = testkeys.generate("AZURE")
    hexkey = testkeys.generate("LEGACY")
    nb = _notebook(
        ["from openai import AzureOpenAI\n", f'KEY = ("{key[:42]}"\n', f'       "{key[42:]}")\n'],
        [
            "AZURE_OPENAI_ENDPOINT=https://nb.openai.azure.com/\n",
            f"AZURE_OPENAI_API_KEY={hexkey}\n",
        ],
    )
    found = scan(nb, "lab.ipynb")
    raw_lines = nb.split("\n")
    by_kind = {f.kind: f for f in found}
    assert set(by_kind) == {"azure_openai_key", "azure_legacy_key"}
    legacy = by_kind["azure_legacy_key"]
    assert hexkey in raw_lines[legacy.line - 1]
    split = by_kind["azure_openai_key"]
    assert key[:42] in raw_lines[split.line - 1] and key[42:] in raw_lines[split.end_line - 1]


def test_same_secret_on_two_lines_is_two_findings_and_one_per_line() -> None:
    key = testkeys.generate("AZURE")
    text = f"a = '{key}'  # {key}\nb = '{key}'\n"
    assert [f.line for f in scan(text)] == [1, 2]


@pytest.mark.parametrize("cut", [10, 20, 30])
def test_base64_keys_split_next_to_plus_slash_and_equals(cut: int) -> None:
    """Base64 keys hold + / =: a fragment ending in one of them is still a fragment."""
    value = testkeys.generate("SHARED")
    value = value[: cut - 1] + "+/" + value[cut + 1 :]  # "+" ends the first fragment
    text = f'SB_KEY = "{value[:cut]}" + \\\n    "{value[cut:]}"\n'
    found = [(f.kind, f.line, f.end_line) for f in scan(text)]
    assert found == [("azure_shared_access_key", 1, 2)]


@pytest.mark.parametrize("cut", [18, 19, 20])  # the dot is the 4th, 3rd, 2nd last of the head
def test_a_literal_split_just_after_a_dot_is_rejoined(cut: int) -> None:
    generated = testkeys.entra_secret()  # 3 characters, 8Q~, 34 characters
    secret = generated[:16] + ".iou" + generated[20:]  # a dot at 16, letters after it
    head, tail = secret[:cut], secret[cut:]
    go = f'cred := azidentity.New(\n\t"{head}" +\n\t\t"{tail}",\n\tnil)\n'
    assert [f.kind for f in scan(go)] == ["entra_client_secret"]
    php = f"$s = '{head}' . '{tail}';\n"
    assert [f.kind for f in scan(php)] == ["entra_client_secret"]
