"""Pure pieces: token counting and generation, faults, auth decisions, tokens, config."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest

from keyguard.emulator import DeploymentSpec, EmulatorConfig, load_config
from keyguard.emulator.auth import authenticate_data_plane, match_key
from keyguard.emulator.errors import AzureError
from keyguard.emulator.faults import Fault, parse_fault, take_fault
from keyguard.emulator.media import embedding_vector, encode_vector, png_image
from keyguard.emulator.signing import TokenError, TokenSigner, access_token_claims
from keyguard.emulator.tokens import (
    chat_prompt_tokens,
    count_tokens,
    generate_pieces,
    input_tokens,
    prompt_seed,
    responses_prompt_tokens,
)
from keyguard.errors import ConfigurationError

# -- tokens ---------------------------------------------------------------------------------


def test_count_tokens_rule() -> None:
    assert count_tokens("") == 0
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("don't stop") == 4  # don ' t stop
    assert count_tokens("  spaces   only  ") == 2


def test_chat_prompt_tokens_rule() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "a b", "name": "bob"},
            {"role": "user", "content": [{"type": "text", "text": "c"}, {"type": "image_url"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "f", "arguments": '{"x": 1}'}}],
            },
        ]
    }
    # (3 + 2 + 1 + 1) + (3 + 1 + 85) + (3 + 1 + 7: { " x " : 1 }) + 3
    assert chat_prompt_tokens(body) == 110


def test_responses_and_input_tokens() -> None:
    assert responses_prompt_tokens({"input": "a b c"}) == 3 + 3 + 3
    items = [{"role": "user", "content": [{"type": "input_text", "text": "x y"}]}]
    assert responses_prompt_tokens({"input": items, "instructions": "z"}) == 3 + 4 + 5
    assert input_tokens("a b") == [2]
    assert input_tokens([1, 2, 3]) == [3]
    assert input_tokens([[1, 2], [3]]) == [2, 1]
    assert input_tokens(["a", [1, 2]]) == []  # mixed shapes are refused
    assert input_tokens([True]) == [] and input_tokens([]) == []


def test_generated_pieces_are_one_token_each_and_deterministic() -> None:
    seed = prompt_seed([{"role": "user", "content": "hi"}])
    pieces = generate_pieces(seed, 50)
    assert pieces == generate_pieces(seed, 50)
    assert pieces != generate_pieces(seed, 50, index=1)
    assert all(count_tokens(p) == 1 for p in pieces)
    assert count_tokens("".join(pieces)) == 50
    assert len(generate_pieces(seed, 5)) == 5


# -- media ---------------------------------------------------------------------------------


def test_embedding_vectors_are_float32_exact() -> None:
    vector = embedding_vector("hello", 16)
    packed = base64.b64decode(str(encode_vector(vector, "base64")))
    assert list(struct.unpack("<16f", packed)) == list(vector)
    assert encode_vector(vector, "float") == list(vector)


def test_png_is_valid() -> None:
    image = png_image(b"\x01\x02\x03")
    assert image.startswith(b"\x89PNG\r\n\x1a\n") and image.endswith(b"IEND\xaeB`\x82")


# -- faults --------------------------------------------------------------------------------


def test_faults_count_and_duration() -> None:
    counted = parse_fault({"status": 500, "count": 2}, "a", now=0)
    timed = parse_fault({"status": 503, "duration_s": 10, "deployment": "x"}, "b", now=0)
    faults: tuple[Fault, ...] = (counted, timed)
    first, faults = take_fault(faults, "x", now=1)
    second, faults = take_fault(faults, "x", now=2)
    third, faults = take_fault(faults, "x", now=3)
    assert [f.id if f else None for f in (first, second, third)] == ["a", "a", "b"]
    other, _ = take_fault(faults, "y", now=3)
    assert other is None
    expired, faults = take_fault(faults, "x", now=10)
    assert expired is None and faults == ()


@pytest.mark.parametrize(
    "raw",
    [{}, {"status": 200}, {"drop": "x"}, {"status": 500, "drop": "mid_stream"}, {"count": 0}],
)
def test_bad_faults(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        parse_fault(raw, "f", now=0)


# -- auth ----------------------------------------------------------------------------------

KEYS = ("k" * 32, "j" * 32)
SIGNER = TokenSigner("tenant")


def _auth(
    api_key: str | None = None, authorization: str | None = None, disabled: bool = False
) -> str:
    caller = authenticate_data_plane(
        api_key=api_key,
        authorization=authorization,
        keys=KEYS,
        signer=SIGNER,
        now=1000.0,
        local_auth_disabled=disabled,
    )
    return caller.slot


def _token(audience: str, now: int = 1000, lifetime: int = 60) -> str:
    claims = access_token_claims(
        resource=audience,
        tenant_id="tenant",
        client_id="client",
        mi_resource_id="/x",
        now=now,
        lifetime=lifetime,
    )
    return SIGNER.issue(claims)


def test_key_slots() -> None:
    assert match_key(KEYS[0], KEYS) == "key1"
    assert match_key(KEYS[1], KEYS) == "key2"
    assert match_key("nope", KEYS) is None
    assert _auth(api_key=KEYS[1]) == "key2"
    assert _auth(authorization=f"Bearer {KEYS[0]}") == "key1"
    assert _auth(authorization="Bearer " + _token("https://cognitiveservices.azure.com")) == "entra"


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"api_key": "wrong"}, 401),
        ({}, 401),
        ({"authorization": "Basic abc"}, 401),
        ({"api_key": KEYS[0], "authorization": "Bearer other"}, 400),
        ({"api_key": KEYS[0], "disabled": True}, 403),
        ({"authorization": "Bearer " + _token("https://management.azure.com")}, 401),
        ({"authorization": "Bearer " + _token("https://cognitiveservices.azure.com", 0)}, 401),
    ],
)
def test_auth_refusals(kwargs: dict[str, object], status: int) -> None:
    with pytest.raises(AzureError) as caught:
        _auth(**kwargs)  # type: ignore[arg-type]
    assert caught.value.status == status


def test_signer_reasons() -> None:
    token = _token("aud", now=100, lifetime=10)
    assert SIGNER.verify(token, now=105, audiences={"aud"})["aud"] == "aud"
    for now, audiences, reason in (
        (110, {"aud"}, "expired"),
        (99, {"aud"}, "not_yet_valid"),
        (105, {"x"}, "audience"),
    ):
        with pytest.raises(TokenError) as caught:
            SIGNER.verify(token, now=now, audiences=audiences)
        assert caught.value.reason == reason
    head, body, signature = token.split(".")
    with pytest.raises(TokenError) as caught:
        SIGNER.verify(f"{head}.{body}.{signature[::-1]}", now=105, audiences={"aud"})
    assert caught.value.reason in {"signature", "malformed"}
    with pytest.raises(TokenError):
        TokenSigner("other-tenant").verify(token, now=105, audiences={"aud"})


# -- config --------------------------------------------------------------------------------


def test_default_config() -> None:
    config = EmulatorConfig()
    assert set(config.deployments) == {
        "gpt-4o",
        "gpt-4o-mini",
        "text-embedding-3-small",
        "dall-e-3",
        "whisper",
        "tts",
    }
    assert config.control_token != EmulatorConfig().control_token  # random by default


def test_load_config_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "emulator.yaml"
    yaml_file.write_text(
        "region: West Europe\nkey_format: legacy\ndeployments:\n"
        "  chat: {kind: chat, model: gpt-4o-2024-11-20, tpm: 1000}\n"
    )
    config = load_config(yaml_file)
    assert config.region == "West Europe" and config.key_format == "legacy"
    assert config.deployments["chat"] == DeploymentSpec("chat", "gpt-4o-2024-11-20", 1000)
    json_file = tmp_path / "emulator.json"
    json_file.write_text('{"stream_delay": 0.5, "api_versions": ["2024-10-21"]}')
    loaded = load_config(json_file, control_token="fixed")
    assert loaded.stream_delay == 0.5 and loaded.control_token == "fixed"
    assert loaded.api_versions == frozenset({"2024-10-21"})


@pytest.mark.parametrize(
    "text",
    [
        "nonsense: 1",
        "region: 5",
        "deployments: {x: {kind: video, model: m}}",
        "deployments: {x: {kind: chat, tpm: -1}}",
        "key_format: weird",
        "- a list",
        "default_completion_tokens: true",
    ],
)
def test_bad_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        load_config(tmp_path / "absent.yaml")
