"""Legacy 32-hex keys: reported from their context only."""

from __future__ import annotations

import pytest

from keyguard.scan import testkeys
from keyguard.scan.hexcontext import classify_name, is_hex_exempt_file, judge_hex

from .conftest import scan


@pytest.mark.parametrize(
    ("name", "verdict"),
    [
        ("AZURE_OPENAI_API_KEY", "strong"),
        ("api-key", "strong"),
        ("apiKey", "strong"),
        ("Ocp-Apim-Subscription-Key", "strong"),
        ("AzureKeyCredential", "strong"),
        ("openai_key", "strong"),
        ("speechKey", "strong"),
        ("key1", "strong"),
        ("AZURE_KEY", "strong"),
        ("key", "weak"),
        ("client_secret", "weak"),
        ("etag", "negative"),
        ("ETag", "negative"),
        ("x-ms-request-id", "negative"),
        ("md5", "negative"),
        ("api_key_hash", "negative"),
        ("cache_key", "negative"),
        ("idempotency_key", "negative"),
        ("key_id", "negative"),
        ("commitSha", "negative"),
        ("deployment", "neutral"),
        ("SharedAccessKeyName", "weak"),
    ],
)
def test_classify_name(name: str, verdict: str) -> None:
    assert classify_name(name) == verdict


def test_judge_strong_weak_and_endpoint() -> None:
    assert judge_hex('AZURE_OPENAI_API_KEY="', False, "") is not None
    assert judge_hex('key = "', False, "") is None
    verdict = judge_hex('key = "', True, "")
    assert verdict is not None and verdict.confidence == "medium"
    strong = judge_hex('api_key = "', True, "")
    assert strong is not None and strong.confidence == "high"
    assert judge_hex('etag: "', True, "") is None
    assert judge_hex("x = f(", False, "https://a.openai.azure.com ") is not None
    assert judge_hex("x = f(", False, "nothing") is None


def test_neutral_words_between_name_and_value() -> None:
    assert judge_hex("param openAiKey string = '", False, "") is not None
    assert judge_hex('os.environ.get("AZURE_OPENAI_API_KEY", "', False, "") is not None
    assert judge_hex('apiKey: "x", deployment: "', False, "") is None


@pytest.mark.parametrize(
    "path",
    ["package-lock.json", "web/yarn.lock", "go.sum", "poetry.lock", "SHA256SUMS", "a.md5"],
)
def test_lock_files_are_exempt(path: str) -> None:
    assert is_hex_exempt_file(path)
    key = testkeys.generate("LEGACY")
    assert scan(f'"api-key": "{key}"\n', path=path) == []


@pytest.mark.parametrize(
    "line",
    [
        'headers = {{"api-key": "{k}"}}',
        "AZURE_OPENAI_API_KEY={k}",
        "export AZURE_OPENAI_KEY='{k}'",
        'new AzureKeyCredential("{k}")',
        'client.DefaultRequestHeaders.Add("Ocp-Apim-Subscription-Key", "{k}");',
        "curl -H 'api-key: {k}' https://x.openai.azure.com",
        "GET https://x.openai.azure.com/openai/models?api-key={k}",
        "https://westus.api.cognitive.microsoft.com/sts?subscription-key={k}",
        "Endpoint=https://x.cognitiveservices.azure.com/;Key={k}",
        '<add key="AzureOpenAIKey" value="{k}" />',
        "ENV AZURE_OPENAI_API_KEY={k}",
        "AZURE_OPENAI_KEY={k}-x",  # a suffix added to hide the key does not
        "Ocp-Apim-Subscription-Key: {k}-1",
        "AZURE_OPENAI_KEY={k}-usa",  # not a Mailchimp data centre
    ],
)
def test_positive_contexts(line: str) -> None:
    key = testkeys.generate("LEGACY")
    found = scan(line.format(k=key) + "\n")
    assert [f.kind for f in found] == ["azure_legacy_key"]


@pytest.mark.parametrize(
    "line",
    [
        'etag = "{k}"',
        'ETag: "{k}"',
        "x-ms-request-id: {k}",
        'md5 = "{k}"',
        'checksum = "{k}"',
        'commit = "{k}"',
        "trace_id={k}",
        'uuid = "{k}"',
        'cache_key = "{k}"',
        '"integrity": "{k}"',
        "{k}  dist/app.tar.gz",
        'value = "{k}"',
        "publish-profile: ${{{{ secrets.AzureAppService_PublishProfile_{k} }}}}",
        "api_key: ${{{{ secrets.OPENAI_KEY_{k}_PROD }}}}",
        "MAILCHIMP_API_KEY={k}-us21",  # a Mailchimp key (its data centre after the dash)
    ],
)
def test_negative_contexts_even_with_endpoint(line: str) -> None:
    key = testkeys.generate("LEGACY")
    text = 'ENDPOINT = "https://x.openai.azure.com/"\n\n\n\n' + line.format(k=key) + "\n"
    assert scan(text) == []


def test_value_on_the_line_after_its_name() -> None:
    key = testkeys.generate("LEGACY")
    text = (
        f'ENDPOINT = "https://x.openai.azure.com"\nCONFIG = {{\n    "key":\n        "{key}",\n}}\n'
    )
    assert [(f.kind, f.line) for f in scan(text)] == [("azure_legacy_key", 4)]


