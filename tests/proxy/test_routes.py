"""The route classifier: what is served, what is refused, and how."""

from __future__ import annotations

import pytest

from keyguard.errors import AuthenticationFailed, BadRequest, NotFound
from keyguard.proxy.routes import parse_route


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/openai/deployments/gpt-4o/chat/completions", "chat"),
        ("/openai/deployments/gpt-4o/completions", "completions"),
        ("/openai/deployments/emb-1/embeddings", "embeddings"),
        ("/openai/deployments/dalle/images/generations", "images"),
        ("/openai/deployments/whisper/audio/transcriptions", "transcriptions"),
        ("/openai/deployments/whisper/audio/translations", "translations"),
        ("/openai/deployments/tts/audio/speech", "speech"),
    ],
)
def test_legacy_routes(path: str, operation: str) -> None:
    route = parse_route("POST", path, "api-version=2024-10-21")
    assert route.family == "legacy"
    assert route.operation.name == operation
    assert route.deployment == path.split("/")[3]
    assert route.api_version == "2024-10-21"


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "/openai/v1/chat/completions", "chat"),
        ("POST", "/openai/v1/embeddings", "embeddings"),
        ("POST", "/openai/v1/responses", "responses"),
        ("GET", "/openai/v1/models", "models"),
    ],
)
def test_v1_routes(method: str, path: str, operation: str) -> None:
    route = parse_route(method, path, "")
    assert (route.family, route.operation.name, route.deployment) == ("v1", operation, None)


def test_legacy_responses_takes_the_deployment_from_the_body() -> None:
    route = parse_route("POST", "/openai/responses", "api-version=2025-04-01-preview")
    assert route.operation.name == "responses" and route.deployment is None


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/openai",
        "/openai/deployments/gpt-4o",
        "/openai/deployments/gpt-4o/chat",
        "/openai/deployments/gpt-4o/files",
        "/openai/v1/files",
        "/openai/v1/",
        "/admin/keys",
        "/openai/deployments//chat/completions",
    ],
)
def test_unknown_routes_are_404(path: str) -> None:
    with pytest.raises(NotFound) as info:
        parse_route("POST", path, "api-version=2024-10-21")
    assert info.value.status == 404


@pytest.mark.parametrize(
    "deployment",
    ["..", "a%2fb", "%2e%2e", "gpt\u20114o", "a" * 65, ".hidden", "x..y", "a b", "a;b"],
)
def test_bad_deployment_names_are_refused(deployment: str) -> None:
    with pytest.raises(NotFound) as info:
        parse_route(
            "POST", f"/openai/deployments/{deployment}/chat/completions", "api-version=2024-10-21"
        )
    assert info.value.code == "DeploymentNotFound"


@pytest.mark.parametrize(
    "query", ["", "api-version=", "api-version=2024-13-01", "api-version=latest"]
)
def test_legacy_routes_need_a_dated_api_version(query: str) -> None:
    with pytest.raises(BadRequest):
        parse_route("POST", "/openai/deployments/gpt-4o/chat/completions", query)


def test_v1_accepts_preview_and_refuses_dates() -> None:
    assert (
        parse_route("POST", "/openai/v1/chat/completions", "api-version=preview").api_version
        == "preview"
    )
    with pytest.raises(BadRequest):
        parse_route("POST", "/openai/v1/chat/completions", "api-version=2024-10-21")


@pytest.mark.parametrize(
    "param", ["api-key", "API-KEY", "subscription-key", "access_token", "code"]
)
def test_credentials_in_the_query_string_are_refused(param: str) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        parse_route(
            "POST",
            "/openai/deployments/gpt-4o/chat/completions",
            f"api-version=2024-10-21&{param}=x",
        )
    assert info.value.reason == "credential_in_query"


def test_duplicate_query_parameters_are_refused() -> None:
    with pytest.raises(BadRequest):
        parse_route(
            "POST",
            "/openai/deployments/gpt-4o/chat/completions",
            "api-version=2024-10-21&api-version=2023-05-15",
        )


def test_wrong_method_is_refused() -> None:
    with pytest.raises(NotFound):
        parse_route("GET", "/openai/deployments/gpt-4o/chat/completions", "api-version=2024-10-21")
    with pytest.raises(NotFound):
        parse_route("POST", "/openai/v1/models", "")
