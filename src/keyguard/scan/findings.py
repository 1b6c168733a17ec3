"""What the scanner reports: kinds, confidences and the ``Finding`` record.

A ``Finding`` never holds a secret. It carries where the secret is, what kind it is, how it
was hidden (``encoding``), a keyed ``fingerprint`` (see ``keyguard.scan.fingerprint``) and a
redacted ``preview`` that shows at most a short, non-secret prefix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["KINDS", "Kind", "Finding", "Hit", "redact"]


@dataclass(frozen=True, slots=True)
class Kind:
    """One rule: ``id`` is stable (used in SARIF and baselines)."""

    id: str
    title: str
    description: str


KINDS: dict[str, Kind] = {
    k.id: k
    for k in (
        Kind(
            "azure_openai_key",
            "Azure OpenAI key",
            "84-character identifiable Azure OpenAI key (service code B), checksum verified.",
        ),
        Kind(
            "azure_ai_services_key",
            "Azure AI Services key",
            "84-character identifiable Azure AI Services (multi-service) key (service code A), "
            "checksum verified; usable with the Azure OpenAI endpoints.",
        ),
        Kind(
            "azure_cognitive_services_key",
            "Azure Cognitive Services key",
            "84-character identifiable key of another Azure Cognitive Service (Speech, "
            "Translator, Vision, ...), checksum verified.",
        ),
        Kind(
            "azure_legacy_key",
            "Azure AI services key (32-hex)",
            "Legacy 32-hex Azure AI services / Azure OpenAI key, reported from its context "
            "(key-like name, header or an Azure AI endpoint nearby).",
        ),
        Kind("keyguard_key", "Keyguard key", "A Keyguard gateway key (kgk_), checksum verified."),
        Kind("openai_key", "OpenAI API key", "An OpenAI sk- key (project, service or user key)."),
        Kind(
            "entra_client_secret",
            "Entra ID client secret",
            "A Microsoft Entra ID (Azure AD) application client secret (xxx8Q~...).",
        ),
        Kind(
            "azure_storage_key",
            "Azure Storage account key",
            "An Azure Storage account key: identifiable (+ASt, checksum verified), in a "
            "connection string (AccountKey=), or an 88-character base64 value named as one or "
            "next to a Storage endpoint.",
        ),
        Kind(
            "azure_cosmos_key",
            "Azure Cosmos DB key",
            "An Azure Cosmos DB account key: identifiable (ACDb, checksum verified), in a "
            "connection string (AccountEndpoint=...;AccountKey=), or an 88-character base64 "
            "value named as one or next to a Cosmos DB endpoint.",
        ),
        Kind(
            "azure_shared_access_key",
            "Azure shared access key",
            "A Service Bus, Event Hubs or Relay (or IoT Hub) shared access key: identifiable "
            "(+ASb, +AEh, +ARm, checksum verified), in a connection string "
            "(SharedAccessKey=), or a 44-character base64 value named as one or next to a "
            "servicebus.windows.net endpoint.",
        ),
        Kind(
            "azure_sas_signature",
            "Azure SAS signature",
            "The sig of a Storage or Service Bus / Event Hubs shared access signature: a "
            "bearer credential until it expires.",
        ),
        Kind(
            "private_key",
            "Private key",
            "A PEM private key (PKCS#1, PKCS#8, EC, OpenSSH, encrypted or PGP) with its body.",
        ),
        Kind(
            "gcp_service_account_key",
            "Google Cloud service account key",
            "The PEM private key of a Google Cloud service account key file (JSON).",
        ),
        Kind("aws_access_key", "AWS access key id", "An AWS access key id (AKIA..., ASIA...)."),
        Kind(
            "aws_secret_key",
            "AWS secret access key",
            "A 40-character AWS secret access key named as one (aws_secret_access_key=...).",
        ),
        Kind("google_api_key", "Google API key", "A Google Cloud API key (AIza...)."),
        Kind(
            "github_token",
            "GitHub token",
            "A GitHub token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_).",
        ),
        Kind("gitlab_token", "GitLab token", "A GitLab personal access token (glpat-)."),
        Kind("slack_token", "Slack token", "A Slack bot, user or app token (xoxb-, xoxp-, xapp-)."),
        Kind("slack_webhook", "Slack webhook", "A Slack incoming webhook URL's secret path."),
        Kind(
            "stripe_key",
            "Stripe secret key",
            "A Stripe secret or restricted key (sk_live_, rk_live_, sk_test_).",
        ),
        Kind("npm_token", "npm token", "An npm access token (npm_)."),
        Kind("pypi_token", "PyPI token", "A PyPI API token (pypi-AgEIcHlwaS5vcmc...)."),
        Kind("huggingface_token", "Hugging Face token", "A Hugging Face access token (hf_)."),
        Kind("anthropic_key", "Anthropic API key", "An Anthropic API key (sk-ant-api03-...)."),
        Kind("sendgrid_key", "SendGrid API key", "A SendGrid API key (SG.xxx.yyy)."),
        Kind("google_oauth_secret", "Google OAuth client secret", "A GOCSPX- client secret."),
        Kind("shopify_token", "Shopify token", "A Shopify access token (shpat_, shpss_, ...)."),
        Kind("databricks_token", "Databricks token", "A Databricks personal access token."),
        Kind("digitalocean_token", "DigitalOcean token", "A DigitalOcean token (dop_v1_...)."),
        Kind("groq_key", "Groq API key", "A Groq API key (gsk_)."),
        Kind("xai_key", "xAI API key", "An xAI API key (xai-)."),
        Kind("perplexity_key", "Perplexity API key", "A Perplexity API key (pplx-)."),
        Kind("replicate_token", "Replicate token", "A Replicate API token (r8_)."),
        Kind("telegram_bot_token", "Telegram bot token", "A Telegram bot token (id:AA...)."),
        Kind("atlassian_token", "Atlassian API token", "An Atlassian API token (ATATT3...)."),
        Kind(
            "basic_auth",
            "HTTP Basic credentials",
            "An 'Authorization: Basic' header whose base64 decodes to user:password.",
        ),
        Kind(
            "connection_string_password",
            "Password in a database URL",
            "The password of a postgres://, mysql://, mongodb://, redis://, amqp:// ... URL, "
            "or the Password= of an ADO.NET/ODBC or Azure Cache for Redis connection string "
            "(placeholders such as password, ${DB_PASSWORD} or <password> are not reported).",
        ),
        Kind("jwt", "JSON Web Token", "A signed JWT committed to a file (bearer credential)."),
        Kind(
            "bearer_token",
            "Bearer token",
            "A high-entropy token following an 'Authorization: Bearer' scheme.",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Hit:
    """A detector's raw result inside one text view (holds the secret; never leaves memory)."""

    kind: str
    start: int
    end: int
    secret: str
    confidence: str
    detail: str = ""


def redact(secret: str) -> str:
    """A preview that cannot reveal the secret: a short prefix and the length."""
    shown = 4 if len(secret) >= 16 else 0
    return f"{secret[:shown]}…[{len(secret)} chars]"


@dataclass(frozen=True, slots=True)
class Finding:
    """One reported secret. ``file`` is relative to the scanned root (POSIX separators)."""

    file: str
    line: int
    end_line: int
    kind: str
    confidence: str  # "high" | "medium" | "low"
    fingerprint: str
    preview: str
    encoding: str = "plain"  # plain | base64 | url | json-escape | concatenation | notebook
    detail: str = ""
    commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.commit is None:
            del data["commit"]
        return data

    def with_location(self, file: str, commit: str | None) -> Finding:
        return replace(self, file=file, commit=commit)