@pytest.mark.parametrize(
    "line",
    [
        "AZURE_OPENAI_API_KEY_SECRET_URI=https://kv1.vault.azure.net/secrets/azure-openai-api-key/{k}",
        "AzureOpenAIKey=@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/openai-key/{k})",
        'api_key = client.get_secret("https://kv1.vault.azure.net/secrets/api-key/{k}")',
        "key: https://kv1.vault.azure.cn:443/keys/openai-cmk/{k}",
        "https://kv1.vault.azure.net/secrets/openai-key/\n{k}",  # a URL wrapped at its version
    ],
)  # fmt: skip
def test_key_vault_object_versions_are_never_keys(line: str) -> None:
    key = testkeys.generate("LEGACY")
    assert scan('ENDPOINT = "https://x.openai.azure.com/"\n' + line.format(k=key) + "\n") == []


@pytest.mark.parametrize(
    "text",
    [
        "We rotated it after the Azure OpenAI key {k} was pasted into the support ticket.\n",
        "If the call still fails, check that the Azure OpenAI API key in\nthe portal is `{k}`.\n",
        "Copy KEY 1 of the Azure AI services resource ({k}) into the form.\n",
        "- {k} is the Azure OpenAI key the staging cluster used until March\n",
        "| resource | Azure OpenAI key |\n| --- | --- |\n| copilot-east | {k} |\n",
        "The Azure OpenAI key that was leaked:\n\n```text\n{k}\n```\n",
        "My Speech key is {k}.\n",
        "The Translator subscription key {k} stopped working today.\n",
    ],
)
def test_prose_naming_an_azure_ai_key(text: str) -> None:
    key = testkeys.generate("LEGACY")
    found = scan("# Troubleshooting\n\n" + text.format(k=key), "docs/troubleshooting.md")
    assert [(f.kind, f.confidence) for f in found] == [("azure_legacy_key", "medium")]


@pytest.mark.parametrize(
    "text",
    [
        "The request id of the failing Azure OpenAI key check was {k}.\n",
        "Azure OpenAI keys look like {k} (32 hex characters).\n",
        "An example Azure OpenAI key: {k}\n",
        "The MD5 of the file that held the Azure OpenAI key is {k}.\n",
        "Commit {k} removed the Azure OpenAI key from the repository.\n",
        "The deployment answered in 3 s; trace {k} shows no Azure OpenAI key problem.\n",
        "The upload of {k}.json finished.\n",  # no key named at all
        "An example Speech key: {k}\n",
        "The MD5 of the speech recording is {k}.\n",  # no key named
        "Checksums of the Azure OpenAI key files:\n\n```\n{k}\n```\n",
        'var o="{k}",t=function(e,n,r){{return e.map(function(x){{return x*n+r}})}};'
        'var r={{endpoint:"https://w.openai.azure.com",apiKey:k}};\n',  # code, not prose
    ],
)
def test_prose_that_is_not_a_key(text: str) -> None:
    key = testkeys.generate("LEGACY")
    assert scan("# Notes\n\n" + text.format(k=key), "docs/notes.md") == []


@pytest.mark.parametrize(
    "template",
    [
        '{{\n  "Speech": {{\n    "Region": "westeurope",\n    "Key": "{}"\n  }}\n}}\n',
        '{{"AzureOpenAI": {{"Deployment": "gpt-4o", "Key": "{}"}}}}\n',
        "speech:\n  region: westeurope\n  key: {}\n",
    ],
)
def test_a_weak_name_inside_an_azure_section_is_a_key(template: str) -> None:
    key = testkeys.legacy_key()
    assert [f.kind for f in scan(template.format(key))] == ["azure_legacy_key"]


@pytest.mark.parametrize(
    "template",
    [
        '{{\n  "Redis": {{\n    "Key": "{}"\n  }}\n}}\n',
        '{{"Speech": {{"Cache": {{"Ttl": 5}}, "Key": "{}"}}}}\n',  # a closed object between
        "speech:\n  region: westeurope\ncache:\n  key: {}\n",
        '{{"OpenAI": {{"RequestId": "{}"}}}}\n',
    ],
)
def test_a_section_says_nothing_for_other_names_or_sections(template: str) -> None:
    assert scan(template.format(testkeys.legacy_key())) == []


@pytest.mark.parametrize(
    "template",
    [
        'env:\n  - name: AZURE_OPENAI_API_KEY\n    value: "{}"\n',
        '{{"header": [{{"key": "Ocp-Apim-Subscription-Key",\n  "value": "{}"}}]}}\n',
    ],
)
def test_a_value_named_on_the_line_above(template: str) -> None:
    assert [f.kind for f in scan(template.format(testkeys.legacy_key()))] == ["azure_legacy_key"]
    assert scan(template.replace("AZURE_OPENAI_API_KEY", "REQUEST_ID")
                .replace("Ocp-Apim-Subscription-Key", "If-None-Match-Etag")
                .format(testkeys.legacy_key())) == []  # fmt: skip


def test_a_storage_key_in_a_kubernetes_env_entry() -> None:
    text = f"env:\n  - name: STORAGE_ACCOUNT_KEY\n    value: {testkeys.storage_key()}\n"
    assert [f.kind for f in scan(text)] == ["azure_storage_key"]
