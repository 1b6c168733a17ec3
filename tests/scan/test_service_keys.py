"""Storage, Cosmos DB, Service Bus / Event Hubs / Relay keys and SAS signatures: found in the
forms people write them, validated where a checksum exists, and their look-alikes are not."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from keyguard.scan import testkeys
from keyguard.scan.fingerprint import fingerprint
from keyguard.scan.identifiable import IDENTIFIABLE, validate_base64_key

from .conftest import KEY, scan

COSMOS_EMULATOR = (  # published in the Cosmos DB emulator's documentation
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)


def kinds(text: str, path: str = "app.py") -> list[tuple[str, int, str]]:
    return [(f.kind, f.line, f.confidence) for f in scan(text, path)]


@pytest.mark.parametrize(
    ("gen", "arg", "kind"),
    [
        ("STORAGE_ID", "", "azure_storage_key"),
        ("COSMOS_ID", "", "azure_cosmos_key"),
        ("SHARED_ID", "servicebus", "azure_shared_access_key"),
        ("SHARED_ID", "eventhubs", "azure_shared_access_key"),
        ("SHARED_ID", "relay", "azure_shared_access_key"),
    ],
)
def test_identifiable_keys_anywhere_checksum_verified(gen: str, arg: str, kind: str) -> None:
    value = testkeys.generate(gen, arg)
    (f,) = scan(f"x = 1\nsomething: {value}\n")
    assert (f.kind, f.line, f.confidence) == (kind, 2, "high")
    assert "checksum verified" in f.detail and f.fingerprint == fingerprint(value, KEY)


def test_identifiable_shape_with_a_wrong_checksum_is_medium() -> None:
    value = testkeys.generate("SHARED_ID", "servicebus")
    broken = value[:40] + ("A" if value[40] != "A" else "B") + value[41:]
    assert not validate_base64_key(broken, IDENTIFIABLE["+ASb"])
    (f,) = scan(f"v = '{broken}'\n")
    assert f.confidence == "medium" and "does not verify" in f.detail


def test_connection_strings() -> None:
    storage, cosmos, shared = (testkeys.generate(g) for g in ("STORAGE", "COSMOS", "SHARED"))
    text = (
        "a = 'DefaultEndpointsProtocol=https;AccountName=x;AccountKey=" + storage + ";'\n"
        "b = 'AccountEndpoint=https://x.documents.azure.com:443/;AccountKey=" + cosmos + ";'\n"
        "c = 'Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=RootManage"
        "SharedAccessKey;SharedAccessKey=" + shared + ";EntityPath=orders'\n"
        "d = 'HostName=x.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey="
        + testkeys.generate("SHARED")
        + "'\n"
    )
    found = scan(text)
    assert [(f.kind, f.line, f.detail) for f in found] == [
        ("azure_storage_key", 1, "connection string"),
        ("azure_cosmos_key", 2, "Cosmos DB connection string"),
        ("azure_shared_access_key", 3, "Service Bus / Event Hubs / Relay connection string"),
        ("azure_shared_access_key", 4, "IoT Hub connection string"),
    ]
    assert found[2].fingerprint == fingerprint(shared, KEY)


@pytest.mark.parametrize(
    ("line", "gen", "kind"),
    [
        ("AZURE_STORAGE_KEY={v}", "STORAGE", "azure_storage_key"),
        ("az storage blob upload -n a --account-key {v}", "STORAGE", "azure_storage_key"),
        ('cred = StorageSharedKeyCredential("acct", "{v}")', "STORAGE", "azure_storage_key"),
        ("COSMOS_KEY: {v}", "COSMOS", "azure_cosmos_key"),
        ('"primaryMasterKey": "{v}"', "COSMOS", "azure_cosmos_key"),
        ('client = CosmosClient(url, credential="{v}")', "COSMOS", "azure_cosmos_key"),
        ("mongodb://acct:{v}@acct.mongo.cosmos.azure.com:10255/", "COSMOS", "azure_cosmos_key"),
        ("sharedAccessKey: {v}", "SHARED", "azure_shared_access_key"),
        ("SERVICEBUS_KEY={v}", "SHARED", "azure_shared_access_key"),
    ],
)  # fmt: skip
def test_named_keys(line: str, gen: str, kind: str) -> None:
    value = testkeys.generate(gen)
    found = scan(line.format(v=value) + "\n")
    assert [f.kind for f in found] == [kind]
    assert found[0].fingerprint == fingerprint(value, KEY)


@pytest.mark.parametrize(
    ("line", "gen", "kind"),
    [
        ("Storage key = {v}", "STORAGE", "azure_storage_key"),
        ("My storage account key is {v}", "STORAGE", "azure_storage_key"),
        ("The Cosmos DB primary key: {v}", "COSMOS", "azure_cosmos_key"),
        ("the Service Bus shared access key is {v}, please rotate it", "SHARED",
         "azure_shared_access_key"),
    ],
)  # fmt: skip
def test_keys_named_in_prose(line: str, gen: str, kind: str) -> None:
    value = testkeys.generate(gen)
    found = scan(line.format(v=value) + "\n", "notes.md")
    assert [(f.kind, f.confidence) for f in found] == [(kind, "medium")]
    assert found[0].fingerprint == fingerprint(value, KEY)


@pytest.mark.parametrize(
    "line",
    [
        "For example, the storage key is {v}",
        "The storage blob's content hash is {v}",  # not named a key
        "storage key = {v}",  # a Service Bus key's length, not a storage key's
        "The Cosmos DB key vault reference is {v}",  # a Key Vault, not a key
        "the storage key-vault secret's digest: {v}",
    ],
)
def test_prose_that_does_not_name_the_key(line: str) -> None:
    value = testkeys.generate("SHARED" if line.startswith("storage key") else "STORAGE")
    assert scan(line.format(v=value) + "\n", "notes.md") == []


def test_generic_names_take_the_service_of_the_nearest_endpoint() -> None:
    cosmos, storage, shared = (testkeys.generate(g) for g in ("COSMOS", "STORAGE", "SHARED"))
    text = (
        "cosmos:\n  endpoint: https://acct.documents.azure.com:443/\n  key: " + cosmos + "\n"
        "blob:\n  url: https://acct.blob.core.windows.net\n  key: " + storage + "\n"
        "bus:\n  host: acct.servicebus.windows.net\n  primaryKey: " + shared + "\n"
    )
    assert [(k, line) for k, line, _ in kinds(text, "config.yaml")] == [
        ("azure_cosmos_key", 3),
        ("azure_storage_key", 6),
        ("azure_shared_access_key", 9),
    ]


def test_encoded_forms_of_a_storage_key() -> None:
    value = testkeys.generate("STORAGE")
    b64 = base64.b64encode(value.encode()).decode()
    secret = f"kind: Secret\ndata:\n  azurestorageaccountkey: {b64}\n"
    assert [(f.kind, f.encoding) for f in scan(secret, "secret.yaml")] == [
        ("azure_storage_key", "base64")
    ]
    url = "https://p.local/cb?target=" + quote(f"AZURE_STORAGE_KEY={value}", safe="")
    assert [(f.kind, f.encoding) for f in scan(url)] == [("azure_storage_key", "url")]
    split = f'AZURE_STORAGE_KEY = "{value[:40]}" + \\\n    "{value[40:]}"\n'
    assert [(f.kind, f.line, f.end_line) for f in scan(split)] == [("azure_storage_key", 1, 2)]


@pytest.mark.parametrize(
    "text",
    [
        "https://a.blob.core.windows.net/c/b.txt?sv=2022-11-02&ss=b&sp=r&se=2030-01-01&sig={pct}",
        "SharedAccessSignature sr=https%3A%2F%2Fns.servicebus.windows.net&sig={pct}&skn=send",
        'sas:\n  sv: "2022-11-02"\n  se: "2030-01-01"\n  sp: rl\n  sig: "{raw}"\n',
        '{{"sv": "2022-11-02", "se": "2030-01-01", "sig": "{pct}"}}',
        'url = "https://a.blob.core.windows.net/c?sv=2022-11-02&sp=r&sig=" + "{pct}"',
        "sas_url: >-\n  https://a.blob.core.windows.net/c?sv=2022-11-02&sp=r&sig=\n  {pct}\n",
    ],
)  # fmt: skip
def test_sas_signatures(text: str) -> None:
    sig = testkeys.generate("SAS")
    found = scan(text.format(pct=quote(sig, safe=""), raw=sig), "cfg.yaml")
    assert {f.kind for f in found} == {"azure_sas_signature"}
    assert {f.fingerprint for f in found} == {fingerprint(sig, KEY)}


@pytest.mark.parametrize(
    "text",
    [
        '"integrity": "sha512-{b64_64}"',
        "signature = '{b64_64}'\nendpoint = 'https://a.blob.core.windows.net'",
        "publicKey: {b64_64}  # a.documents.azure.com",
        'nonce = "{b64_32}"  # servicebus.windows.net',
        "x-ms-content-sha256: {b64_32}",
        "key: {b64_64}",  # no Azure service anywhere: just some 64-byte value
        "https://a.blob.core.windows.net/c?sv=2022-11-02&sig=REDACTED",
        "https://example.com/callback?sig={b64_32}",  # not a SAS: no SAS parameter beside it
        "AccountEndpoint=https://localhost:8081/;AccountKey={cosmos_emulator};",
        "SharedAccessKey=${{SB_KEY}};",
        "A token looks something like this: sp=r&amp;se=2023-12-20&amp;sv=1&amp;sig={b64_32}",
        "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=<key>",
    ],
)
def test_look_alikes_and_samples_are_not_reported(text: str) -> None:
    values = {
        "b64_64": testkeys.generate("B64DATA", "64"),
        "b64_32": testkeys.generate("B64DATA", "32"),
        "cosmos_emulator": COSMOS_EMULATOR,
    }
    assert scan(text.format(**values) + "\n", "settings.yaml") == []


def test_sas_detail_gives_the_expiry_never_the_signature() -> None:
    sig = testkeys.generate("SAS")
    url = "https://a.blob.core.windows.net/c?sv=2022-11-02&se=2026-12-31T00%3A00%3A00Z&sig="
    url += quote(sig, safe="")
    token = f"SharedAccessSignature sr=x&sig={quote(sig, safe='')}&se=1900000000&skn=send"
    assert [f.detail for f in scan(url)] == ["shared access signature (URL, expiry 2026-12-31)"]
    assert [f.detail for f in scan(token)] == ["shared access signature (URL, expiry 2030-03-17)"]


def test_an_identifiable_key_in_a_connection_string_says_so() -> None:
    value = testkeys.generate("SHARED_ID", "eventhubs")
    (f,) = scan(f"c = 'Endpoint=sb://x.servicebus.windows.net/;SharedAccessKey={value}'\n")
    assert f.detail == "Event Hubs identifiable key, checksum verified"
    cosmos = testkeys.generate("COSMOS")
    (g,) = scan(f"c = 'AccountEndpoint=https://x.documents.azure.com/;AccountKey={cosmos};'\n")
    assert (g.kind, g.confidence, g.detail) == (
        "azure_cosmos_key",
        "high",
        "Cosmos DB connection string",
    )


def test_a_storage_key_named_by_the_object_around_it() -> None:
    key = testkeys.storage_key()
    text = (
        '{\n  "storage_primary_key": {\n    "sensitive": true,\n    "type": "string",\n'
        f'    "value": "{key}"\n  }}\n}}\n'
    )
    assert [f.kind for f in scan(text)] == ["azure_storage_key"]
    assert scan(f'{{\n  "storage": {{\n    "checksum": "{key}"\n  }}\n}}\n') == []
    assert scan(f'{{\n  "images": {{\n    "value": "{key}"\n  }}\n}}\n') == []
