"""Client certificates bound to apps: exact names only, deny by default, crafted subjects
gain nothing."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keyguard.errors import AuthenticationFailed
from keyguard.identity.certificates import CertificateAuthenticator, certificate_names
from keyguard.policy.compiled import compile_policy
from keyguard.policy.document import PolicyInvalid, parse_document
from keyguard.policy.evaluate import subjects_of
from tests.support.certs import ClientCA, name

CA = ClientCA()


def der(subject: x509.Name, **sans: Any) -> bytes:
    return CA.issue(subject, **sans)[0].public_bytes(serialization.Encoding.DER)


def authenticator(**apps: list[str]) -> CertificateAuthenticator:
    document = parse_document(
        {
            "apps": {app: {"client_certificates": certs} for app, certs in apps.items()},
            "roles": {"chat": {"operations": ["chat"], "deployments": ["*"]}},
            "bindings": [
                {"name": f"b-{app}", "role": "chat", "subjects": [f"app:{app}"]} for app in apps
            ],
        }
    )
    policy = compile_policy(document)
    return CertificateAuthenticator(lambda: policy)


def test_a_bound_subject_authenticates_as_its_app() -> None:
    auth = authenticator(billing=["subject:CN=billing-bot,O=Contoso"])
    cert = der(name(("O", "Contoso"), ("CN", "billing-bot")))
    principal = auth.authenticate(cert)
    assert principal.kind == "cert" and principal.app == "billing"
    assert principal.id.startswith("cert:") and len(principal.id) == 5 + 16
    assert subjects_of(principal) == (principal.id, "app:billing")


@pytest.mark.parametrize(
    "subject",
    [
        name(("CN", "billing-bot,O=Contoso")),  # a comma inside the CN's value
        name(("O", "Contoso"), ("OU", "CN=billing-bot")),  # CN text spoofed inside an OU
        name(("O", "Contoso"), ("CN", "billing-bot"), ("CN", "evil")),  # a second CN
        name(("O", "Contoso"), [("CN", "billing-bot"), ("CN", "evil")]),  # multi-valued RDN
        name(("CN", "billing-bot")),  # a part of the bound subject
        name(("O", "Contoso"), ("CN", "Billing-Bot")),  # case is part of the name
        name(("O", "Contoso"), ("CN", "billing-bot\x00")),  # a trailing NUL
    ],
    ids=["comma", "cn-in-ou", "two-cns", "multi-valued", "partial", "case", "nul"],
)
def test_crafted_subjects_match_no_binding(subject: x509.Name) -> None:
    auth = authenticator(billing=["subject:CN=billing-bot,O=Contoso"])
    with pytest.raises(AuthenticationFailed) as info:
        auth.authenticate(der(subject))
    assert info.value.reason == "client_certificate_unbound"
    assert "policy" not in info.value.message and "billing" not in info.value.message


def test_subject_alternative_names_bind_exactly() -> None:
    auth = authenticator(
        billing=["dns:Billing.Contoso.com"], search=["uri:spiffe://contoso/search"]
    )
    assert auth.authenticate(der(name(("CN", "x")), dns=("billing.contoso.com",))).app == "billing"
    assert auth.authenticate(der(name(("CN", "y")), uris=("spiffe://contoso/search",))).app == (
        "search"
    )
    for sans in ({"dns": ("evil.billing.contoso.com",)}, {"uris": ("spiffe://contoso/search/x",)}):
        with pytest.raises(AuthenticationFailed):
            auth.authenticate(der(name(("CN", "z")), **sans))


def test_a_certificate_bound_to_two_apps_is_refused() -> None:
    auth = authenticator(billing=["subject:CN=both"], search=["dns:both.contoso.com"])
    with pytest.raises(AuthenticationFailed) as info:
        auth.authenticate(der(name(("CN", "both")), dns=("both.contoso.com",)))
    assert info.value.reason == "client_certificate_ambiguous"


def test_garbage_is_refused_and_names_are_bounded() -> None:
    auth = authenticator(billing=["subject:CN=a"])
    with pytest.raises(AuthenticationFailed) as info:
        auth.authenticate(b"\x30\x03\x02\x01\x00")
    assert info.value.reason == "client_certificate_malformed"
    many = der(name(("CN", "n")), dns=tuple(f"h{i}.example" for i in range(500)))
    assert len(certificate_names(many)) <= 65


def test_the_policy_validates_certificate_bindings() -> None:
    def problems(data: dict[str, Any]) -> list[str]:
        with pytest.raises(PolicyInvalid) as info:
            parse_document(data)
        return info.value.problems

    found = problems({"apps": {"a": {"client_certificates": ["cn:billing"]}}})
    assert "must be subject:<RFC 4514 name>, dns:<name> or uri:<URI>" in found[0]
    found = problems({"apps": {"a": {"client_certificates": ["subject:not a name"]}}})
    assert "not an RFC 4514 name" in found[0]
    found = problems(
        {
            "apps": {
                "a": {"client_certificates": ["dns:X.example"]},
                "b": {"client_certificates": ["dns:x.example"]},
            }
        }
    )
    assert found == ["apps.b: client certificate 'dns:x.example' is also in apps.a"]
    found = problems(
        {
            "agents": {
                "bot": {
                    "entra_client_ids": ["44444444-4444-4444-4444-444444444444"],
                    "client_certificates": ["uri:spiffe://x"],
                }
            }
        }
    )
    assert found == ["agents.bot: client certificates bind apps only"]
