"""Parsing and validating policy documents: every problem reported, with where it is."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from keyguard.policy.document import (
    PolicyDocument,
    PolicyInvalid,
    load_document,
    merge,
    parse_document,
    parse_subject,
)

APP_ID = "22222222-2222-2222-2222-222222222222"
AGENT_ID = "44444444-4444-4444-4444-444444444444"


def doc(**parts: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "roles": {"chat": {"operations": ["chat"], "deployments": ["gpt-4o-mini"]}},
        "bindings": [{"name": "b", "role": "chat", "subjects": ["app:billing"]}],
    }
    base.update(parts)
    return base


def problems(data: Any) -> list[str]:
    with pytest.raises(PolicyInvalid) as info:
        parse_document(data)
    return info.value.problems


def test_a_valid_document_round_trips_through_json() -> None:
    parsed = parse_document(
        doc(
            apps={"support-web": {"entra_client_ids": [APP_ID.upper()]}},
            agents={"triage": {"entra_client_ids": [AGENT_ID], "parent": "support-web"}},
        )
    )
    assert parsed.apps["support-web"].entra_client_ids == [APP_ID]  # normalised to lower case
    assert parse_document(parsed.to_json()) == parsed


def test_empty_and_none_are_empty_policies() -> None:
    assert parse_document(None) == PolicyDocument()
    assert parse_document({}) == PolicyDocument()


def test_not_a_mapping() -> None:
    assert "must be a mapping" in problems(["roles"])[0]


def test_every_problem_is_reported_with_its_place() -> None:
    found = problems(
        {
            "roles": {
                "r": {
                    "operations": ["chat", "teleport"],
                    "deployments": ["../etc"],
                    "source_networks": ["10.0.0.1/8"],
                    "max_output_tokens": 0,
                }
            },
            "bindings": [{"name": "b", "role": "r", "subjects": ["root:me"]}],
            "surprise": 1,
        }
    )
    text = "\n".join(found)
    assert "roles.r.operations" in text and "teleport" in text
    assert "roles.r.deployments" in text
    assert "roles.r.source_networks" in text and "host bits" in text
    assert "roles.r.max_output_tokens" in text
    assert "bindings.0.subjects" in text
    assert "surprise" in text


def test_cross_references() -> None:
    found = problems(
        {
            "apps": {"a": {"entra_client_ids": [APP_ID]}, "b": {"entra_client_ids": [APP_ID]}},
            "agents": {"x": {"entra_client_ids": [AGENT_ID], "parent": "nobody"}},
            "roles": {
                "r": {
                    "operations": ["chat"],
                    "deployments": ["*"],
                    "not_before": "2026-02-01T00:00:00Z",
                    "not_after": "2026-01-01T00:00:00Z",
                }
            },
            "bindings": [
                {"name": "b", "role": "missing", "subjects": ["app:a"]},
                {
                    "name": "b",
                    "role": "r",
                    "subjects": ["app:a"],
                    "not_before": "2026-02-01T00:00:00Z",
                    "not_after": "2026-01-01T00:00:00Z",
                },
            ],
        }
    )
    text = "\n".join(found)
    assert f"client id {APP_ID} is also in apps.a" in text
    assert "'nobody' is not an app" in text
    assert "roles.r: not_after must be later" in text
    assert "role 'missing' is not defined" in text
    assert "used twice" in text
    assert "bindings[1] (b): not_after must be later" in text


def test_naive_times_are_refused() -> None:
    data = doc()
    data["bindings"][0]["not_after"] = datetime(2026, 1, 1)  # what YAML gives without a zone
    assert "timezone" in "\n".join(problems(data)).lower()


@pytest.mark.parametrize(
    "subject",
    [
        "key:abcdefghijkl",
        "app:billing-bot",
        "agent:triage",
        f"user:{APP_ID}",
        f"group:{APP_ID}",
        "approle:Keyguard.Chat",
    ],
)
def test_subjects(subject: str) -> None:
    kind, value = parse_subject(subject)
    assert f"{kind}:{value}" == subject


@pytest.mark.parametrize(
    "subject",
    ["app", "app:", "team:x", "key:short", "user:not-a-guid", "app:../x", "approle:", "app:a b"],
)
def test_bad_subjects(subject: str) -> None:
    with pytest.raises(ValueError):
        parse_subject(subject)


def test_group_and_user_ids_are_lower_cased() -> None:
    assert parse_subject(f"group:{APP_ID.upper()}") == ("group", APP_ID)


def test_load_document(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "roles:\n  chat: {operations: [chat], deployments: [gpt-4o]}\n"
        "bindings:\n  - {name: b, role: chat, subjects: ['app:x'],"
        " not_after: 2030-01-01T00:00:00Z}\n"
    )
    loaded = load_document(path)
    assert loaded.bindings[0].not_after == datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(PolicyInvalid, match="does not exist"):
        load_document(tmp_path / "missing.yaml")
    path.write_text("roles: [\n")
    with pytest.raises(PolicyInvalid, match="not valid YAML"):
        load_document(path)
    path.write_bytes(b"#" * (1024 * 1024 + 1))
    with pytest.raises(PolicyInvalid, match="larger than"):
        load_document(path)
    with pytest.raises(PolicyInvalid, match="cannot read"):
        load_document(tmp_path)


def test_merge_keeps_the_file_on_collisions() -> None:
    file = parse_document(doc())
    managed = parse_document(
        {
            "roles": {
                "chat": {"operations": ["embeddings"], "deployments": ["x"]},
                "extra": {"operations": ["embeddings"], "deployments": ["e"]},
            },
            "apps": {"m": {}},
            "bindings": [
                {"name": "b", "role": "extra", "subjects": ["app:other"]},
                {"name": "c", "role": "chat", "subjects": ["app:billing"]},
            ],
        }
    )
    merged, shadowed = merge(file, managed)
    assert merged.roles["chat"].operations == ["chat"]  # the file's
    assert set(merged.roles) == {"chat", "extra"}
    assert [b.name for b in merged.bindings] == ["b", "c"]
    assert merged.bindings[0].subjects == ["app:billing"]
    assert "m" in merged.apps
    assert len(shadowed) == 2


def test_merge_checks_the_result() -> None:
    file = parse_document({"apps": {"a": {"entra_client_ids": [APP_ID]}}})
    managed = parse_document({"apps": {"b": {"entra_client_ids": [APP_ID]}}})
    with pytest.raises(PolicyInvalid, match="also in"):
        merge(file, managed)
