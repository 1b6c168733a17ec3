"""The Azure OpenAI operations Keyguard serves, and what a classified request is.

Shared by the proxy (which classifies requests: :mod:`keyguard.proxy.routes`), the policy
(which grants operations by name) and everything that reads a request context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Operation",
    "OPERATIONS",
    "LEGACY_OPERATIONS",
    "V1_OPERATIONS",
    "Route",
    "DEPLOYMENT_NAME",
]

# Azure deployment names: letters, digits, '-', '_', '.'; no leading dot; at most 64 chars.
DEPLOYMENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")

Family = Literal["legacy", "v1"]
BodyKind = Literal["json", "multipart", "none"]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str  # chat, completions, embeddings, images, transcriptions, ...
    path: str  # the path after the deployment (legacy) or after /openai/v1/ (v1)
    body: BodyKind
    method: str = "POST"


_OPS = [
    Operation("chat", "chat/completions", "json"),
    Operation("completions", "completions", "json"),
    Operation("embeddings", "embeddings", "json"),
    Operation("images", "images/generations", "json"),
    Operation("transcriptions", "audio/transcriptions", "multipart"),
    Operation("translations", "audio/translations", "multipart"),
    Operation("speech", "audio/speech", "json"),
    Operation("responses", "responses", "json"),
    Operation("models", "models", "none", method="GET"),
]
OPERATIONS = {op.name: op for op in _OPS}

# By the path after the deployment (legacy) or after /openai/v1/ (v1).
LEGACY_OPERATIONS = {op.path: op for op in _OPS if op.name not in ("responses", "models")}
V1_OPERATIONS = {
    op.path: op for op in _OPS if op.name in ("chat", "embeddings", "responses", "models")
}


@dataclass(frozen=True, slots=True)
class Route:
    family: Family
    operation: Operation
    deployment: str | None  # None when it comes from the body's ``model``
    api_version: str | None
